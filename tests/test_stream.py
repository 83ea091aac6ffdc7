"""Stream mode: tweepy's AsyncStreamingClient against the simulator's filtered stream over HTTP.

``Harness`` runs a ``StreamSource`` in-process with its items collected in a list and its
reconnect waits recorded instead of slept (they can be held open to keep the stream down).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streamer.answers import BadShape, Rule, stream_message
from streamer.billing import Bill
from streamer.credentials import Credentials, Secret
from streamer.health import Health
from streamer.items import Item, Mark
from streamer.ledger import Ledger
from streamer.metrics import Metrics
from streamer.reconnect import ReconnectPolicy
from streamer.rules import ids_of, pack, plan
from streamer.spending import Spending, rates_of
from streamer.stream import BACKFILL_VIA, VIA, StreamSource
from streamer.xclient import XClient
from tests.helpers import SECRET
from tweetlake.config import CollectConfig, CostConfig, StreamConfig

STREAM_SAMPLES = Path(__file__).parent / "data" / "xapi" / "tweets_search_stream"


class Harness:
    """A StreamSource on the real client, talking HTTP to the simulator."""

    def __init__(self, sim: Any, state: Path, users: tuple[str, ...], history: int, cost: CostConfig) -> None:
        self.sim = sim
        self.metrics = Metrics()
        self.health = Health(600)
        self.ledger = Ledger.load(state)
        self._billing = state.parent / "billing"
        self.items: list[Item | Mark] = []
        self.waits: list[float] = []
        self.hold = asyncio.Event()  # set: reconnect waits block until released
        self._users = users
        self._history = history
        self._cost = cost

    async def __aenter__(self) -> Harness:
        url = self.sim.url
        self.client = XClient(
            url, Credentials(bearer_token=Secret(SECRET)), self.metrics, self.health, timeout_s=2, backoff_base=0.01
        )
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.spending = Spending(Bill(self._billing, rates_of(self._cost)), self._cost, self.metrics, self.health)
        self.source = StreamSource(
            self.client,
            self.ledger,
            self.queue,
            self.metrics,
            self.health,
            base_url=url,
            bearer=Secret(SECRET),
            collect=CollectConfig(users=self._users, history_max_tweets=self._history),
            stream=StreamConfig(stall_timeout_s=1.0),
            spending=self.spending,
            sleep=self._sleep,
        )
        self._released = asyncio.Event()
        self._tasks = [asyncio.create_task(self.source.run()), asyncio.create_task(self._drain())]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._released.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.close()

    async def _sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.hold.is_set():
            await self._released.wait()
            self._released.clear()
        await asyncio.sleep(0.01)

    def release(self) -> None:
        self.hold.clear()
        self._released.set()

    async def _drain(self) -> None:
        while True:
            self.items.append(await self.queue.get())

    def tweets(self, via: str | None = None) -> list[dict[str, Any]]:
        lines = [json.loads(i.line) for i in self.items if isinstance(i, Item) and i.stream == "tweets"]
        return [line for line in lines if via is None or line["collected_via"] == via]

    def errors(self, via: str = VIA) -> list[dict[str, Any]]:
        lines = [json.loads(i.line) for i in self.items if isinstance(i, Item) and i.stream == "errors"]
        return [line for line in lines if line["collected_via"] == via]

    def count(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0

    async def until(self, predicate: Callable[[], bool], within: float = 15.0, what: str = "") -> None:
        deadline = time.monotonic() + within
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what or predicate}")
            await asyncio.sleep(0.02)

    async def connected(self, times: int = 1) -> None:
        await self.until(
            lambda: self.sim.simulator.stream.connections >= times and self.sim.simulator.stream.connected,
            what=f"connection {times}",
        )

    def post(self, count: int, username: str = "NASA") -> list[str]:
        return self.sim.simulator.world.generate(count, username)


@pytest.fixture
def harness(sim, tmp_path):
    sim.simulator.stream.keepalive_s = 0.2

    def make(users: tuple[str, ...] = ("NASA",), history: int = 3200, budget: float = 0.0) -> Harness:
        return Harness(sim, tmp_path / "state.json", users, history, CostConfig(monthly_budget_usd=budget))

    return make


def ids_of_lines(lines: list[dict[str, Any]]) -> list[str]:
    return [line["tweet"]["id"] for line in lines]


# -- reconnect schedule (pure) ------------------------------------------------------------------


def test_network_errors_reconnect_at_once_then_back_off_linearly_to_16_s():
    policy = ReconnectPolicy()
    waits = [policy.next_wait("network") for _ in range(70)]
    assert waits[:4] == [0.0, 0.25, 0.5, 0.75] and waits[64:] == [16.0] * 6


def test_http_errors_back_off_exponentially_from_5_s_to_320_s():
    policy = ReconnectPolicy()
    assert [policy.next_wait("http") for _ in range(8)] == [5, 10, 20, 40, 80, 160, 320, 320]


def test_429s_back_off_exponentially_from_60_s():
    policy = ReconnectPolicy()
    assert [policy.next_wait("rate_limited") for _ in range(6)] == [60, 120, 240, 480, 960, 960]


def test_a_steady_connection_resets_the_back_off():
    policy = ReconnectPolicy()
    for _ in range(3):
        policy.next_wait("http")
    policy.connected_for(5)
    assert policy.next_wait("http") == 40
    policy.connected_for(3600)
    assert policy.next_wait("http") == 5


# -- rules (pure) -----------------------------------------------------------------------------------


def test_rules_pack_ids_into_as_few_values_as_the_length_allows():
    ids = [str(10**9 + i) for i in range(100)]  # "from:1000000000" is 15 characters, 19 with " OR "
    values = pack(ids, 512)
    assert all(len(v) <= 512 for v in values) and len(values) == 4  # 26 terms fit in 512
    assert sorted(i for v in values for i in ids_of(v)) == sorted(ids)


def _own(rule_id: str, *ids: str, tag: str = "tweetlake") -> Rule:
    return Rule(rule_id, " OR ".join(f"from:{i}" for i in ids), tag)


def test_rules_already_matching_change_nothing():
    todo = plan({"1", "2", "3"}, [_own("10", "1", "2"), _own("11", "3")], tag="tweetlake", max_length=512)
    assert (todo.add, todo.delete, todo.kept) == ((), (), 2)


def test_a_new_account_adds_one_rule_and_a_dropped_one_rewrites_only_its_rule():
    rules = [_own("10", "1", "2"), _own("11", "3")]
    assert plan({"1", "2", "3", "4"}, rules, tag="tweetlake", max_length=512).add == ("from:4",)
    todo = plan({"1", "3"}, rules, tag="tweetlake", max_length=512)
    assert (todo.add, todo.delete, todo.kept) == (("from:1",), ("10",), 1)


def test_foreign_rules_are_never_touched_and_edited_own_rules_are_replaced():
    rules = [Rule("5", "from:1 OR cats", None), Rule("6", "from:2", "other-app"), _own("7", "1")]
    rules.append(Rule("8", "from:2 lang:en", "tweetlake"))
    todo = plan({"1", "2"}, rules, tag="tweetlake", max_length=512)
    assert (todo.add, todo.delete, todo.kept, todo.foreign) == (("from:2",), ("8",), 1, 2)


# -- stream lines (pure) -------------------------------------------------------------------------


def test_recorded_stream_lines_pass_with_their_matching_rules():
    for path in sorted(STREAM_SAMPLES.glob("00[1-7].json")):
        message = stream_message(json.loads(path.read_text()))
        assert len(message.page.tweets) == 1 and message.page.rejected == []
        assert message.matching_rules == [{"id": 1377649934414049282, "tag": None}]


def test_a_recorded_truncated_stream_line_is_not_json():
    with pytest.raises(ValueError):
        json.loads((STREAM_SAMPLES / "008.invalid.txt").read_bytes())


def test_matching_rules_of_the_wrong_shape_make_the_line_a_bad_shape():
    with pytest.raises(BadShape, match="matching_rules"):
        stream_message({"data": {"id": "1", "text": "x"}, "matching_rules": [{"id": "x1"}]})


# -- through tweepy and the simulator -----------------------------------------------------------------


def test_stream_lines_land_as_x_sent_them_with_their_matching_rules(harness, sim):
    async def go():
        async with harness(history=0) as h:
            await h.connected()
            await h.until(lambda: any(isinstance(i, Mark) for i in h.items), what="the history skipped")
            posted = h.post(5)
            await h.until(lambda: len(h.tweets(VIA)) == 5, what="5 stream tweets")
            return h.tweets(VIA), posted, h

    lines, posted, h = asyncio.run(go())
    assert ids_of_lines(lines) == posted
    sent = {t["id"]: t for t in sim.simulator.world.accounts[lines[0]["account"]["id"]].tweets}
    [rule] = sim.simulator.stream.rules.values()
    for line in lines:
        clean = {k: v for k, v in sent[line["tweet"]["id"]].items() if not k.startswith("_")}
        assert line["tweet"] == clean
        assert line["matching_rules"] == [{"id": rule["id"], "tag": "tweetlake"}]
    assert h.count("tweetlake_stream_lines_total", kind="tweet") == 5


def test_history_beyond_history_max_tweets_stays_skipped_after_a_restart(harness, sim):
    async def go():
        async with harness(history=10) as h:
            await h.until(lambda: any(isinstance(i, Mark) for i in h.items), what="the history read")
            return h

    h = asyncio.run(go())
    read = sorted(int(i) for i in ids_of_lines(h.tweets(BACKFILL_VIA)))
    [mark] = [i for i in h.items if isinstance(i, Mark)]
    assert len(read) == 10 and mark.tweet_id == read[0] - 1  # a restart reads on from the oldest tweet read


def test_connect_refusals_follow_the_http_and_429_schedules(harness, sim):
    sim.simulator.stream.connect_faults.extend(["503", "503", "429", "429"])

    async def go():
        async with harness() as h:
            await h.connected()
            return h.waits, h

    waits, h = asyncio.run(go())
    assert waits == [5.0, 10.0, 60.0, 120.0]
    assert h.count("tweetlake_stream_reconnects_total", reason="http_error") == 2
    assert h.count("tweetlake_stream_reconnects_total", reason="rate_limited") == 2


def test_a_second_connection_is_refused_as_too_many_connections(harness, sim):
    import aiohttp

    async def go():
        async with aiohttp.ClientSession() as other:
            url = f"{sim.url}/2/tweets/search/stream"
            async with other.get(url, headers={"Authorization": "Bearer someone-else"}) as held:
                assert held.status == 200
                async with harness() as h:
                    await h.until(lambda: h.waits, what="a refused connect")
                    return h.waits, h

    waits, h = asyncio.run(go())
    assert waits[0] == 60.0
    assert h.count("tweetlake_stream_reconnects_total", reason="too_many_connections") >= 1


def test_a_stall_is_detected_and_the_stream_reconnects_at_once(harness, sim):
    async def go():
        async with harness() as h:
            await h.connected()
            sim.simulator.stream.act("stall")
            await h.connected(times=2)
            return h

    h = asyncio.run(go())
    assert h.count("tweetlake_stream_reconnects_total", reason="stall") == 1 and h.waits == [0.0]


def test_keep_alives_alone_keep_the_stream_healthy(harness):
    async def go():
        async with harness() as h:
            await h.connected()
            await asyncio.sleep(2.5)  # more than twice the stall timeout, with nothing but keep-alives
            return h

    h = asyncio.run(go())
    assert h.waits == [] and h.count("tweetlake_stream_connected") == 1
    assert h.count("tweetlake_stream_idle_seconds") < 1.0
    assert h.health.report({}, spool_files=0)["components"]["stream"]["connected"] is True


def test_unreadable_lines_and_error_objects_are_counted_and_kept_and_the_stream_goes_on(harness, sim):
    async def go():
        async with harness(history=0) as h:
            await h.connected()
            for fault in ("non_json", "error_object"):
                sim.simulator.stream.act(fault)
            await h.until(lambda: len(h.errors()) == 2, what="two error lines")
            h.post(1)
            await h.until(lambda: len(h.tweets(VIA)) == 1, what="a tweet after them")
            return h

    h = asyncio.run(go())
    assert [e["error"].get("title") for e in h.errors()] == ["unreadable stream line", "Invalid Request"]
    assert h.count("tweetlake_stream_lines_total", kind="unreadable") == 1
    assert h.count("tweetlake_stream_lines_total", kind="error") == 1 and h.waits == []


def test_an_operational_disconnect_is_kept_counted_and_reconnected(harness, sim):
    async def go():
        async with harness() as h:
            await h.connected()
            sim.simulator.stream.act("operational_disconnect")
            await h.connected(times=2)
            return h

    h = asyncio.run(go())
    assert h.count("tweetlake_stream_reconnects_total", reason="operational_disconnect") == 1
    assert [e["error"]["title"] for e in h.errors()] == ["operational-disconnect"]


def test_a_truncated_tweet_is_recovered_by_the_backfill_after_reconnecting(harness, sim):
    async def go():
        async with harness(history=0) as h:
            await h.connected()
            await h.until(lambda: any(isinstance(i, Mark) for i in h.items), what="the history skipped")
            sim.simulator.stream.act("truncated")
            await asyncio.sleep(0.1)
            [cut] = h.post(1)
            await h.until(lambda: cut in ids_of_lines(h.tweets(BACKFILL_VIA)), what="the cut tweet recovered")
            return h, cut

    h, cut = asyncio.run(go())
    assert h.count("tweetlake_stream_lines_total", kind="unreadable") == 1
    assert Counter(ids_of_lines(h.tweets()))[cut] == 1
    assert h.count("tweetlake_gap_tweets_recovered_total", account="NASA") == 1


def test_tweets_posted_while_disconnected_are_recovered_once_and_counted(harness, sim):
    async def go():
        async with harness(users=("NASA", "XDevelopers")) as h:
            await h.connected()
            await h.until(lambda: len(h.tweets()) == 80, what="the history of both accounts")
            h.post(3)
            await h.until(lambda: len(h.tweets(VIA)) == 3, what="3 stream tweets")
            h.hold.set()
            sim.simulator.stream.act("disconnect")
            await h.until(lambda: h.waits and not sim.simulator.stream.connected, what="the stream down")
            missed = h.post(4, "NASA") + h.post(2, "XDevelopers")
            h.release()
            await h.connected(times=2)
            await h.until(lambda: len(h.tweets(BACKFILL_VIA)) == 80 + 6, what="the gap recovered")
            h.post(2)
            await h.until(lambda: len(h.tweets(VIA)) == 5, what="streaming again")
            return h, missed

    h, missed = asyncio.run(go())
    assert sorted(ids_of_lines(h.tweets(BACKFILL_VIA)))[-6:] == sorted(missed)
    everything = {i for ids in sim.simulator.world.all_ids().values() for i in ids}
    followed = {i for name in ("NASA", "XDevelopers") for i in sim.simulator.world.all_ids()[name]}
    assert Counter(ids_of_lines(h.tweets())) == Counter(followed) and followed < everything
    assert h.count("tweetlake_gap_tweets_recovered_total", account="NASA") == 4
    assert h.count("tweetlake_gap_tweets_recovered_total", account="XDevelopers") == 2


def test_restarting_with_the_same_accounts_leaves_the_rules_alone(harness, sim):
    async def run_once():
        async with harness(users=("NASA", "XDevelopers"), history=0) as h:
            await h.connected(times=sim.simulator.stream.connections + 1)

    asyncio.run(run_once())
    changes, rules = sim.simulator.stream.rule_changes, dict(sim.simulator.stream.rules)
    asyncio.run(run_once())
    assert (sim.simulator.stream.rule_changes, sim.simulator.stream.rules) == (changes, rules) and changes == 1


def test_a_spent_budget_closes_the_stream_until_a_higher_budget_reopens_it(harness, sim):
    async def go():
        async with harness(history=0, budget=0.2) as h:
            await h.connected()
            await h.until(lambda: any(isinstance(i, Mark) for i in h.items), what="the history skipped")
            posted = h.post(60)
            await h.until(lambda: h.spending.paused and not sim.simulator.stream.connected, what="the pause")
            connections = sim.simulator.stream.connections
            await asyncio.sleep(0.5)
            stayed_closed = sim.simulator.stream.connections == connections
            h.spending.reconfigure(CostConfig(monthly_budget_usd=100))
            await h.connected(times=connections + 1)
            await h.until(lambda: set(posted) <= set(ids_of_lines(h.tweets())), what="everything after the resume")
            return h, posted, stayed_closed

    h, posted, stayed_closed = asyncio.run(go())
    assert stayed_closed and Counter(ids_of_lines(h.tweets())) == Counter(posted)
    assert h.tweets(BACKFILL_VIA), "what was posted during the pause came from the timeline"
