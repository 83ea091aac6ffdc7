"""The real Airflow 3 DAGs (dag.test on SQLite) compacting landing files from the real streamer into S3 tables."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from tests.helpers import (
    REPO,
    Daemon,
    all_generated,
    compaction_dag,
    dag_bag,
    landed_lines_s3,
    run_compaction,
    sim_config,
    wait_landed_s3,
)
from tweetlake.landing import Hour, encode_line, landing_key, tweet_record

pytestmark = pytest.mark.airflow
PAGE = json.loads((REPO / "tests/data/xapi/users_id_tweets/005.json").read_text())


@pytest.fixture
def config(tmp_path, bucket, s3_endpoint, sim):
    """Landing and tables on moto's S3; the SQL catalog on this host's disk (tables.catalog_uri)."""
    return sim_config(
        tmp_path,
        sim,
        bucket,
        s3_endpoint,
        extra=f'[tables]\nuri = "s3://{bucket}/lake/tables"\nlookback_hours = 6\n'
        f'catalog_uri = "sqlite:///{tmp_path}/catalog.db"\n',
    )


def _tables(config: Path, s3_endpoint: str):
    from compactor.filesystems import S3Settings
    from compactor.lake import Lake
    from tweetlake.config import load_config

    s3 = S3Settings(endpoint_url=s3_endpoint, region="us-east-1", access_key="testing", secret_key="testing")
    return Lake.from_config(load_config(config), s3)


def test_the_dags_import_cleanly_and_have_their_tasks(airflow_db):
    bag = dag_bag()
    compaction, maintenance = bag.get_dag("tweetlake_compaction"), bag.get_dag("tweetlake_maintenance")
    assert sorted(t.task_id for t in compaction.tasks) == [
        "announce",
        "compact",
        "recompact_late_hours",
        "wait_for_late_files",
    ]
    assert compaction.get_task("compact").upstream_task_ids == {"wait_for_late_files"}
    assert compaction.get_task("announce").upstream_task_ids == {"compact", "recompact_late_hours"}
    assert compaction.max_active_runs == 1 and compaction.catchup
    assert [t.task_id for t in maintenance.tasks] == ["maintain"]


def test_the_dag_file_parses_fast():
    """Parsing stays cheap: the DAG imports nothing heavy at module level (measured in bench/ too)."""
    probe = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import runpy; runpy.run_path('dags/tweetlake_compaction.py')"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert probe.returncode == 0, probe.stderr[-2000:]
    imported = {line.split("|")[-1].strip() for line in probe.stderr.splitlines() if line.startswith("import time")}
    assert not {"pyarrow", "duckdb", "pyiceberg", "compactor.compact"} & imported


def test_streamer_to_tables_through_the_real_dag(tmp_path, sim, s3_endpoint, bucket, airflow_db, aws_conn, config):
    from compactor.tables import TWEETS

    daemon = Daemon(config, tmp_path / "daemon.log").start()
    expected = all_generated(sim.url)
    wait_landed_s3(s3_endpoint, bucket, "lake/landing", expected, timeout=30)
    assert daemon.terminate() == 0
    hours = {Hour.parse(line["collected_at"]) for line in landed_lines_s3(s3_endpoint, bucket, "lake/landing")}
    dag = compaction_dag()
    for hour in sorted(hours):
        assert run_compaction(dag, hour, config).state == "success"
    lake = _tables(config, s3_endpoint)
    table = lake.table(TWEETS).scan().to_arrow()
    assert sorted(table.column("id").to_pylist()) == sorted(expected)
    row = table.slice(0, 1).to_pylist()[0]
    assert row["author_username"] in {"XDevelopers", "NASA", "tweetlake_demo"}
    assert row["collected_via"] == "poll:users_tweets" and row["created_at"] is not None
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        extras = [
            e.extra
            for e in session.scalars(
                select(AssetEvent)
                .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
                .where(AssetModel.name == "tweetlake_tweets")
            ).all()
        ]
    snapshots = {
        s.snapshot_id for s in lake.table(__import__("compactor.tables", fromlist=["TWEETS"]).TWEETS).snapshots()
    }
    mine = [x for x in extras if x["snapshot_id"] in snapshots]
    assert sorted(x["hour"] for x in mine) == sorted(str(h) for h in hours)
    assert sum(x["rows"] for x in mine) == len(expected) and all(x["rejected"] == 0 for x in mine)


def _land(bucket: str, s3_endpoint: str, hour: Hour, lines: list[bytes], writer: str, seq: int) -> str:
    """Land one file with the streamer's real spool + uploader + S3 sink."""
    from streamer.health import Health
    from streamer.items import Batch
    from streamer.ledger import Ledger
    from streamer.metrics import Metrics
    from streamer.sinks import sink_for
    from streamer.spool import Spool
    from streamer.uploader import Uploader

    async def go(tmp: Path) -> None:
        metrics = Metrics()
        spool = Spool(tmp, 10**9, metrics)
        batch = Batch("tweets", hour, 0.0, lines=list(lines), nbytes=sum(map(len, lines)))
        spooled = spool.write(batch, writer, seq)
        sink = sink_for(f"s3://{bucket}/lake/landing", endpoint_url=s3_endpoint)
        ledger = Ledger(tmp / "state.json")
        await Uploader(asyncio.Queue(), sink, spool, ledger, metrics, Health(600), writer_id=writer).upload(spooled)
        await sink.close()

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(go(Path(tmp)))
    return landing_key("tweets", hour, writer, seq)


def _records(hour: Hour, n: int, start_id: int) -> list[bytes]:
    out = []
    for i in range(n):
        tweet = dict(PAGE["data"][i % len(PAGE["data"])], id=str(start_id + i))
        out.append(
            encode_line(
                tweet_record(
                    tweet,
                    PAGE["includes"],
                    collected_at=hour.start + timedelta(minutes=i % 60),
                    collected_via="poll:users_tweets",
                    account={"id": "1", "username": "x"},
                )
            )
        )
    return out


def test_past_hours_dedupe_reject_rerun_and_late_files(tmp_path, s3_endpoint, bucket, airflow_db, aws_conn, config):
    from compactor.tables import TWEETS
    from tests.helpers import ids

    now = Hour.of(datetime.now(UTC))
    first, second, third = now.shift(-4), now.shift(-3), now.shift(-2)
    lines_first = _records(first, 30, 1_800_000_000_000_000_000)
    _land(bucket, s3_endpoint, first, lines_first, "w1", 0)
    # second hour: 20 new tweets, 5 already in the first hour, 20 landed twice (a restart's overlap),
    # a malformed line, a line of the wrong shape, and a truncated gzip file
    lines_second = _records(second, 20, 1_900_000_000_000_000_000)
    bad = [b'{"v": 1, "tweet": {"id": "12", "te', b'{"v": 1, "tweet": {"id": "not-a-number", "text": "x"}}\n']
    _land(bucket, s3_endpoint, second, [*lines_second, *lines_first[:5], bad[0] + b"\n", bad[1]], "w1", 1)
    _land(bucket, s3_endpoint, second, lines_second, "w2", 0)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.put_object(
        Bucket=bucket,
        Key=f"lake/landing/tweets/{second.partition}/w3-000000000000.ndjson.gz",
        Body=gzip.compress(b"\n".join(lines_second[:3]))[:-20],
    )
    dag = compaction_dag()
    for hour in (first, second):
        assert run_compaction(dag, hour, config).state == "success"
    lake = _tables(config, s3_endpoint)
    assert len(ids(lake, TWEETS, first)) == 30
    assert ids(lake, TWEETS, second) == sorted(str(1_900_000_000_000_000_000 + i) for i in range(20))
    manifest = json.loads(
        s3.get_object(Bucket=bucket, Key=f"lake/tables/_manifests/{second.partition}/manifest.json")["Body"].read()
    )
    assert manifest["valid"] and manifest["rows_out"] == 20 and manifest["duplicates_other_hours"] == 5
    assert manifest["duplicates_in_hour"] >= 20 and manifest["rejected"] >= 3
    rejected = [
        json.loads(line)
        for line in s3.get_object(Bucket=bucket, Key=f"lake/tables/_rejected/{second.partition}/rejected.ndjson")[
            "Body"
        ].iter_lines()
    ]
    by_line = {(r["file"].rsplit("/", 1)[1], r["line"]): r for r in rejected}
    assert by_line[("w1-000000000001.ndjson.gz", 26)]["reason"].startswith("malformed JSON")
    assert by_line[("w1-000000000001.ndjson.gz", 26)]["raw"] == bad[0].decode()
    assert by_line[("w1-000000000001.ndjson.gz", 27)]["reason"] == "shape: tweet.id is not a numeric id string"
    assert any(r["reason"].startswith("unreadable gzip") for r in rejected)

    # a re-run of the hour (a manual run naming it): exactly the same rows
    csv_key = f"lake/tables/csv/tweets/{second.partition}/part-00000.csv"
    csv_before = s3.get_object(Bucket=bucket, Key=csv_key)["Body"].read()
    assert run_compaction(dag, second, config).state == "success"
    assert ids(lake, TWEETS, second) == sorted(str(1_900_000_000_000_000_000 + i) for i in range(20))
    assert s3.get_object(Bucket=bucket, Key=csv_key)["Body"].read() == csv_before

    # a late file for the first hour: the next hour's run compacts the first hour again
    late = _records(first, 7, 1_700_000_000_000_000_000)
    _land(bucket, s3_endpoint, first, late, "w9", 0)
    assert run_compaction(dag, third, config).state == "success"
    assert len(ids(lake, TWEETS, first)) == 37
    staged = s3.list_objects_v2(Bucket=bucket, Prefix="lake/tables/_staging/").get("Contents", [])
    assert [o["Key"] for o in staged if not o["Key"].endswith("/")] == []
