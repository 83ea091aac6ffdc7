"""The compactor's small parts alone: the hour core, the lease, the CSV cell encoding, the options."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compactor import core as core_module
from compactor import csvfiles, schema, writers
from compactor.checks import check_csv, check_parquet
from compactor.compact import Options
from compactor.core import HourCompaction, IdSet
from compactor.lease import HourLeased, Lease, LeaseLost, LocalLeaseStore, S3LeaseStore
from compactor.writers import PartFiles

T0 = datetime(2026, 11, 25, 10, tzinfo=UTC)


def _tweets(*ids: str) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([{"id": i, "collected_at": T0} for i in ids], schema=schema.TWEETS)


def _users(*rows: tuple[str, int, str]) -> pa.RecordBatch:
    """(id, minutes after T0, name) per author row."""
    return pa.RecordBatch.from_pylist(
        [{"id": i, "collected_at": T0 + timedelta(minutes=m), "name": n} for i, m, n in rows], schema=schema.USERS
    )


def test_the_first_occurrence_of_an_id_wins_within_and_across_batches():
    core = HourCompaction()
    first = core.take_tweets(_tweets("5", "7", "5"))
    second = core.take_tweets(_tweets("7", "9"))
    assert first.column("id").to_pylist() == ["5", "7"] and second.column("id").to_pylist() == ["9"]
    assert (core.counts.rows_out, core.counts.duplicates_in_hour) == (3, 2)


def test_ids_that_are_not_canonical_numbers_are_kept_apart_from_their_numeric_look_alikes():
    seen = IdSet()
    fresh = seen.add_new(pa.array(["12", "012", "12345678901234567890123", "012"]))
    assert fresh.tolist() == [True, True, True, False]
    assert seen.found_in(pa.array(["012", "12", "13", "12345678901234567890123"])) == [
        "012",
        "12",
        "12345678901234567890123",
    ]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 40).map(str) | st.sampled_from(["07", "", "9" * 25]), max_size=12)))
def test_ids_seen_across_many_batches_answer_as_a_plain_set_would(batches):
    seen, reference = IdSet(), set()
    for batch in batches:
        expected = []
        for tweet_id in batch:
            expected.append(tweet_id not in reference)
            reference.add(tweet_id)
        assert seen.add_new(pa.array(batch, pa.string())).tolist() == expected
    probe = [str(n) for n in range(45)] + ["07", ""]
    assert seen.found_in(pa.array(probe, pa.string())) == [i for i in probe if i in reference]
    assert len(seen) == len(reference)


def test_each_author_keeps_its_latest_snapshot_and_a_tie_goes_to_the_later_row():
    core = HourCompaction()
    core.take_users(_users(("1", 5, "old"), ("2", 1, "b")))
    core.take_users(_users(("1", 30, "new"), ("1", 30, "newer"), ("2", 0, "stale")))
    users = core.users()
    assert [(r["id"], r["name"]) for r in users.to_pylist()] == [("1", "newer"), ("2", "b")]
    assert users.schema.names == schema.USERS.names and core.counts.users_out == 2


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.lists(st.tuples(st.sampled_from("12345"), st.integers(0, 3), st.text(max_size=2)), max_size=6)),
    st.integers(1, 8),
)
def test_the_latest_snapshots_do_not_depend_on_when_the_rows_gathered_are_reduced(batches, reduce_rows):
    latest: dict[str, tuple[int, int, str]] = {}  # id -> (minute, row number, name): the largest wins
    for number, (user_id, minute, name) in enumerate(row for batch in batches for row in batch):
        latest[user_id] = max(latest.get(user_id, (-1, -1, "")), (minute, number, name))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(core_module, "_MIN_REDUCE_ROWS", reduce_rows)
        core = HourCompaction()
        for batch in batches:
            core.take_users(_users(*batch))
        users = core.users()
    assert [(r["id"], r["name"]) for r in users.to_pylist()] == [(i, latest[i][2]) for i in sorted(latest)]


def test_the_counts_balance_only_when_every_record_is_accounted_for():
    core = HourCompaction()
    core.records_read(4)
    core.take_tweets(_tweets("1", "1"))
    core.reject("shape: tweet.id is not a numeric id string")
    assert not core.counts.balanced
    core.drop_other_hours([])
    core.reject("malformed JSON: Expecting value")
    assert core.counts.balanced and core.counts.rejected_reasons == {"shape": 1, "malformed JSON": 1}


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path, s3, bucket):
    """The local lake's flock'd store and the S3 store (conditional writes) against moto."""
    return LocalLeaseStore(tmp_path) if request.param == "local" else S3LeaseStore(s3, bucket)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_held_hour_is_refused_to_a_second_run_naming_the_holder(store):
    with (
        Lease(store, "_leases/h.json", run_id="first", term_s=600),
        pytest.raises(HourLeased, match="is being compacted by run first"),
    ):
        Lease(store, "_leases/h.json", run_id="second", term_s=600).acquire()
    with Lease(store, "_leases/h.json", run_id="third", term_s=600):  # released: free again
        pass


def test_a_held_hour_is_named_by_the_full_uri_of_its_lease(store, tmp_path, bucket):
    expected = (
        f"file://{tmp_path}/_leases/h.json" if isinstance(store, LocalLeaseStore) else f"s3://{bucket}/_leases/h.json"
    )
    with Lease(store, "_leases/h.json", run_id="first", term_s=600), pytest.raises(HourLeased) as info:
        Lease(store, "_leases/h.json", run_id="second", term_s=600).acquire()
    assert str(info.value).startswith(f"{expected} is being compacted by run first")


def test_an_expired_lease_is_taken_over_and_its_holder_cannot_publish(store):
    clock = Clock()
    dead = Lease(store, "_leases/h.json", run_id="dead", term_s=60, clock=clock)
    dead.acquire()
    clock.now += 120
    taker = Lease(store, "_leases/h.json", run_id="alive", term_s=60, clock=clock)
    taker.acquire()
    with pytest.raises(LeaseLost):
        dead.check()
    taker.check()
    dead.release()  # must not delete the new holder's lease
    with pytest.raises(HourLeased, match="run alive"):
        Lease(store, "_leases/h.json", run_id="third", term_s=60, clock=clock).acquire()
    taker.release()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.text(max_size=8), max_size=4) | st.none(), min_size=1, max_size=6))
def test_a_csv_list_cell_is_exactly_what_json_dumps_writes(values):
    batch = pa.RecordBatch.from_arrays([pa.array(values, pa.list_(pa.string()))], names=["hashtags"])
    cells = csvfiles.encode(batch).column("hashtags").to_pylist()
    assert cells == [None if v is None else json.dumps(v, ensure_ascii=False) for v in values]


def test_number_lists_are_json_arrays_that_read_back_to_the_same_doubles():
    values = [[13.088304, 52.338079, 0.1 + 0.2, 1e20], None, []]
    batch = pa.RecordBatch.from_arrays([pa.array(values, pa.list_(pa.float64()))], names=["place_bbox"])
    cells = csvfiles.encode(batch).column("place_bbox").to_pylist()
    assert [None if c is None else json.loads(c) for c in cells] == values


@settings(max_examples=200, deadline=None)
@given(st.lists(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)) | st.none(), min_size=1))
def test_a_csv_timestamp_cell_is_the_utc_time_to_the_microsecond_with_a_z(values):
    utc = [None if v is None else v.replace(tzinfo=UTC) for v in values]
    batch = pa.RecordBatch.from_arrays([pa.array(utc, pa.timestamp("us", tz="UTC"))], names=["created_at"])
    cells = csvfiles.encode(batch).column("created_at").to_pylist()
    assert cells == [None if v is None else v.strftime("%Y-%m-%d %H:%M:%S.%fZ") for v in utc]


@pytest.fixture
def small_csv(tmp_path):
    """A staged CSV of the users table, two rows, written by the compactor's own writer."""
    parts = PartFiles(pafs.LocalFileSystem(), str(tmp_path), schema.USERS, "csv", max_rows=100, prefix="part")
    parts.write(_users(("1", 0, "a"), ("2", 0, "b")))
    return parts


def test_the_csv_check_passes_a_file_that_reads_back_whole(small_csv):
    paths = small_csv.close()
    assert check_csv(pafs.LocalFileSystem(), "users csv", paths, schema.USERS, 2, small_csv.widest_row) == []


def test_the_csv_check_fails_a_file_with_a_row_missing(small_csv):
    paths = small_csv.close()
    assert check_csv(pafs.LocalFileSystem(), "users csv", paths, schema.USERS, 3, small_csv.widest_row) == [
        "users csv: the CSV holds 2 rows, expected 3"
    ]


def test_the_csv_check_fails_a_file_with_other_columns(small_csv):
    [path] = small_csv.close()
    text = Path(path).read_text()
    Path(path).write_text(text.replace('"name"', '"nom"', 1))
    [problem] = check_csv(pafs.LocalFileSystem(), "users csv", [path], schema.USERS, 2, small_csv.widest_row)
    assert problem.endswith("does not have the table's columns")


def test_the_csv_check_fails_a_file_whose_rows_do_not_parse(small_csv):
    [path] = small_csv.close()
    with open(path, "a") as out:
        out.write('"3","c"\n')  # two cells where the table has more
    [problem] = check_csv(pafs.LocalFileSystem(), "users csv", [path], schema.USERS, 3, small_csv.widest_row)
    assert "does not parse" in problem


@pytest.fixture
def tweet_parts(tmp_path):
    """A staged Parquet part of the tweets table, written by the compactor's own writer."""
    return PartFiles(pafs.LocalFileSystem(), str(tmp_path), schema.TWEETS, "parquet", max_rows=100, prefix="part")


def _row_groups(paths: list[str]) -> list[list[int]]:
    return [[f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)] for f in map(pq.ParquetFile, paths)]


def test_parquet_rows_fed_batch_by_batch_are_written_as_one_row_group_per_part(tweet_parts):
    for start in range(0, 150, 10):
        tweet_parts.write(_tweets(*(str(n) for n in range(start, start + 10))))
    paths = tweet_parts.close()
    assert _row_groups(paths) == [[100], [50]]
    assert pa.concat_tables(pq.read_table(p) for p in paths).column("id").to_pylist() == [str(n) for n in range(150)]


def test_a_parquet_row_group_is_written_once_its_bytes_are_reached(tweet_parts, monkeypatch):
    monkeypatch.setattr(writers, "ROW_GROUP_BYTES", _tweets("1", "2", "3").nbytes)
    for start in range(0, 8, 2):
        tweet_parts.write(_tweets(str(start), str(start + 1)))
    assert _row_groups(tweet_parts.close()) == [[4, 4]]


def test_the_parquet_check_passes_distinct_ids_in_the_expected_number(tweet_parts):
    tweet_parts.write(_tweets("1", "2", "3"))
    assert check_parquet(pafs.LocalFileSystem(), "tweets", tweet_parts.close(), schema.TWEETS, 3) == []


def test_the_parquet_check_fails_an_id_written_twice_across_batches(tweet_parts):
    tweet_parts.write(_tweets("1", "2"))
    tweet_parts.write(_tweets("2"))
    problems = check_parquet(pafs.LocalFileSystem(), "tweets", tweet_parts.close(), schema.TWEETS, 3)
    assert problems == ["tweets: the data files hold duplicate ids"]


def test_the_parquet_check_fails_a_row_count_and_a_schema_that_differ(tweet_parts):
    tweet_parts.write(_tweets("1"))
    paths = tweet_parts.close()
    assert check_parquet(pafs.LocalFileSystem(), "tweets", paths, schema.TWEETS, 2) == [
        "tweets: the data files hold 1 rows, expected 2"
    ]
    [problem, _] = check_parquet(pafs.LocalFileSystem(), "users", paths, schema.USERS, 1)
    assert problem.endswith("does not have the table's schema")


@pytest.mark.parametrize(("cpus", "workers"), [(None, 1), (1, 1), (2, 2), (4, 4), (16, 4)])
def test_a_run_flattens_with_a_worker_per_cpu_up_to_four_by_default(monkeypatch, cpus, workers):
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    assert Options().flattening_workers == workers


def test_configured_workers_are_used_as_given(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert Options(workers=16).flattening_workers == 16
