"""The real Airflow 3 DAG (dag.test on SQLite) compacting landing files from the real streamer."""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pytest

from tests.helpers import REPO, Daemon, all_generated, landed_lines_s3, wait_landed_s3, write_config
from tweetlake.landing import Hour, landing_key

pytestmark = pytest.mark.airflow


@pytest.fixture(scope="module")
def airflow_db():
    env = {**os.environ}
    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture
def aws_conn(s3_endpoint, monkeypatch):
    monkeypatch.setenv(
        "AIRFLOW_CONN_AWS_DEFAULT",
        json.dumps(
            {
                "conn_type": "aws",
                "login": "testing",
                "password": "testing",
                "extra": {"endpoint_url": s3_endpoint, "region_name": "us-east-1"},
            }
        ),
    )


def _dag():
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag.get_dag("tweetlake_compaction")


def _tables_fs(s3_endpoint):
    host = s3_endpoint.removeprefix("http://")
    return pafs.S3FileSystem(
        endpoint_override=host, scheme="http", access_key="testing", secret_key="testing", region="us-east-1"
    )


def _config(tmp_path, bucket, s3_endpoint, sim_url="http://127.0.0.1:9"):
    return write_config(
        tmp_path / "c.toml",
        base_url=sim_url,
        landing_uri=f"s3://{bucket}/lake/landing",
        endpoint_url=s3_endpoint,
        state_dir=tmp_path / "state",
        extra=f'[tables]\nuri = "s3://{bucket}/lake/tables"\nlookback_hours = 3\n',
    )


def test_dagbag_has_no_import_errors(airflow_db):
    dag = _dag()
    assert [t.task_id for t in dag.tasks] == ["wait_for_late_files", "compact", "validate", "publish"]
    assert dag.max_active_runs == 1 and dag.catchup


def test_streamer_to_tables_through_the_real_dag(tmp_path, sim, s3_endpoint, bucket, airflow_db, aws_conn):
    config = _config(tmp_path, bucket, s3_endpoint, sim.url)
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    expected = all_generated(sim.url)
    wait_landed_s3(s3_endpoint, bucket, "lake/landing", expected, timeout=30)
    assert daemon.terminate() == 0
    hours = {Hour.parse(line["collected_at"]) for line in landed_lines_s3(s3_endpoint, bucket, "lake/landing")}
    dag = _dag()
    for hour in sorted(hours):
        run = dag.test(
            logical_date=hour.start + timedelta(hours=1),
            run_conf={"config_path": str(config)},
            mark_success_pattern="wait_for_late_files",
        )  # the hour is still open: skip the grace wait
        assert run.state == "success"
    fs = _tables_fs(s3_endpoint)
    table = pads.dataset(
        f"{bucket}/lake/tables/tweets", filesystem=fs, format="parquet", partitioning="hive"
    ).to_table()
    assert sorted(table.column("id").to_pylist()) == sorted(expected)
    row = table.slice(0, 1).to_pylist()[0]
    assert row["author_username"] in {"XDevelopers", "NASA", "tweetlake_demo"}
    assert row["collected_via"] == "poll:users_tweets" and row["created_at"] is not None
    # publish emitted an Asset event downstream DAGs can be scheduled on
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        events = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.name == "tweetlake_tweets")
        ).all()
        extras = [e.extra for e in events]
    mine = [x for x in extras if x["partition"].startswith(f"s3://{bucket}/")]
    assert sorted(x["hour"] for x in mine) == sorted(str(h) for h in hours)
    assert sum(x["rows"] for x in mine) == len(expected) and all(x["rejected"] == 0 for x in mine)
    assert all(x["partition"].startswith(f"s3://{bucket}/lake/tables/tweets/dt=") for x in mine)


def _land(bucket, s3_endpoint, hour: Hour, lines: list[bytes], writer: str, seq: int) -> str:
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

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(go(Path(tmp)))
    return landing_key("tweets", hour, writer, seq)


def _records(hour: Hour, n: int, start_id: int) -> list[bytes]:
    from tweetlake.landing import encode_line, tweet_record

    sample = json.loads((REPO / "tests/data/xapi/users_id_tweets/005.json").read_text())
    out = []
    for i in range(n):
        tweet = dict(sample["data"][i % len(sample["data"])], id=str(start_id + i))
        out.append(
            encode_line(
                tweet_record(
                    tweet,
                    sample["includes"],
                    collected_at=hour.start + timedelta(minutes=i % 60),
                    collected_via="poll:users_tweets",
                    account={"id": "1", "username": "x"},
                )
            )
        )
    return out


def test_past_hours_backfill_dedupe_reject_and_rerun_idempotently(tmp_path, s3_endpoint, bucket, airflow_db, aws_conn):
    config = _config(tmp_path, bucket, s3_endpoint)
    now = Hour.of(datetime.now(UTC))
    first, second = now.shift(-3), now.shift(-2)
    lines_first = _records(first, 30, 1_800_000_000_000_000_000)
    _land(bucket, s3_endpoint, first, lines_first, "w1", 0)
    # second hour: 20 new tweets, 5 seen in the first hour (cross-hour), 20 landed twice (restart overlap),
    # a malformed line and a line of the wrong shape
    lines_second = _records(second, 20, 1_900_000_000_000_000_000)
    bad = [b'{"v": 1, "tweet": {"id": "12", "te', b'{"v": 1, "tweet": {"id": "not-a-number", "text": "x"}}\n']
    _land(bucket, s3_endpoint, second, [*lines_second, *lines_first[:5], bad[0] + b"\n", bad[1]], "w1", 1)
    _land(bucket, s3_endpoint, second, lines_second, "w2", 0)
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.put_object(
        Bucket=bucket,
        Key=f"lake/landing/tweets/{second.partition}/w3-000000000000.ndjson.gz",
        Body=gzip.compress(b"\n".join(lines_second[:3]))[:-20],
    )  # truncated gzip

    dag = _dag()
    for hour in (first, second):  # backfill in hour order, grace sensor runs for real
        assert (
            dag.test(logical_date=hour.start + timedelta(hours=1), run_conf={"config_path": str(config)}).state
            == "success"
        )
    fs = _tables_fs(s3_endpoint)

    def read(partition: Hour):
        base = f"{bucket}/lake/tables/tweets/{partition.partition}"
        return pads.dataset(base, filesystem=fs, format="parquet").to_table()

    assert read(first).num_rows == 30
    table = read(second)
    assert sorted(table.column("id").to_pylist()) == sorted(str(1_900_000_000_000_000_000 + i) for i in range(20))
    manifest = json.loads(
        s3.get_object(Bucket=bucket, Key=f"lake/tables/tweets/{second.partition}/_manifest.json")["Body"].read()
    )
    assert manifest["valid"] and manifest["rows_out"] == 20
    assert manifest["duplicates_prior_hours"] == 5
    assert manifest["duplicates_in_hour"] >= 20
    assert manifest["rejected"] >= 3
    assert (
        manifest["records_in"]
        == manifest["rows_out"]
        + manifest["duplicates_in_hour"]
        + manifest["duplicates_prior_hours"]
        + manifest["rejected"]
    )
    rejected = [
        json.loads(line)
        for line in s3.get_object(Bucket=bucket, Key=f"lake/tables/_rejected/{second.partition}/rejected.ndjson")[
            "Body"
        ]
        .read()
        .splitlines()
    ]
    reasons = {r["reason"].split(":")[0] for r in rejected}
    assert {"malformed JSON", "shape"} <= reasons and any(r["reason"].startswith("unreadable gzip") for r in rejected)
    assert all(r["file"].startswith(f"s3://{bucket}/lake/landing/tweets/") for r in rejected)
    by_line = {(r["file"].rsplit("/", 1)[1], r["line"]): r for r in rejected}
    assert by_line[("w1-000000000001.ndjson.gz", 26)]["reason"].startswith("malformed JSON")
    assert by_line[("w1-000000000001.ndjson.gz", 26)]["raw"] == bad[0].decode()
    assert by_line[("w1-000000000001.ndjson.gz", 27)]["reason"] == "shape: tweet.id is not a numeric id string"

    csv_before = s3.get_object(Bucket=bucket, Key=f"lake/tables/csv/tweets/{second.partition}/part-00000.csv")
    # re-run the hour: exactly the same rows, no extra files, partition replaced
    run = dag.test(
        logical_date=second.start + timedelta(hours=1) + timedelta(seconds=1), run_conf={"config_path": str(config)}
    )
    assert run.state == "success"
    again = read(second)
    assert sorted(again.column("id").to_pylist()) == sorted(table.column("id").to_pylist())
    keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"lake/tables/tweets/{second.partition}/")["Contents"]
    ]
    # (pyarrow leaves a zero-byte "dir/" marker when it empties a prefix; every reader skips it)
    assert sorted(k.rsplit("/", 1)[1] for k in keys if not k.endswith("/")) == ["_manifest.json", "part-00000.parquet"]
    csv_after = s3.get_object(Bucket=bucket, Key=f"lake/tables/csv/tweets/{second.partition}/part-00000.csv")
    assert csv_before["Body"].read() == csv_after["Body"].read()
    staged = s3.list_objects_v2(Bucket=bucket, Prefix="lake/tables/_staging/").get("Contents", [])
    assert [o["Key"] for o in staged if not o["Key"].endswith("/")] == []
