"""Uploads spooled batches to the sink and deletes each spool file once the sink confirmed it.

Keys are deterministic (writer + sequence number), so a batch uploaded again after a crash
lands on the same key, and the sink accepts those same bytes again without writing anything new.
A key that holds *other* bytes (a state dir cloned to a second host, a second daemon with a
copied ledger) is never overwritten: the conflict is logged and counted, this state dir starts a
new writer instance, and the batch lands under its new name. Failures (S3 down, throttling,
timeouts) are retried with capped backoff for as long as it takes; the spool holds the data.
"""

from __future__ import annotations

import asyncio
import time

from streamer.backoff import Backoff
from streamer.health import Health
from streamer.items import FLUSH, Flush, SpooledBatch
from streamer.ledger import Ledger
from streamer.metrics import Metrics
from streamer.sinks import LandingConflict, Sink
from streamer.spool import Spool
from tweetlake.landing import STREAM_ERRORS, STREAM_TWEETS
from tweetlake.logs import get_logger

log = get_logger("streamer.uploader")


class Uploader:
    def __init__(
        self,
        uploads: asyncio.Queue[SpooledBatch | Flush],
        sink: Sink,
        spool: Spool,
        ledger: Ledger,
        metrics: Metrics,
        health: Health,
        *,
        writer_id: str,
        concurrency: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
    ) -> None:
        self._uploads = uploads
        self._sink = sink
        self._spool = spool
        self._ledger = ledger
        self._metrics = metrics
        self._health = health
        self._writer_id = writer_id
        self._concurrency = concurrency
        self._backoff = (backoff_base, backoff_cap)
        self.in_flight = 0

    async def run(self) -> None:
        async with asyncio.TaskGroup() as group:
            for _ in range(self._concurrency):
                group.create_task(self._worker())

    async def _worker(self) -> None:
        while True:
            batch = await self._uploads.get()
            if isinstance(batch, Flush):
                await self._uploads.put(FLUSH)  # let the other workers see it too
                return
            self.in_flight += 1
            try:
                await self.upload(batch)
            finally:
                self.in_flight -= 1

    async def upload(self, batch: SpooledBatch) -> None:
        backoff = Backoff(*self._backoff)
        body = await asyncio.to_thread(batch.path.read_bytes)
        while True:
            started = time.monotonic()
            try:
                stored = await self._sink.put(batch.key, body)
                break
            except LandingConflict as exc:
                batch = await self._rename_after_conflict(batch, exc)
            except Exception as exc:  # any other sink failure is retried: the spool keeps the data
                self._metrics.upload_failures.inc()
                self._health.upload(ok=False)
                delay = backoff.next_delay()
                log.warning(
                    "upload_failed",
                    key=self._sink.location.uri(batch.key),
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in_s=round(delay, 2),
                )
                await asyncio.sleep(delay)
        elapsed = time.monotonic() - started
        self._metrics.upload_seconds.observe(elapsed)
        self._metrics.batches_uploaded.labels(batch.stream).inc()
        self._metrics.mark_success("upload")
        self._health.upload(ok=True)
        for account, count in batch.counts.items():
            if batch.stream == STREAM_TWEETS:
                self._metrics.tweets_landed.labels(self._metrics.username(account)).inc(count)
            elif batch.stream == STREAM_ERRORS:
                self._metrics.api_errors_landed.labels(self._metrics.username(account)).inc(count)
        await self._spool.remove(batch)
        log.info(
            "batch_uploaded",
            key=self._sink.location.uri(batch.key),
            seq=batch.seq,
            bytes=batch.size,
            records=sum(batch.counts.values()),
            seconds=round(elapsed, 3),
            reupload=not stored,
        )

    async def _rename_after_conflict(self, batch: SpooledBatch, exc: LandingConflict) -> SpooledBatch:
        self._metrics.landing_conflicts.inc()
        if batch.writer == self._ledger.writer(self._writer_id):
            self._ledger.new_instance()
        renamed = await asyncio.to_thread(
            self._spool.rename, batch, self._ledger.writer(self._writer_id), self._ledger.allocate()
        )
        await asyncio.to_thread(self._ledger.write, self._ledger.encode())
        log.error(
            "landing_conflict",
            key=exc.uri,
            detail="another writer landed different bytes under this key; it was not overwritten",
            new_key=self._sink.location.uri(renamed.key),
        )
        return renamed
