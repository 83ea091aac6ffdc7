"""tweepy's real AsyncClient, pointed at the simulator over HTTP by x_api.base_url."""

from __future__ import annotations

import asyncio

import pytest

from simulator.server import Simulator, SimulatorThread
from simulator.world import World
from streamer.credentials import Credentials, Secret
from streamer.health import Health
from streamer.metrics import Metrics
from streamer.xclient import AccountUnavailable, ApiError, XClient
from tests.helpers import sim_get, sim_post
from tweetlake.config import CollectConfig


def _collect(*users: str, history_max_tweets: int = 100) -> CollectConfig:
    return CollectConfig(users=users, poll_interval_s=1, history_max_tweets=history_max_tweets)


def _client(url: str, metrics: Metrics, **kw) -> XClient:
    return XClient(
        url,
        Credentials(bearer_token=Secret("tok-abcdef")),
        metrics,
        Health(600),
        timeout_s=2,
        backoff_base=0.01,
        backoff_cap=0.05,
        **kw,
    )


def test_base_url_reroutes_tweepy_and_pages_a_timeline(sim):
    metrics = Metrics()

    async def go():
        client = _client(sim.url, metrics)
        try:
            users = await client.lookup_users(["NASA"])
            user_id = users["data"][0]["id"]
            first = await client.timeline_page(user_id, account="x", since_id=None, pagination_token=None)
            second = await client.timeline_page(
                user_id, account="x", since_id=None, pagination_token=first["meta"]["next_token"]
            )
            return first, second
        finally:
            await client.close()

    sim_post(sim.url, "/_sim/generate", {"count": 150, "username": "NASA"})
    first, second = asyncio.run(go())
    assert len(first["data"]) == 100 and len(second["data"]) == 90
    assert int(first["data"][-1]["id"]) > int(second["data"][0]["id"])
    assert sim_get(sim.url, "/_sim/stats")["auth_schemes"] == ["Bearer"]
    assert metrics.api_requests.labels("/2/users/:id/tweets", "200")._value.get() == 2


def test_pacing_follows_rate_limit_headers_and_never_hits_429():
    world = World(["NASA"])
    world.generate(10)
    sim = SimulatorThread(Simulator(world, rate_limit=4, window_s=1.5)).start()
    metrics = Metrics()

    async def go():
        client = _client(sim.url, metrics)
        try:
            for _ in range(10):
                await client.timeline_page("11348282", account="x", since_id=None, pagination_token=None)
        finally:
            await client.close()

    try:
        asyncio.run(go())
    finally:
        sim.stop()
    assert metrics.rate_limited.labels("/2/users/:id/tweets")._value.get() == 0
    assert metrics.rate_limit_wait.labels("/2/users/:id/tweets")._value.get() > 0


def test_faults_retry_then_give_up_with_a_clear_error(sim):
    metrics = Metrics()
    sim_post(sim.url, "/_sim/faults", {"next": ["500"] * 4})
    sim_post(sim.url, "/_sim/suspend", {"username": "NASA"})

    async def go():
        client = _client(sim.url, metrics, max_retries=2)
        try:
            with pytest.raises(ApiError, match="server_error"):
                await client.timeline_page("11348282", account="x", since_id=None, pagination_token=None)
            await client.timeline_page(
                "11348282", account="x", since_id=None, pagination_token=None
            )  # 4th 500, then OK
            with pytest.raises(AccountUnavailable):
                await client.timeline_page("19267405", account="x", since_id=None, pagination_token=None)
        finally:
            await client.close()

    asyncio.run(go())
    assert metrics.api_failures.labels("server_error")._value.get() == 4


def test_poll_source_reports_a_timeline_gap_it_cannot_fill():
    """More new tweets than the API's 3,200 cap since the checkpoint: counted, logged, landed as an error."""
    from streamer.ledger import Ledger
    from streamer.poller import PollSource

    world = World(["NASA"])
    world.generate(120)
    sim = SimulatorThread(Simulator(world, rate_limit=10_000, window_s=900)).start()
    metrics = Metrics()

    async def go(tmp):
        queue: asyncio.Queue = asyncio.Queue()
        client = _client(sim.url, metrics)
        ledger = Ledger(tmp / "state.json")
        source = PollSource(
            client, ledger, queue, metrics, Health(600), collect=_collect("NASA", history_max_tweets=3200)
        )
        try:
            [account] = await source.resolve_accounts()
            first = await source.poll_account(account)
            world.generate(3300)
            second = await source.poll_account(account)
        finally:
            await client.close()
        items = []
        while not queue.empty():
            items.append(queue.get_nowait())
        return first, second, items

    import tempfile
    from pathlib import Path

    try:
        with tempfile.TemporaryDirectory() as tmp:
            first, second, items = asyncio.run(go(Path(tmp)))
    finally:
        sim.stop()
    assert first == 120 and second == 3200
    assert metrics.timeline_gaps.labels("NASA")._value.get() == 1
    gaps = [i for i in items if i.stream == "errors" and b"timeline gap" in i.line]
    assert len(gaps) == 1
    tweet_ids = [i.tweet_id for i in items if i.stream == "tweets"]
    assert tweet_ids[:120] == sorted(tweet_ids[:120]) and tweet_ids[120:] == sorted(tweet_ids[120:])
    assert len(set(tweet_ids)) == 3320


def test_a_round_that_fails_midway_hands_on_nothing_and_the_next_round_gets_everything():
    from streamer.ledger import Ledger
    from streamer.poller import PollSource

    world = World(["NASA"])
    world.generate(250)
    sim = SimulatorThread(Simulator(world, rate_limit=10_000, window_s=900)).start()
    metrics = Metrics()

    async def go(tmp):
        queue: asyncio.Queue = asyncio.Queue()
        client = _client(sim.url, metrics, max_retries=1)
        source = PollSource(
            client,
            Ledger(tmp / "state.json"),
            queue,
            metrics,
            Health(600),
            collect=_collect("NASA", history_max_tweets=3200),
        )
        try:
            [account] = await source.resolve_accounts()
            # page 1 succeeds, page 2 fails twice: retries exhausted in the middle of the round
            sim.simulator.faults.scripted.extend(["none", "500", "500"])
            failed = await source.poll_account(account)
            handed_on_after_failure = queue.qsize()
            retried = await source.poll_account(account)
        finally:
            await client.close()
        ids = []
        while not queue.empty():
            item = queue.get_nowait()
            if item.stream == "tweets":
                ids.append(item.tweet_id)
        return failed, handed_on_after_failure, retried, ids

    import tempfile
    from pathlib import Path

    try:
        with tempfile.TemporaryDirectory() as tmp:
            failed, after_failure, retried, ids = asyncio.run(go(Path(tmp)))
    finally:
        sim.stop()
    assert (failed, after_failure) == (0, 0)
    assert retried == 250 and ids == sorted(ids) and len(set(ids)) == 250
    assert metrics.account_errors.labels("NASA", "server_error")._value.get() == 1


def test_unknown_account_is_logged_every_round_but_landed_once(sim):
    from streamer.ledger import Ledger
    from streamer.poller import PollSource

    metrics = Metrics()

    async def go(tmp):
        queue: asyncio.Queue = asyncio.Queue()
        client = _client(sim.url, metrics)
        source = PollSource(
            client,
            Ledger(tmp / "state.json"),
            queue,
            metrics,
            Health(600),
            collect=_collect("NASA", "nobody_here"),
        )
        try:
            first = await source.resolve_accounts()
            second = await source.resolve_accounts()
        finally:
            await client.close()
        return first, second, [queue.get_nowait() for _ in range(queue.qsize())]

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        first, second, items = asyncio.run(go(Path(tmp)))
    assert [a.username for a in first] == [a.username for a in second] == ["NASA"]
    assert len([i for i in items if i.stream == "errors"]) == 1
    assert metrics.account_errors.labels("nobody_here", "lookup")._value.get() == 2
