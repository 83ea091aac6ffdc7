"""The landing contract: what one landed line looks like, where landed files live, how to read them.

Both halves import this module and nothing else builds landing keys or lines by hand, or reads a
landed file another way. A line is one self-contained JSON object: the tweet exactly as the API
sent it, the expansions it references, and how it was collected. File names are deterministic
(writer + sequence number) so re-uploading a spooled batch after a crash lands on the same key
instead of adding one; the writer name carries a per-state-dir instance id, so two daemons never
share a key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
from zlib_ng import zlib_ng

FORMAT_VERSION = 1
STREAM_TWEETS = "tweets"
STREAM_ERRORS = "errors"
STREAMS = (STREAM_TWEETS, STREAM_ERRORS)
FILE_SUFFIX = ".ndjson.gz"
INCLUDE_KINDS = ("users", "tweets", "media", "places", "polls")

WRITER_PATTERN = r"[A-Za-z0-9_-]+"
_WRITER_RE = re.compile(rf"^{WRITER_PATTERN}$", re.ASCII)
_NAME_RE = re.compile(rf"^(?P<writer>{WRITER_PATTERN})-(?P<seq>[0-9]{{12}})\.ndjson\.gz$", re.ASCII)


@dataclass(frozen=True, order=True)
class Hour:
    """One UTC collection hour: the unit of partitioning on both sides of the landing zone."""

    day: date
    hour: int

    @classmethod
    def of(cls, moment: datetime) -> Hour:
        moment = moment.astimezone(UTC)
        return cls(moment.date(), moment.hour)

    @classmethod
    def parse(cls, text: str) -> Hour:
        """Accept ``2026-11-25T10`` (also with ``:00``, seconds or an offset)."""
        text = text.strip()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}", text):
            text += ":00"
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return cls.of(moment)

    @property
    def start(self) -> datetime:
        return datetime(self.day.year, self.day.month, self.day.day, self.hour, tzinfo=UTC)

    def shift(self, hours: int) -> Hour:
        return Hour.of(self.start + timedelta(hours=hours))

    @property
    def partition(self) -> str:
        return f"dt={self.day.isoformat()}/hour={self.hour:02d}"

    def __str__(self) -> str:
        return f"{self.day.isoformat()}T{self.hour:02d}"


def valid_writer(writer: str) -> bool:
    """Whether ``writer`` can appear in a landed file name (ASCII letters, digits, '-', '_')."""
    return bool(_WRITER_RE.match(writer))


def file_name(writer: str, seq: int) -> str:
    if not valid_writer(writer):
        raise ValueError(f"invalid writer name {writer!r}")
    return f"{writer}-{seq:012d}{FILE_SUFFIX}"


def landing_key(stream: str, hour: Hour, writer: str, seq: int) -> str:
    """Key of one landed file, relative to ``landing.uri``."""
    if stream not in STREAMS:
        raise ValueError(f"unknown landing stream {stream!r}")
    return f"{hour_prefix(stream, hour)}{file_name(writer, seq)}"


def hour_prefix(stream: str, hour: Hour) -> str:
    return f"{stream}/{hour.partition}/"


def parse_file_name(name: str) -> tuple[str, int] | None:
    """(writer, seq) of a landed file name, or None for anything that is not one."""
    match = _NAME_RE.match(name.rsplit("/", 1)[-1])
    return (match["writer"], int(match["seq"])) if match else None


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def _objects(value: Any) -> list[Mapping[str, Any]]:
    """The objects in a list; anything else (a string, a number, a non-list) contributes none."""
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _key(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def select_includes(tweet: Mapping[str, Any], includes: Mapping[str, Any]) -> dict[str, list]:
    """The expansions one tweet references, so a line stands on its own.

    Follows author, mentions, reply target, referenced tweets (and their authors, one level),
    media, places and polls. Objects the response did not include are simply absent: the API
    reports those in ``errors``, which are landed separately. Wrongly shaped parts (a string
    where a list belongs) reference nothing: this never raises on any JSON value.
    """
    includes = _mapping(includes)
    users = {_key(u.get("id")): u for u in _objects(includes.get("users"))}
    tweets = {_key(t.get("id")): t for t in _objects(includes.get("tweets"))}
    media = {_key(m.get("media_key")): m for m in _objects(includes.get("media"))}
    places = {_key(p.get("id")): p for p in _objects(includes.get("places"))}
    polls = {_key(p.get("id")): p for p in _objects(includes.get("polls"))}
    by_username = {str(u.get("username", "")).lower(): u for u in users.values()}

    def user_refs(obj: Mapping[str, Any]) -> Iterable[str | None]:
        yield _key(obj.get("author_id"))
        yield _key(obj.get("in_reply_to_user_id"))
        for mention in _objects(_mapping(obj.get("entities")).get("mentions")):
            yield _key(mention.get("id")) or _key(
                _mapping(by_username.get(str(mention.get("username", "")).lower())).get("id")
            )

    want_users: list[str | None] = list(user_refs(tweet))
    want_tweets: list[str] = []
    for ref in _objects(tweet.get("referenced_tweets")):
        ref_id = _key(ref.get("id"))
        if ref_id in tweets:
            want_tweets.append(ref_id)
            want_users.extend(user_refs(tweets[ref_id]))
    attachments = _mapping(tweet.get("attachments"))
    media_keys = attachments.get("media_keys") if isinstance(attachments.get("media_keys"), list) else []
    poll_ids = attachments.get("poll_ids") if isinstance(attachments.get("poll_ids"), list) else []

    def pick(table: Mapping[Any, Any], keys: Iterable[Any]) -> list:
        seen: dict[str, Any] = {}
        for key in keys:
            if isinstance(key, str) and key in table and key not in seen:
                seen[key] = table[key]
        return list(seen.values())

    chosen = {
        "users": pick(users, want_users),
        "tweets": pick(tweets, want_tweets),
        "media": pick(media, media_keys),
        "places": pick(places, [_mapping(tweet.get("geo")).get("place_id")]),
        "polls": pick(polls, poll_ids),
    }
    return {kind: items for kind, items in chosen.items() if items}


def tweet_record(
    tweet: Mapping[str, Any],
    includes: Mapping[str, Any],
    *,
    collected_at: datetime,
    collected_via: str,
    account: Mapping[str, str],
    matching_rules: list | None = None,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "tweet": dict(tweet),
        "includes": select_includes(tweet, includes),
        "collected_at": format_time(collected_at),
        "collected_via": collected_via,
        "account": dict(account),
    }
    if matching_rules is not None:
        record["matching_rules"] = matching_rules
    return record


def error_record(
    error: Mapping[str, Any],
    *,
    collected_at: datetime,
    collected_via: str,
    account: Mapping[str, str] | None,
) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "error": dict(error),
        "collected_at": format_time(collected_at),
        "collected_via": collected_via,
        "account": dict(account or {}),
    }


def encode_line(record: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON: text stays exactly as the API sent it (no ASCII escaping)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def _first_wins(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object with a key repeated keeps the first value, as DuckDB's JSON reader does."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        out.setdefault(key, value)
    return out


def decode_line(line: bytes | str) -> Any:
    """One landed line as JSON (a repeated key keeps its first value: one rule for every reader)."""
    return json.loads(line, object_pairs_hook=_first_wins)


# --- the read half ------------------------------------------------------------------------------

DEFAULT_MAX_LINE_BYTES = 4 << 20
_PIECE_BYTES = 1 << 20  # decompressed output per step: what is held besides the current lines
_GZIP_MAGIC = b"\x1f\x8b"


def int64_array(values: np.ndarray) -> pa.Int64Array:
    """numpy int64 -> Arrow without ``pa.array``, which imports pandas (2 s here) on first use."""
    values = np.ascontiguousarray(values, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(values), [None, pa.py_buffer(values)])


def _binary_array(offsets: np.ndarray, data: bytes) -> pa.LargeBinaryArray:
    return pa.Array.from_buffers(pa.large_binary(), len(offsets) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


@dataclass(frozen=True)
class Unreadable:
    """A part of a landed file that yields no record, with its 1-based line number and the reason."""

    line: int
    reason: str
    raw: bytes | None = None  # the line as landed, when it was held (never for oversized lines)


@dataclass(frozen=True)
class LineChunk:
    """Consecutive non-blank lines of one file: ``lines[i]`` (newline included) is line ``numbers[i]``."""

    numbers: pa.Int64Array
    lines: pa.LargeBinaryArray

    def __len__(self) -> int:
        return len(self.lines)

    def pairs(self) -> Iterator[tuple[int, bytes]]:
        yield from zip(self.numbers.to_pylist(), self.lines.to_pylist(), strict=True)


class _Splitter:
    """Turns decompressed bytes into LineChunks, never holding a line over ``max_line_bytes``."""

    def __init__(self, max_line_bytes: int, chunk_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self.chunk_bytes = chunk_bytes
        self.buffer = bytearray()
        self.next_line = 1
        self.skipping = 0  # bytes of an oversized line discarded so far (0: not skipping)

    def feed(self, data: bytes) -> Iterator[LineChunk | Unreadable]:
        if self.skipping:
            newline = data.find(b"\n")
            if newline < 0:
                self.skipping += len(data)
                return
            yield self._oversized(self.skipping + newline)
            self.skipping = 0
            data = data[newline + 1 :]
        self.buffer += data
        if len(self.buffer) >= self.chunk_bytes:
            yield from self.complete()
        if len(self.buffer) > self.max_line_bytes and self.buffer.find(b"\n") < 0:
            self.skipping = len(self.buffer)
            self.buffer = bytearray()

    def complete(self) -> Iterator[LineChunk | Unreadable]:
        """Emit every complete line held; an unterminated last line stays."""
        cut = self.buffer.rfind(b"\n") + 1
        if cut:
            data = bytes(self.buffer[:cut])
            del self.buffer[:cut]
            yield from self._chunk(data)

    def finish(self) -> Iterator[LineChunk | Unreadable]:
        """End of a complete file: a last line without its newline is still a line."""
        if self.skipping:
            yield self._oversized(self.skipping)
            self.skipping = 0
        if self.buffer and not self.buffer.endswith(b"\n"):
            self.buffer += b"\n"
        yield from self.complete()

    def broken(self, what: str) -> Iterator[LineChunk | Unreadable]:
        """The stream broke: emit the complete lines, then one Unreadable for the rest."""
        yield from self.complete()
        self.buffer = bytearray()
        self.skipping = 0
        yield Unreadable(self.next_line, f"unreadable gzip data after line {self.next_line - 1}: {what}")

    def _oversized(self, size: int) -> Unreadable:
        self.next_line += 1
        return Unreadable(self.next_line - 1, f"line longer than {self.max_line_bytes} bytes ({size} bytes)")

    def _chunk(self, data: bytes) -> Iterator[LineChunk | Unreadable]:
        ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
        offsets = np.concatenate(([0], ends)).astype(np.int64)
        lengths = np.diff(offsets)
        numbers = np.arange(self.next_line, self.next_line + len(ends), dtype=np.int64)
        self.next_line += len(ends)
        keep = lengths > 1  # a bare newline is no record
        for index in np.flatnonzero(keep & (lengths <= 4)):  # nor is a line of whitespace
            keep[index] = bool(data[offsets[index] : offsets[index + 1]].strip())
        for index in np.flatnonzero(lengths > self.max_line_bytes + 1):
            keep[index] = False
            yield Unreadable(
                int(numbers[index]), f"line longer than {self.max_line_bytes} bytes ({lengths[index] - 1} bytes)"
            )
        if not keep.all():
            starts, stops = offsets[:-1][keep], offsets[1:][keep]
            data = b"".join(data[a:b] for a, b in zip(starts.tolist(), stops.tolist(), strict=True))
            offsets = np.concatenate(([0], np.cumsum(stops - starts))).astype(np.int64)
            numbers = numbers[keep]
        if len(numbers):
            yield LineChunk(int64_array(numbers), _binary_array(offsets, data))


def read_landed(
    stream: BinaryIO, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES, chunk_bytes: int = 8 << 20
) -> Iterator[LineChunk | Unreadable]:
    """Stream one landed (gzip) file as chunks of lines and ``Unreadable`` parts, in file order.

    The compressed input is read as a stream and a line over ``max_line_bytes`` is skipped without
    being held, so memory stays bounded whatever the file holds (a gzip bomb included). A broken
    or truncated gzip stream ends the file with one ``Unreadable`` naming the line it stopped at.
    """
    splitter = _Splitter(max_line_bytes, chunk_bytes)
    pending = stream.read(_PIECE_BYTES)
    if not pending:
        return
    if not pending.startswith(_GZIP_MAGIC):
        yield Unreadable(1, "not gzip data")
        return
    inflater = zlib_ng.decompressobj(wbits=31)
    in_member = False
    try:
        while True:
            if not pending:
                pending = stream.read(_PIECE_BYTES)
                if not pending:
                    break
            in_member = True
            out = inflater.decompress(pending, _PIECE_BYTES)
            pending = inflater.unconsumed_tail
            if inflater.eof:  # one gzip member ended; concatenated members may follow
                pending = inflater.unused_data + pending
                inflater = zlib_ng.decompressobj(wbits=31)
                in_member = False
            yield from splitter.feed(out)
            if not in_member and pending and not pending.startswith(_GZIP_MAGIC):
                yield from splitter.broken("data after the end of the gzip stream")
                return
    except zlib_ng.error as exc:
        yield from splitter.broken(str(exc))
        return
    if in_member:
        yield from splitter.broken("truncated")
        return
    yield from splitter.finish()


def iter_lines(
    stream: BinaryIO, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[tuple[int, bytes] | Unreadable]:
    """``read_landed`` one line at a time: (line number, line without its newline) or Unreadable."""
    for part in read_landed(stream, max_line_bytes=max_line_bytes):
        if isinstance(part, Unreadable):
            yield part
        else:
            for number, line in part.pairs():
                yield number, line.rstrip(b"\n")


def iter_records(
    stream: BinaryIO, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Iterator[tuple[int, Any] | Unreadable]:
    """Decoded JSON values by line number; a line that is not UTF-8 JSON is Unreadable with the reason."""
    for item in iter_lines(stream, max_line_bytes=max_line_bytes):
        if isinstance(item, Unreadable):
            yield item
            continue
        number, line = item
        try:
            yield number, decode_line(line)
        except UnicodeDecodeError:
            yield Unreadable(number, "invalid UTF-8", line)
        except json.JSONDecodeError as exc:
            yield Unreadable(number, f"malformed JSON: {exc.msg}", line)
        except RecursionError:
            yield Unreadable(number, "malformed JSON: nested too deeply", line)
