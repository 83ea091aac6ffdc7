"""Poll mode: follows accounts by reading their timelines (GET /2/users/:id/tweets with since_id).

One round per account pages from the newest tweet back to the checkpoint, then hands the
tweets on oldest first. That order is what makes "checkpoint = newest durable id" safe: when a
crash cuts a round short, what reached the spool is always a contiguous oldest part of it. An
account's first round reads at most ``collect.history_max_tweets`` of its past; with 0 it starts
from now (a checkpoint made from the current time: reading a tweet to learn its id would cost).
"""

from __future__ import annotations

import asyncio
from typing import Any

from streamer.collect import TIMELINE_CAP, Account, Emitter, Resolver, hand_on_side_effects, read_timeline, snowflake_at
from streamer.health import Health
from streamer.items import Mark
from streamer.ledger import Ledger
from streamer.metrics import Metrics
from streamer.xclient import XClient
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
        self.reconfigure(collect)
        self._emitter = Emitter(out, metrics)
        self._resolver = Resolver(client, ledger, self._emitter, metrics, health)
        # Where the next round starts: ahead of the durable checkpoint while items are in flight.
        self._cursor: dict[str, int] = dict(ledger.checkpoints)
        self.rounds = 0

    def reconfigure(self, collect: CollectConfig) -> None:
        """The keys a reloaded config may change; the next round uses them."""
        self.usernames = collect.my_users()
        self.poll_interval_s = collect.poll_interval_s
        self.history_max_tweets = collect.history_max_tweets

    async def run(self) -> None:
        while True:
            for account in await self.resolve_accounts():
                await self.poll_account(account)
            self.rounds += 1
            self._metrics.mark_success("poll_round")
            await asyncio.sleep(self.poll_interval_s)

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
