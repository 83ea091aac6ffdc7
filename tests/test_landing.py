"""The landing contract, checked against real recorded X API responses."""

from __future__ import annotations

import gzip
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tweetlake.landing import (
    Hour,
    Unreadable,
    decode_line,
    encode_line,
    iter_records,
    landing_key,
    parse_file_name,
    read_landed,
    select_includes,
    tweet_record,
)

DATA = Path(__file__).parent / "data" / "xapi"


def test_keys_are_hive_partitioned_and_deterministic():
    hour = Hour.parse("2026-11-25T10")
    assert landing_key("tweets", hour, "host-1", 42) == "tweets/dt=2026-11-25/hour=10/host-1-000000000042.ndjson.gz"
    assert parse_file_name("tweets/dt=2026-11-25/hour=10/host-1-000000000042.ndjson.gz") == ("host-1", 42)
    assert parse_file_name("tweets/dt=2026-11-25/hour=10/_SUCCESS") is None
    assert Hour.parse("2026-11-25T10:59:59+00:00") == hour
    assert Hour.parse("2026-11-25T12:30:00+02:00") == hour
    assert hour.shift(-11) == Hour.parse("2026-11-24T23")


def test_includes_follow_what_the_tweet_references():
    page = json.loads((DATA / "users_id_tweets" / "005.json").read_text())
    users = {u["id"] for u in page["includes"]["users"]}
    for tweet in page["data"]:
        chosen = select_includes(tweet, page["includes"])
        chosen_users = {u["id"] for u in chosen.get("users", [])}
        assert tweet["author_id"] in chosen_users
        for mention in tweet.get("entities", {}).get("mentions", []):
            match = [u for u in page["includes"]["users"] if u["username"].lower() == mention["username"].lower()]
            if match:
                assert match[0]["id"] in chosen_users
        for ref in tweet.get("referenced_tweets", []):
            in_includes = [t for t in page["includes"].get("tweets", []) if t["id"] == ref["id"]]
            if in_includes:
                assert ref["id"] in {t["id"] for t in chosen["tweets"]}
                assert in_includes[0]["author_id"] in chosen_users or in_includes[0]["author_id"] not in users
        for key in tweet.get("attachments", {}).get("media_keys", []):
            if any(m["media_key"] == key for m in page["includes"].get("media", [])):
                assert key in {m["media_key"] for m in chosen["media"]}


def test_lines_round_trip_text_exactly():
    page = json.loads((DATA / "users_id_tweets" / "005.json").read_text())
    moment = datetime(2026, 11, 25, 10, 0, 1, 123000, tzinfo=UTC)
    for tweet in page["data"]:
        record = tweet_record(
            tweet,
            page["includes"],
            collected_at=moment,
            collected_via="poll:users_tweets",
            account={"id": "1", "username": "x"},
        )
        line = encode_line(record)
        assert line.endswith(b"\n") and b"\n" not in line[:-1]
        back = decode_line(line)
        assert back["tweet"]["text"] == tweet["text"]
        assert back["collected_at"] == "2026-11-25T10:00:01.123Z"
    assert "\\u" not in encode_line({"t": "日本語 🚀"}).decode()


def _parts(data: bytes, **limits) -> list:
    """What the reader makes of a file: (line numbers, lines) per chunk, or the Unreadable."""
    return [
        part if isinstance(part, Unreadable) else (part.numbers.to_pylist(), part.lines.to_pylist())
        for part in read_landed(io.BytesIO(data), **limits)
    ]


def test_the_reader_numbers_lines_and_skips_blank_ones():
    assert _parts(gzip.compress(b'{"a":1}\n\n{"b":2}\n  \n{"c":3}')) == [
        ([1, 3, 5], [b'{"a":1}\n', b'{"b":2}\n', b'{"c":3}\n'])
    ]


def test_the_reader_reads_concatenated_gzip_members():
    assert _parts(gzip.compress(b"a\n") + gzip.compress(b"b\n")) == [([1, 2], [b"a\n", b"b\n"])]


def test_a_truncated_file_yields_its_complete_lines_then_says_where_it_broke():
    data = gzip.compress(b"".join(b'{"n":%d}\n' % n for n in range(20000)))
    parts = _parts(data[: len(data) // 2])
    lines = [line for part in parts[:-1] for line in part[1]]
    assert lines == [b'{"n":%d}\n' % n for n in range(len(lines))] and 0 < len(lines) < 20000
    assert parts[-1] == Unreadable(len(lines) + 1, f"unreadable gzip data after line {len(lines)}: truncated")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"plain text\n", "not gzip data"),
        (gzip.compress(b"a\n") + b"junk", "unreadable gzip data after line 1: data after the end of the gzip stream"),
    ],
)
def test_what_is_not_gzip_is_unreadable(data, reason):
    assert _parts(data)[-1].reason == reason


def test_a_line_over_the_limit_is_skipped_without_being_held():
    import resource

    bomb = gzip.compress(b'{"t":"' + b"x" * (120 << 20) + b'"}\n{"ok":1}\n')  # 120 MB from ~120 KB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    parts = _parts(bomb, max_line_bytes=1 << 20)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert parts == [
        Unreadable(1, f"line longer than {1 << 20} bytes ({(120 << 20) + 8} bytes)"),
        ([2], [b'{"ok":1}\n']),
    ]
    assert grown_mb < 64


def test_records_that_are_not_json_are_unreadable_with_the_reason():
    data = gzip.compress(b'{"a":1}\n{bad\n{"a":"\xff"}\n' + b"[" * 100_000 + b"\n")
    assert [
        item if isinstance(item, tuple) else (item.line, item.reason) for item in iter_records(io.BytesIO(data))
    ] == [
        (1, {"a": 1}),
        (2, "malformed JSON: Expecting property name enclosed in double quotes"),
        (3, "invalid UTF-8"),
        (4, "malformed JSON: nested too deeply"),
    ]
