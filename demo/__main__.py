"""``make demo``: the whole chain on this machine, no credentials, no network.

simulator -> streamer (stream mode; a forced disconnect and a kill -9 midway) -> landing zone ->
the real Airflow DAG (``airflow dags test`` on SQLite) for every collected hour -> Parquet/CSV
tables -> a summary with how each tweet was collected and how fast it landed. Every process it
starts is stopped before it returns, also on Ctrl-C or failure.

Poll mode instead: ``python -m demo --mode poll`` (``make demo MODE=poll``).

The lake is a local ``file://`` directory unless ``TWEETLAKE_DEMO_S3_ENDPOINT`` names an S3
endpoint (MinIO, LocalStack, moto): then it is ``s3://$TWEETLAKE_DEMO_BUCKET/demo`` there, with
the usual AWS_* credentials from the environment, and the DAG gets them through ``aws_default``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from datetime import datetime
from pathlib import Path

import pyarrow.fs as pafs

from compactor.filesystems import Storage
from compactor.lake import Lake
from compactor.manifest import read_manifest
from compactor.tables import TWEETS, USERS
from tweetlake.config import load_config
from tweetlake.landing import Hour, Unreadable, iter_records, parse_time

REPO = Path(__file__).resolve().parent.parent
WORK = Path(os.environ.get("TWEETLAKE_DEMO_DIR", REPO / ".demo")).resolve()
S3_ENDPOINT = os.environ.get("TWEETLAKE_DEMO_S3_ENDPOINT", "")
BUCKET = os.environ.get("TWEETLAKE_DEMO_BUCKET", "tweetlake-demo")
ACCOUNTS = ["XDevelopers", "NASA", "tweetlake_demo", "ESA", "DataEngineer"]


def say(text: str) -> None:
    print(f"\033[1m==>\033[0m {text}" if sys.stdout.isatty() else f"==> {text}", flush=True)


class Processes:
    def __init__(self) -> None:
        self.running: list[subprocess.Popen[bytes]] = []

    def start(
        self, args: list[str], log: Path, env: dict[str, str] | None = None, stdout: int | None = None
    ) -> subprocess.Popen[bytes]:
        handle = open(log, "ab")  # noqa: SIM115 - owned by the child
        proc = subprocess.Popen(
            args, cwd=REPO, env={**os.environ, **(env or {})}, stdout=stdout or handle, stderr=handle
        )
        handle.close()
        self.running.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def lake_uri() -> str:
    return f"s3://{BUCKET}/demo" if S3_ENDPOINT else f"file://{WORK}/lake"


def storage(config: Path) -> Storage:
    return Storage.from_config(load_config(config))


def write_config(sim_url: str, mode: str) -> Path:
    config = WORK / "tweetlake.toml"
    config.write_text(f"""# written by make demo
[x_api]
base_url = "{sim_url}"
[collect]
mode = "{mode}"
users = {json.dumps(ACCOUNTS)}
poll_interval_s = 1
writer_id = "demo"
[landing]
uri = "{lake_uri()}/landing"
endpoint_url = "{S3_ENDPOINT}"
[batch]
max_records = 200
max_age_s = 2
[state]
dir = "{WORK}/state"
[metrics]
port = 0
[tables]
uri = "{lake_uri()}/tables"
catalog_uri = "sqlite:///{WORK}/catalog.db"
""")
    return config


def landed(store: Storage, stream: str = "tweets") -> tuple[list[tuple[dict, datetime]], int]:
    """Every landed record of ``stream`` with the time its file landed, and the number of files."""
    selector = pafs.FileSelector(store.landing.arrow_path(stream), allow_not_found=True, recursive=True)
    files = sorted((i for i in store.fs.get_file_info(selector) if i.path.endswith(".ndjson.gz")), key=lambda i: i.path)
    records = []
    for info in files:
        with store.fs.open_input_stream(info.path, compression=None) as handle:
            for item in iter_records(handle):
                if not isinstance(item, Unreadable):
                    records.append((item[1], info.mtime))
    return records, len(files)


def run_streamer(
    procs: Processes, config: Path, seconds: float, *, sim_url: str, kill: bool, disconnect: bool = False
) -> int | None:
    env = {"X_BEARER_TOKEN": "demo-token-not-a-secret"}
    proc = procs.start(
        [sys.executable, "-m", "streamer", "run", "--config", str(config), "--log-format", "json"],
        WORK / "streamer.log",
        env=env,
        stdout=None,
    )
    time.sleep(seconds / 2)
    if disconnect:
        say("the simulator drops the stream; tweets posted until the streamer is back are recovered from timelines")
        post(f"{sim_url}/_sim/stream", {"do": "disconnect", "connect": ["503"]})
    time.sleep(seconds / 2)
    if kill:
        proc.kill()
        proc.wait()
        return None
    # stop the simulator's new tweets and let the streamer catch up, so that "served" is final
    post(f"{sim_url}/_sim/pause", {"paused": True})
    store = storage(config)
    deadline = time.time() + 60
    while time.time() < deadline and not served_ids(sim_url) <= {r["tweet"]["id"] for r, _ in landed(store)[0]}:
        time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    return proc.wait(60)


def post(url: str, body: dict) -> None:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"Content-Type": "application/json"}
    )
    urllib.request.urlopen(request, timeout=10).read()


def served_ids(sim_url: str) -> set[str]:
    served = json.loads(urllib.request.urlopen(f"{sim_url}/_sim/served", timeout=10).read())
    return {tweet_id for ids in served.values() for tweet_id in ids}


def run_dag(config: Path, hours: list[Hour]) -> None:
    env = {
        "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
            {
                "conn_type": "aws",
                "login": os.environ.get("AWS_ACCESS_KEY_ID", ""),
                "password": os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
                "extra": {
                    "endpoint_url": S3_ENDPOINT,
                    "region_name": os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
                },
            }
        )
        if S3_ENDPOINT
        else "aws://",
        "AIRFLOW_HOME": str(WORK / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
    }
    airflow = [sys.executable, "-m", "airflow"]
    log = WORK / "airflow.log"
    with open(log, "ab") as handle:
        subprocess.run(
            [*airflow, "db", "migrate"], env={**os.environ, **env}, stdout=handle, stderr=handle, check=True, cwd=REPO
        )
    for hour in hours:
        conf = {"config_path": str(config), "hour": str(hour), "grace_minutes": 0}  # the demo does not wait
        args = [*airflow, "dags", "test", "tweetlake_compaction", "--conf", json.dumps(conf)]
        say(f"airflow dags test tweetlake_compaction --conf '{json.dumps(conf)}'")
        with open(log, "ab") as handle:
            result = subprocess.run(args, env={**os.environ, **env}, stdout=handle, stderr=handle, cwd=REPO)
        if result.returncode != 0:
            raise SystemExit(f"the DAG run failed; see {log}")


def bar(n: int, most: int, width: int = 40) -> str:
    return "█" * max(1 if n else 0, round(width * n / most)) if most else ""


def latencies(records: list[tuple[dict, datetime]]) -> dict[str, list[float]]:
    """Seconds from each tweet's ``created_at`` to its file landing, by ``collected_via``."""
    out: dict[str, list[float]] = {}
    for record, landed_at in records:
        created = parse_time(record["tweet"]["created_at"])
        out.setdefault(record["collected_via"], []).append(max(0.0, (landed_at - created).total_seconds()))
    return out


def summary(config: Path, hours: list[Hour]) -> None:
    store = storage(config)
    lake = Lake.from_config(load_config(config))
    records, files = landed(store)
    lines = [record for record, _ in records]
    errors, error_files = landed(store, "errors")
    per_account = Counter(line["account"]["username"] for line in lines)
    tweets, users = lake.table(TWEETS).scan().to_arrow(), lake.table(USERS).scan().to_arrow()
    manifests = [m for m in (read_manifest(store, hour) for hour in hours) if m]
    print()
    print("tweetlake demo summary")
    print("=" * 60)
    print(f"landing zone   {store.landing.uri()}")
    print(f"  tweet files  {files}    error files {error_files} ({len(errors)} API errors kept)")
    print(f"  tweet lines  {len(lines)}    unique ids {len({line['tweet']['id'] for line in lines})}")
    print("  how they were collected, and landing latency (created_at -> file landed):")
    for via, seconds in sorted(latencies(records).items()):
        p95 = statistics.quantiles(seconds, n=20)[-1] if len(seconds) > 1 else seconds[0]
        print(f"    {via:<24}{len(seconds):>6} tweets   median {statistics.median(seconds):6.1f} s   p95 {p95:6.1f} s")
    print("  tweets per account:")
    most = max(per_account.values(), default=0)
    for account, count in per_account.most_common():
        print(f"    {account:<16}{count:>6}  {bar(count, most, 30)}")
    print(f"tables         {store.tables.uri()}  (Iceberg: {lake.namespace}.tweets, {lake.namespace}.users)")
    published = sum(m["rows_out"] for m in manifests)
    print(f"  tweets rows  {tweets.num_rows} (manifests: {published}), users rows {users.num_rows}")
    print(
        f"  duplicates dropped {sum(m['duplicates_in_hour'] + m['duplicates_other_hours'] for m in manifests)}"
        f"    rejected lines {sum(m['rejected'] for m in manifests)}"
    )
    print(f"  snapshots    tweets {[m['snapshots']['tweets'] for m in manifests]}")
    print(f"  csv          {store.tables.uri()}/csv/tweets/dt=*/hour=*/part-*.csv")
    print("tweets per hour and account (by collection hour):")
    counts = Counter(
        (Hour.of(at).partition, account)
        for at, account in zip(
            tweets.column("collected_at").to_pylist(), tweets.column("collected_for").to_pylist(), strict=True
        )
    )
    most = max(counts.values(), default=0)
    for (partition, account), count in sorted(counts.items()):
        print(f"  {partition}  {account:<16}{count:>6}  {bar(count, most)}")
    metadata = lake.table(TWEETS).metadata_location
    print("query it (DuckDB's iceberg extension, in the reader environment):")
    print(
        f"  .venv-reader/bin/python readers/duckdb_iceberg.py {metadata} "
        '"select author_username, count(*) from tweets group by 1 order by 2 desc"'
    )
    print(f"logs: {WORK / 'streamer.log'} (JSON lines; try: jq -c 'select(.event==\"batch_uploaded\")')")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("stream", "poll"), default=os.environ.get("TWEETLAKE_DEMO_MODE", "stream"))
    mode = parser.parse_args(argv).mode
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.mkdir()
    procs = Processes()
    try:
        say("starting the X API simulator (5 accounts, 5 new tweets/s, occasional 429 and 5xx)")
        sim = procs.start(
            [
                sys.executable,
                "-m",
                "simulator",
                "--users",
                ",".join(ACCOUNTS),
                "--initial",
                "150",
                "--tweets-per-s",
                "5",
                "--faults",
                "500:0.03,429:0.02",
            ],
            WORK / "simulator.log",
            stdout=subprocess.PIPE,
        )
        assert sim.stdout is not None
        sim_url = json.loads(sim.stdout.readline())["url"]
        if S3_ENDPOINT:
            import boto3

            s3 = boto3.client("s3", endpoint_url=S3_ENDPOINT)
            if BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
                s3.create_bucket(Bucket=BUCKET)
        config = write_config(sim_url, mode)
        say(f"simulator at {sim_url}; config at {config}")
        say(f"running the streamer in {mode} mode for 12 s, then kill -9 (a crash) ...")
        run_streamer(procs, config, 12, sim_url=sim_url, kill=True, disconnect=mode == "stream")
        say(
            "... restarting it; it recovers its spool and progress and runs 12 s more; then the simulator "
            "pauses, the streamer catches up and gets SIGTERM"
        )
        code = run_streamer(procs, config, 12, sim_url=sim_url, kill=False)
        say(f"streamer exited with {code} after flushing")
        lines = [record for record, _ in landed(storage(config))[0]]
        ids = Counter(line["tweet"]["id"] for line in lines)
        served = served_ids(sim_url)
        say(
            f"landed {len(ids)} unique tweets in {len(lines)} lines; simulator served {len(served)} "
            f"-> missing {len(served - set(ids))}, duplicated {sum(1 for v in ids.values() if v > 1)}"
        )
        hours = sorted({Hour.parse(line["collected_at"]) for line in lines})
        run_dag(config, hours)
        summary(config, hours)
        return 0
    finally:
        procs.stop_all()


if __name__ == "__main__":
    sys.exit(main())
