"""Compacting hours of a local lake into the Iceberg tables: dedupe, idempotency, checks, crashes, hostile files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest

from compactor import engine, iceberg
from compactor.compact import Options, compact_hour
from compactor.late import late_hours
from compactor.manifest import read_manifest
from compactor.tables import TWEETS, USERS
from tests.helpers import AT, HOUR, PAGE, ids, timeline_lines
from tweetlake.landing import Hour, encode_line, landing_key, tweet_record


def test_an_hour_is_published_deduplicated_in_one_commit_per_table(lake, land):
    lines = timeline_lines()
    land(lines[:60], seq=0)
    land(lines[40:], seq=1)  # 20 tweets landed twice
    report = compact_hour(lake, HOUR, Options())
    assert report.valid and report.problems == []
    assert (report.records_in, report.rows_out, report.duplicates_in_hour) == (120, 100, 20)
    assert ids(lake) == sorted(t["id"] for t in PAGE["data"])
    tweets = lake.table(TWEETS)
    assert tweets.current_snapshot().snapshot_id == report.snapshots["tweets"]
    assert tweets.current_snapshot().summary.additional_properties[iceberg.HOUR_PROPERTY] == str(HOUR)
    users = lake.table(USERS).scan().to_arrow()
    authors = {t["author_id"] for t in PAGE["data"]} | {
        t["author_id"]
        for t in PAGE["includes"]["tweets"]
        if any(r["id"] == t["id"] for d in PAGE["data"] for r in d.get("referenced_tweets", []))
    }
    included = {u["id"] for u in PAGE["includes"]["users"]}
    assert sorted(users.column("id").to_pylist()) == sorted(authors & included)
    assert users.schema.names == USERS.schema.names


def test_the_report_says_what_each_tables_commit_cost(lake, land):
    land(timeline_lines())
    report = compact_hour(lake, HOUR, Options())
    assert set(report.commit_seconds) == {"tweets", "users"}
    assert all(0 < seconds < 60 for seconds in report.commit_seconds.values())


def test_an_hour_is_compacted_with_the_system_allocator(lake, land):
    """Arrow's default (mimalloc) held ~60 MB more per run with a flattening worker per core."""
    pa.set_memory_pool(pa.mimalloc_memory_pool())
    land(timeline_lines())
    assert compact_hour(lake, HOUR, Options()).valid
    assert pa.default_memory_pool().backend_name == "system"


def test_the_first_occurrence_in_landing_order_wins(lake, land):
    tweet = dict(PAGE["data"][0])
    first = tweet_record(tweet, PAGE["includes"], collected_at=AT, collected_via="poll:users_tweets", account={})
    second = tweet_record(tweet, PAGE["includes"], collected_at=AT, collected_via="stream:filtered", account={})
    land([encode_line(first)], seq=0)
    land([encode_line(second)], seq=1)
    compact_hour(lake, HOUR, Options())
    assert lake.table(TWEETS).scan().to_arrow().column("collected_via").to_pylist() == ["poll:users_tweets"]


def test_running_an_hour_again_replaces_it_exactly(lake, land):
    land(timeline_lines())
    first = compact_hour(lake, HOUR, Options())
    again = compact_hour(lake, HOUR, Options())
    assert ids(lake) == sorted(t["id"] for t in PAGE["data"])
    assert again.snapshots["tweets"] != first.snapshots["tweets"]
    referenced = {f["file_path"] for f in lake.table(TWEETS).inspect.files().to_pylist()}
    assert referenced and all(again.run_id in path for path in referenced)


def test_data_and_csv_parts_roll_at_max_rows_per_file(lake, land, tmp_path):
    land(timeline_lines())
    report = compact_hour(lake, HOUR, Options(max_rows_per_file=30))
    assert len(lake.table(TWEETS).inspect.files().to_pylist()) == 4
    assert len(report.outputs["tweets_csv"]) == 4
    assert sorted(p.name for p in (tmp_path / "tables/csv/tweets").glob("*/*/*.csv")) == [
        f"part-{n:05d}.csv" for n in range(4)
    ]


def test_an_hour_that_fails_its_checks_is_not_published_and_the_previous_version_stays(lake, land, monkeypatch):
    import compactor.compact as compact_module

    land(timeline_lines()[:50])
    compact_hour(lake, HOUR, Options())
    land(timeline_lines()[50:], seq=1)
    monkeypatch.setattr(compact_module, "check_parquet", lambda *a: ["tweets: a planted problem"])
    report = compact_hour(lake, HOUR, Options())
    assert not report.valid and report.problems == ["tweets: a planted problem", "tweets: a planted problem"]
    assert len(ids(lake)) == 50
    data_files = {p.name for p in Path(lake.table(TWEETS).location().removeprefix("file://")).rglob("*.parquet")}
    assert not any(report.run_id in name for name in data_files)  # the failed run's files are gone
    assert read_manifest(lake.storage, HOUR)["rows_out"] == 50


def test_a_crash_during_the_commit_leaves_the_previous_version_whole(lake, land, monkeypatch):
    from pyiceberg.table import Transaction

    land(timeline_lines()[:50])
    compact_hour(lake, HOUR, Options())
    land(timeline_lines()[50:], seq=1)

    def crash(self):
        raise RuntimeError("killed during the commit")

    monkeypatch.setattr(Transaction, "commit_transaction", crash)
    with pytest.raises(RuntimeError, match="killed"):
        compact_hour(lake, HOUR, Options())
    monkeypatch.undo()
    assert len(ids(lake)) == 50
    report = compact_hour(lake, HOUR, Options())
    assert report.valid and len(ids(lake)) == 100


def test_a_crash_during_the_csv_export_is_repaired_by_the_next_run(lake, land, monkeypatch, tmp_path):
    import compactor.compact as compact_module

    land(timeline_lines())
    compact_hour(lake, HOUR, Options(max_rows_per_file=30))
    moves = {"left": 2}
    real_move = compact_module.move

    def move_then_crash(*args):
        if not moves["left"]:
            raise RuntimeError("killed mid-export")
        moves["left"] -= 1
        real_move(*args)

    monkeypatch.setattr(compact_module, "move", move_then_crash)
    with pytest.raises(RuntimeError, match="mid-export"):
        compact_hour(lake, HOUR, Options(max_rows_per_file=30))
    monkeypatch.undo()
    report = compact_hour(lake, HOUR, Options(max_rows_per_file=30))
    csv_rows = sum(
        len(p.read_text().splitlines()) - 1 for p in (tmp_path / "tables/csv/tweets").glob(f"{HOUR.partition}/*.csv")
    )
    assert report.valid and csv_rows >= 100 and len(report.outputs["tweets_csv"]) == 4


def test_a_tweet_published_in_another_hour_stays_there_in_either_order(lake, land):
    lines = timeline_lines()
    later = Hour.parse("2026-11-25T12")
    land(timeline_lines(later.start)[:10], hour=later)
    land(lines)
    report = compact_hour(lake, HOUR, Options())  # the later hour is not published yet
    assert report.duplicates_other_hours == 0
    compact_hour(lake, later, Options())  # published later: its ten tweets are in HOUR already
    assert len(ids(lake, hour=later)) == 0
    again = compact_hour(lake, HOUR, Options())  # the earlier hour re-run: keeps what it has
    assert again.duplicates_other_hours == 0 and len(ids(lake, hour=HOUR)) == 100


def test_files_landed_after_an_hour_was_compacted_are_found_and_compacted(lake, land):
    land(timeline_lines()[:50])
    compact_hour(lake, HOUR, Options())
    assert late_hours(lake.storage, HOUR.shift(2), 24) == []
    land(timeline_lines()[50:], seq=7)  # uploaded after the compaction
    assert late_hours(lake.storage, HOUR.shift(2), 24) == [HOUR]
    compact_hour(lake, HOUR, Options())
    assert late_hours(lake.storage, HOUR.shift(2), 24) == [] and len(ids(lake)) == 100


def _edited(line: bytes, edit) -> bytes:
    record = json.loads(line)
    edit(record)
    return json.dumps(record, ensure_ascii=False).encode() + b"\n"


def test_a_row_wider_than_the_csv_readers_default_block_is_published_and_checked(lake, land):
    good = timeline_lines()
    land([_edited(good[0], lambda r: r["tweet"].update(text="\u00e9" * (3 << 20)))])  # 6 MB of UTF-8
    report = compact_hour(lake, HOUR, Options(max_line_bytes=8 << 20))
    assert report.valid and report.problems == [] and report.rows_out == 1


def test_an_hour_of_long_lines_among_ordinary_ones_is_published_whole(lake, land, monkeypatch):
    monkeypatch.setattr(engine, "RESULT_BYTES", 1 << 20)  # 64 KB lines: a query of their own, 8 to a batch
    good = timeline_lines()
    long = [_edited(line, lambda r: r["tweet"].update(text="x" * (64 << 10))) for line in good[20:50]]
    land([*good[:20], *long, *good[50:]])
    report = compact_hour(lake, HOUR, Options())
    assert report.valid and report.problems == [] and report.rows_out == len(good)
    texts = lake.table(TWEETS).scan(selected_fields=("id", "text")).to_arrow().to_pylist()
    long_ids = {json.loads(line)["tweet"]["id"] for line in long}
    assert {row["id"] for row in texts if row["text"] == "x" * (64 << 10)} == long_ids


def test_every_object_under_the_hour_is_compacted_or_rejected_with_a_reason(lake, land, tmp_path):
    good = timeline_lines()
    deep = b'{"v":1,"tweet":' + b"[" * 10_000 + b"]" * 10_000 + b"}\n"
    counters = _edited(good[1], lambda r: r["tweet"]["public_metrics"].update(like_count="--5"))
    year_one = _edited(good[2], lambda r: r["tweet"].update(created_at="0001-01-01T00:00:00+05:00"))
    list_id = _edited(good[3], lambda r: r["includes"]["users"][0].update(id=["1"]))
    huge = _edited(good[4], lambda r: r["tweet"].update(text="x" * (2 << 20)))
    land([good[0], deep, counters, year_one, list_id, huge, b"{not json\n", b'{"v":1,"text":"\xff"}\n'])
    bomb = tmp_path / "landing" / landing_key("tweets", HOUR, "bomb", 1)
    bomb.write_bytes(gzip.compress(b'"' + b"x" * (100 << 20) + b'"\n' + good[5]))
    truncated = gzip.compress(b"".join(good[6:60]))
    (tmp_path / "landing" / landing_key("tweets", HOUR, "cut", 1)).write_bytes(truncated[: len(truncated) // 2])
    (bomb.parent / "café-000000000001.ndjson.gz").write_bytes(gzip.compress(good[60]))
    report = compact_hour(lake, HOUR, Options(max_line_bytes=1 << 20))
    assert report.valid and report.problems == []
    rejected = [json.loads(line) for line in (tmp_path / f"tables/_rejected/{HOUR.partition}/rejected.ndjson").open()]
    found = {(r["file"].rsplit("/", 1)[-1], r["line"], r["reason"]) for r in rejected}
    cut_line = next(line for name, line, _ in found if name.startswith("cut"))
    assert found == {
        ("café-000000000001.ndjson.gz", None, "not a landing file name: 'café-000000000001.ndjson.gz'"),
        ("a-1-000000000000.ndjson.gz", 2, "malformed JSON: nested too deeply"),
        ("a-1-000000000000.ndjson.gz", 3, "shape: public_metrics.like_count is not an integer"),
        ("a-1-000000000000.ndjson.gz", 4, "shape: tweet.created_at is not an ISO timestamp"),
        ("a-1-000000000000.ndjson.gz", 5, "shape: includes.users.id is not a string"),
        ("a-1-000000000000.ndjson.gz", 6, f"line longer than 1048576 bytes ({len(huge) - 1} bytes)"),
        ("a-1-000000000000.ndjson.gz", 7, "malformed JSON: Expecting property name enclosed in double quotes"),
        ("a-1-000000000000.ndjson.gz", 8, "invalid UTF-8"),
        ("bomb-000000000001.ndjson.gz", 1, "line longer than 1048576 bytes (104857602 bytes)"),
        ("cut-000000000001.ndjson.gz", cut_line, f"unreadable gzip data after line {cut_line - 1}: truncated"),
    }
    assert report.records_in == report.rows_out + report.rejected == report.rows_out + 10
    assert report.rows_out == 2 + cut_line - 1 and len(ids(lake)) == report.rows_out
