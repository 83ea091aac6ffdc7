"""Wires the components together and owns start-up, signals, sd_notify and shutdown order.

    PollSource --items--> Batcher --batches--> SpoolWriter --uploads--> Uploader --> Sink

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
from streamer.credentials import Credentials
from streamer.health import HealthServer
from streamer.items import FLUSH, Batch, Flush, Item, SpooledBatch
from streamer.ledger import Ledger
from streamer.metrics import Metrics
from streamer.poller import PollSource
from streamer.sdnotify import Notifier
from streamer.sinks import Sink, sink_for
from streamer.spool import Spool
from streamer.spooler import SpoolWriter
from streamer.uploader import Uploader
from streamer.xclient import XClient
from tweetlake.config import Config
from tweetlake.logs import get_logger

log = get_logger("streamer.service")
ITEM_QUEUE_SIZE = 1000


class Service:
    def __init__(
        self,
        config: Config,
        credentials: Credentials,
        *,
        sink: Sink | None = None,
        notifier: Notifier | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        self._credentials = credentials
        self.metrics = metrics or Metrics()
        self._notifier = notifier or Notifier()
        self.sink = sink or sink_for(
            config.landing.uri, endpoint_url=config.landing.endpoint_url, region=config.landing.region
        )
        state_dir = Path(config.state.dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger.load(state_dir / "state.json")
        self.spool = Spool(state_dir / "spool", config.state.max_spool_bytes, self.metrics)
        self._stop = asyncio.Event()
        self._started = time.time()
        self._tasks: dict[str, asyncio.Task[Any]] = {}
        self.health_server: HealthServer | None = None

    def request_stop(self) -> None:
        self._stop.set()

    def health(self) -> tuple[bool, dict[str, Any]]:
        alive = {name: not task.done() for name, task in self._tasks.items()}
        last_poll = self.metrics.last_success_at.get("poll", self._started)
        stale_after = max(3 * self.config.collect.poll_interval_s, 600.0)
        fresh = time.time() - last_poll < stale_after
        detail = {
            "components": alive,
            "seconds_since_last_poll": round(time.time() - last_poll, 1),
            "spool_files": self.spool.file_count,
            "spool_bytes": self.spool.used_bytes,
            "backpressure": self.spool.paused_by_cap,
        }
        return all(alive.values()) and fresh, detail

    async def run(self) -> int:
        config = self.config
        recovered = self.spool.recover()
        if self.ledger.reconcile(recovered):
            await asyncio.to_thread(self.ledger.save)
            log.warning("state_reconciled", checkpoints=len(self.ledger.checkpoints), next_seq=self.ledger.next_seq)
        if recovered:
            log.info("spool_recovered", files=len(recovered), bytes=self.spool.used_bytes)

        items: asyncio.Queue[Item | Flush] = asyncio.Queue(ITEM_QUEUE_SIZE)
        batches: asyncio.Queue[Batch | Flush] = asyncio.Queue(2)
        uploads: asyncio.Queue[SpooledBatch | Flush] = asyncio.Queue()
        for batch in recovered:
            uploads.put_nowait(batch)

        accounts = config.collect.my_users()  # this host's shard of collect.users
        client = XClient(
            config.x_api.base_url,
            self._credentials,
            self.metrics,
            timeout_s=config.x_api.timeout_s,
            max_retries=config.x_api.max_retries,
        )
        source = PollSource(
            client,
            self.ledger,
            items,
            self.metrics,
            usernames=accounts,
            poll_interval_s=config.collect.poll_interval_s,
            max_pages=config.collect.max_history_pages,
        )
        batcher = Batcher(
            items,
            batches,
            max_records=config.batch.max_records,
            max_bytes=config.batch.max_bytes,
            max_age_s=config.batch.max_age_s,
        )
        spooler = SpoolWriter(batches, uploads, self.spool, self.ledger, self.metrics)
        uploader = Uploader(uploads, self.sink, self.spool, self.metrics, writer_id=config.collect.writer_id)

        self.health_server = HealthServer(self.metrics, self.health, config.metrics.host, config.metrics.port)
        await self.health_server.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)

        self._tasks = {
            "uploader": asyncio.create_task(uploader.run(), name="uploader"),
            "spooler": asyncio.create_task(spooler.run(), name="spooler"),
            "batcher": asyncio.create_task(batcher.run(), name="batcher"),
            "source": asyncio.create_task(source.run(), name="source"),
        }
        watchdog = asyncio.create_task(self._watchdog(), name="watchdog")
        self._notifier.ready(f"collecting {len(accounts)} accounts")
        log.info(
            "started",
            accounts=len(accounts),
            landing=self.sink.location.uri(),
            metrics_port=self.health_server.port,
            writer=config.collect.writer_id,
            spooled=len(recovered),
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
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await client.close()
        await self.sink.close()
        await self.health_server.stop()
        log.info("stopped", exit_code=exit_code, spool_files=self.spool.file_count)
        return exit_code

    async def _shutdown(self, items: asyncio.Queue[Item | Flush]) -> None:
        """Stop fetching, flush the open batches to the spool, upload within the time limit."""
        self._notifier.stopping()
        log.info("stopping", reason="signal" if self._stop.is_set() else "component exit")
        deadline = time.monotonic() + self.config.service.shutdown_timeout_s
        source = self._tasks["source"]
        source.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await source
        await self.spool.lift_cap()
        if not self._tasks["batcher"].done():
            await items.put(FLUSH)
        for name in ("batcher", "spooler", "uploader"):
            task = self._tasks[name]
            remaining = max(0.1, deadline - time.monotonic())
            try:
                await asyncio.wait_for(asyncio.shield(task), remaining)
            except TimeoutError:
                log.warning("shutdown_timeout", component=name, left_in_spool=self.spool.file_count)
                for rest in ("batcher", "spooler", "uploader"):
                    self._tasks[rest].cancel()
                break
            except Exception:  # already logged as component_failed
                continue

    async def _watchdog(self) -> None:
        interval = self._notifier.watchdog_interval_s
        if not self._notifier.enabled:
            return
        while True:
            self._notifier.watchdog()
            landed = sum(
                s.value for m in self.metrics.tweets_landed.collect() for s in m.samples if s.name.endswith("_total")
            )
            self._notifier.status(f"landed {int(landed)} tweets; spool {self.spool.file_count} files")
            await asyncio.sleep(interval or 10.0)
