"""The bill's live side: metrics, the budget gate every billed request passes, X's own figures.

Every billed request waits at ``may_read`` while reading is paused: at 100 % of
``cost.monthly_budget_usd`` with ``on_budget = "pause"`` (until the billing month turns or a
SIGHUP raises the budget) and after X answers that the monthly usage cap is spent (until its
reset day). Progress (checkpoints, watermarks) stays where it is, so resuming collects the gap
like any other. At 80 % of the budget or of the post cap a warning goes to the log and /healthz.
"""

from __future__ import annotations

import asyncio
import time
from datetime import date
from typing import Any

from streamer.answers import BadShape, x_usage
from streamer.billing import KINDS, POST, Bill, Rates, billed_resources, next_period
from streamer.health import BUDGET_80PCT, BUDGET_EXHAUSTED, X_CAP_80PCT, X_USAGE_CAP, Health
from streamer.metrics import Metrics
from streamer.xclient import ApiError, XClient
from tweetlake.config import CostConfig
from tweetlake.logs import get_logger

log = get_logger("streamer.spending")
TICK_S = 60.0
SPEND_LOG_S = 3600.0


def rates_of(cost: CostConfig) -> Rates:
    return Rates(cost.post_read_usd, cost.user_read_usd, cost.media_read_usd)


class Spending:
    def __init__(self, bill: Bill, cost: CostConfig, metrics: Metrics, health: Health) -> None:
        self.bill = bill
        self._metrics = metrics
        self._health = health
        self._open = asyncio.Event()  # set while reading may go on
        self._open.set()
        self._closed = asyncio.Event()  # set while it may not
        self._paused: set[str] = set()
        self._capped_until: date | None = None
        self._warned: set[str] = set()
        self.reconfigure(cost)

    # -- the gate -----------------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return bool(self._paused)

    async def may_read(self) -> None:
        """Returns at once unless reading is paused; then when it resumes."""
        await self._open.wait()

    async def until_paused(self) -> None:
        while self._open.is_set():
            await self._closed.wait()

    def _pause(self, reason: str, on: bool, **detail: Any) -> None:
        if on == (reason in self._paused):
            return
        (self._paused.add if on else self._paused.discard)(reason)
        self._health.pause(reason, on)
        self._metrics.collection_paused.labels("budget" if reason == BUDGET_EXHAUSTED else reason).set(int(on))
        if on:
            log.error("collection_paused", reason=reason, **detail)
            self._open.clear()
            self._closed.set()
        else:
            log.warning("collection_resumed", reason=reason, **detail)
            if not self._paused:
                self._closed.clear()
                self._open.set()

    # -- what was read ---------------------------------------------------------------------------

    def record(self, payload: Any, data_kind: str, account: str) -> None:
        """One answer that X bills: charge what it returned, then look at the budget."""
        charged = self.bill.charge(billed_resources(payload, data_kind), account)
        self._saved()
        for kind, usd in charged.usd.items():
            self._metrics.spend.labels(account, kind).inc(usd)
        if charged.counts.get(POST):
            self._metrics.posts_read.labels(account).inc(charged.counts[POST])
        if charged.counts:
            self._check()

    def _saved(self) -> None:
        """A bill that cannot reach the disk is logged once per failure spell (it is kept and retried)."""
        error = self.bill.save_error
        if error and "billing_write_failed" not in self._warned:
            log.error("billing_write_failed", error=error, detail="kept in memory, retried every tick")
        elif not error and "billing_write_failed" in self._warned:
            log.info("billing_write_recovered")
        (self._warned.add if error else self._warned.discard)("billing_write_failed")

    def reconfigure(self, cost: CostConfig) -> None:
        self.cost = cost
        self.bill.rates = rates_of(cost)
        self._check()

    def usage_capped(self, detail: str) -> None:
        """X refused a read because the project's monthly cap is spent: pause until its reset day."""
        reset = next_period(self.bill.period, self.bill.x_usage.get("cap_reset_day"))
        self._capped_until = reset
        self._pause(X_USAGE_CAP, True, detail=detail, until=reset.isoformat())

    def _check(self) -> None:
        """Budget and cap thresholds, from the month-to-date figures."""
        bill, cost = self.bill, self.cost
        self._metrics.x_usage.labels("our_month_posts").set(bill.posts)
        self._metrics.x_usage.labels("our_month_spend_usd").set(bill.spent_usd)
        cap = bill.x_usage.get("project_cap") or cost.monthly_post_cap
        self._warn(X_CAP_80PCT, bill.posts >= 0.8 * cap, posts=bill.posts, cap=cap)
        budget = cost.monthly_budget_usd
        if not budget:
            self._warn(BUDGET_80PCT, False)
            self._pause(BUDGET_EXHAUSTED, False, budget_usd=budget)
            return
        self._metrics.budget_remaining.set(max(0.0, budget - bill.spent_usd))
        self._warn(
            BUDGET_80PCT, _reached(bill.spent_usd, 0.8 * budget), spent_usd=round(bill.spent_usd, 4), budget_usd=budget
        )
        over = _reached(bill.spent_usd, budget)
        if cost.on_budget == "pause":
            self._pause(BUDGET_EXHAUSTED, over, spent_usd=round(bill.spent_usd, 4), budget_usd=budget)
        else:
            self._pause(BUDGET_EXHAUSTED, False, budget_usd=budget)
            self._warn("budget_exceeded", over, spent_usd=round(bill.spent_usd, 4), budget_usd=budget)

    def _warn(self, code: str, on: bool, **detail: Any) -> None:
        if code != "budget_exceeded":
            self._health.warn(code, on)
        if on and code not in self._warned:
            log.warning(code, **detail)
        (self._warned.add if on else self._warned.discard)(code)

    # -- X's own figures -------------------------------------------------------------------------

    def x_usage(self, usage: dict[str, int]) -> None:
        """``GET /2/usage/tweets``: shown beside ours; a month boundary from X recounts ours."""
        if self.bill.remember_usage(usage):
            log.info("billing_month_moved", starts=self.bill.period.isoformat())
        for name, value in usage.items():
            self._metrics.x_usage.labels(name).set(value)
        ours, theirs = self.bill.posts, usage["project_usage"]
        if max(ours, theirs) and abs(ours - theirs) > self.cost.usage_divergence_pct / 100 * max(ours, theirs):
            log.warning("usage_diverged", ours=ours, x=theirs, threshold_pct=self.cost.usage_divergence_pct)
        self._check()

    # -- every tick ------------------------------------------------------------------------------------

    def tick(self) -> None:
        """A new UTC day, the end of X's cap, the month's end: everything that turns with time."""
        if self.bill.roll():
            self._check()
        if self._capped_until and self.bill.period >= self._capped_until:
            self._capped_until = None
            self._pause(X_USAGE_CAP, False)
        self.bill.sync()
        self._saved()

    async def _read_usage(self, client: XClient) -> None:
        try:
            figures = x_usage(await client.usage())
        except (ApiError, BadShape) as exc:
            log.warning("usage_unavailable", error=str(exc))
            return
        self.x_usage(figures)

    def log_spend(self, *, final: bool = False) -> None:
        by_kind: dict[str, float] = {kind: 0.0 for kind in KINDS}
        for metric in self._metrics.spend.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total"):
                    by_kind[sample.labels["kind"]] += sample.value
        log.info(
            "spend",
            final=final,
            month_usd=round(self.bill.spent_usd, 4),
            month_posts=self.bill.posts,
            month_starts=self.bill.period.isoformat(),
            budget_usd=self.cost.monthly_budget_usd or None,
            run_usd={k: round(v, 4) for k, v in by_kind.items()},
            paused=sorted(self._paused),
        )

    async def run(self, client: XClient | None) -> None:
        """Ticks; X's usage figures every ``cost.usage_poll_s`` (``client`` None: no app token to ask with)."""
        last_log = last_usage = 0.0
        try:
            while True:
                self.tick()
                now = time.monotonic()
                if client is not None and self.cost.usage_poll_s and now - last_usage >= self.cost.usage_poll_s:
                    last_usage = now
                    await self._read_usage(client)
                if now - last_log >= SPEND_LOG_S:
                    last_log = now
                    self.log_spend()
                await asyncio.sleep(min(TICK_S, self.cost.usage_poll_s or TICK_S))
        finally:
            self.bill.sync()


def _reached(spent: float, limit: float) -> bool:
    """``spent >= limit`` for sums of float rates (8 x 0.005 is not quite 0.8 x 0.05)."""
    return spent >= limit - 1e-9
