"""The Iceberg side: schema evolution, readers, catalogs, maintenance, migration, concurrent runs."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from compactor import iceberg
from compactor.compact import Options, compact_hour
from compactor.lake import Lake
from compactor.maintenance import maintain
from compactor.migrate import legacy_hours, migrate_hour
from compactor.tables import TWEETS, USERS
from tests.helpers import HOUR, PAGE, REPO, ids, timeline_lines, wait_until
from tweetlake.config import build_config
from tweetlake.landing import Hour

NEW_TWEET_COLUMNS = ["poll_duration_minutes", "place_name", "place_country", "place_bbox"]


def test_a_table_of_an_older_schema_gains_the_new_columns_and_old_rows_read_null(lake, tmp_path):
    old_schema = pa.schema([f for f in TWEETS.schema if f.name not in NEW_TWEET_COLUMNS])
    lake.catalog.create_namespace("tweetlake")
    table = lake.catalog.create_table("tweetlake.tweets", schema=old_schema, location=lake.storage.tables.uri("tweets"))
    old_ids = {f.name: f.field_id for f in table.schema().fields}
    rows = pa.Table.from_pylist([{"id": "1", "text": "old", "collected_at": HOUR.start}], schema=old_schema)
    path = tmp_path / "old.parquet"
    pq.write_table(rows, path)
    table.add_files([f"file://{path}"])
    evolved = lake.table(TWEETS)
    assert [f.name for f in evolved.schema().fields] == TWEETS.schema.names
    assert {f.name: f.field_id for f in evolved.schema().fields if f.name in old_ids} == old_ids
    read = evolved.scan().to_arrow()
    assert read.column("text").to_pylist() == ["old"]
    assert all(read.column(name).to_pylist() == [None] for name in NEW_TWEET_COLUMNS)


def test_duckdb_reads_the_tweets_table_through_its_iceberg_extension(lake, land):
    land(timeline_lines())
    compact_hour(lake, HOUR, Options())
    reader = subprocess.run(
        [
            str(REPO / ".venv-reader/bin/python"),
            str(REPO / "readers/duckdb_iceberg.py"),
            lake.table(TWEETS).metadata_location,
            "select count(*), count(distinct author_username), min(created_at) from tweets",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert reader.returncode == 0, reader.stderr
    oldest = min(t["created_at"] for t in PAGE["data"])  # 2020-04-14T16:22:07.000Z
    assert json.loads(reader.stdout)["rows"] == [[100, 1, oldest.replace("T", " ").replace(".000Z", "+00:00")]]


def test_pyiceberg_reads_the_users_table_into_pandas(lake, land):
    land(timeline_lines())
    compact_hour(lake, HOUR, Options())
    frame = lake.table(USERS).scan(selected_fields=("id", "username")).to_pandas()
    assert "PhillyNEFL" in set(frame["username"]) and frame["id"].is_unique


def test_another_sql_catalog_with_the_same_uri_and_warehouse_finds_the_tables(lake, land, tmp_path):
    from pyiceberg.catalog.sql import SqlCatalog

    land(timeline_lines())
    compact_hour(lake, HOUR, Options())
    other = SqlCatalog(
        "tweetlake", uri=f"sqlite:///{tmp_path}/tables/_catalog.db", warehouse=f"file://{tmp_path}/tables"
    )
    assert sorted(other.list_tables("tweetlake")) == [("tweetlake", "tweets"), ("tweetlake", "users")]
    assert other.load_table("tweetlake.tweets").scan().count() == 100


def test_maintenance_expires_old_snapshots_and_removes_only_unreferenced_old_files(lake, land):
    land(timeline_lines())
    for _ in range(3):
        compact_hour(lake, HOUR, Options())
    table = lake.table(TWEETS)
    location = Path(table.location().removeprefix("file://"))
    orphan = location / "data" / HOUR.partition / "crashed-run-00000.parquet"
    shutil.copy(next((location / "data" / HOUR.partition).glob("*.parquet")), orphan)
    report = maintain(lake, snapshot_retention=timedelta(0), orphan_age=timedelta(0))
    assert report.snapshots_expired["tweets"] == len(table.snapshots()) - 1
    assert f"file://{orphan}" in report.orphans_removed and not orphan.exists()
    assert ids(lake) == sorted(t["id"] for t in PAGE["data"])  # what the table references stays
    referenced = {f["file_path"] for f in lake.table(TWEETS).inspect.all_files().to_pylist()}
    assert all(Path(p.removeprefix("file://")).exists() for p in referenced)


def test_fresh_orphans_are_left_for_a_run_that_may_still_be_working(lake, land):
    land(timeline_lines())
    compact_hour(lake, HOUR, Options())
    location = Path(lake.table(TWEETS).location().removeprefix("file://"))
    fresh = location / "data" / HOUR.partition / "running-00000.parquet"
    fresh.write_bytes(b"being written")
    report = maintain(lake, snapshot_retention=timedelta(days=7), orphan_age=timedelta(hours=1))
    assert fresh.exists() and report.orphans_removed == []


def test_a_lake_written_before_the_iceberg_tables_is_adopted(tmp_path):
    shutil.copytree(REPO / "tests/data/legacy_lake/tables", tmp_path / "tables")
    config = build_config(
        {"landing": {"uri": f"file://{tmp_path}/landing"}, "tables": {"uri": f"file://{tmp_path}/tables"}}, environ={}
    )
    lake = Lake.from_config(config)
    old = pq.read_table(tmp_path / "tables/tweets/dt=2026-11-24/hour=09/part-00000.parquet")
    assert legacy_hours(lake) == [Hour.parse("2026-11-24T09"), Hour.parse("2026-11-24T10")]
    adopted = {str(h): migrate_hour(lake, h, lease_s=600) for h in legacy_hours(lake)}
    assert adopted == {"2026-11-24T09": {"tweets": 60, "users": 28}, "2026-11-24T10": {"tweets": 40, "users": 20}}
    assert legacy_hours(lake) == []  # the old files moved out of the table location
    nine = (
        lake.table(TWEETS)
        .scan(row_filter=iceberg.hour_filter(old.column("collected_at")[0].as_py(), Hour.parse("2026-11-24T10").start))
        .to_arrow()
    )
    assert sorted(nine.column("id").to_pylist()) == sorted(old.column("id").to_pylist())
    assert nine.column("text").to_pylist() == [
        dict(zip(old.column("id").to_pylist(), old.column("text").to_pylist(), strict=True))[i]
        for i in nine.column("id").to_pylist()
    ]
    assert (tmp_path / "tables/_legacy/tweets/dt=2026-11-24/hour=09/part-00000.parquet").exists()
    manifest = json.loads((tmp_path / "tables/_manifests/dt=2026-11-24/hour=10/manifest.json").read_text())
    assert manifest["migrated_from"] == "hive-parquet" and manifest["rows_out"] == 40


def _compactor(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "compactor", "run", "--config", str(config), *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_processes_compacting_one_hour_cannot_both_run(lake, land, tmp_path):
    lines = timeline_lines()
    for seq in range(200):  # enough work that the first run still holds the hour when the second starts
        land(lines, seq=seq)
    config = tmp_path / "c.toml"
    config.write_text(
        f'[landing]\nuri = "file://{tmp_path}/landing"\n[tables]\nuri = "file://{tmp_path}/tables"\nworkers = 1\n'
    )
    first = _compactor(config, "--hour", str(HOUR))
    lease = tmp_path / "tables" / "_leases" / f"{HOUR}.json"
    deadline = time.time() + 60
    while not lease.exists() and time.time() < deadline:
        time.sleep(0.05)
    second = _compactor(config, "--hour", str(HOUR))
    _, err2 = second.communicate(timeout=120)
    out1, err1 = first.communicate(timeout=300)
    assert first.returncode == 0, err1
    assert second.returncode == 1
    holder = json.loads(out1)["run_id"]
    assert f"is being compacted by run {holder}" in err2.strip().splitlines()[-1]
    assert len(ids(lake)) == 100 and not lease.exists()


def test_two_commits_of_one_hour_from_the_same_state_cannot_both_win(lake, land, tmp_path):
    """Two processes past the lease (an expired one taken over): the catalog's optimistic commit decides."""
    land(timeline_lines())
    compact_hour(lake, HOUR, Options())
    files = [f["file_path"] for f in lake.table(TWEETS).inspect.files().to_pylist()]
    barrier = tmp_path / "go"
    script = f"""
import sys, time
from pathlib import Path
from compactor import iceberg
from compactor.lake import Lake
from compactor.tables import TWEETS
from tweetlake.config import build_config
from tweetlake.landing import Hour
uris = {{"landing": {{"uri": "file://{tmp_path}/landing"}}, "tables": {{"uri": "file://{tmp_path}/tables"}}}}
table = Lake.from_config(build_config(uris, environ={{}})).table(TWEETS)
Path("{tmp_path}", sys.argv[1]).touch()  # loaded: this run's base is the current snapshot
while not Path("{barrier}").exists():
    time.sleep(0.01)
try:
    iceberg.replace_hour(table, Hour.parse("{HOUR}"), {files!r}, sys.argv[1])
    print("won")
except iceberg.ConcurrentCompaction as exc:
    print("lost:", exc)
"""
    runs = [
        subprocess.Popen([sys.executable, "-c", script, f"run-{n}"], cwd=REPO, stdout=subprocess.PIPE, text=True)
        for n in range(2)
    ]
    wait_until(lambda: all((tmp_path / f"run-{n}").exists() for n in range(2)), message="both loaded the table")
    barrier.touch()
    outcomes = sorted(run.communicate(timeout=120)[0].strip() for run in runs)
    assert outcomes[0].startswith("lost: tweetlake.tweets hour 2026-11-25T10 was committed by run run-")
    assert outcomes[1] == "won"
    assert len(ids(lake)) == 100


@pytest.fixture
def glue_lake(s3_endpoint, bucket, tmp_path) -> Lake:
    """Tables on moto's S3 with the AWS Glue Data Catalog (moto's Glue) as the catalog."""
    from compactor.filesystems import S3Settings

    config = build_config(
        {
            "landing": {"uri": f"s3://{bucket}/landing", "endpoint_url": s3_endpoint},
            "tables": {"uri": f"s3://{bucket}/tables", "catalog": "glue", "namespace": f"tl{uuid.uuid4().hex[:8]}"},
        },
        environ={},
    )
    s3 = S3Settings(endpoint_url=s3_endpoint, region="us-east-1", access_key="testing", secret_key="testing")
    return Lake.from_config(config, s3)


def test_the_glue_catalog_registers_the_tables_for_athena_and_spark(glue_lake, s3, bucket):
    import gzip

    from tweetlake.landing import landing_key

    s3.put_object(
        Bucket=bucket,
        Key=f"landing/{landing_key('tweets', HOUR, 'a-1', 0)}",
        Body=gzip.compress(b"".join(timeline_lines())),
    )
    started = time.perf_counter()
    report = compact_hour(glue_lake, HOUR, Options())
    assert report.valid and report.rows_out == 100, time.perf_counter() - started
    import boto3

    glue = boto3.client("glue", endpoint_url=glue_lake.storage.s3.endpoint_url, region_name="us-east-1")
    tables = glue.get_tables(DatabaseName=glue_lake.namespace)["TableList"]
    assert sorted(t["Name"] for t in tables) == ["tweets", "users"]
    assert all(t["Parameters"]["table_type"] == "ICEBERG" for t in tables)
    assert tables[0]["StorageDescriptor"]["Location"].startswith(f"s3://{bucket}/tables/")
    assert len(ids(glue_lake)) == 100
