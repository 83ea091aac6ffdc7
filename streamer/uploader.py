"""Uploads spooled batches to the sink and deletes each spool file once the sink confirmed it.

Keys are deterministic (writer + sequence number), so a batch uploaded again after a crash
lands on the same key: it overwrites, never duplicates. Failures (S3 down, throttling, timeouts)
are retried with capped backoff for as long as it takes; the spool holds the data meanwhile.
"""

from __future__ import annotations

import asyncio
import time

from streamer.backoff import Backoff
from streamer.items import FLUSH, Flush, SpooledBatch
from streamer.metrics import Metrics
from streamer.sinks import Sink
from streamer.spool import Spool
from tweetlake.landing import STREAM_ERRORS, STREAM_TWEETS, landing_key
from tweetlake.logs import get_logger

log = get_logger("streamer.uploader")


class Uploader:
    def __init__(
        self,
        uploads: asyncio.Queue[SpooledBatch | Flush],
        sink: Sink,
        spool: Spool,
        metrics: Metrics,
        *,
        writer_id: str,
        concurrency: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
    ) -> None:
        self._uploads = uploads
        self._sink = sink
        self._spool = spool
        self._metrics = metrics
        self._writer = writer_id
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
        key = landing_key(batch.stream, batch.hour, self._writer, batch.seq)
        backoff = Backoff(*self._backoff)
        body = await asyncio.to_thread(batch.path.read_bytes)
        while True:
            started = time.monotonic()
            try:
                await self._sink.put(key, body)
                break
            except Exception as exc:  # any sink failure is retried: the spool keeps the data
                self._metrics.upload_failures.inc()
                delay = backoff.next_delay()
                log.warning("upload_failed", key=key, error=f"{type(exc).__name__}: {exc}", retry_in_s=round(delay, 2))
                await asyncio.sleep(delay)
        elapsed = time.monotonic() - started
        self._metrics.upload_seconds.observe(elapsed)
        self._metrics.batches_uploaded.labels(batch.stream).inc()
        self._metrics.mark_success("upload")
        for account, count in batch.counts.items():
            if batch.stream == STREAM_TWEETS:
                self._metrics.tweets_landed.labels(account).inc(count)
            elif batch.stream == STREAM_ERRORS:
                self._metrics.api_errors_landed.labels(account or "none").inc(count)
        await self._spool.remove(batch)
        log.info(
            "batch_uploaded",
            key=self._sink.location.uri(key),
            seq=batch.seq,
            bytes=batch.size,
            records=sum(batch.counts.values()),
            seconds=round(elapsed, 3),
        )
