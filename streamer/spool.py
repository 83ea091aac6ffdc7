"""The local spool: every batch is gzipped and fsynced here before anything is uploaded.

A spool file's name carries its sequence number, stream and hour, so the landing key can be
rebuilt from the file alone after a restart. The spool also enforces the disk cap: while it is
full, ``wait_for_room`` blocks, and that back-pressure travels up the bounded queues to the
source, which stops fetching instead of dropping anything.
"""

from __future__ import annotations

import asyncio
import gzip
import re
from pathlib import Path

from streamer.durable import fsync_dir, write_atomic
from streamer.items import Batch, SpooledBatch
from streamer.metrics import Metrics
from tweetlake.landing import STREAM_TWEETS, Hour, decode_line
from tweetlake.logs import get_logger

log = get_logger("streamer.spool")
_NAME = re.compile(r"^(?P<seq>\d{12})\.(?P<stream>[a-z]+)\.(?P<hour>\d{4}-\d{2}-\d{2}T\d{2})\.ndjson\.gz$")


class Spool:
    def __init__(self, directory: Path, max_bytes: int, metrics: Metrics) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self._metrics = metrics
        self._sizes: dict[Path, int] = {}
        self._room = asyncio.Condition()
        self.paused_by_cap = False
        self.dir.mkdir(parents=True, exist_ok=True)

    @property
    def used_bytes(self) -> int:
        return sum(self._sizes.values())

    @property
    def file_count(self) -> int:
        return len(self._sizes)

    async def lift_cap(self) -> None:
        """At shutdown the final batches go to disk even over the (soft) cap."""
        self.max_bytes = 1 << 62
        async with self._room:
            self._room.notify_all()

    def _publish(self) -> None:
        self._metrics.spool_bytes.set(self.used_bytes)
        self._metrics.spool_files.set(len(self._sizes))

    def recover(self) -> list[SpooledBatch]:
        """Spooled batches left by an earlier run, oldest first; half-written temp files go."""
        for tmp in self.dir.glob(".tmp-*"):
            log.warning("spool_temp_removed", path=str(tmp))
            tmp.unlink()
        found = []
        for path in sorted(self.dir.iterdir()):
            match = _NAME.match(path.name)
            if not match:
                continue
            counts: dict[str, int] = {}
            max_ids: dict[str, int] = {}
            with gzip.open(path, "rb") as handle:
                for line in handle:
                    record = decode_line(line)
                    account = (record.get("account") or {}).get("id", "")
                    counts[account] = counts.get(account, 0) + 1
                    if match["stream"] == STREAM_TWEETS:
                        tweet_id = int(record["tweet"]["id"])
                        max_ids[account] = max(max_ids.get(account, 0), tweet_id)
            batch = SpooledBatch(
                path,
                int(match["seq"]),
                match["stream"],
                Hour.parse(match["hour"]),
                path.stat().st_size,
                counts,
                max_ids,
            )
            self._sizes[path] = batch.size
            found.append(batch)
        self._publish()
        return found

    def write(self, batch: Batch, seq: int) -> SpooledBatch:
        """Blocking: compress and fsync one batch. Raises OSError (e.g. disk full) untouched."""
        path = self.dir / f"{seq:012d}.{batch.stream}.{batch.hour}.ndjson.gz"
        data = gzip.compress(b"".join(batch.lines), compresslevel=6, mtime=0)
        write_atomic(path, data)
        self._sizes[path] = len(data)
        self._publish()
        return SpooledBatch(path, seq, batch.stream, batch.hour, len(data), dict(batch.counts), dict(batch.max_ids))

    async def remove(self, batch: SpooledBatch) -> None:
        batch.path.unlink(missing_ok=True)
        await asyncio.to_thread(fsync_dir, self.dir)
        self._sizes.pop(batch.path, None)
        self._publish()
        async with self._room:
            self._room.notify_all()

    async def wait_for_room(self, nbytes: int) -> None:
        """Block while the spool is over its cap (an empty spool always takes one batch)."""
        if self.used_bytes + nbytes <= self.max_bytes or not self._sizes:
            return
        self._metrics.backpressure.set(1)
        self.paused_by_cap = True
        log.warning("backpressure_on", spool_bytes=self.used_bytes, cap=self.max_bytes)
        async with self._room:
            await self._room.wait_for(lambda: self.used_bytes + nbytes <= self.max_bytes or not self._sizes)
        self._metrics.backpressure.set(0)
        self.paused_by_cap = False
        log.info("backpressure_off", spool_bytes=self.used_bytes)
