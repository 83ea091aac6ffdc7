"""Wires the components together and owns start-up, signals, sd_notify and shutdown order.

    PollSource | StreamSource --items--> Batcher --batches--> SpoolWriter --uploads--> Uploader --> Sink

SIGHUP reloads the config file: the ``RELOADABLE`` keys reach the source at once, other changes
are reported as needing a restart, and a file that fails validation changes nothing.

The first two queues are bounded (back-pressure reaches the source); the upload queue holds
references to files already on disk and is bounded by the spool's disk cap instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Any

from streamer.batcher import Batcher
from streamer.billing import Bill
from streamer.credentials import Credentials
from streamer.health import SPOOL_FULL, Health, HealthServer
from streamer.items import FLUSH, Batch, Flush, Item, SpooledBatch
from streamer.ledger import Ledger
from streamer.metrics import Metrics
from streamer.poller import PollSource
from streamer.sdnotify import Notifier
from streamer.sinks import sink_for
from streamer.spending import Spending, rates_of
from streamer.spooler import SpoolWriter
from streamer.state import OpenedState, open_state
from streamer.stream import StreamSource
from streamer.uploader import Uploader
from streamer.xclient import EXPANSIONS, LEAN_EXPANSIONS, XClient
from tweetlake.config import RELOADABLE, Config, ConfigError, changed_keys, load_streamer_config, with_runtime_keys
from tweetlake.logs import get_logger

log = get_logger("streamer.service")
ITEM_QUEUE_SIZE = 1000


class StartupError(Exception):
    """The daemon cannot start; ``str()`` is one line naming the cause (CLI exit code 1)."""


class Service:
    def __init__(
        self,
        config: Config,
        credentials: Credentials,
        *,
        config_path: str | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config = config
        self._config_path = config_path
        self._source: PollSource | StreamSource | None = None
        self._spending: Spending | None = None
        self._credentials = credentials
        self.metrics = Metrics()
        self.health = Health(config.health.stale_after_s)
        self._notifier = notifier or Notifier()
        self._stop = asyncio.Event()
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self._state: OpenedState | None = None

    def request_stop(self) -> None:
        self._stop.set()

    def report(self) -> dict[str, Any]:
        """The /healthz body."""
        assert self._state is not None
        spool = self._state.spool
        self.health.warn(SPOOL_FULL, spool.paused_by_cap)
        body = self.health.report(
            {name: not task.done() for name, task in self._tasks.items()}, spool_files=spool.file_count
        )
        body["components"]["spool"] = {
            "files": spool.file_count,
            "bytes": spool.used_bytes,
            "backpressure": spool.paused_by_cap,
        }
        return body

    async def _start_state(self) -> OpenedState:
        config = self.config
        try:
            return await asyncio.to_thread(
                open_state,
                Path(config.state.dir),
                writer_id=config.collect.writer_id,
                max_spool_bytes=config.state.max_spool_bytes,
                metrics=self.metrics,
                stream_mode=config.collect.mode == "stream",
            )
        except OSError as exc:
            log.debug("startup_failed", exc_info=exc)
            raise StartupError(f"state.dir {config.state.dir}: {exc.strerror or exc}") from None

    def _open_bill(self) -> Bill:
        try:
            return Bill(Path(self.config.state.dir) / "billing", rates_of(self.config.cost))
        except OSError as exc:
            log.debug("startup_failed", exc_info=exc)
            raise StartupError(f"state.dir {self.config.state.dir}/billing: {exc.strerror or exc}") from None

    async def _start_health(self) -> HealthServer:
        server = HealthServer(self.metrics, self.report, self.config.metrics.host, self.config.metrics.port)
        try:
            await server.start()
        except OSError as exc:
            log.debug("startup_failed", exc_info=exc)
            where = f"{self.config.metrics.host}:{self.config.metrics.port}"
            raise StartupError(f"metrics.port: cannot listen on {where}: {exc.strerror or exc}") from None
        return server

    async def run(self) -> int:
        config = self.config
        self._state = state = await self._start_state()
        ledger, spool = state.ledger, state.spool
        for username in config.collect.users:
            if account_id := ledger.accounts.get(username.lower()):
                self.metrics.name_account(account_id, username)
        if state.pending:
            log.info("spool_recovered", files=len(state.pending), bytes=spool.used_bytes)
        health_server = await self._start_health()
        spending = Spending(self._open_bill(), config.cost, self.metrics, self.health)
        self._spending = spending

        items: asyncio.Queue[Item | Flush] = asyncio.Queue(ITEM_QUEUE_SIZE)
        batches: asyncio.Queue[Batch | Flush] = asyncio.Queue(2)
        uploads: asyncio.Queue[SpooledBatch | Flush] = asyncio.Queue()
        for batch in state.pending:
            uploads.put_nowait(batch)

        sink = sink_for(config.landing.uri, endpoint_url=config.landing.endpoint_url, region=config.landing.region)
        accounts = config.collect.my_users()  # this host's shard of collect.users
        client = XClient(
            config.x_api.base_url,
            self._credentials,
            self.metrics,
            self.health,
            timeout_s=config.x_api.timeout_s,
            max_retries=config.x_api.max_retries,
            spending=spending,
            expansions=LEAN_EXPANSIONS if config.collect.expansions == "lean" else EXPANSIONS,
        )
        self._source = source = self._make_source(client, ledger, items)
        batcher = Batcher(
            items,
            batches,
            max_records=config.batch.max_records,
            max_bytes=config.batch.max_bytes,
            max_age_s=config.batch.max_age_s,
        )
        writer_id = config.collect.writer_id
        spooler = SpoolWriter(
            batches,
            uploads,
            spool,
            ledger,
            self.metrics,
            writer_id=writer_id,
            stream_mode=config.collect.mode == "stream",
        )
        uploader = Uploader(uploads, sink, spool, ledger, self.metrics, self.health, writer_id=writer_id)

        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload)

        self._tasks = {
            "uploader": asyncio.create_task(uploader.run(), name="uploader"),
            "spooler": asyncio.create_task(spooler.run(), name="spooler"),
            "batcher": asyncio.create_task(batcher.run(), name="batcher"),
            "source": asyncio.create_task(source.run(), name="source"),
            "spending": asyncio.create_task(
                spending.run(client if self._credentials.bearer_token else None), name="spending"
            ),
        }
        watchdog = asyncio.create_task(self._watchdog(), name="watchdog")
        self._notifier.ready(f"collecting {len(accounts)} accounts")
        log.info(
            "started",
            accounts=len(accounts),
            mode=config.collect.mode,
            landing=sink.location.uri(),
            metrics_port=health_server.port,
            writer=ledger.writer(writer_id),
            spooled=len(state.pending),
        )

        stop_wait = asyncio.create_task(self._stop.wait())
        done, _ = await asyncio.wait([stop_wait, *self._tasks.values()], return_when=asyncio.FIRST_COMPLETED)
        exit_code = 0
        for task in done:
            if task is not stop_wait and (exc := task.exception()) is not None:
                log.error(
                    "component_failed", component=task.get_name(), error=f"{type(exc).__name__}: {exc}", exc_info=exc
                )
                exit_code = 1
        stop_wait.cancel()
        await self._shutdown(items)
        watchdog.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await client.close()
        await sink.close()
        await health_server.stop()
        state.lock.release()
        log.info("stopped", exit_code=exit_code, spool_files=spool.file_count)
        return exit_code

    def _make_source(self, client: XClient, ledger: Ledger, items: asyncio.Queue[Any]) -> PollSource | StreamSource:
        collect = self.config.collect
        assert self._spending is not None
        if collect.mode == "stream":
            assert self._credentials.bearer_token is not None  # the CLI checks it
            return StreamSource(
                client,
                ledger,
                items,
                self.metrics,
                self.health,
                base_url=self.config.x_api.base_url,
                bearer=self._credentials.bearer_token,
                collect=collect,
                stream=self.config.stream,
                spending=self._spending,
            )
        return PollSource(client, ledger, items, self.metrics, self.health, collect=collect)

    def reload(self) -> None:
        """SIGHUP: apply the reloadable keys of the config file now; report the others."""
        if self._config_path is None or self._source is None:
            return
        try:
            new = load_streamer_config(self._config_path)
        except ConfigError as exc:
            self.metrics.config_reloads.labels("invalid").inc()
            log.error("config_reload_failed", problems=exc.problems, kept="the running config")
            return
        changed = changed_keys(self.config, new)
        applied = [key for key in changed if key in RELOADABLE]
        self.config = with_runtime_keys(self.config, new)
        self._source.reconfigure(self.config.collect)
        if self._spending is not None:
            self._spending.reconfigure(self.config.cost)
        self.metrics.config_reloads.labels("ok").inc()
        log.info("config_reloaded", applied=applied, needs_restart=[key for key in changed if key not in applied])

    async def _shutdown(self, items: asyncio.Queue[Item | Flush]) -> None:
        """Stop fetching, flush the open batches to the spool, upload within the time limit."""
        assert self._state is not None
        spool = self._state.spool
        self._notifier.stopping()
        log.info("stopping", reason="signal" if self._stop.is_set() else "component exit")
        deadline = time.monotonic() + self.config.service.shutdown_timeout_s
        for name in ("source", "spending"):
            self._tasks[name].cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._tasks[name]
        if self._spending is not None:
            self._spending.log_spend(final=True)
            self._spending.bill.close()
        await spool.lift_cap()
        if not self._tasks["batcher"].done():
            await items.put(FLUSH)
        for name in ("batcher", "spooler", "uploader"):
            task = self._tasks[name]
            remaining = max(0.1, deadline - time.monotonic())
            try:
                await asyncio.wait_for(asyncio.shield(task), remaining)
            except TimeoutError:
                log.warning("shutdown_timeout", component=name, left_in_spool=spool.file_count)
                for rest in ("batcher", "spooler", "uploader"):
                    self._tasks[rest].cancel()
                break
            except Exception:  # already logged as component_failed
                continue

    async def _watchdog(self) -> None:
        interval = self._notifier.watchdog_interval_s
        if not self._notifier.enabled:
            return
        assert self._state is not None
        while True:
            self._notifier.watchdog()
            landed = sum(
                s.value for m in self.metrics.tweets_landed.collect() for s in m.samples if s.name.endswith("_total")
            )
            self._notifier.status(f"landed {int(landed)} tweets; spool {self._state.spool.file_count} files")
            await asyncio.sleep(interval or 10.0)
