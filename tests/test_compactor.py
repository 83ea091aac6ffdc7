"""Flattening real recorded X API payloads, property tests, and local-lake compaction."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compactor import schema
from compactor.compact import compact_hour, read_manifest, validate, write_manifest
from compactor.flatten import Rejected, flatten_tweet, flatten_users
from compactor.storage import Storage
from tweetlake.config import build_config
from tweetlake.landing import Hour, encode_line, landing_key, tweet_record

DATA = Path(__file__).parent / "data" / "xapi"
AT = datetime(2026, 11, 25, 10, 15, tzinfo=UTC)


def _record(path: str, rules: bool = False) -> dict:
    payload = json.loads((DATA / path).read_text())
    tweet = payload["data"][0] if isinstance(payload["data"], list) else payload["data"]
    return json.loads(
        encode_line(
            tweet_record(
                tweet,
                payload.get("includes", {}),
                collected_at=AT,
                collected_via="stream" if rules else "poll:users_tweets",
                account={"id": "1", "username": "followed"},
                matching_rules=payload.get("matching_rules") if rules else None,
            )
        )
    )


def _row(path: str, rules: bool = False) -> dict:
    row = flatten_tweet(_record(path, rules))
    pa.RecordBatch.from_pylist([row], schema=schema.TWEETS)  # every row fits the schema
    return row


def test_withheld_tweet():
    row = _row("tweets/015.json")
    assert row["id"] == "1388424788171841537"
    assert row["withheld_in"] == ["IN"] and row["withheld_copyright"] is False
    assert row["author_username"] == "manavjivan"
    assert row["text"].startswith("When the pandemic first hit “India fought a phony war")
    assert row["urls"] == ["http://econ.st/3u72y2l"]


def test_geo_reply_with_mentions():
    row = _row("tweets/009.json")
    assert row["place_id"] == "3078869807f9dd36" and row["place_full_name"] == "Berlin, Germany"
    assert row["replied_to_id"] == "1501958949863661574"
    assert row["mentions"] == ["j2bryson", "Twitter"]
    assert row["author_username"] == "IgorBrigadir"


def test_edited_tweet_keeps_its_history():
    row = _row("tweets/005.json")
    assert row["edit_history_tweet_ids"] == ["1576994746135764992", "1576994789110992896"]
    assert row["author_username"] == "wongmjane" and row["text"] == "hey :) https://t.co/rnwEIoNuqd"


def test_cashtags_hashtags_media():
    row = _row("tweets/003.json")
    assert row["cashtags"][:3] == ["AMD", "BTC", "TWTR"]
    assert row["hashtags"] == ["business", "NFT", "StockMarket", "option"]
    assert row["media_keys"] == ["3_1611076914248286208"] and row["media_types"] == ["photo"]
    assert _row("tweets/011.json")["media_types"] == ["video"]


def test_retweet_names_the_original_author():
    row = _row("tweets/012.json")
    assert row["retweeted_id"] == "1589671906718134272"
    assert row["retweeted_username"] == "S3NT1N3L17"
    assert row["text"].startswith("RT @S3NT1N3L17:")


def test_stream_line_matching_rules_and_emoji():
    row = _row("tweets_search_stream/001.json", rules=True)
    assert row["matching_rules"] == ["1377649934414049282"]
    assert row["collected_via"] == "stream"
    assert _row("tweets/011.json")["text"] == "She's GOING with it! 🐍 https://t.co/uXqSAGWkWJ"


def test_every_recorded_timeline_tweet_flattens_with_ids_as_strings():
    payload = json.loads((DATA / "users_id_tweets" / "005.json").read_text())
    rows = []
    for tweet in payload["data"]:
        record = tweet_record(
            tweet,
            payload["includes"],
            collected_at=AT,
            collected_via="poll:users_tweets",
            account={"id": "2351222345", "username": "PhillyNEFL"},
        )
        rows.append(flatten_tweet(json.loads(encode_line(record))))
        assert flatten_users(record)[0]["username"] == "PhillyNEFL"
    table = pa.Table.from_pylist(rows, schema=schema.TWEETS)
    assert table.num_rows == 100 and table.schema.field("id").type == pa.string()
    assert {r["author_username"] for r in rows} == {"PhillyNEFL"}


def test_shape_problems_are_rejected_with_a_reason():
    record = _record("tweets/015.json")
    record["tweet"]["public_metrics"] = {"like_count": "many"}
    with pytest.raises(Rejected, match=r"public_metrics\.like_count is not an integer"):
        flatten_tweet(record)
    with pytest.raises(Rejected, match="missing tweet object"):
        flatten_tweet({"v": 1})
    with pytest.raises(Rejected, match="not a JSON object"):
        flatten_tweet([1, 2])


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=25,
)
BASE = _record("tweets/009.json")
PATHS = [
    ("tweet",),
    ("tweet", "id"),
    ("tweet", "text"),
    ("tweet", "entities"),
    ("tweet", "entities", "mentions"),
    ("tweet", "geo"),
    ("tweet", "referenced_tweets"),
    ("tweet", "public_metrics"),
    ("includes",),
    ("includes", "users"),
    ("includes", "places"),
    ("collected_at",),
    ("account",),
    ("matching_rules",),
    ("tweet", "withheld"),
    ("tweet", "attachments"),
    ("tweet", "created_at"),
    ("tweet", "author_id"),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(JSON, st.tuples(st.sampled_from(PATHS), JSON)))
def test_any_json_yields_a_row_or_a_rejection_never_a_crash(value):
    if isinstance(value, tuple):
        path, replacement = value
        record = json.loads(json.dumps(BASE))
        target = record
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = replacement
    else:
        record = value
    try:
        row = flatten_tweet(record)
        users = flatten_users(record)
    except Rejected:
        return
    pa.RecordBatch.from_pylist([row], schema=schema.TWEETS)
    pa.RecordBatch.from_pylist(users, schema=schema.USERS)


def _local_storage(tmp_path) -> Storage:
    config = build_config(
        {"landing": {"uri": f"file://{tmp_path}/landing"}, "tables": {"uri": f"file://{tmp_path}/tables"}}, environ={}
    )
    return Storage.from_config(config)


def _timeline_lines() -> list[bytes]:
    """The 100 recorded timeline tweets as landing lines."""
    payload = json.loads((DATA / "users_id_tweets" / "005.json").read_text())
    return [
        encode_line(
            tweet_record(
                t,
                payload["includes"],
                collected_at=AT,
                collected_via="poll:users_tweets",
                account={"id": "1", "username": "x"},
            )
        )
        for t in payload["data"]
    ]


def _land_local(tmp_path, hour: Hour, writer: str, seq: int, lines: list[bytes]) -> None:
    path = tmp_path / "landing" / landing_key("tweets", hour, writer, seq)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(b"".join(lines)))


def test_local_lake_compaction_is_idempotent_and_small_files_roll(tmp_path):
    storage = _local_storage(tmp_path)
    hour = Hour.of(AT)
    lines = _timeline_lines()
    _land_local(tmp_path, hour, "a", 0, lines[:60])
    _land_local(tmp_path, hour, "a", 1, lines[40:])  # 20 overlap
    report = compact_hour(storage, hour, max_rows_per_file=30, chunk_rows=7)
    assert validate(storage, report) == []
    write_manifest(storage, report, valid=True)
    assert report.rows_out == 100 and report.duplicates_in_hour == 20 and report.records_in == 120
    assert len(report.outputs["tweets"]) == 4  # 100 rows in files of at most 30
    first = pads.dataset(str(tmp_path / "tables" / "tweets"), partitioning="hive").to_table()
    again = compact_hour(storage, hour, max_rows_per_file=30)
    assert validate(storage, again) == [] and len(again.outputs["tweets"]) == 4
    second = pads.dataset(str(tmp_path / "tables" / "tweets"), partitioning="hive").to_table()
    assert sorted(first.column("id").to_pylist()) == sorted(second.column("id").to_pylist())
    assert read_manifest(storage, hour) is None  # the re-run removed the old manifest until publish writes it
    assert second.column("hour").to_pylist()[0] == 10
    import duckdb

    glob = f"{tmp_path}/tables/tweets/*/*/*.parquet"
    count, distinct, hour_col = duckdb.sql(
        f"select count(*), count(distinct id), any_value(hour) from read_parquet('{glob}', hive_partitioning=true)"
    ).fetchall()[0]
    assert count == distinct == 100 and int(hour_col) == 10


def test_crashed_run_leaves_nothing_visible_twice(tmp_path, monkeypatch):
    import compactor.compact as compact_module

    storage = _local_storage(tmp_path)
    hour = Hour.of(AT)
    lines = _timeline_lines()
    _land_local(tmp_path, hour, "a", 0, lines)
    compact_hour(storage, hour, max_rows_per_file=30)
    _land_local(tmp_path, hour, "a", 1, lines[:10])  # a late file arrives, then a run crashes mid-publish

    def crash(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(compact_module, "_publish", crash)
    with pytest.raises(RuntimeError):
        compact_hour(storage, hour, max_rows_per_file=50)
    table = pads.dataset(str(tmp_path / "tables" / "tweets"), partitioning="hive").to_table()
    assert table.num_rows == 100 and len(set(table.column("id").to_pylist())) == 100
    monkeypatch.undo()
    report = compact_hour(storage, hour, max_rows_per_file=50)
    assert validate(storage, report) == [] and report.duplicates_in_hour == 10


def test_csv_with_newlines_in_text_larger_than_a_parse_block_validates(tmp_path):
    storage = _local_storage(tmp_path)
    hour = Hour.of(AT)
    payload = json.loads((DATA / "users_id_tweets" / "005.json").read_text())
    lines = []
    for i in range(2500):  # ~2.5 MB of CSV: several of pyarrow's 1 MB parse blocks
        tweet = dict(payload["data"][i % 100], id=str(10**18 + i), text=f'line one {i}\nline two,\t"quoted"\n🚀' * 3)
        lines.append(
            encode_line(
                tweet_record(
                    tweet,
                    payload["includes"],
                    collected_at=AT,
                    collected_via="poll:users_tweets",
                    account={"id": "1", "username": "x"},
                )
            )
        )
    _land_local(tmp_path, hour, "a", 0, lines)
    report = compact_hour(storage, hour)
    assert validate(storage, report) == []
    import pandas as pd

    frame = pd.read_csv(report.outputs["tweets_csv"][0], dtype=str)
    assert len(frame) == 2500 and frame["text"].iloc[7] == 'line one 7\nline two,\t"quoted"\n🚀' * 3


def test_compactor_cli_compacts_an_hour_and_rejects_bad_arguments(tmp_path):
    import subprocess
    import sys

    from tests.helpers import REPO

    _land_local(tmp_path, Hour.of(AT), "a", 0, _timeline_lines())
    config = tmp_path / "c.toml"
    config.write_text(f'[landing]\nuri = "file://{tmp_path}/landing"\n[tables]\nuri = "file://{tmp_path}/tables"\n')

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "compactor", "run", "--config", str(config), *args],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )

    result = cli("--hour", "2026-11-25T10")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["rows_out"] == 100 and summary["problems"] == []
    manifest = json.loads((tmp_path / "tables/tweets/dt=2026-11-25/hour=10/_manifest.json").read_text())
    assert manifest["valid"] and manifest["rows_out"] == 100
    bad = cli("--hour", "yesterday")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "tweet-compactor: config error: --hour: not an hour like 2026-11-25T10 ('yesterday')"
    ]
    config.write_text(f'[landing]\nuri = "file://{tmp_path}/landing"\n')
    missing = cli("--hour", "2026-11-25T10")
    assert missing.returncode == 2 and missing.stderr.strip() == "tweet-compactor: config error: tables.uri: required"
