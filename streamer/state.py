"""The state directory, opened once at start: locked, read back, damage quarantined, made consistent.

``state.dir`` holds the ledger (``state.json``), the spool and a ``quarantine/`` folder. At start:

1. an exclusive ``flock`` on ``state.dir/lock`` keeps a second daemon out (it would reuse sequence
   numbers and delete this one's temp files);
2. a ledger that cannot be read is moved to quarantine and a new one (a new writer instance, so no
   key is ever reused) is rebuilt from the spool; accounts are resolved again;
3. every spool file is read back through the landing reader; a damaged one (truncated gzip, a line
   that is not a landing record) is moved to quarantine and its readable lines are spooled again;
4. what the spool holds moves the ledger on: a batch spooled just before a crash that never
   reached ``state.json`` advances its accounts' checkpoints (stream mode: joins the durable ids
   above the watermarks) and the instance's sequence.

Nothing here crashes on what it finds: every problem is logged by file name, counted, and kept.
"""

from __future__ import annotations

import fcntl
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamer.items import SpooledBatch
from streamer.ledger import DamagedState, Ledger
from streamer.metrics import Metrics
from streamer.spool import Spool, SpoolFile, parse_spool_name
from tweetlake.landing import STREAM_TWEETS, Unreadable, decode_line, iter_lines
from tweetlake.logs import get_logger

log = get_logger("streamer.state")
LEDGER = "state.json"
LOCK = "lock"
SPOOL = "spool"
QUARANTINE = "quarantine"


class StateLocked(Exception):
    def __init__(self, directory: Path, holder: str) -> None:
        self.directory = directory
        self.holder = holder
        super().__init__(f"state.dir {directory} is in use by another tweet-streamer (pid {holder})")


class StateLock:
    """An exclusive flock held for the life of the process (released by the kernel when it dies)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise StateLocked(self.path.parent, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@dataclass
class OpenedState:
    ledger: Ledger
    spool: Spool
    lock: StateLock
    pending: list[SpooledBatch] = field(default_factory=list)  # spooled batches to upload, oldest first


def open_state(
    directory: Path, *, writer_id: str, max_spool_bytes: int, metrics: Metrics, stream_mode: bool = False
) -> OpenedState:
    """Blocking: lock, read back and reconcile the state dir (StateLocked when another daemon has it)."""
    directory.mkdir(parents=True, exist_ok=True)
    lock = StateLock(directory)
    lock.acquire()
    quarantine = directory / QUARANTINE
    ledger = _load_ledger(directory / LEDGER, quarantine, metrics)
    spool = Spool(directory / SPOOL, max_spool_bytes, metrics)
    for tmp in spool.remove_temp_files():
        log.warning("spool_temp_removed", path=str(tmp))
    pending: list[SpooledBatch] = []
    salvaged: list[tuple[SpoolFile, list[bytes], dict[str, int], dict[str, int]]] = []
    for path in spool.files():
        found = parse_spool_name(path, legacy_writer=writer_id)
        if found is None:
            _quarantine(path, quarantine, "not a spool file name", metrics, spool)
            continue
        contents = _read_back(found)
        if contents.problem is None:
            batch = SpooledBatch(
                path,
                found.writer,
                found.seq,
                found.stream,
                found.hour,
                path.stat().st_size,
                contents.counts,
                contents.ids,
            )
            spool.adopt(batch)
            pending.append(batch)
            continue
        _quarantine(path, quarantine, contents.problem, metrics, spool, readable_lines=len(contents.lines))
        if contents.lines:
            salvaged.append((found, contents.lines, contents.counts, contents.ids))
    for batch in pending:
        ledger.record(batch.ids, stream=stream_mode)
        if batch.writer == ledger.writer(writer_id):
            ledger.next_seq = max(ledger.next_seq, batch.seq + 1)
    for found, lines, counts, ids in salvaged:
        batch = spool.write_lines(
            found.stream, found.hour, ledger.writer(writer_id), ledger.allocate(), lines, counts, ids
        )
        ledger.record(ids, stream=stream_mode)
        log.warning("spool_file_salvaged", from_path=str(found.path), path=str(batch.path), lines=len(lines))
        pending.append(batch)
    ledger.save()
    return OpenedState(ledger, spool, lock, pending)


def _load_ledger(path: Path, quarantine: Path, metrics: Metrics) -> Ledger:
    try:
        return Ledger.load(path)
    except DamagedState as exc:
        _quarantine(path, quarantine, str(exc), metrics)
        log.warning("state_rebuilt", path=str(path), detail="new writer instance; accounts resolved again")
        return Ledger(path)


def _quarantine(
    path: Path, quarantine: Path, reason: str, metrics: Metrics, spool: Spool | None = None, **detail: Any
) -> None:
    quarantine.mkdir(exist_ok=True)
    target = quarantine / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{path.name}"
    path.rename(target)
    if spool is not None:
        spool.forget(path)
    metrics.quarantined_files.labels("spool" if spool is not None else "state").inc()
    log.error("file_quarantined", path=str(path), moved_to=str(target), reason=reason, **detail)


@dataclass
class _Contents:
    lines: list[bytes] = field(default_factory=list)  # the usable lines, newline included
    counts: dict[str, int] = field(default_factory=dict)
    ids: dict[str, list[int]] = field(default_factory=dict)  # tweet ids per account id
    problem: str | None = None  # the first reason the file is damaged


def _read_back(found: SpoolFile) -> _Contents:
    """What a spool file holds, through the landing reader: every line must be a landing record."""
    contents = _Contents()
    with open(found.path, "rb") as handle:
        for item in iter_lines(handle):
            if isinstance(item, Unreadable):
                contents.problem = contents.problem or f"line {item.line}: {item.reason}"
                continue
            number, line = item
            account, tweet_id, problem = _spooled_record(line, found.stream)
            if problem:
                contents.problem = contents.problem or f"line {number}: {problem}"
                continue
            contents.lines.append(line + b"\n")
            contents.counts[account] = contents.counts.get(account, 0) + 1
            if tweet_id is not None:
                contents.ids.setdefault(account, []).append(tweet_id)
    return contents


def _spooled_record(line: bytes, stream: str) -> tuple[str, int | None, str | None]:
    """(account id, tweet id, None) of a line this daemon wrote, or a reason it is not one."""
    try:
        record = decode_line(line)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return "", None, "not JSON"
    if not isinstance(record, dict) or not isinstance(record.get("account"), dict):
        return "", None, "not a landing record"
    account = record["account"].get("id", "")
    if not isinstance(account, str):
        return "", None, "account.id is not a string"
    if stream != STREAM_TWEETS:
        return account, None, None
    tweet = record.get("tweet")
    tweet_id = tweet.get("id") if isinstance(tweet, dict) else None
    if not (isinstance(tweet_id, str) and tweet_id.isascii() and tweet_id.isdigit()):
        return "", None, "tweet.id is not a numeric id string"
    return account, int(tweet_id), None
