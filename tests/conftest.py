"""Shared fixtures: a real S3 endpoint (moto server mode), the X API simulator, daemon processes.

Airflow reads its configuration at import time, so its environment is set here, first.
"""

import os
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_AIRFLOW_HOME = tempfile.mkdtemp(prefix="tweetlake-airflow-")
os.environ.setdefault("AIRFLOW_HOME", _AIRFLOW_HOME)
os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(REPO / "dags")
os.environ["AIRFLOW__CORE__UNIT_TEST_MODE"] = "True"
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.pop("AWS_PROFILE", None)

import logging  # noqa: E402
import uuid  # noqa: E402

import boto3  # noqa: E402
import pytest  # noqa: E402

from simulator.server import Simulator, SimulatorThread  # noqa: E402
from simulator.world import World  # noqa: E402


@pytest.fixture(scope="session")
def s3_endpoint():
    """moto in server mode on a loopback port: S3 over real HTTP."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint):
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


@pytest.fixture
def bucket(s3):
    name = f"tl-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def sim():
    """The X API simulator on a free loopback port, three accounts with some history."""
    world = World(["XDevelopers", "NASA", "tweetlake_demo"], seed=11)
    for username in ("XDevelopers", "NASA", "tweetlake_demo"):
        world.generate(40, username)
    thread = SimulatorThread(Simulator(world, rate_limit=10_000, window_s=900)).start()
    yield thread
    thread.stop()


@pytest.fixture(autouse=True)
def _reap_daemons():
    """A failing test must not leave a daemon running behind it."""
    from tests.helpers import STARTED

    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def lake(tmp_path):
    """A local lake: landing and tables under tmp_path, the default SQLite catalog beside the tables."""
    from compactor.lake import Lake
    from tweetlake.config import build_config

    config = build_config(
        {"landing": {"uri": f"file://{tmp_path}/landing"}, "tables": {"uri": f"file://{tmp_path}/tables"}}, environ={}
    )
    return Lake.from_config(config)


@pytest.fixture
def land(tmp_path):
    """Land a gzip file of ``lines`` under an hour's tweets prefix, named as the streamer names it."""
    import gzip

    from tests.helpers import HOUR
    from tweetlake.landing import landing_key

    def put(lines: list[bytes], seq: int = 0, hour=HOUR, writer: str = "a-1") -> Path:
        path = tmp_path / "landing" / landing_key("tweets", hour, writer, seq)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(b"".join(lines)))
        return path

    return put


@pytest.fixture(scope="session")
def airflow_db():
    """Airflow's metadata database (SQLite under AIRFLOW_HOME), migrated once."""
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.fixture
def aws_conn(s3_endpoint, monkeypatch):
    """Airflow's aws_default connection pointing at moto."""
    import json

    extra = {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}
    connection = {"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}
    monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps(connection))
