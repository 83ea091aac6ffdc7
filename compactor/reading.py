"""Landed files read and flattened in parallel, handed on file by file in landing order.

Files are dealt round-robin to ``workers`` streams. Each stream is flattened by one engine
(``Engine.flatten``: one query for ordinary lines) fed by a generator that reads its files
(zlib-ng, streamed); a worker thread pulls the result batches into a small queue. The caller
takes file 0 from stream 0, file 1 from stream 1, and so on, so the core sees the landing order
while every core of the machine parses. Memory holds a few batches per stream, whatever the size
of the hour.
"""

from __future__ import annotations

import queue
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs

from compactor.engine import INPUT, Engine, Flattened
from tweetlake.landing import Unreadable, read_landed

_END = object()
# Lines handed to DuckDB per input batch: DuckDB holds several input batches and what it derives
# from them, so memory per stream grows with this (1 MB: ~150 MB per stream, 8 MB: ~300 MB; below 2 MB it gets slower).
CHUNK_BYTES = 2 << 20
# Result batches a worker may have ready before the caller takes them: with one, a worker stalled
# whenever the caller was writing (100k tweets: ~1 s slower); a batch is a few MB.
RESULTS_HELD = 3


@dataclass(frozen=True)
class FileFailed:
    """The file could not be opened or read at all."""

    reason: str


Item = Flattened | Unreadable | FileFailed


@dataclass
class _Stream:
    """One worker's files, its query's results, and what its reader found that is not a line."""

    files: list[int]
    results: queue.Queue[object] = field(default_factory=lambda: queue.Queue(maxsize=RESULTS_HELD))
    other: dict[int, list[Unreadable | FileFailed]] = field(default_factory=lambda: defaultdict(list))
    head: Flattened | None = None
    ended: bool = False


class Flattening:
    """Landed files flattened by parallel workers: ``with Flattening(...) as items`` gives
    (index into ``paths``, item) for every batch of rows, unreadable part or failure, in file order.

    The workers start at once, not at the first item: the caller prepares its outputs (the
    catalog, the tables) while they parse. Leaving the ``with`` block stops and joins them.
    """

    def __init__(self, fs: pafs.FileSystem, paths: list[str], *, workers: int, max_line_bytes: int) -> None:
        count = max(1, min(workers, len(paths)))
        self._files = len(paths)
        self._streams = [_Stream(list(range(w, len(paths), count))) for w in range(count)]
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(
                target=_Worker(stream, fs, paths, max_line_bytes, self._stop).run, name=f"flatten-{n}", daemon=True
            )
            for n, stream in enumerate(self._streams)
        ]
        for thread in self._threads:
            thread.start()

    def __enter__(self) -> Iterator[tuple[int, Item]]:
        count = len(self._streams)
        return (
            (index, part) for index in range(self._files) for part in _take_file(self._streams[index % count], index)
        )

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for stream in self._streams:  # unblock a worker waiting on a full queue
            while not stream.results.empty():
                stream.results.get_nowait()
        for thread in self._threads:
            thread.join()


def _take_file(stream: _Stream, index: int) -> Iterator[Item]:
    """The result batches of file ``index``, then what its reader could not read.

    A stream's batches hold its files in order: once a batch reaches a later file (or the stream
    ends), the file's rows and its reader's findings are complete.
    """
    while True:
        if stream.head is None:
            if stream.ended:
                break
            item = stream.results.get()
            if isinstance(item, BaseException):
                raise item
            if item is _END:
                stream.ended = True
                break
            stream.head = item  # type: ignore[assignment]
        files = stream.head.files
        if index in files:
            yield stream.head.of_file(index)
        if files and max(files) > index:
            break  # the rest belongs to later files: kept for them
        stream.head = None
    yield from stream.other.pop(index, [])


class _Worker:
    """Flattens one stream's files into the stream's results queue (one thread, ``run``): the
    result batches, then ``_END``; an error is handed on as the item the caller raises. What the
    reader finds that is not a line goes to ``stream.other``, which the caller takes per file only
    once the results have passed that file."""

    def __init__(
        self, stream: _Stream, fs: pafs.FileSystem, paths: list[str], max_line_bytes: int, stop: threading.Event
    ) -> None:
        self._stream = stream
        self._fs = fs
        self._paths = paths
        self._max_line_bytes = max_line_bytes
        self._stop = stop

    def run(self) -> None:
        try:
            for batch in Engine().flatten(self._lines()):
                self._put(batch)
        except BaseException as exc:  # handed to the caller, who raises it
            self._put(exc)
        self._put(_END)

    def _put(self, item: object) -> None:
        """Wait for room in the queue, unless the caller has left."""
        while not self._stop.is_set():
            try:
                self._stream.results.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _lines(self) -> Iterator[pa.RecordBatch]:
        for index in self._stream.files:
            if self._stop.is_set():
                return
            try:
                with self._fs.open_input_stream(self._paths[index], compression=None) as handle:
                    for part in read_landed(handle, max_line_bytes=self._max_line_bytes, chunk_bytes=CHUNK_BYTES):
                        if isinstance(part, Unreadable):
                            self._stream.other[index].append(part)
                        else:
                            files = pa.Array.from_buffers(
                                pa.int32(), len(part), [None, pa.py_buffer(np.full(len(part), index, np.int32))]
                            )
                            yield pa.RecordBatch.from_arrays([files, part.numbers, part.lines], schema=INPUT)
            except OSError as exc:
                self._stream.other[index].append(FileFailed(f"unreadable file: {exc}"))
