"""/healthz tells the truth: failing collection, a stream down, stuck uploads; quiet and pauses are not failure."""

from __future__ import annotations

import json

import pytest

from streamer.health import Health
from tests.helpers import Daemon, free_port, sim_post, wait_until, write_config

ALIVE = {"source": True, "uploader": True}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def health(clock) -> Health:
    return Health(stale_after_s=60, clock=clock)


def _status(health: Health, spool_files: int = 0, alive=ALIVE) -> tuple[str, list[str]]:
    body = health.report(alive, spool_files=spool_files)
    return body["status"], body["reasons"]


def test_quiet_is_healthy(health, clock):
    clock.now += 3600
    assert _status(health) == ("ok", [])


def test_failing_since_start_turns_unhealthy_after_stale_after_s(health, clock):
    clock.now += 30
    health.collection(ok=False)
    clock.now += 29
    assert _status(health) == ("ok", [])
    clock.now += 1
    assert _status(health) == ("unhealthy", ["api_failing"])


def test_failing_counts_from_the_first_failure_after_a_success(health, clock):
    health.collection(ok=True)
    clock.now += 500
    health.collection(ok=False)
    clock.now += 59
    health.collection(ok=False)
    assert _status(health) == ("ok", [])
    clock.now += 1
    assert _status(health) == ("unhealthy", ["api_failing"])
    health.collection(ok=True)
    assert _status(health) == ("ok", [])


def test_a_stream_down_too_long_is_unhealthy_and_a_connected_quiet_one_is_not(health, clock):
    health.stream(connected=True)
    clock.now += 3600
    assert _status(health) == ("ok", [])
    health.stream(connected=False)
    clock.now += 60
    assert _status(health) == ("unhealthy", ["stream_down"])


def test_uploads_failing_matter_only_while_something_waits_in_the_spool(health, clock):
    health.upload(ok=False)
    clock.now += 120
    assert _status(health, spool_files=0) == ("ok", [])
    assert _status(health, spool_files=3) == ("unhealthy", ["upload_failing"])


def test_a_pause_is_reported_and_stops_staleness_from_being_judged(health, clock):
    health.collection(ok=False)
    health.pause("budget_exhausted", True)
    clock.now += 3600
    assert _status(health) == ("paused", ["budget_exhausted"])
    health.pause("budget_exhausted", False)
    assert _status(health) == ("unhealthy", ["api_failing"])


def test_warnings_never_change_the_status(health):
    health.warn("budget_80pct", True)
    body = health.report(ALIVE, spool_files=0)
    assert (body["status"], body["warnings"]) == ("ok", ["budget_80pct"])


def test_a_dead_component_is_unhealthy(health):
    assert _status(health, alive={"source": False, "uploader": True}) == ("unhealthy", ["component_failed"])


def _health(daemon: Daemon) -> tuple[int, dict]:
    status, body = daemon.get("/healthz")
    return status, json.loads(body)


def test_the_daemon_reports_api_failing_while_every_request_fails_and_recovers(tmp_path, sim, s3_endpoint, bucket):
    sim_post(sim.url, "/_sim/faults", {"probabilities": {"500": 1.0}})
    config = write_config(
        tmp_path / "c.toml",
        base_url=sim.url,
        landing_uri=f"s3://{bucket}/landing",
        endpoint_url=s3_endpoint,
        state_dir=tmp_path / "state",
        extra="[health]\nstale_after_s = 2\n",
    )
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    wait_until(lambda: _health(daemon)[0] == 503, timeout=20, message="unhealthy while the API fails")
    assert _health(daemon)[1]["reasons"] == ["api_failing"]
    sim_post(sim.url, "/_sim/faults", {"probabilities": {}})
    wait_until(lambda: _health(daemon)[0] == 200, timeout=30, message="healthy once the API answers")
    assert daemon.terminate() == 0


def test_the_daemon_reports_upload_failing_while_s3_is_down(tmp_path, sim, bucket):
    config = write_config(
        tmp_path / "c.toml",
        base_url=sim.url,
        landing_uri=f"s3://{bucket}/landing",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        state_dir=tmp_path / "state",
        extra="[health]\nstale_after_s = 2\n",
        shutdown_timeout_s=1,
    )
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    wait_until(lambda: _health(daemon)[0] == 503, timeout=30, message="unhealthy while uploads fail")
    _, body = _health(daemon)
    assert body["reasons"] == ["upload_failing"] and body["components"]["spool"]["files"] >= 1
    daemon.terminate()
