"""Makes each batch durable, then advances the checkpoints it covers, then queues its upload.

That order is the no-loss rule: a checkpoint never covers a tweet that is not on disk yet.
Disk errors (full disk, I/O errors) are retried with backoff and counted; the batch stays in
memory meanwhile and back-pressure holds the source.
"""

from __future__ import annotations

import asyncio

from streamer.backoff import Backoff
from streamer.items import FLUSH, Batch, Flush, SpooledBatch
from streamer.ledger import Ledger
from streamer.metrics import Metrics
from streamer.spool import Spool
from tweetlake.logs import get_logger

log = get_logger("streamer.spooler")


class SpoolWriter:
    def __init__(
        self,
        batches: asyncio.Queue[Batch | Flush],
        uploads: asyncio.Queue[SpooledBatch | Flush],
        spool: Spool,
        ledger: Ledger,
        metrics: Metrics,
        *,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
    ) -> None:
        self._batches = batches
        self._uploads = uploads
        self._spool = spool
        self._ledger = ledger
        self._metrics = metrics
        self._backoff = (backoff_base, backoff_cap)

    async def run(self) -> None:
        while True:
            batch = await self._batches.get()
            if isinstance(batch, Flush):
                await self._uploads.put(FLUSH)
                return
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
        backoff = Backoff(*self._backoff)
        while True:
            seq = self._ledger.next_seq
            try:
                spooled = await asyncio.to_thread(self._spool.write, batch, seq)
                self._ledger.next_seq = seq + 1
                self._ledger.advance(batch.max_ids)
                await asyncio.to_thread(self._ledger.save)
                return spooled
            except OSError as exc:
                # A spool file written before a failed ledger save is fine: restart reconciles it,
                # and the retry below writes the same seq again over it.
                self._ledger.next_seq = seq
                self._metrics.spool_failures.inc()
                delay = backoff.next_delay()
                log.error(
                    "spool_write_failed",
                    error=f"{type(exc).__name__}: {exc.strerror or exc}",
                    retry_in_s=round(delay, 2),
                )
                await asyncio.sleep(delay)
