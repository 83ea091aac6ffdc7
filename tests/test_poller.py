"""Poll mode's first round: ``collect.history_max_tweets`` bounds how much of an account's past it reads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from streamer.credentials import Credentials, Secret
from streamer.health import Health
from streamer.items import Mark
from streamer.ledger import Ledger
from streamer.metrics import Metrics
from streamer.poller import PollSource
from streamer.xclient import XClient
from tweetlake.config import CollectConfig


async def _rounds(url: str, state: Path, history_max_tweets: int, between=None) -> list[list]:
    """Two rounds for NASA through the real client; ``between`` runs after the first."""
    metrics = Metrics()
    client = XClient(url, Credentials(bearer_token=Secret("tok-abcdef")), metrics, Health(600), timeout_s=2)
    queue: asyncio.Queue = asyncio.Queue()
    source = PollSource(
        client,
        Ledger(state),
        queue,
        metrics,
        Health(600),
        collect=CollectConfig(users=("NASA",), poll_interval_s=1, history_max_tweets=history_max_tweets),
    )
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
