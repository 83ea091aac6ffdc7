"""The landing contract, checked against real recorded X API responses."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from tweetlake.landing import (
    Hour,
    decode_line,
    encode_line,
    landing_key,
    parse_file_name,
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
