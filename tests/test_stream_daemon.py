"""Stream mode through the real daemon: tweepy's streaming client, the simulator over HTTP, moto's S3."""

from __future__ import annotations

import json
import random
import signal
import time

import pytest

from tests.helpers import (
    Daemon,
    all_generated,
    assert_landed_exactly_once,
    landed_lines_s3,
    sim_config,
    sim_get,
    sim_post,
    wait_landed_s3,
    wait_until,
)

STREAM = """
[stream]
stall_timeout_s = 2
"""


@pytest.fixture
def stream_sim(sim):
    sim_post(sim.url, "/_sim/stream", {"keepalive_s": 0.5})
    return sim


def _config(tmp_path, sim, bucket, endpoint, *, users=("XDevelopers", "NASA", "tweetlake_demo"), extra=""):
    return sim_config(
        tmp_path,
        sim,
        bucket,
        endpoint,
        users=users,
        mode="stream",
        extra=STREAM + extra,
        max_age_s=0.3,
    )


def _connected(daemon: Daemon, times: int = 1) -> None:
    wait_until(
        lambda: sum(e.get("event") == "stream_connected" for e in daemon.events()) >= times,
        timeout=20,
        message=f"stream connected {times} times",
    )


def test_kill_9_restarts_disconnects_and_stalls_land_every_tweet_exactly_once(
    tmp_path, stream_sim, s3_endpoint, bucket
):
    sim, rng = stream_sim, random.Random(11)
    config = _config(tmp_path, sim, bucket, s3_endpoint)
    log = tmp_path / "daemon.log"
    for round_ in range(6):
        daemon = Daemon(config, log).start()
        _connected(daemon, round_ + 1)
        for step in range(rng.randint(3, 8)):
            sim_post(sim.url, "/_sim/generate", {"count": rng.randint(1, 6)})
            if step == 2:
                sim_post(sim.url, "/_sim/stream", {"do": rng.choice(["disconnect", "stall", "truncated"])})
            time.sleep(rng.uniform(0.05, 0.4))
        daemon.kill()
        sim_post(sim.url, "/_sim/generate", {"count": rng.randint(0, 5)})  # posted while nothing listens
    daemon = Daemon(config, log).start()
    expected = all_generated(sim.url)
    wait_landed_s3(s3_endpoint, bucket, "lake/landing", expected, timeout=60)
    assert daemon.terminate() == 0
    assert_landed_exactly_once(s3_endpoint, bucket, "lake/landing", expected)
    vias = {line["collected_via"] for line in landed_lines_s3(s3_endpoint, bucket, "lake/landing")}
    assert vias == {"stream:filtered", "backfill:users_tweets"}


def test_sigterm_closes_the_stream_flushes_and_exits_0_promptly(tmp_path, stream_sim, s3_endpoint, bucket):
    sim = stream_sim
    daemon = Daemon(_config(tmp_path, sim, bucket, s3_endpoint), tmp_path / "daemon.log").start()
    _connected(daemon)
    wait_until(lambda: sim_get(sim.url, "/_sim/stream")["connected"], timeout=10, message="the simulator sees it")
    started = time.monotonic()
    assert daemon.terminate(timeout=20) == 0
    assert time.monotonic() - started < 10
    # The server notices a closed connection at its next keep-alive write (every 0.5 s here).
    wait_until(lambda: not sim_get(sim.url, "/_sim/stream")["connected"], timeout=5, message="the stream closed")


def test_sighup_follows_a_changed_account_list_and_keeps_the_config_when_the_file_is_bad(
    tmp_path, stream_sim, s3_endpoint, bucket
):
    sim = stream_sim
    config = _config(tmp_path, sim, bucket, s3_endpoint, users=("NASA",))
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    _connected(daemon)
    world = sim.simulator.world
    nasa, xdev = world.by_username["nasa"].id, world.by_username["xdevelopers"].id
    assert [r["value"] for r in sim_get(sim.url, "/_sim/stream")["rules"]] == [f"from:{nasa}"]

    config.write_text(config.read_text().replace('users = ["NASA"]', 'users = ["XDevelopers"]'))
    daemon.proc.send_signal(signal.SIGHUP)
    reloaded = daemon.wait_event("config_reloaded")
    assert reloaded["applied"] == ["collect.users"] and reloaded["needs_restart"] == []
    wait_until(
        lambda: [r["value"] for r in sim_get(sim.url, "/_sim/stream")["rules"]] == [f"from:{xdev}"],
        timeout=10,
        message="the rules follow the new list",
    )
    xdev_ids = set(sim_get(sim.url, "/_sim/ids")["XDevelopers"])
    wait_landed_s3(s3_endpoint, bucket, "lake/landing", xdev_ids, timeout=30)  # its history, backfilled

    config.write_text(config.read_text().replace("max_records = 50", 'max_records = "lots"'))
    daemon.proc.send_signal(signal.SIGHUP)
    failed = daemon.wait_event("config_reload_failed")
    assert failed["problems"] == ["batch.max_records: must be an integer"]
    sim_post(sim.url, "/_sim/generate", {"count": 3, "username": "XDevelopers"})
    wait_landed_s3(s3_endpoint, bucket, "lake/landing", set(sim_get(sim.url, "/_sim/ids")["XDevelopers"]), timeout=20)
    _, metrics = daemon.get("/metrics")
    assert 'tweetlake_config_reloads_total{result="invalid"} 1.0' in metrics
    assert 'tweetlake_config_reloads_total{result="ok"} 1.0' in metrics
    assert daemon.terminate() == 0


def test_a_stream_down_past_stale_after_s_is_unhealthy_stream_down(tmp_path, stream_sim, s3_endpoint, bucket):
    sim = stream_sim
    sim_post(sim.url, "/_sim/stream", {"connect": ["503"] * 3})
    config = _config(tmp_path, sim, bucket, s3_endpoint, extra="[health]\nstale_after_s = 1\n")
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    daemon.wait_event("stream_disconnected")
    time.sleep(1.2)
    status, body = daemon.get("/healthz")
    health = json.loads(body)
    assert (status, health["status"]) == (503, "unhealthy") and "stream_down" in health["reasons"]
    assert health["components"]["stream"]["connected"] is False
    _, metrics = daemon.get("/metrics")
    assert "tweetlake_stream_connected 0.0" in metrics and "tweetlake_stream_backoff_seconds 5.0" in metrics
    daemon.kill()
