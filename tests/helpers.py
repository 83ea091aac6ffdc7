"""Helpers the tests share: config files, a daemon in a subprocess, reading the landing zone."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from tweetlake.landing import Hour, Unreadable, encode_line, iter_records, tweet_record

REPO = Path(__file__).resolve().parent.parent
SECRET = "tl-test-bearer-5f0c1d9e8a7b"


def write_config(
    path: Path,
    *,
    base_url: str,
    landing_uri: str,
    state_dir: Path,
    endpoint_url: str = "",
    users: tuple[str, ...] = ("XDevelopers", "NASA", "tweetlake_demo"),
    mode: str = "poll",
    collect_extra: str = "",
    extra: str = "",
    **batch: Any,
) -> Path:
    max_records = batch.get("max_records", 50)
    max_age_s = batch.get("max_age_s", 0.5)
    path.write_text(f"""
[x_api]
base_url = "{base_url}"
timeout_s = 2
[collect]
mode = "{mode}"
users = {json.dumps(list(users))}
poll_interval_s = {batch.get("poll_interval_s", 0.3)}
writer_id = "test-writer"
history_max_tweets = 3200
{collect_extra}
[landing]
uri = "{landing_uri}"
endpoint_url = "{endpoint_url}"
[batch]
max_records = {max_records}
max_bytes = {batch.get("max_bytes", 8_000_000)}
max_age_s = {max_age_s}
[state]
dir = "{state_dir}"
max_spool_bytes = {batch.get("max_spool_bytes", 2_000_000_000)}
[metrics]
port = 0
[service]
shutdown_timeout_s = {batch.get("shutdown_timeout_s", 15)}
{extra}
""")
    return path


STARTED: list[subprocess.Popen[bytes]] = []  # every daemon a test started; conftest reaps them


class Daemon:
    """The real daemon (``python -m streamer run``) in a subprocess, logs captured to a file."""

    def __init__(self, config: Path, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.log_path = log_path
        self.env = {**os.environ, "X_BEARER_TOKEN": SECRET, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Daemon:
        handle = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamer", "run", "--config", str(self.config), "--log-format", "json"],
            cwd=REPO,
            env=self.env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        handle.close()
        STARTED.append(self.proc)
        return self

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                out.append({"event": "_raw", "line": line})
        return out

    def wait_event(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            for event in reversed(self.events()):
                if event.get("event") == name:
                    return event
            assert self.proc and self.proc.poll() is None, f"daemon exited: {self.log_path.read_text()[-3000:]}"
            time.sleep(0.1)
        raise AssertionError(f"no {name} event within {timeout}s:\n{self.log_path.read_text()[-3000:]}")

    def metrics_port(self) -> int:
        return int(self.wait_event("started")["metrics_port"])

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port()}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.proc
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc
        self.proc.kill()
        self.proc.wait(10)


def check_online(config: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``tweet-streamer check-config --online`` as an operator runs it, with the test bearer token."""
    return subprocess.run(
        [sys.executable, "-m", "streamer", "check-config", "--config", str(config), "--online"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "X_BEARER_TOKEN": SECRET, **(env or {})},
        timeout=60,
    )


def sim_post(sim_url: str, path: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        f"{sim_url}{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def sim_get(sim_url: str, path: str) -> Any:
    with urllib.request.urlopen(f"{sim_url}{path}", timeout=5) as response:
        return json.loads(response.read())


def sim_config(tmp_path: Path, sim: Any, bucket: str, endpoint_url: str, **kw: Any) -> Path:
    """A daemon config in ``tmp_path``: the test simulator's accounts into ``s3://bucket/lake/landing``
    through ``endpoint_url``, state in ``tmp_path/state``; ``kw`` as ``write_config`` takes them."""
    return write_config(
        tmp_path / "c.toml",
        base_url=sim.url,
        landing_uri=f"s3://{bucket}/lake/landing",
        endpoint_url=endpoint_url,
        state_dir=tmp_path / "state",
        **kw,
    )


def landed_lines_s3(endpoint: str, bucket: str, prefix: str, stream: str = "tweets") -> list[dict[str, Any]]:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    lines = []
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/{stream}/"):
        for obj in page.get("Contents", []):
            lines.extend(landed_records(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()))
    return lines


def landed_records(body: bytes) -> list[dict[str, Any]]:
    """The records of one landed file, read by the landing contract's reader; all must be readable."""
    records = []
    for item in iter_records(io.BytesIO(body)):
        assert not isinstance(item, Unreadable), f"an unreadable landed line: {item}"
        records.append(item[1])
    return records


class LandedS3:
    """Landed lines under a prefix, read as they arrive: a landed key never changes, so each object
    is fetched once (a long chaos run lands tens of thousands of small files)."""

    def __init__(self, endpoint: str, bucket: str, prefix: str) -> None:
        self._s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        self._bucket, self._prefix = bucket, prefix
        self._lines: dict[str, list[dict[str, Any]]] = {}

    def lines(self, stream: str = "tweets") -> list[dict[str, Any]]:
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=f"{self._prefix}/{stream}/"):
            for obj in page.get("Contents", []):
                if obj["Key"] not in self._lines:
                    body = self._s3.get_object(Bucket=self._bucket, Key=obj["Key"])["Body"].read()
                    self._lines[obj["Key"]] = landed_records(body)
        return [line for key, found in self._lines.items() if f"/{stream}/" in key for line in found]


def landed_lines_local(root: Path, stream: str = "tweets") -> list[dict[str, Any]]:
    lines = []
    for path in sorted((root / stream).rglob("*.ndjson.gz")):
        lines.extend(landed_records(path.read_bytes()))
    return lines


def tweet_id_counts(lines: list[dict[str, Any]]) -> Counter[str]:
    return Counter(line["tweet"]["id"] for line in lines)


def all_generated(sim_url: str) -> set[str]:
    return {tweet_id for ids in sim_get(sim_url, "/_sim/ids").values() for tweet_id in ids}


def wait_until(predicate: Any, timeout: float = 30.0, interval: float = 0.2, message: str = "") -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s: {message}")


def wait_landed_s3(endpoint: str, bucket: str, prefix: str, expected: set[str], timeout: float = 30.0) -> None:
    """Wait until the landed tweet ids cover ``expected`` (exactness is for the caller to assert)."""
    wait_until(
        lambda: set(tweet_id_counts(landed_lines_s3(endpoint, bucket, prefix))) >= expected,
        timeout=timeout,
        message=f"{len(expected)} tweets landed under s3://{bucket}/{prefix}",
    )


def free_port() -> int:
    """A loopback port nothing listens on (yet): an S3 endpoint that is down."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def assert_landed_exactly_once(endpoint: str, bucket: str, prefix: str, expected: set[str]) -> None:
    counts = tweet_id_counts(landed_lines_s3(endpoint, bucket, prefix))
    assert set(counts) == expected, f"missing {len(expected - set(counts))}, unexpected {len(set(counts) - expected)}"
    duplicated = [k for k, v in counts.items() if v > 1]
    assert not duplicated, f"landed more than once: {duplicated[:5]}"


# --- a local lake of recorded tweets (the compactor's tests) -----------------------------------

XAPI = Path(__file__).parent / "data" / "xapi"
AT = datetime(2026, 11, 25, 10, 15, tzinfo=UTC)
HOUR = Hour.of(AT)
PAGE = json.loads((XAPI / "users_id_tweets" / "005.json").read_text())


def timeline_lines(at: datetime = AT) -> list[bytes]:
    """The 100 recorded timeline tweets as landing lines collected at ``at``."""
    return [
        encode_line(
            tweet_record(
                t,
                PAGE["includes"],
                collected_at=at,
                collected_via="poll:users_tweets",
                account={"id": "1", "username": "x"},
            )
        )
        for t in PAGE["data"]
    ]


def ids(lake: Any, table: Any = None, hour: Hour | None = None) -> list[str]:
    """The tweet ids a table holds (all hours, or one), sorted."""
    from compactor import iceberg
    from compactor.tables import TWEETS

    start, end = (
        (hour.start, hour.shift(1).start)
        if hour
        else (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    )
    scanned = lake.table(table or TWEETS).scan(row_filter=iceberg.hour_filter(start, end))
    return sorted(scanned.to_arrow().column("id").to_pylist())


def dag_bag() -> Any:
    """The repo's DAG files as Airflow parses them (no import errors)."""
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag


def compaction_dag() -> Any:
    return dag_bag().get_dag("tweetlake_compaction")


def run_compaction(dag: Any, hour: Hour, config: Path, **conf: Any) -> Any:
    """A run that compacts ``hour`` (named in the ``hour`` param, as the docs show), no grace wait.

    ``dag.test(logical_date=X)``, like ``airflow dags test DAG X``, is a manual run whose data
    interval is the one *ending* at X: the param says which hour without that arithmetic.
    """
    run_conf = {"config_path": str(config), "grace_minutes": 0, "hour": str(hour), **conf}
    return dag.test(logical_date=hour.shift(1).start, run_conf=run_conf)
