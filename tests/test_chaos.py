"""Chaos: the real daemon through kill -9s, API faults, S3 outages and a full spool; then the real
DAG compacts every hour, and the tweets table holds every tweet the simulator emitted, once.

A short run is in the default suite; ``make test-soak`` runs the long one in both modes
(``TWEETLAKE_CHAOS_SECONDS``, default 600) and prints the figures docs/reliability.md records.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from compactor.tables import TWEETS
from simulator.server import Simulator, SimulatorThread
from simulator.world import World
from tests.helpers import (
    Daemon,
    LandedS3,
    all_generated,
    compaction_dag,
    run_compaction,
    sim_get,
    sim_post,
    tweet_id_counts,
    wait_until,
    write_config,
)
from tests.s3faults import FaultyS3
from tweetlake.landing import Hour

pytestmark = pytest.mark.airflow
ACCOUNTS = tuple(f"chaos_{n:02d}" for n in range(30))
API_FAULTS = {
    "500": 0.03,
    "503": 0.01,
    "429": 0.02,
    "malformed": 0.02,
    "502html": 0.01,
    "partial_json": 0.01,
    "meta_list": 0.01,
    "data_string": 0.01,
    "top_list": 0.01,
    "errors_strings": 0.01,
    "bad_tweet_id": 0.01,
    "user_id_list": 0.01,
}
STREAM_FAULTS = ("disconnect", "stall", "truncated", "operational_disconnect", "non_json")
POLL_MAX_S = 2.0  # collect.poll_max_interval_s: every account is read often
SPOOL_CAP = 30_000  # bytes: an outage of a few seconds fills it, so collection must wait for S3


@dataclass
class Scale:
    seconds: float  # at least this long
    min_kills: int  # and at least this many kill -9s
    outage_p: float  # the chance that a move is an S3 outage
    outage_s: tuple[float, float]  # how long one S3 outage lasts
    burst: tuple[int, int]  # tweets posted at once
    drain_s: float  # how long the backlog may take to land once the faults stop


@dataclass
class Figures:
    mode: str
    tweets: int = 0
    kills: int = 0
    stops: int = 0
    api_faults: dict[str, int] = field(default_factory=dict)
    s3_faults: Counter[str] = field(default_factory=Counter)
    stream_faults: Counter[str] = field(default_factory=Counter)
    outages: int = 0
    max_spool_bytes: int = 0
    backpressure: int = 0  # times the full spool paused collection
    recovery_s: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0
    drained_s: float = 0.0  # from the faults stopping to the last tweet landed
    quarantined: int = 0  # tweets sent wrongly shaped when last read: in the errors stream, not the table
    timeline_gaps: int = 0  # reads that found more new tweets than X serves (some unreachable)

    def line(self) -> str:
        recovery = max(self.recovery_s, default=0.0)
        return json.dumps(
            {
                "mode": self.mode,
                "tweets": self.tweets,
                "kill -9": self.kills,
                "SIGTERM": self.stops,
                "api faults": self.api_faults,
                "s3 faulted requests": dict(self.s3_faults),
                "stream faults": dict(self.stream_faults),
                "s3 outages": self.outages,
                "max spool bytes": self.max_spool_bytes,
                "spool full": self.backpressure,
                "max recovery s": round(recovery, 1),
                "peak rss MB": round(self.peak_rss_mb, 1),
                "backlog landed in s": round(self.drained_s, 1),
                "quarantined": self.quarantined,
                "timeline gaps": self.timeline_gaps,
            }
        )


@pytest.fixture
def world_sim():
    """Dozens of accounts with some history, and API faults."""
    world = World(list(ACCOUNTS), seed=23)
    for username in ACCOUNTS:
        world.generate(20, username)
    thread = SimulatorThread(Simulator(world, rate_limit=100_000, window_s=900)).start()
    yield thread
    thread.stop()


@pytest.fixture
def faulty_s3(s3_endpoint):
    proxy = FaultyS3(s3_endpoint).start()
    yield proxy
    proxy.stop()


def _spool_bytes(state: Path) -> int:
    """What the spool holds now; files the uploader deletes meanwhile count as gone."""
    total = 0
    for path in (state / "spool").glob("*"):
        with contextlib.suppress(FileNotFoundError):
            total += path.stat().st_size
    return total


def _rss_mb(daemon: Daemon) -> float:
    """The daemon's peak resident memory so far (VmHWM)."""
    assert daemon.proc
    try:
        status = Path(f"/proc/{daemon.proc.pid}/status").read_text()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM")), 0.0)


class Chaos:
    """The run's moves, each one a step the test takes while the daemon (re)starts around it."""

    def __init__(self, mode: str, scale: Scale, sim: SimulatorThread, s3: FaultyS3, config: Path, log: Path) -> None:
        self.rng = random.Random(int(os.environ.get("TWEETLAKE_CHAOS_SEED", "5")))
        self.figures = Figures(mode)
        self.mode, self.scale, self.sim, self.s3, self.config, self.log = mode, scale, sim, s3, config, log
        self.state = config.parent / "state"
        self.daemon: Daemon | None = None

    def observe(self) -> None:
        self.figures.max_spool_bytes = max(self.figures.max_spool_bytes, _spool_bytes(self.state))
        if self.daemon:
            self.figures.peak_rss_mb = max(self.figures.peak_rss_mb, _rss_mb(self.daemon))

    def pause(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.observe()
            time.sleep(0.1)

    def post(self) -> None:
        sim_post(self.sim.url, "/_sim/generate", {"count": self.rng.randint(*self.scale.burst)})
        if self.mode == "stream" and self.rng.random() < 0.2:
            fault = self.rng.choice(STREAM_FAULTS)
            sim_post(self.sim.url, "/_sim/stream", {"do": fault})
            self.figures.stream_faults[fault] += 1

    def ensure_running(self) -> None:
        if self.daemon is None or self.daemon.proc is None or self.daemon.proc.poll() is not None:
            self.daemon = Daemon(self.config, self.log).start()

    def outage(self) -> None:
        """S3 fails one way for a while; collection goes on into the spool until its cap, then waits."""
        self.s3.set(self.rng.choice(["down", "slowdown", "hang"]))
        self.figures.outages += 1
        end = time.monotonic() + self.rng.uniform(*self.scale.outage_s)
        while time.monotonic() < end:
            self.post()
            self.pause(0.5)
        self.s3.set("up")
        restored = time.monotonic()
        while _spool_bytes(self.state) and time.monotonic() - restored < 120:
            self.pause(0.2)
        self.figures.recovery_s.append(time.monotonic() - restored)

    def stop(self, hard: bool) -> None:
        assert self.daemon
        self.observe()
        if hard:
            self.daemon.kill()
            self.figures.kills += 1
        else:
            self.daemon.terminate(timeout=60)
            self.figures.stops += 1

    def run(self) -> Figures:
        sim_post(self.sim.url, "/_sim/faults", {"probabilities": API_FAULTS, "slow_s": 1.0})
        deadline = time.monotonic() + self.scale.seconds
        while time.monotonic() < deadline or self.figures.kills < self.scale.min_kills:
            self.ensure_running()
            move = self.rng.random()
            if move < self.scale.outage_p:
                self.outage()
            else:
                self.post()
                self.pause(self.rng.uniform(0.3, 2.5))
            if self.rng.random() < 0.5:
                self.stop(hard=self.rng.random() < 0.75)
                self.post()  # posted while nothing listens
        sim_post(self.sim.url, "/_sim/faults", {"probabilities": {}})
        self.s3.set("up")
        self.ensure_running()
        stats = sim_get(self.sim.url, "/_sim/stats")
        self.figures.api_faults = stats["faults_injected"]
        self.figures.s3_faults = self.s3.faulted
        self.figures.backpressure = self.log.read_text().count('"event": "backpressure_on"')
        return self.figures


def _mangled(sim: SimulatorThread) -> set[str]:
    return set(sim_get(sim.url, "/_sim/mangled"))


def _quarantined(landed: LandedS3) -> set[str]:
    """Tweet ids landed raw in the errors stream as objects without the expected shape."""
    ids = set()
    for line in landed.lines("errors"):
        value = line["error"].get("object")
        tweet_id = value.get("id") if isinstance(value, dict) else None
        if isinstance(tweet_id, list) and tweet_id:  # the simulator's user_id_list: [id]
            tweet_id = tweet_id[0]
        if isinstance(tweet_id, str):  # the simulator's bad_tweet_id: id + "²"
            ids.add(tweet_id.rstrip("\u00b2"))
    return ids


def _tweet_ids(landed: LandedS3) -> set[str]:
    return set(tweet_id_counts(landed.lines()))


def _chaos(mode, scale, sim, s3, s3_endpoint, bucket, tmp_path) -> tuple[Figures, set[str]]:
    config = write_config(
        tmp_path / "c.toml",
        base_url=sim.url,
        landing_uri=f"s3://{bucket}/chaos/landing",
        endpoint_url=s3.url,
        state_dir=tmp_path / "state",
        users=ACCOUNTS,
        mode=mode,
        max_records=50,
        max_age_s=0.3,
        poll_interval_s=0.3,
        max_bytes=25_000,
        max_spool_bytes=SPOOL_CAP,
        collect_extra=f"poll_max_interval_s = {POLL_MAX_S}",
        extra=f'[stream]\nstall_timeout_s = 2\n[tables]\nuri = "s3://{bucket}/chaos/tables"\n'
        f'catalog_uri = "sqlite:///{tmp_path}/catalog.db"\nlookback_hours = 6\n',
    )
    sim_post(sim.url, "/_sim/stream", {"keepalive_s": 0.5})
    chaos = Chaos(mode, scale, sim, s3, config, tmp_path / "daemon.log")
    figures = chaos.run()
    generated = all_generated(sim.url)
    stopped = time.monotonic()
    landed = LandedS3(s3_endpoint, bucket, "chaos/landing")
    # every tweet lands, or (only if X sent it wrongly shaped at the read that moved the
    # checkpoint past it) is quarantined raw in the errors stream: accounted for, never dropped
    wait_until(
        lambda: _tweet_ids(landed) | _quarantined(landed) >= generated,
        timeout=scale.drain_s,
        interval=2.0,
        message=f"{len(generated)} tweets landed or quarantined",
    )
    figures.drained_s = time.monotonic() - stopped
    assert chaos.daemon and chaos.daemon.terminate(timeout=60) == 0
    figures.timeline_gaps = chaos.log.read_text().count('"event": "timeline_gap"')
    quarantined = _quarantined(landed) - _tweet_ids(landed)
    assert quarantined <= _mangled(sim), "an intact tweet was quarantined"
    figures.quarantined = len(quarantined)
    expected = generated - quarantined
    figures.tweets = len(expected)
    return figures, expected


def _compact_every_hour(config: Path, s3_endpoint: str, bucket: str) -> list[str]:
    from compactor.filesystems import S3Settings
    from compactor.lake import Lake
    from tweetlake.config import load_config

    landed = LandedS3(s3_endpoint, bucket, "chaos/landing").lines()
    dag = compaction_dag()
    for hour in sorted({Hour.parse(line["collected_at"]) for line in landed}):
        assert run_compaction(dag, hour, config).state == "success"
    s3 = S3Settings(endpoint_url=s3_endpoint, region="us-east-1", access_key="testing", secret_key="testing")
    table = Lake.from_config(load_config(config), s3).table(TWEETS).scan(selected_fields=("id",)).to_arrow()
    return table.column("id").to_pylist()


def _check(mode, scale, world_sim, faulty_s3, s3_endpoint, bucket, tmp_path) -> Figures:
    figures, expected = _chaos(mode, scale, world_sim, faulty_s3, s3_endpoint, bucket, tmp_path)
    # the run never lets a backlog outgrow the 3,200 newest tweets X serves: none is unreachable
    assert figures.timeline_gaps == 0, f"chaos: {figures.line()}"
    ids = _compact_every_hour(tmp_path / "c.toml", s3_endpoint, bucket)
    assert len(ids) == len(set(ids)), "a tweet is in the table twice"
    assert set(ids) == expected
    print(f"\nchaos: {figures.line()}")
    return figures


def test_a_short_chaos_run_loses_and_doubles_nothing(
    tmp_path, world_sim, faulty_s3, s3_endpoint, bucket, airflow_db, aws_conn
):
    scale = Scale(40, 3, 0.25, (2, 5), (5, 40), 180)
    figures = _check("poll", scale, world_sim, faulty_s3, s3_endpoint, bucket, tmp_path)
    assert figures.outages >= 1 and figures.backpressure >= 1


@pytest.mark.soak
@pytest.mark.parametrize("mode", ["poll", "stream"])
def test_chaos_soak(mode, tmp_path, world_sim, faulty_s3, s3_endpoint, bucket, airflow_db, aws_conn):
    seconds = float(os.environ.get("TWEETLAKE_CHAOS_SECONDS", "600"))
    scale = Scale(seconds, 20, 0.08, (15, 120), (20, 200), 1500)
    figures = _check(mode, scale, world_sim, faulty_s3, s3_endpoint, bucket, tmp_path)
    assert figures.outages >= 1 and figures.backpressure >= 1
