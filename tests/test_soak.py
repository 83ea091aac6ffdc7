"""Soak: minutes of random API faults and kill -9s, then an exact comparison. `make test-soak`."""

from __future__ import annotations

import os
import random
import time

import pytest

from tests.helpers import (
    Daemon,
    all_generated,
    assert_landed_exactly_once,
    sim_post,
    wait_landed_s3,
    write_config,
)

pytestmark = pytest.mark.soak


@pytest.mark.parametrize("mode", ["poll", "stream"])
def test_soak_faults_and_kills(tmp_path, sim, s3_endpoint, bucket, mode):
    seconds = float(os.environ.get("TWEETLAKE_SOAK_SECONDS", "300"))
    rng = random.Random(int(os.environ.get("TWEETLAKE_SOAK_SEED", "1")))
    sim_post(
        sim.url,
        "/_sim/faults",
        {"probabilities": {"500": 0.05, "429": 0.03, "malformed": 0.02, "502html": 0.02, "slow": 0.01}, "slow_s": 2.5},
    )
    config = write_config(
        tmp_path / "c.toml",
        base_url=sim.url,
        landing_uri=f"s3://{bucket}/soak/landing",
        endpoint_url=s3_endpoint,
        state_dir=tmp_path / "state",
        max_records=20,
        max_age_s=0.3,
        poll_interval_s=0.2,
        mode=mode,
        extra="[stream]\nstall_timeout_s = 2\n",
    )
    sim_post(sim.url, "/_sim/stream", {"keepalive_s": 0.5})
    log = tmp_path / "daemon.log"
    deadline = time.time() + seconds
    kills = 0
    while time.time() < deadline:
        daemon = Daemon(config, log).start()
        for _ in range(rng.randint(3, 30)):
            sim_post(sim.url, "/_sim/generate", {"count": rng.randint(1, 15)})
            if mode == "stream" and rng.random() < 0.1:
                fault = rng.choice(["disconnect", "stall", "truncated", "operational_disconnect", "non_json"])
                sim_post(sim.url, "/_sim/stream", {"do": fault})
            time.sleep(rng.uniform(0.05, 0.5))
        if rng.random() < 0.7:
            daemon.kill()
            kills += 1
        else:
            assert daemon.terminate() == 0
    sim_post(sim.url, "/_sim/faults", {"probabilities": {}})
    daemon = Daemon(config, log).start()
    expected = all_generated(sim.url)
    wait_landed_s3(s3_endpoint, bucket, "soak/landing", expected, timeout=120)
    assert daemon.terminate() == 0
    assert_landed_exactly_once(s3_endpoint, bucket, "soak/landing", expected)
    print(f"soak ({mode}): {seconds:.0f}s, {kills} kill -9, {len(expected)} tweets landed exactly once")
