"""Poll mode's first round: ``collect.history_max_tweets`` bounds how much of an account's past it reads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streamer.collect import PAGE_ATTEMPTS
from streamer.credentials import Credentials, Secret
from streamer.health import Health
from streamer.items import Mark
from streamer.ledger import Ledger
from streamer.metrics import Metrics
from streamer.poller import PollSource
from streamer.schedule import Activity, Schedule
from streamer.xclient import XClient
from tests.helpers import sim_get, sim_post
from tweetlake.config import CollectConfig


def _poll_source(url: str, state: Path, collect: CollectConfig) -> tuple[XClient, PollSource, asyncio.Queue]:
    """A poll source over the real client against ``url``, and the queue it hands items to."""
    metrics = Metrics()
    client = XClient(url, Credentials(bearer_token=Secret("tok-abcdef")), metrics, Health(600), timeout_s=2)
    queue: asyncio.Queue = asyncio.Queue()
    return client, PollSource(client, Ledger(state), queue, metrics, Health(600), collect=collect), queue


async def _rounds(url: str, state: Path, history_max_tweets: int, between=None) -> list[list]:
    """Two rounds for NASA through the real client; ``between`` runs after the first."""
    collect = CollectConfig(users=("NASA",), poll_interval_s=1, history_max_tweets=history_max_tweets)
    client, source, queue = _poll_source(url, state, collect)
    rounds = []
    try:
        [account] = await source.resolve_accounts()
        while not queue.empty():  # the user record of the lookup
            queue.get_nowait()
        for step in range(2):
            await source.poll_account(account)
            rounds.append([queue.get_nowait() for _ in range(queue.qsize())])
            if step == 0 and between:
                between()
    finally:
        await client.close()
    return rounds


def nasa_id(sim) -> str:
    return sim.simulator.world.by_username["nasa"].id


def _tweet_ids(items) -> list[int]:
    return [item.tweet_id for item in items if getattr(item, "stream", None) == "tweets"]


@pytest.fixture
def world_ids(sim):
    def newest(n: int) -> list[int]:
        ids = sorted(int(i) for i in sim.simulator.world.all_ids()["NASA"])
        return ids[-n:] if n else []

    return newest


def test_the_first_round_reads_only_the_newest_history_max_tweets(sim, tmp_path, world_ids):
    [first, second] = asyncio.run(_rounds(sim.url, tmp_path / "state.json", history_max_tweets=10))
    assert _tweet_ids(first) == world_ids(10)
    assert _tweet_ids(second) == []


def test_zero_history_starts_from_now_without_reading_a_tweet(sim, tmp_path, world_ids):
    before = world_ids(40)
    [first, second] = asyncio.run(
        _rounds(sim.url, tmp_path / "state.json", 0, between=lambda: sim.simulator.world.generate(5, "NASA"))
    )
    [mark] = first
    assert isinstance(mark, Mark) and (mark.kind, mark.account_id) == ("checkpoint", nasa_id(sim))
    assert mark.tweet_id > max(before)
    assert _tweet_ids(second) == [i for i in world_ids(45) if i not in before]


def test_a_wrongly_shaped_page_is_asked_again_and_the_read_goes_through(sim, tmp_path, world_ids):
    sim.simulator.world.generate(200, "NASA")  # three pages
    sim_post(sim.url, "/_sim/faults", {"next": ["none", "none", "meta_list", "data_string"]})  # lookup, page 1
    [first, _] = asyncio.run(_rounds(sim.url, tmp_path / "state.json", history_max_tweets=250))
    assert _tweet_ids(first) == world_ids(240)
    landed_raw = [item for item in first if b"answer without the expected shape" in getattr(item, "line", b"")]
    assert len(landed_raw) == 2  # both bodies, in the errors stream


def test_a_page_wrongly_shaped_at_every_attempt_fails_the_read_and_the_next_round_reads_it(sim, tmp_path, world_ids):
    sim.simulator.world.generate(200, "NASA")  # three pages
    sim_post(sim.url, "/_sim/faults", {"next": ["none", "none", *["meta_list"] * PAGE_ATTEMPTS]})
    [first, second] = asyncio.run(_rounds(sim.url, tmp_path / "state.json", history_max_tweets=250))
    assert _tweet_ids(first) == []
    assert _tweet_ids(second) == world_ids(240)


# -- the schedule ---------------------------------------------------------------------------------


def test_adaptive_intervals_follow_the_square_root_of_the_rates_within_the_same_budget():
    schedule = Schedule("adaptive", interval_s=60, min_interval_s=1, max_interval_s=10_000)
    intervals = schedule.intervals({"busy": 16.0, "quiet": 1.0})
    assert intervals["quiet"] == pytest.approx(4 * intervals["busy"])
    assert sum(1 / t for t in intervals.values()) == pytest.approx(2 / 60)  # two accounts, one poll a minute each


def test_adaptive_intervals_stay_within_their_bounds_and_uniform_ignores_rates():
    rates = {"busy": 1.0, **{f"dead_{i}": 1e-9 for i in range(9)}}
    adaptive = Schedule("adaptive", 60, 15, 3600).intervals(rates)
    assert (adaptive["busy"], adaptive["dead_0"]) == (15, 3600)
    assert set(Schedule("uniform", 60, 15, 3600).intervals(rates).values()) == {60}


def test_what_the_rate_limit_has_left_caps_the_budget():
    rates = {"a": 1.0, "b": 1.0}
    assert Schedule("adaptive", 1, 0.1, 1000).intervals(rates, capacity=0.2) == pytest.approx(
        {"a": 2 / 0.18, "b": 2 / 0.18}
    )


def test_a_silent_account_looks_ever_quieter_and_a_busy_one_stays_busy():
    silent, busy = Activity(watched_since=0.0), Activity(watched_since=0.0)
    busy.observe([float(t) for t in range(0, 600, 30)])
    assert silent.rate(600) > silent.rate(6000)
    assert busy.rate(600) == pytest.approx(20.5 / 600) and busy.rate(600) > 10 * silent.rate(600)


def test_busy_accounts_are_polled_more_often_and_no_request_is_refused(sim, tmp_path):
    """A tight rate limit (30 requests per 10 s), four polls in flight, one account posting all the time."""
    from simulator.server import Simulator, SimulatorThread
    from simulator.world import World

    users = ["busy", *(f"quiet_{i}" for i in range(9))]
    tight = SimulatorThread(Simulator(World(users), rate_limit=30, window_s=10)).start()

    async def go():
        collect = CollectConfig(users=tuple(users), poll_interval_s=1.0, history_max_tweets=0, poll_concurrency=4)
        client, source, _ = _poll_source(tight.url, tmp_path / "s.json", collect)
        task = asyncio.create_task(source.run())
        for _ in range(70):  # ~10 s: every quiet account is polled twice, the busy one 7-8 times
            tight.simulator.world.generate(1, "busy")
            await asyncio.sleep(0.15)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()

    try:
        asyncio.run(go())
        stats = sim_get(tight.url, "/_sim/stats")
    finally:
        tight.stop()
    polls = stats["timeline_requests"]
    assert stats["rate_limited"] == 0 and sum(polls.values()) >= 12
    assert polls["busy"] > 2 * max(polls[f"quiet_{i}"] for i in range(9))


async def _resolve(url: str, state: Path, users: tuple[str, ...]) -> list[str]:
    client, source, _ = _poll_source(url, state, CollectConfig(users=users))
    try:
        return [account.username for account in await source.resolve_accounts()]
    finally:
        await client.close()


def test_more_accounts_than_one_lookup_takes_are_resolved_in_several(sim, tmp_path):
    users = (*(f"nobody_{n}" for n in range(120)), "NASA")
    assert asyncio.run(_resolve(sim.url, tmp_path, users)) == ["NASA"]
