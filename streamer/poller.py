"""Poll mode: follows accounts by reading their timelines (GET /2/users/:id/tweets with since_id).

Each account is polled when it is due (``streamer.schedule``: often where the tweets are), up to
``collect.poll_concurrency`` at once. One poll pages from the newest tweet back to the
checkpoint, then hands the tweets on oldest first. That order is what makes "checkpoint = newest
durable id" safe: when a crash cuts a poll short, what reached the spool is always a contiguous
oldest part of it. An
account's first round reads at most ``collect.history_max_tweets`` of its past; with 0 it starts
from now (a checkpoint made from the current time: reading a tweet to learn its id would cost).
"""

from __future__ import annotations

import asyncio
import time
from asyncio import FIRST_COMPLETED
from typing import Any

from streamer.collect import TIMELINE_CAP, Account, Emitter, Resolver, hand_on_side_effects, read_timeline, snowflake_at
from streamer.health import Health
from streamer.items import Mark
from streamer.ledger import Ledger
from streamer.metrics import Metrics
from streamer.schedule import Activity, Schedule, created_times
from streamer.xclient import TIMELINE_ENDPOINT, XClient
from tweetlake.config import CollectConfig
from tweetlake.logs import get_logger

log = get_logger("streamer.poller")
VIA = "poll:users_tweets"


class PollSource:
    def __init__(
        self,
        client: XClient,
        ledger: Ledger,
        out: asyncio.Queue[Any],
        metrics: Metrics,
        health: Health,
        *,
        collect: CollectConfig,
    ) -> None:
        self._client = client
        self._out = out
        self._metrics = metrics
        self._health = health
        self._woken = asyncio.Event()  # a reload changed the schedule: plan again now
        self.reconfigure(collect)
        self._emitter = Emitter(out, metrics)
        self._resolver = Resolver(client, ledger, self._emitter, metrics, health)
        # Where the next round starts: ahead of the durable checkpoint while items are in flight.
        self._cursor: dict[str, int] = dict(ledger.checkpoints)
        self._due: dict[str, float] = {}  # account id -> when its next poll is due (epoch seconds)
        self._activity: dict[str, Activity] = {}
        self._polled: set[str] = set()
        self.rounds = 0

    def reconfigure(self, collect: CollectConfig) -> None:
        """The keys a reloaded config may change; the next poll uses them."""
        self.usernames = collect.my_users()
        self.history_max_tweets = collect.history_max_tweets
        self.concurrency = collect.poll_concurrency
        self.schedule = Schedule(collect.schedule, collect.poll_interval_s, *collect.interval_bounds())
        self._woken.set()

    async def run(self) -> None:
        """Start the polls that are due, as many at once as allowed; sleep until the next one is."""
        polls: dict[str, asyncio.Task[None]] = {}
        try:
            while True:
                accounts = await self.resolve_accounts()
                moment = time.time()
                for account in accounts:
                    self._due.setdefault(account.id, moment)
                    self._activity.setdefault(account.id, Activity(moment))
                due = sorted(
                    (a for a in accounts if a.id not in polls and self._due[a.id] <= moment),
                    key=lambda a: self._due[a.id],
                )
                for account in due[: max(0, self.concurrency - len(polls))]:
                    polls[account.id] = asyncio.create_task(self._poll(account, {a.id for a in accounts}))
                waiting = [self._due[a.id] - moment for a in accounts if a.id not in polls]
                self._woken.clear()
                woken = asyncio.create_task(self._woken.wait())
                done, _ = await asyncio.wait(
                    [*polls.values(), woken], timeout=max(0.0, min(waiting, default=1.0)), return_when=FIRST_COMPLETED
                )
                woken.cancel()
                for account_id, task in list(polls.items()):
                    if task in done:
                        del polls[account_id]
                        task.result()  # a bug in a poll ends the component, as it would have before
        finally:
            for task in polls.values():
                task.cancel()

    async def _poll(self, account: Account, followed: set[str]) -> None:
        await self.poll_account(account)
        moment = time.time()
        rates = {a: activity.rate(moment) for a, activity in self._activity.items() if a in followed}
        capacity = self._client.limiter.capacity(TIMELINE_ENDPOINT)
        self._due[account.id] = moment + self.schedule.intervals(rates, capacity)[account.id]
        self._polled.add(account.id)
        if self._polled >= followed:  # every followed account polled since the last mark
            self._polled.clear()
            self.rounds += 1
            self._metrics.mark_success("poll_round")

    async def resolve_accounts(self) -> list[Account]:
        return await self._resolver.resolve(self.usernames, via=VIA)

    async def poll_account(self, account: Account) -> int:
        """One round for one account; returns how many tweets it handed on."""
        since = self._cursor.get(account.id)
        if since is None and self.history_max_tweets == 0:
            start = snowflake_at(self._emitter.clock()) - 1  # since_id is exclusive: keep this very millisecond
            await self._out.put(Mark("checkpoint", account.id, start))
            self._cursor[account.id] = start
            log.info("history_skipped", account=account.username, since_id=str(start))
            return 0
        limit = TIMELINE_CAP if since is not None else self.history_max_tweets
        timeline = await read_timeline(
            self._client, self._emitter, self._metrics, self._health, account, since=since, limit=limit, via=VIA
        )
        if timeline.failed:
            return 0
        await hand_on_side_effects(timeline, self._emitter, self._metrics, via=VIA)
        for tweet, includes, collected_at in timeline.tweets:
            await self._emitter.tweet(tweet, includes, account, via=VIA, at=collected_at)
            self._cursor[account.id] = int(tweet["id"])
        self._activity.setdefault(account.id, Activity(time.time())).observe(created_times(timeline))
        if timeline.tweets:
            self._metrics.tweets_collected.labels(account.username).inc(len(timeline.tweets))
        self._metrics.mark_success("poll")
        log.info(
            "poll_done",
            account=account.username,
            tweets=len(timeline.tweets),
            pages=len(timeline.pages),
            newest_id=str(timeline.newest) if timeline.tweets else None,
        )
        return len(timeline.tweets)
