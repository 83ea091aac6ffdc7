"""Groups items into batches that close on count, bytes, age or a change of hour.

Closing at the hour boundary keeps every landed file inside one collection-hour partition,
so the compactor can take an hour's files as they are. A ``Mark`` closes every open batch and
travels in a batch of its own, so the spooler applies it only after all that came before it is
durable. For the same reason a batch never closes alone: every open batch closes with it, the
others first. The spooler makes batches durable in queue order, and a tweets batch advances the
checkpoint past everything read before its last tweet, an object quarantined in the errors
stream included (a kill between the two must not lose that object).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime

from streamer.items import FLUSH, Batch, Flush, Item, Mark
from tweetlake.landing import Hour


class Batcher:
    def __init__(
        self,
        items: asyncio.Queue[Item | Mark | Flush],
        batches: asyncio.Queue[Batch | Flush],
        *,
        max_records: int,
        max_bytes: int,
        max_age_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._items = items
        self._batches = batches
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._max_age_s = max_age_s
        self._clock = clock
        self._open: dict[str, Batch] = {}

    def _next_deadline(self) -> float | None:
        if not self._open:
            return None
        return min(b.opened_at for b in self._open.values()) + self._max_age_s - self._clock()

    async def _emit(self, last: str | None = None) -> None:
        """Close every open batch, ``last``'s after the others."""
        for stream in sorted(self._open, key=lambda s: s == last):  # a stable sort: the rest keep their order
            await self._batches.put(self._open.pop(stream))

    async def _emit_aged(self) -> None:
        now = self._clock()
        if any(now - b.opened_at >= self._max_age_s for b in self._open.values()):
            await self._emit()

    async def run(self) -> None:
        while True:
            deadline = self._next_deadline()
            try:
                async with asyncio.timeout(max(deadline, 0) if deadline is not None else None):
                    item = await self._items.get()
            except TimeoutError:
                await self._emit_aged()
                continue
            if isinstance(item, Flush):
                await self._emit()
                await self._batches.put(FLUSH)
                return
            if isinstance(item, Mark):
                await self._emit()
                await self._batches.put(Batch("", Hour.of(datetime.now(UTC)), self._clock(), marks=[item]))
                continue
            await self.add(item)

    async def add(self, item: Item) -> None:
        hour = Hour.of(item.collected_at)
        batch = self._open.get(item.stream)
        if batch is not None and (batch.hour != hour or batch.nbytes + len(item.line) > self._max_bytes):
            await self._emit(item.stream)
            batch = None
        if batch is None:
            batch = self._open[item.stream] = Batch(item.stream, hour, self._clock())
        batch.add(item)
        if (
            len(batch.lines) >= self._max_records
            or batch.nbytes >= self._max_bytes
            or self._clock() - batch.opened_at >= self._max_age_s
        ):
            await self._emit(item.stream)
