"""Makes each batch durable, then advances the checkpoints it covers, then queues its upload.

That order is the no-loss rule: a checkpoint never covers a tweet that is not on disk yet. A batch
that holds only marks (see ``streamer.batcher``) writes no file: its marks apply to the ledger
once every batch before it is durable.
Disk errors (full disk, I/O errors) are retried with backoff and counted; the batch stays in
memory meanwhile and back-pressure holds the source.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from streamer.backoff import Backoff
from streamer.items import FLUSH, Batch, Flush, SpooledBatch
from streamer.ledger import Ledger
from streamer.metrics import Metrics
from streamer.spool import Spool
from tweetlake.logs import get_logger

log = get_logger("streamer.spooler")
T = TypeVar("T")


class SpoolWriter:
    def __init__(
        self,
        batches: asyncio.Queue[Batch | Flush],
        uploads: asyncio.Queue[SpooledBatch | Flush],
        spool: Spool,
        ledger: Ledger,
        metrics: Metrics,
        *,
        writer_id: str,
        stream_mode: bool = False,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
    ) -> None:
        self._batches = batches
        self._uploads = uploads
        self._spool = spool
        self._ledger = ledger
        self._metrics = metrics
        self._writer_id = writer_id
        self._stream_mode = stream_mode
        self._backoff = (backoff_base, backoff_cap)

    async def run(self) -> None:
        while True:
            batch = await self._batches.get()
            if isinstance(batch, Flush):
                await self._uploads.put(FLUSH)
                return
            if not batch.lines:
                for mark in batch.marks:
                    self._ledger.apply(mark)
                await self._retrying(self._ledger.write, self._ledger.encode())
                continue
            await self._spool.wait_for_room(batch.nbytes)
            spooled = await self._durably(batch)
            self._metrics.batches_spooled.labels(spooled.stream).inc()
            log.info(
                "batch_spooled",
                seq=spooled.seq,
                stream=spooled.stream,
                hour=str(spooled.hour),
                records=len(batch.lines),
                bytes=spooled.size,
            )
            await self._uploads.put(spooled)

    async def _durably(self, batch: Batch) -> SpooledBatch:
        """Spool file first, then the ledger; each step retried on its own, so neither repeats the other."""
        spooled = await self._retrying(
            self._spool.write, batch, self._ledger.writer(self._writer_id), self._ledger.allocate()
        )
        self._ledger.record(batch.ids, stream=self._stream_mode)
        await self._retrying(self._ledger.write, self._ledger.encode())
        return spooled

    async def _retrying(self, step: Callable[..., T], *args: Any) -> T:
        """Run a blocking disk step until it succeeds (a full disk frees up, an I/O error passes)."""
        backoff = Backoff(*self._backoff)
        while True:
            try:
                return await asyncio.to_thread(step, *args)
            except OSError as exc:
                self._metrics.spool_failures.inc()
                delay = backoff.next_delay()
                log.error(
                    "spool_write_failed",
                    error=f"{type(exc).__name__}: {exc.strerror or exc}",
                    retry_in_s=round(delay, 2),
                )
                await asyncio.sleep(delay)
