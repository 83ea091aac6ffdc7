"""Cost: X's billing model, the persisted bill, the budget and X's own cap and figures."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from simulator.server import Simulator, SimulatorThread
from simulator.world import World
from streamer.answers import BadShape, x_usage
from streamer.billing import MEDIA, POST, USER, Bill, billed_resources, period_start
from streamer.credentials import Credentials, Secret
from streamer.estimate import estimate, per_post_usd
from streamer.health import Health
from streamer.metrics import Metrics
from streamer.spending import Spending, rates_of
from streamer.xclient import XClient
from tests.helpers import SECRET, Daemon, all_generated, sim_config, sim_get, sim_post, wait_landed_s3, wait_until
from tweetlake.config import CostConfig

PAGE = json.loads((Path(__file__).parent / "data" / "xapi" / "users_id_tweets" / "005.json").read_text())
NOON = datetime(2026, 11, 25, 12, tzinfo=UTC)


class Clock:
    def __init__(self, at: datetime = NOON) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def bill(tmp_path, clock):
    return Bill(tmp_path / "billing", rates_of(CostConfig()), clock)


def spending_for(bill: Bill, **cost) -> tuple[Spending, Metrics, Health]:
    metrics, health = Metrics(), Health(600)
    return Spending(bill, CostConfig(**cost), metrics, health), metrics, health


def posts(*ids: str) -> dict[str, set[str]]:
    return {POST: set(ids)}


# -- the billing model --------------------------------------------------------------------------


def test_a_timeline_page_bills_its_posts_referenced_posts_users_and_media():
    found = billed_resources(PAGE, POST)
    includes = PAGE["includes"]
    assert found[POST] == {t["id"] for t in PAGE["data"]} | {t["id"] for t in includes["tweets"]}
    assert found[USER] == {u["id"] for u in includes["users"]}
    assert found[MEDIA] == {m["media_key"] for m in includes["media"]}


def test_a_user_lookup_bills_its_users():
    assert billed_resources({"data": [{"id": "1"}, {"id": "2"}]}, USER) == {POST: set(), USER: {"1", "2"}, MEDIA: set()}


@pytest.mark.parametrize("answer", [None, [], "x", {"data": "x", "includes": []}, {"data": [1, {"id": []}]}])
def test_answers_of_any_shape_bill_what_can_be_read_and_never_raise(answer):
    assert billed_resources(answer, POST) == {POST: set(), USER: set(), MEDIA: set()}


def test_an_id_is_billed_once_a_day(bill, clock):
    first = bill.charge(posts("1", "2"), "NASA")
    again = bill.charge(posts("2", "3"), "NASA")
    clock.at += timedelta(days=1)
    next_day = bill.charge(posts("1"), "NASA")
    assert (first.counts, again.counts, next_day.counts) == ({POST: 2}, {POST: 1}, {POST: 1})
    assert bill.spent_usd == pytest.approx(4 * 0.005) and bill.posts == 4


def test_a_restart_keeps_the_month_and_todays_ids(tmp_path, bill, clock):
    bill.charge(posts("1", "2"), "NASA")
    bill.charge({USER: {"9"}}, "")
    again = Bill(tmp_path / "billing", rates_of(CostConfig()), clock)
    assert again.charge(posts("1", "5"), "NASA").counts == {POST: 1}
    assert again.spent_usd == pytest.approx(3 * 0.005 + 0.010) and again.posts == 3


def test_a_new_billing_month_starts_from_zero(tmp_path, bill, clock):
    bill.charge(posts("1"), "NASA")
    clock.at = datetime(2026, 12, 1, 0, 5, tzinfo=UTC)
    assert Bill(tmp_path / "billing", rates_of(CostConfig()), clock).spent_usd == 0.0


@pytest.mark.parametrize(
    ("today", "reset_day", "start"),
    [
        (date(2026, 11, 25), None, date(2026, 11, 1)),
        (date(2026, 11, 25), 10, date(2026, 11, 10)),
        (date(2026, 11, 5), 10, date(2026, 10, 10)),
        (date(2027, 3, 3), 31, date(2027, 2, 28)),
    ],
)
def test_the_billing_month_starts_on_xs_reset_day(today, reset_day, start):
    assert period_start(today, reset_day) == start


def test_a_torn_last_line_is_skipped(tmp_path, bill, clock):
    bill.charge(posts("1"), "NASA")
    bill.close()
    with open(tmp_path / "billing" / "2026-11-25.tsv", "a") as handle:
        handle.write("post_read\t2\t0.0")
    assert Bill(tmp_path / "billing", rates_of(CostConfig()), clock).posts == 1


def test_a_full_disk_keeps_the_bill_in_memory_and_writes_it_when_space_returns(tmp_path, bill, clock, monkeypatch):
    import errno

    real_file = Bill._file
    full = {"yes": True}

    def file_or_full_disk(self):
        if full["yes"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_file(self)

    monkeypatch.setattr(Bill, "_file", file_or_full_disk)
    bill.charge(posts("1", "2"), "NASA")
    assert bill.save_error == "OSError: No space left on device" and bill.posts == 2
    full["yes"] = False
    bill.sync()
    assert bill.save_error is None
    assert Bill(tmp_path / "billing", rates_of(CostConfig()), clock).posts == 2


# -- the budget ------------------------------------------------------------------------------------


def test_eighty_percent_of_the_budget_is_a_warning(bill):
    spending, metrics, health = spending_for(bill, monthly_budget_usd=0.05)
    spending.record({"data": [{"id": str(i)} for i in range(8)]}, POST, "NASA")
    assert health.report({}, spool_files=0)["warnings"] == ["budget_80pct"]
    assert metrics.registry.get_sample_value("tweetlake_budget_remaining_usd") == pytest.approx(0.01)
    assert not spending.paused


def test_a_spent_budget_pauses_reading_until_a_higher_budget_is_reloaded(bill):
    spending, metrics, health = spending_for(bill, monthly_budget_usd=0.05)

    async def go():
        spending.record({"data": [{"id": str(i)} for i in range(10)]}, POST, "NASA")
        waiting = asyncio.create_task(spending.may_read())
        await asyncio.sleep(0.05)
        blocked, report = not waiting.done(), health.report({}, spool_files=0)
        spending.reconfigure(CostConfig(monthly_budget_usd=1.0))
        await asyncio.wait_for(waiting, 1)
        return blocked, report

    blocked, report = asyncio.run(go())
    assert blocked and (report["status"], report["reasons"]) == ("paused", ["budget_exhausted"])
    assert metrics.registry.get_sample_value("tweetlake_collection_paused", {"reason": "budget"}) == 0
    assert health.report({}, spool_files=0)["status"] == "ok"


class _BudgetSpentDuringTheWait:
    """A request's rate-limit wait (not slept here): meanwhile another answer spends the budget."""

    def __init__(self, spending: Spending) -> None:
        self.spending = spending
        self.waits = 0

    async def __call__(self, seconds: float) -> None:
        self.waits += 1
        if self.waits == 1:
            self.spending.reconfigure(CostConfig(monthly_budget_usd=0.000_001))
        await asyncio.sleep(0)


def test_a_request_waiting_for_its_rate_limit_turn_when_the_budget_runs_out_waits_for_the_resume(bill):
    world = World(["NASA"])
    world.generate(5)
    sim = SimulatorThread(Simulator(world, rate_limit=3, window_s=60)).start()  # the second request waits
    spending, _, _ = spending_for(bill, monthly_budget_usd=1.0)
    nasa = world.by_username["nasa"].id

    def requests() -> int:
        return sim_get(sim.url, "/_sim/stats")["requests"]

    async def go() -> tuple[bool, int, int]:
        client = XClient(
            sim.url,
            Credentials(bearer_token=Secret(SECRET)),
            Metrics(),
            Health(600),
            sleep=_BudgetSpentDuringTheWait(spending),
            spending=spending,
        )
        page = lambda: client.timeline_page(nasa, account="NASA", since_id=None, pagination_token=None)  # noqa: E731
        try:
            await page()
            sent = requests()
            second = asyncio.create_task(page())
            await asyncio.sleep(0.5)
            held, during = not second.done(), requests() - sent
            spending.reconfigure(CostConfig(monthly_budget_usd=1.0))
            await asyncio.wait_for(second, 5)
            return held, during, requests() - sent
        finally:
            await client.close()

    try:
        assert asyncio.run(go()) == (True, 0, 1)  # held at the gate, nothing sent, then sent once
    finally:
        sim.stop()


def test_on_budget_warn_keeps_reading(bill):
    spending, _, health = spending_for(bill, monthly_budget_usd=0.01, on_budget="warn")
    spending.record({"data": [{"id": str(i)} for i in range(10)]}, POST, "NASA")
    assert not spending.paused and health.report({}, spool_files=0)["status"] == "ok"


def test_xs_usage_cap_pauses_until_its_reset_day(bill, clock):
    spending, _, health = spending_for(bill)
    spending.x_usage({"project_usage": 10, "project_cap": 2_000_000, "cap_reset_day": 28})
    spending.usage_capped("Usage cap exceeded: Monthly product cap")
    assert health.report({}, spool_files=0)["reasons"] == ["x_usage_cap"]
    clock.at = datetime(2026, 11, 27, 23, tzinfo=UTC)
    spending.tick()
    assert spending.paused
    clock.at = datetime(2026, 11, 28, 0, 1, tzinfo=UTC)
    spending.tick()
    assert not spending.paused


def test_xs_figures_are_shown_and_a_divergence_is_logged(bill, capsys):
    spending, metrics, _ = spending_for(bill)
    spending.record({"data": [{"id": str(i)} for i in range(10)]}, POST, "NASA")
    spending.x_usage({"project_usage": 20, "project_cap": 100, "cap_reset_day": 1})
    assert metrics.registry.get_sample_value("tweetlake_x_usage", {"field": "project_usage"}) == 20
    assert "usage_diverged" in capsys.readouterr().out


@pytest.mark.parametrize(
    "answer",
    [{"data": {"project_usage": "x", "project_cap": "1", "cap_reset_day": 1}}, {"data": []}, [], {"data": {}}],
)
def test_a_usage_answer_of_the_wrong_shape_is_a_bad_shape(answer):
    with pytest.raises(BadShape):
        x_usage(answer)


# -- estimates --------------------------------------------------------------------------------------


def test_the_estimate_follows_the_profile_and_the_expansions():
    profile = {"username": "a", "created_at": "2026-10-26T12:00:00.000Z", "public_metrics": {"tweet_count": 300}}
    cost = CostConfig()
    full = estimate(profile, cost, history_max_tweets=100, expansions="full", now=NOON)
    lean = estimate(profile, cost, history_max_tweets=100, expansions="lean", now=NOON)
    assert (full.posts_per_day, full.history_posts) == (10.0, 100)
    assert full.history_usd == pytest.approx(100 * per_post_usd(cost, "full"))
    assert lean.month_usd == pytest.approx(30 * (10 * 0.005 + 0.010)) and lean.month_usd < full.month_usd


# -- through the daemon, the simulator and moto's S3 --------------------------------------------------


def _spend(metrics_text: str) -> dict[str, float]:
    out = {POST: 0.0, USER: 0.0, MEDIA: 0.0}
    for family in text_string_to_metric_families(metrics_text):
        if family.name == "tweetlake_x_api_spend_usd":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    out[sample.labels["kind"]] += sample.value
    return out


def _config(tmp_path, sim, bucket, endpoint, cost: str = "", **kw):
    return sim_config(tmp_path, sim, bucket, endpoint, extra=f"[cost]\n{cost}\n", **kw)


def test_our_spend_equals_the_simulators_bill_across_a_restart(tmp_path, sim, s3_endpoint, bucket):
    config = _config(tmp_path, sim, bucket, s3_endpoint)
    first = Daemon(config, tmp_path / "daemon.log").start()
    sim_post(sim.url, "/_sim/generate", {"count": 30})
    wait_landed_s3(s3_endpoint, bucket, "lake/landing", all_generated(sim.url))
    before = _spend(first.get("/metrics")[1])
    assert first.terminate() == 0
    sim_post(sim.url, "/_sim/generate", {"count": 20})
    second = Daemon(config, tmp_path / "daemon.log").start()
    wait_landed_s3(s3_endpoint, bucket, "lake/landing", all_generated(sim.url))
    after = _spend(second.get("/metrics")[1])
    assert second.terminate() == 0
    billed = sim_get(sim.url, "/_sim/bill")
    rates = {POST: 0.005, USER: 0.010, MEDIA: 0.005}
    assert {k: round(before[k] + after[k], 9) for k in rates} == {k: round(billed[k] * rates[k], 9) for k in rates}
    assert billed[POST] > 150 and billed[USER] > 3


def _settled_requests(url: str) -> int:
    """The simulator's request count once it stops moving: the polls already on the wire when
    reading paused (one per account, sent together) arrive a few milliseconds after the event."""
    before = sim_get(url, "/_sim/stats")["requests"]
    for _ in range(30):
        time.sleep(0.3)
        now = sim_get(url, "/_sim/stats")["requests"]
        if now == before:
            return now
        before = now
    raise AssertionError("the simulator kept receiving requests while reading was paused")


def test_a_budget_pauses_within_one_request_and_a_sighup_with_more_resumes(tmp_path, sim, s3_endpoint, bucket):
    config = _config(tmp_path, sim, bucket, s3_endpoint, cost="monthly_budget_usd = 0.3")
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    paused = daemon.wait_event("collection_paused")
    assert paused["reason"] == "budget_exhausted"
    requests = _settled_requests(sim.url)
    time.sleep(1.0)
    assert sim_get(sim.url, "/_sim/stats")["requests"] == requests  # nothing read while paused
    status, body = daemon.get("/healthz")
    health = json.loads(body)
    assert (status, health["status"], health["reasons"]) == (200, "paused", ["budget_exhausted"])
    assert 'tweetlake_collection_paused{reason="budget"} 1.0' in daemon.get("/metrics")[1]
    served = {i for ids in sim_get(sim.url, "/_sim/served").values() for i in ids}
    wait_landed_s3(s3_endpoint, bucket, "lake/landing", served)

    config.write_text(config.read_text().replace("monthly_budget_usd = 0.3", "monthly_budget_usd = 100"))
    daemon.proc.send_signal(signal.SIGHUP)
    assert daemon.wait_event("collection_resumed")["reason"] == "budget_exhausted"
    expected = all_generated(sim.url)
    wait_landed_s3(s3_endpoint, bucket, "lake/landing", expected)
    assert daemon.terminate() == 0
    from tests.helpers import assert_landed_exactly_once

    assert_landed_exactly_once(s3_endpoint, bucket, "lake/landing", expected)


def test_xs_usage_cap_pauses_collection_and_says_until_when(tmp_path, sim, s3_endpoint, bucket):
    sim_post(sim.url, "/_sim/usage", {"post_cap": 50, "cap_reset_day": 3})
    config = _config(tmp_path, sim, bucket, s3_endpoint, cost="usage_poll_s = 0.5")
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    paused = daemon.wait_event("collection_paused")
    assert paused["reason"] == "x_usage_cap" and paused["until"].endswith("-03")
    health = json.loads(daemon.get("/healthz")[1])
    assert (health["status"], health["reasons"]) == ("paused", ["x_usage_cap"])
    billed = sim_get(sim.url, "/_sim/bill")["post_read"]
    wait_until(
        lambda: f'tweetlake_x_usage{{field="project_usage"}} {float(billed)}' in daemon.get("/metrics")[1],
        timeout=10,
        message="X's own count shown",
    )
    assert f'tweetlake_x_usage{{field="our_month_posts"}} {float(billed)}' in daemon.get("/metrics")[1]
    daemon.kill()


def test_lean_expansions_land_and_bill_only_the_authors(tmp_path, sim, s3_endpoint, bucket):
    from tests.helpers import landed_lines_s3

    config = _config(tmp_path, sim, bucket, s3_endpoint, collect_extra='expansions = "lean"')
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    wait_landed_s3(s3_endpoint, bucket, "lake/landing", all_generated(sim.url))
    assert daemon.terminate() == 0
    lines = landed_lines_s3(s3_endpoint, bucket, "lake/landing")
    assert {kind for line in lines for kind in line["includes"]} == {"users"}
    assert {u["id"] for line in lines for u in line["includes"]["users"]} <= {
        a.id for a in sim.simulator.world.accounts.values()
    }
    assert sim_get(sim.url, "/_sim/bill")["media_read"] == 0


def test_check_config_online_estimates_the_first_read_and_a_month(tmp_path, sim, s3_endpoint, bucket):
    from tests.helpers import check_online

    result = check_online(_config(tmp_path, sim, bucket, s3_endpoint, cost="monthly_budget_usd = 20"))
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("account"))
    rows = {line.split()[0]: line.split() for line in lines[header + 1 : header + 4]}
    assert set(rows) == {"XDevelopers", "NASA", "tweetlake_demo"}
    assert all(int(row[3]) == min(3200, int(row[1])) for row in rows.values())  # history_max_tweets = 3200
    assert "this check read 3 user objects ($0.03)" in result.stdout and "monthly budget $20.00" in result.stdout
    assert SECRET not in result.stdout + result.stderr
