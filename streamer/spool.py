"""The local spool: every batch is gzipped and fsynced here before anything is uploaded.

A spool file's name is its stream, hour and landed file name (writer + sequence number), so its
landing key can be rebuilt from the file alone, whatever happened to the ledger. The spool also
enforces the disk cap: while it is full, ``wait_for_room`` blocks, and that back-pressure travels
up the bounded queues to the source, which stops fetching instead of dropping anything.
"""

from __future__ import annotations

import asyncio
import gzip
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from streamer.items import Batch, SpooledBatch
from streamer.metrics import Metrics
from tweetlake.durable import fsync_dir, write_atomic
from tweetlake.landing import STREAMS, Hour, file_name, parse_file_name
from tweetlake.logs import get_logger

log = get_logger("streamer.spool")
_NAME = re.compile(r"^(?P<stream>[a-z]+)\.(?P<hour>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2})\.(?P<name>[^/]+)$", re.ASCII)
_LEGACY_NAME = re.compile(  # version 1: the writer was the configured writer_id alone
    r"^(?P<seq>[0-9]{12})\.(?P<stream>[a-z]+)\.(?P<hour>[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2})\.ndjson\.gz$", re.ASCII
)
TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class SpoolFile:
    """What a spool file's name says: where its contents land."""

    path: Path
    stream: str
    hour: Hour
    writer: str
    seq: int


def spool_name(stream: str, hour: Hour, writer: str, seq: int) -> str:
    return f"{stream}.{hour}.{file_name(writer, seq)}"


def parse_spool_name(path: Path, legacy_writer: str) -> SpoolFile | None:
    """The landing coordinates in a spool file name (version 1 names get ``legacy_writer``)."""
    if match := _NAME.match(path.name):
        parsed = parse_file_name(match["name"])
        if parsed and match["stream"] in STREAMS:
            return SpoolFile(path, match["stream"], Hour.parse(match["hour"]), *parsed)
    if (match := _LEGACY_NAME.match(path.name)) and match["stream"] in STREAMS:
        return SpoolFile(path, match["stream"], Hour.parse(match["hour"]), legacy_writer, int(match["seq"]))
    return None


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

    def files(self) -> list[Path]:
        """Every entry but temp files, oldest sequence first within a writer."""
        return sorted(p for p in self.dir.iterdir() if not p.name.startswith(TEMP_PREFIX))

    def remove_temp_files(self) -> list[Path]:
        """Half-written files of a run that died mid-write: never complete, never referenced."""
        found = sorted(self.dir.glob(f"{TEMP_PREFIX}*"))
        for tmp in found:
            tmp.unlink()
        return found

    async def lift_cap(self) -> None:
        """At shutdown the final batches go to disk even over the (soft) cap."""
        self.max_bytes = 1 << 62
        async with self._room:
            self._room.notify_all()

    def _publish(self) -> None:
        self._metrics.spool_bytes.set(self.used_bytes)
        self._metrics.spool_files.set(len(self._sizes))

    def adopt(self, spooled: SpooledBatch) -> None:
        """Count a file found at start towards the cap."""
        self._sizes[spooled.path] = spooled.size
        self._publish()

    def write(self, batch: Batch, writer: str, seq: int) -> SpooledBatch:
        """Blocking: compress and fsync one batch. Raises OSError (e.g. disk full) untouched."""
        return self.write_lines(batch.stream, batch.hour, writer, seq, batch.lines, batch.counts, batch.ids)

    def write_lines(
        self,
        stream: str,
        hour: Hour,
        writer: str,
        seq: int,
        lines: Iterable[bytes],
        counts: dict[str, int],
        ids: dict[str, list[int]],
    ) -> SpooledBatch:
        path = self.dir / spool_name(stream, hour, writer, seq)
        data = gzip.compress(b"".join(lines), compresslevel=6, mtime=0)
        write_atomic(path, data)
        self._sizes[path] = len(data)
        self._publish()
        return SpooledBatch(
            path, writer, seq, stream, hour, len(data), dict(counts), {a: list(i) for a, i in ids.items()}
        )

    def rename(self, spooled: SpooledBatch, writer: str, seq: int) -> SpooledBatch:
        """Blocking: give a spooled batch a new landing name (atomic rename, directory fsynced)."""
        path = self.dir / spool_name(spooled.stream, spooled.hour, writer, seq)
        spooled.path.rename(path)
        fsync_dir(self.dir)
        self._sizes[path] = self._sizes.pop(spooled.path, spooled.size)
        return SpooledBatch(path, writer, seq, spooled.stream, spooled.hour, spooled.size, spooled.counts, spooled.ids)

    def forget(self, path: Path) -> None:
        """A file moved out of the spool (quarantined) no longer counts."""
        self._sizes.pop(path, None)
        self._publish()

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
