"""The vectorized engine computes exactly the reference's rows, or hands the line to the reference."""

from __future__ import annotations

import copy
import gzip
import itertools
import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compactor import engine as engine_module
from compactor import schema
from compactor.engine import INPUT, Engine
from compactor.flatten import Rejected, flatten_tweet, flatten_users
from compactor.reading import Flattening
from tweetlake.landing import decode_line, encode_line, tweet_record

DATA = Path(__file__).parent / "data" / "xapi"
AT = datetime(2026, 11, 25, 10, 15, tzinfo=UTC)


def _recorded_records() -> list[dict[str, Any]]:
    """Every tweet in the recorded X API answers, as the streamer lands it (stream lines keep their rules)."""
    records = []
    for path in sorted(DATA.glob("*/*.json")):
        if path.name.endswith(".meta.json"):
            continue
        payload = json.loads(path.read_text())
        tweets = payload["data"] if isinstance(payload["data"], list) else [payload["data"]]
        stream = "search_stream" in path.parent.name
        for tweet in tweets:
            record = tweet_record(
                tweet,
                payload.get("includes", {}),
                collected_at=AT,
                collected_via="stream:filtered" if stream else "poll:users_tweets",
                account={"id": "1", "username": "followed"},
                matching_rules=payload.get("matching_rules") if stream else None,
            )
            records.append(json.loads(encode_line(record)))
    return records


RECORDED = _recorded_records()


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


def _reference(line: bytes) -> tuple[dict[str, Any], list[dict[str, Any]]] | str:
    """The reference's row and author rows for a line, normalised through Arrow, or its rejection reason."""
    try:
        record = decode_line(line)
        row, users = flatten_tweet(record), flatten_users(record)
    except Rejected as exc:
        return str(exc)
    except (ValueError, RecursionError):
        return "not JSON"
    return (
        pa.RecordBatch.from_pylist([row], schema=schema.TWEETS).to_pylist()[0],
        pa.RecordBatch.from_pylist(users, schema=schema.USERS).to_pylist(),
    )


def _input(lines: list[bytes], first: int = 0) -> pa.RecordBatch:
    """Lines ``first``.. of file 0 as one input batch."""
    return pa.RecordBatch.from_arrays(
        [
            pa.array([0] * len(lines), pa.int32()),
            pa.array(range(first, first + len(lines)), pa.int64()),
            pa.array(lines, pa.large_binary()),
        ],
        schema=INPUT,
    )


def _flatten(
    engine: Engine, lines: list[bytes], cuts: tuple[int, ...] = ()
) -> tuple[dict[int, dict], dict[int, list[dict]], dict[int, bytes]]:
    """Lines 0..n-1 of one file through the engine (input batches cut at ``cuts``): rows and author
    rows by line, and the lines it left."""
    bounds = [0, *cuts, len(lines)]
    batches = [_input(lines[lo:hi], lo) for lo, hi in itertools.pairwise(bounds)]
    rows: dict[int, dict] = {}
    users: dict[int, list[dict]] = {}
    slow: dict[int, bytes] = {}
    for flat in engine.flatten(batches):
        rows.update(zip(flat.tweet_numbers.tolist(), flat.tweets.to_pylist(), strict=True))
        for number, user in zip(flat.user_numbers.tolist(), flat.users.to_pylist(), strict=True):
            users.setdefault(number, []).append(user)
        slow.update((number, raw) for _, number, raw in flat.slow)
    return rows, users, slow


def _compare(engine: Engine, lines: list[bytes], cuts: tuple[int, ...] = ()) -> int:
    """Assert the engine agrees with the reference on every line; returns how many it took itself."""
    rows, users, slow = _flatten(engine, lines, cuts)
    assert sorted([*rows, *slow]) == list(range(len(lines)))
    assert all(slow[number] == lines[number] for number in slow)
    for index, line in enumerate(lines):
        if index in slow:
            continue
        expected = _reference(line)
        assert not isinstance(expected, str), f"the engine took a line the reference rejects ({expected}): {line!r}"
        assert rows[index] == expected[0], line
        assert users.get(index, []) == expected[1], line
    return len(rows)


def test_every_recorded_tweet_takes_the_fast_path_with_the_reference_values(engine):
    lines = [encode_line(r) for r in RECORDED]
    assert _compare(engine, lines) == len(lines) > 250


def test_a_line_that_is_not_json_or_not_utf8_goes_to_the_reference(engine):
    good = encode_line(RECORDED[0])
    rows, _, slow = _flatten(engine, [good, b"{broken\n", b'{"v":1,"tweet":{"text":"\xff"}}\n', good])
    assert sorted(slow) == [1, 2] and sorted(rows) == [0, 3]


def _with_author(record: dict[str, Any], **profile: Any) -> bytes:
    """The record as a line, its author's profile changed (the author is in the includes)."""
    changed = copy.deepcopy(record)
    author = next(u for u in changed["includes"]["users"] if u["id"] == changed["tweet"]["author_id"])
    author.update(profile)
    return _line(changed)


def test_an_author_the_sql_cannot_vouch_for_sends_each_line_carrying_it_to_the_reference(engine):
    good = encode_line(RECORDED[0])
    bad = _with_author(RECORDED[0], public_metrics={"followers_count": "many"})
    assert sorted(_flatten(engine, [good, bad, good, bad])[2]) == [1, 3]
    assert sorted(_flatten(engine, [bad, good])[2]) == [0]  # known from the previous stream: still deferred


def test_a_profile_seen_before_with_other_values_gets_its_own_row(engine):
    lines = [encode_line(RECORDED[0]), _with_author(RECORDED[0], name="Renamed"), encode_line(RECORDED[0])]
    assert _compare(engine, lines) == 3  # every row and author row exactly the reference's
    _, users, _ = _flatten(engine, lines)
    author = RECORDED[0]["tweet"]["author_id"]
    names = [next(u["name"] for u in users[n] if u["id"] == author) for n in range(3)]
    assert names[1] == "Renamed" != names[0] == names[2]


def test_an_author_cache_with_room_for_nothing_gives_the_same_rows(monkeypatch):
    monkeypatch.setattr(engine_module, "CACHE_BYTES", 1)
    lines = [encode_line(r) for r in RECORDED]
    fresh = Engine()
    _compare(fresh, lines[: len(lines) // 2])
    assert _compare(fresh, lines) == len(lines)  # authors seen before and new ones in one batch


def _long(record: dict[str, Any], size: int) -> bytes:
    """The record as a line of about ``size`` bytes (its text made that long)."""
    changed = copy.deepcopy(record)
    changed["tweet"]["text"] = "x" * size
    return _line(changed)


@pytest.mark.parametrize(("line_bytes", "rows"), [(6_000, 2048), (20_000, 512), (1_000_000, 32), (4_000_000, 8)])
def test_result_batches_shrink_by_fours_as_lines_grow(line_bytes, rows):
    assert engine_module.result_rows(_input([b"x" * (line_bytes - 1) + b"\n"] * 3)) == rows


def test_a_file_of_long_lines_is_flattened_a_few_lines_to_a_batch(monkeypatch, engine):
    monkeypatch.setattr(engine_module, "RESULT_BYTES", 1 << 20)  # 64 KB lines: 8 to a batch
    lines = [_long(RECORDED[n % len(RECORDED)], 64 << 10) for n in range(40)]
    sizes = [flat.tweets.num_rows for flat in engine.flatten([_input(lines)])]
    assert sizes == [8] * 5


def test_a_stream_whose_line_sizes_change_keeps_its_order_and_the_reference_values(monkeypatch, engine):
    monkeypatch.setattr(engine_module, "RESULT_BYTES", 1 << 20)
    ordinary = [encode_line(r) for r in RECORDED[:20]]
    lines = [*ordinary, *(_long(r, 64 << 10) for r in RECORDED[20:30]), *ordinary]
    assert _compare(engine, lines, cuts=(20, 30)) == 50
    rows, _, _ = _flatten(engine, lines, cuts=(20, 30))
    assert list(rows) == list(range(50))  # in stream order across the three queries


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=6),
    st.sampled_from(
        [
            "5",
            " 7 ",
            "--5",
            "\u00b2",
            "2026-11-25T10:00:00Z",
            "2026-11-25T10:00:00.123456+05:30",
            "0001-01-01T00:00:00+05:00",
            "2026-02-30T00:00:00Z",
            "12345678901234567890",
            "",
            "true",
            "null",
            '\\"',
            "é\u0001/\u2028",
            "1e5",
            "\ud800",
        ]
    ),
    st.lists(st.text(max_size=3), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value inside a record (dict keys and list indexes)."""
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(_paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(_paths(item, (*prefix, index)))
    return found


@st.composite
def mutated_records(draw: st.DrawFn) -> dict[str, Any]:
    """A recorded record with one to three values replaced by arbitrary JSON (or a key removed)."""
    record = copy.deepcopy(draw(st.sampled_from(RECORDED)))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(record)
        path = draw(st.sampled_from(paths))
        parent = record
        for key in path[:-1]:
            parent = parent[key]
        if draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(json_leaf)
    return record


def _line(record: Any) -> bytes:
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass") + b"\n"


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(mutated_records(), min_size=1, max_size=12))
def test_on_mutated_records_the_engine_agrees_with_the_reference_or_defers_to_it(engine, records):
    _compare(engine, [_line(r) for r in records])


def _landed_files(directory: Path, count: int) -> list[str]:
    """``count`` gzip files of the recorded tweets, five times over each."""
    lines = b"".join(_line(record) for record in _recorded_records())
    paths = []
    for number in range(count):
        path = directory / f"{number}.ndjson.gz"
        path.write_bytes(gzip.compress(lines * 5))
        paths.append(str(path))
    return paths


def test_leaving_a_flattening_early_stops_and_joins_its_workers(tmp_path):
    paths = _landed_files(tmp_path, 6)
    with Flattening(pafs.LocalFileSystem(), paths, workers=2, max_line_bytes=1 << 20) as items:
        assert next(items)[0] == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("flatten-")]


class _BrokenAt:
    """A local filesystem that fails at one file with an error the reader does not expect."""

    def __init__(self, path: str) -> None:
        self.local = pafs.LocalFileSystem()
        self.broken = path

    def open_input_stream(self, path: str, compression: str | None = None) -> pa.NativeFile:
        if path == self.broken:
            raise RuntimeError("filesystem broke")
        return self.local.open_input_stream(path, compression=compression)


def test_an_error_in_a_flattening_worker_is_raised_to_the_caller_not_taken_for_the_end(tmp_path):
    paths = _landed_files(tmp_path, 2)
    broken = Flattening(_BrokenAt(paths[1]), paths, workers=1, max_line_bytes=1 << 20)
    with pytest.raises(OSError, match="filesystem broke"), broken as items:  # wrapped by DuckDB's scan
        list(items)
