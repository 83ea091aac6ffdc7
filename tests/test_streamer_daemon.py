"""The real daemon process against the simulator (tweepy over HTTP) and moto's S3 server."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

from tests.helpers import (
    SECRET,
    Daemon,
    all_generated,
    assert_landed_exactly_once,
    free_port,
    landed_lines_s3,
    sim_config,
    sim_get,
    sim_post,
    tweet_id_counts,
    wait_landed_s3,
    wait_until,
    write_config,
)


def test_collects_into_s3_exactly_once_and_flushes_on_sigterm(tmp_path, sim, s3_endpoint, bucket):
    config = sim_config(tmp_path, sim, bucket, s3_endpoint)
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    daemon.wait_event("poll_done")
    sim_post(sim.url, "/_sim/generate", {"count": 30})
    expected = all_generated(sim.url)
    wait_landed_s3(s3_endpoint, bucket, "lake/landing", expected, timeout=30)
    status, body = daemon.get("/healthz")
    health = json.loads(body)
    assert (status, health["status"], health["reasons"]) == (200, "ok", [])
    assert all(c["alive"] for name, c in health["components"].items() if name != "spool")
    _, metrics = daemon.get("/metrics")
    assert 'tweetlake_tweets_landed_total{account="' in metrics and SECRET not in metrics
    assert 'tweetlake_api_requests_total{endpoint="/2/users/:id/tweets",status="200"}' in metrics
    # tweets still in the open batch at SIGTERM are flushed, not dropped
    sim_post(sim.url, "/_sim/generate", {"count": 7, "username": "NASA"})
    nasa = len(sim_get(sim.url, "/_sim/ids")["NASA"])
    collected = f'tweetlake_tweets_collected_total{{account="NASA"}} {float(nasa)}'
    wait_until(lambda: collected in daemon.get("/metrics")[1], timeout=20, message="the 7 new tweets collected")
    started = time.monotonic()
    assert daemon.terminate() == 0
    assert time.monotonic() - started < 15
    lines = landed_lines_s3(s3_endpoint, bucket, "lake/landing")
    counts = tweet_id_counts(lines)
    assert set(counts) == all_generated(sim.url)
    assert max(counts.values()) == 1, "a tweet landed twice"
    line = lines[0]
    assert set(line) >= {"v", "tweet", "includes", "collected_at", "collected_via", "account"}
    assert line["collected_via"] == "poll:users_tweets"
    assert line["tweet"]["author_id"] in {u["id"] for u in line["includes"]["users"]}
    # partial API errors (deleted reply targets) are kept in the errors stream
    errors = landed_lines_s3(s3_endpoint, bucket, "lake/landing", stream="errors")
    assert any(e["error"].get("title") == "Not Found Error" for e in errors)
    # the secret appears nowhere: logs, landing files, state
    log_text = daemon.log_path.read_text()
    assert SECRET not in log_text
    assert all(SECRET not in str(x) for x in lines + errors)
    assert SECRET not in (tmp_path / "state" / "state.json").read_text()
    events = {e.get("event") for e in daemon.events()}
    assert {"started", "poll_done", "batch_spooled", "batch_uploaded", "stopping", "stopped"} <= events


def _catches_sigterm(pid: int) -> bool:
    """Whether the process has a SIGTERM handler yet (``SigCgt`` in /proc/PID/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught, 16) & (1 << (signal.SIGTERM - 1)))


def test_sigterm_during_start_up_exits_0(tmp_path, sim, s3_endpoint, bucket):
    daemon = Daemon(sim_config(tmp_path, sim, bucket, s3_endpoint), tmp_path / "daemon.log").start()
    assert daemon.proc
    # the first moment SIGTERM is ours to handle (the interpreter's own start is not), long before the service is up
    wait_until(lambda: _catches_sigterm(daemon.proc.pid), timeout=20, interval=0.005, message="SIGTERM handled")
    assert daemon.terminate() == 0


def test_kill_9_at_random_points_loses_and_duplicates_nothing(tmp_path, sim, s3_endpoint, bucket):
    rng = random.Random(20261125)
    config = sim_config(tmp_path, sim, bucket, s3_endpoint, max_records=7, max_age_s=0.2, poll_interval_s=0.1)
    log = tmp_path / "daemon.log"
    for _round in range(5):
        daemon = Daemon(config, log).start()
        sim_post(sim.url, "/_sim/generate", {"count": rng.randint(20, 60)})
        time.sleep(rng.uniform(0.3, 2.0))
        daemon.kill()
    daemon = Daemon(config, log).start()
    expected = all_generated(sim.url)
    wait_landed_s3(s3_endpoint, bucket, "lake/landing", expected, timeout=40)
    assert daemon.terminate() == 0
    assert_landed_exactly_once(s3_endpoint, bucket, "lake/landing", expected)


def test_s3_outage_spools_applies_backpressure_and_recovers(tmp_path, sim, s3_endpoint, bucket):
    """Landing points at a port where S3 is down; later the same daemon's spool drains to S3."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    outage_endpoint = f"http://127.0.0.1:{port}"
    config = sim_config(
        tmp_path, sim, bucket, outage_endpoint, max_records=10, max_bytes=20_000, max_spool_bytes=20_000
    )
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    daemon.wait_event("upload_failed")
    daemon.wait_event("backpressure_on")
    _, metrics = daemon.get("/metrics")
    assert "tweetlake_backpressure 1.0" in metrics
    assert "tweetlake_upload_failures_total" in metrics
    _, body = daemon.get("/healthz")
    health = json.loads(body)
    spool = health["components"]["spool"]
    assert spool["backpressure"] is True and spool["files"] >= 1 and spool["bytes"] > 0
    assert "spool_full" in health["warnings"]
    # S3 comes back on the same port (moto keeps its state in-process: the bucket exists there too)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        sim_post(sim.url, "/_sim/generate", {"count": 15})
        expected = all_generated(sim.url)
        wait_landed_s3(outage_endpoint, bucket, "lake/landing", expected, timeout=60)
        assert daemon.terminate() == 0
        assert_landed_exactly_once(outage_endpoint, bucket, "lake/landing", expected)
        assert "backpressure_off" in {e.get("event") for e in daemon.events()}
    finally:
        server.stop()


def test_api_faults_are_retried_counted_and_lose_nothing(tmp_path, sim, s3_endpoint, bucket):
    # "slow" stalls past the client's 2 s timeout: a network-level failure
    sim_post(sim.url, "/_sim/faults", {"next": ["429", "500", "502html", "malformed", "slow", "429"], "slow_s": 2.5})
    sim_post(sim.url, "/_sim/suspend", {"username": "tweetlake_demo"})
    config = sim_config(tmp_path, sim, bucket, s3_endpoint)
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    ids = {k: set(v) for k, v in sim_get(sim.url, "/_sim/ids").items()}
    expected = ids["XDevelopers"] | ids["NASA"]
    wait_landed_s3(s3_endpoint, bucket, "lake/landing", expected, timeout=60)
    _, metrics = daemon.get("/metrics")
    assert daemon.terminate() == 0
    for needle in (
        "tweetlake_rate_limited_total{endpoint=",
        'kind="server_error"',
        'kind="malformed_response"',
        'kind="network"',
        'tweetlake_account_errors_total{account="tweetlake_demo"',
    ):
        assert needle in metrics, needle
    events = [e.get("event") for e in daemon.events()]
    assert "rate_limited" in events and "api_retry" in events and "account_unavailable" in events
    # the suspended account's tweets cannot land; every other one must, once
    assert_landed_exactly_once(s3_endpoint, bucket, "lake/landing", expected)


def test_full_disk_is_logged_retried_counted_and_loses_nothing(tmp_path, sim, s3_endpoint, bucket):
    """The state directory is a 64 KiB tmpfs and S3 is down: spool writes hit ENOSPC for real."""
    import subprocess

    from moto.server import ThreadedMotoServer

    disk = tmp_path / "state"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True)
    assert mounted.returncode == 0, f"this test needs root to mount a small tmpfs: {mounted.stderr!r}"
    server = None
    try:
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}"
        config = sim_config(tmp_path, sim, bucket, endpoint, max_records=20)
        daemon = Daemon(config, tmp_path / "daemon.log").start()
        sim_post(sim.url, "/_sim/generate", {"count": 600})
        daemon.wait_event("spool_write_failed", timeout=30)
        _, metrics = daemon.get("/metrics")
        import re

        failures = re.search(r"^tweetlake_spool_write_failures_total (\S+)$", metrics, re.M)
        assert failures and float(failures.group(1)) >= 1
        # space comes back, then S3 does
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        expected = all_generated(sim.url)
        wait_landed_s3(endpoint, bucket, "lake/landing", expected, timeout=60)
        assert daemon.terminate() == 0
        assert_landed_exactly_once(endpoint, bucket, "lake/landing", expected)
    finally:
        if server:
            server.stop()
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_wrongly_shaped_answers_land_as_errors_and_collection_goes_on(tmp_path, sim, s3_endpoint, bucket):
    from simulator.server import SHAPE_FAULTS

    sim_post(sim.url, "/_sim/faults", {"next": ["user_id_list", *[f for f in SHAPE_FAULTS if f != "user_id_list"]]})
    config = sim_config(tmp_path, sim, bucket, s3_endpoint)
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    wait_until(lambda: sim_get(sim.url, "/_sim/stats")["faults_injected"].keys() >= set(SHAPE_FAULTS), timeout=30)
    sim_post(sim.url, "/_sim/generate", {"count": 12})
    served = {i for ids in sim_get(sim.url, "/_sim/served").values() for i in ids}
    wait_landed_s3(s3_endpoint, bucket, "lake/landing", served, timeout=30)
    _, metrics = daemon.get("/metrics")
    assert daemon.terminate() == 0
    served = {i for ids in sim_get(sim.url, "/_sim/served").values() for i in ids}
    assert_landed_exactly_once(s3_endpoint, bucket, "lake/landing", served)
    errors = landed_lines_s3(s3_endpoint, bucket, "lake/landing", stream="errors")
    reasons = {e["error"].get("reason") for e in errors}
    assert {
        "tweet.id is not a numeric id string",
        "tweet.referenced_tweets is not a list of {type, id} objects",
        "tweet.entities.mentions is not a list of objects",
        "meta is not an object",
        "data is not a list",
        "the answer is not a JSON object",
        "user.id is not a numeric id string",
    } <= reasons
    assert {"title": "malformed error entry", "value": "something went wrong"} in [e["error"] for e in errors]
    assert 'tweetlake_api_failures_total{kind="bad_shape"}' in metrics
    assert "component_failed" not in {e.get("event") for e in daemon.events()}


def test_a_second_daemon_on_the_same_state_dir_exits_2_naming_the_dir_and_the_holder(
    tmp_path, sim, s3_endpoint, bucket
):
    import subprocess
    import sys

    from tests.helpers import REPO

    config = sim_config(tmp_path, sim, bucket, s3_endpoint)
    first = Daemon(config, tmp_path / "daemon.log").start()
    first.wait_event("started")
    second = subprocess.run(
        [sys.executable, "-m", "streamer", "run", "--config", str(config)],
        cwd=REPO,
        env=first.env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert second.returncode == 2
    assert second.stderr.strip().splitlines() == [
        f"tweet-streamer: state.dir {tmp_path / 'state'} is in use by another tweet-streamer (pid {first.proc.pid})"
    ]
    assert first.proc.poll() is None and first.terminate() == 0


def test_two_daemons_with_the_same_writer_id_never_overwrite_each_others_files(tmp_path, sim, s3_endpoint, bucket):
    """Separate state dirs, one landing zone, one writer_id: every batch of both lands under its own key."""
    daemons = []
    for name in ("a", "b"):
        config = write_config(
            tmp_path / f"{name}.toml",
            base_url=sim.url,
            landing_uri=f"s3://{bucket}/lake/landing",
            endpoint_url=s3_endpoint,
            state_dir=tmp_path / f"state-{name}",
            max_records=5,
        )
        daemons.append(Daemon(config, tmp_path / f"{name}.log").start())
    expected = all_generated(sim.url)
    wait_until(
        lambda: (
            all(c == 2 for c in tweet_id_counts(landed_lines_s3(s3_endpoint, bucket, "lake/landing")).values())
            and set(tweet_id_counts(landed_lines_s3(s3_endpoint, bucket, "lake/landing"))) == expected
        ),
        timeout=40,
        message="both daemons landed every tweet",
    )
    assert [d.terminate() for d in daemons] == [0, 0]
    counts = tweet_id_counts(landed_lines_s3(s3_endpoint, bucket, "lake/landing"))
    assert set(counts) == expected and set(counts.values()) == {2}  # one copy per daemon, none lost
    writers = {d.wait_event("started")["writer"] for d in daemons}
    assert len(writers) == 2 and all(w.startswith("test-writer-") for w in writers)
