"""Stream mode: hold X's filtered stream open, reconnect by the book, recover every gap by polling.

One ``Connection`` is one connect attempt through tweepy's ``AsyncStreamingClient``; its callbacks
end the attempt instead of letting tweepy retry, so the reconnect loop (and its waits, see
``streamer.reconnect``) is ours. Lines reach ``StreamSource.line`` as raw bytes and are landed as
``json.loads`` made them: no tweepy model objects in between.

The stream delivers nothing while it is down, so after every connect (the first one after a
start included) each account's timeline is read back to its watermark and what the stream
missed is landed (``backfill:users_tweets``). Tweet ids seen this run dedupe stream against
backfill. Progress is a watermark per account (see ``streamer.ledger``), moved by ``Mark``s that
apply only once everything handed on before them is durable:

* after a backfill that started at ``t``: every tweet posted before ``t - LATENCY_MARGIN_S`` was
  read (a timeline shows a tweet within that margin), so the watermark may move there;
* while the stream stays connected after an account's backfill: every tweet posted up to
  ``now - LATENCY_MARGIN_S`` was delivered (the stream delivers within that margin), so every
  ``TICK_S`` the watermark moves there, which keeps the durable ids above it few.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import tweepy.asynchronous
from tweepy.asynchronous.streaming import AsyncBaseStream
from yarl import URL

from streamer.answers import BadShape, stream_message
from streamer.billing import POST
from streamer.collect import (
    TIMELINE_CAP,
    Account,
    Emitter,
    Resolver,
    hand_on_side_effects,
    now,
    read_timeline,
    snowflake_at,
    time_of,
)
from streamer.credentials import Secret
from streamer.health import Health
from streamer.items import Mark
from streamer.ledger import Ledger
from streamer.metrics import Metrics
from streamer.reconnect import HTTP, NETWORK, RATE_LIMITED, ReconnectPolicy
from streamer.rules import RulesKeeper
from streamer.spending import Spending
from streamer.xclient import (
    MEDIA_FIELDS,
    PLACE_FIELDS,
    POLL_FIELDS,
    STREAM_ENDPOINT,
    TWEET_FIELDS,
    USER_FIELDS,
    XClient,
)
from tweetlake.config import CollectConfig, StreamConfig
from tweetlake.logs import get_logger

log = get_logger("streamer.stream")
VIA = "stream:filtered"
BACKFILL_VIA = "backfill:users_tweets"
LATENCY_MARGIN_S = 60.0
TICK_S = 10.0
SEEN_WINDOW_S = 3600.0  # stream duplicates arrive within seconds; an hour of ids is plenty
MAX_UNREADABLE_CHARS = 2000  # of an unreadable line kept in the errors stream
REASON_KINDS = {
    "network": NETWORK,
    "stall": NETWORK,
    "closed": NETWORK,
    "operational_disconnect": NETWORK,
    "error": NETWORK,
    "http_error": HTTP,
    "rate_limited": RATE_LIMITED,
    "too_many_connections": RATE_LIMITED,
}


class Ended(Exception):
    """Raised from a tweepy callback to end the attempt (tweepy would otherwise retry by itself)."""

    def __init__(self, reason: str, status: int | None = None) -> None:
        self.reason = reason
        self.status = status
        super().__init__(reason if status is None else f"{reason} (HTTP {status})")


class Connection(tweepy.asynchronous.AsyncStreamingClient):
    """One connect attempt to ``GET /2/tweets/search/stream`` at ``x_api.base_url``."""

    def __init__(self, base_url: str, bearer: Secret, source: StreamSource, *, stall_timeout_s: float) -> None:
        super().__init__(bearer.reveal(), max_retries=0)
        self._base = URL(base_url.rstrip("/"))
        self._source = source
        self._stall_timeout_s = stall_timeout_s
        self.ended: BaseException | None = None
        self.issue: str | None = None  # X's ``connection_issue`` of a refused connect

    async def _connect(self, method: str, endpoint: str, **kwargs: Any) -> None:  # type: ignore[override]
        self.session = aiohttp.ClientSession(
            middlewares=(self._observe,),
            timeout=aiohttp.ClientTimeout(sock_connect=10, sock_read=self._stall_timeout_s),
        )
        url = self._base.with_path(f"{self._base.path.rstrip('/')}/2/tweets/{endpoint}/stream")
        headers = {"Authorization": f"Bearer {self.bearer_token}"}
        await AsyncBaseStream._connect(self, method, str(url), headers=headers, timeout=self._stall_timeout_s, **kwargs)

    async def _observe(self, request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        response = await handler(request)
        self._source.metrics.api_requests.labels(STREAM_ENDPOINT, str(response.status)).inc()
        if response.status != 200:
            try:
                body = json.loads(await response.read())
                self.issue = body.get("connection_issue") if isinstance(body, dict) else None
            except (ValueError, aiohttp.ClientError):
                self.issue = None
        return response

    async def on_connect(self) -> None:
        await self._source.connected()

    async def on_data(self, raw_data: bytes) -> None:
        await self._source.line(raw_data)

    async def on_keep_alive(self) -> None:
        self._source.alive()

    async def on_closed(self, resp: Any) -> None:
        raise Ended("closed")

    async def on_request_error(self, status_code: int) -> None:
        if status_code == 429:
            raise Ended("too_many_connections" if self.issue == "TooManyConnections" else "rate_limited", 429)
        raise Ended("http_error", status_code)

    async def on_connection_error(self) -> None:
        raise Ended("stall" if self._source.idle_s() >= self._stall_timeout_s * 0.9 else "network")

    async def on_exception(self, exception: Exception) -> None:
        self.ended = exception

    async def on_disconnect(self) -> None:
        """The attempt's end is reported by ``StreamSource``, with its reason."""


class StreamSource:
    """Follows accounts through the filtered stream; the only component that talks to it."""

    def __init__(
        self,
        client: XClient,
        ledger: Ledger,
        out: asyncio.Queue[Any],
        metrics: Metrics,
        health: Health,
        *,
        base_url: str,
        bearer: Secret,
        collect: CollectConfig,
        stream: StreamConfig,
        spending: Spending,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._client = client
        self._spending = spending
        self._connection: Connection | None = None
        self._out = out
        self.metrics = metrics
        self._health = health
        self._base_url = base_url
        self._bearer = bearer
        self._stall_timeout_s = stream.stall_timeout_s
        self._sleep = sleep
        self._emitter = Emitter(out, metrics)
        self._resolver = Resolver(client, ledger, self._emitter, metrics, health)
        self._rules = RulesKeeper(client, metrics, tag=stream.rule_tag, max_length=stream.rule_max_length)
        self.usernames = collect.my_users()
        self.history_max_tweets = collect.history_max_tweets
        self.accounts: dict[str, Account] = {}  # by account id
        # what this run knows: the watermark handed on (ahead of the durable one) and the ids seen
        self._floor: dict[str, int] = dict(ledger.watermarks)
        self._seen: dict[str, set[int]] = {a: set(ids) for a, ids in ledger.above.items()}
        self._connected = False
        self._generation = 0  # connections so far
        # when collection last went down: for a restart, when the newest tweet already durable was posted
        newest = max([*self._floor.values(), *(max(ids) for ids in self._seen.values() if ids)], default=None)
        self._down_since: datetime | None = time_of(newest) if newest else None
        self._last_activity = time.monotonic()
        self._todo: set[str] = set()  # accounts to backfill for the current connection
        self._retry: set[str] = set()  # accounts whose backfill failed
        self._covered: set[str] = set()  # accounts backfilled while the current connection is up
        self._backfill: asyncio.Task[None] | None = None
        self._sync_needed = asyncio.Event()
        self._sync_needed.set()
        self._sync_needed_later = False
        self._hint: str | None = None  # why the server is about to close (operational-disconnect)
        metrics.stream_idle.set_function(self.idle_s)

    def reconfigure(self, collect: CollectConfig) -> None:
        """Runtime keys from a reloaded config: followed accounts and the first round's history."""
        self.usernames = collect.my_users()
        self.history_max_tweets = collect.history_max_tweets
        self._sync_needed.set()

    async def run(self) -> None:
        await self._sync()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._syncs(), name="stream-rules")
                group.create_task(self._ticks(), name="stream-ticks")
                group.create_task(self._connections(), name="stream-connections")
                group.create_task(self._pauses(), name="stream-pauses")
        finally:
            if self._backfill is not None:
                self._backfill.cancel()

    # -- accounts and rules -------------------------------------------------------------------

    async def _syncs(self) -> None:
        while True:
            await self._sync_needed.wait()
            await self._sync()

    async def _sync(self) -> None:
        """Resolve the followed accounts and make the rules match; retried every tick until it works."""
        self._sync_needed.clear()
        accounts = await self._resolver.resolve(self.usernames, via=BACKFILL_VIA)
        new = {a.id for a in accounts} - set(self.accounts)
        self.accounts = {a.id: a for a in accounts}
        if not await self._rules.reconcile(set(self.accounts)) or len(accounts) < len(self.usernames):
            self._sync_needed_later = True
        if new and self._connected:
            self._todo |= new
            self._start_backfill()

    # -- connections ----------------------------------------------------------------------------

    async def _connections(self) -> None:
        policy = ReconnectPolicy()
        while True:
            await self._spending.may_read()  # a paused budget keeps the stream closed
            self._connection = connection = Connection(
                self._base_url, self._bearer, self, stall_timeout_s=self._stall_timeout_s
            )
            started, generation = time.monotonic(), self._generation
            await connection.filter(
                expansions=self._client.expansions,
                tweet_fields=TWEET_FIELDS,
                user_fields=USER_FIELDS,
                media_fields=MEDIA_FIELDS,
                place_fields=PLACE_FIELDS,
                poll_fields=POLL_FIELDS,
            )
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # tweepy swallows the cancellation: pass it on
                raise asyncio.CancelledError
            self._connection = None
            lived = time.monotonic() - started
            if self._spending.paused and connection.ended is None:  # closed by ``_pauses``
                self._disconnected()
                log.warning("stream_paused", connected_s=round(lived, 1))
                continue
            reason, status = self._reason(connection.ended)
            self._disconnected()
            if generation == self._generation:  # the attempt never connected: a failed collection request
                self._health.collection(ok=False)
            policy.connected_for(lived)
            wait = policy.next_wait(REASON_KINDS[reason])
            self.metrics.stream_reconnects.labels(reason).inc()
            self.metrics.stream_backoff.set(wait)
            log.warning(
                "stream_disconnected", reason=reason, status=status, connected_s=round(lived, 1), reconnect_in_s=wait
            )
            await self._sleep(wait)
            self.metrics.stream_backoff.set(0)

    async def _pauses(self) -> None:
        """Close the stream when reading pauses (the connect loop waits for the resume)."""
        while True:
            await self._spending.until_paused()
            if self._connection is not None:
                self._connection.disconnect()
            await self._spending.may_read()

    def _reason(self, ended: BaseException | None) -> tuple[str, int | None]:
        hint, self._hint = self._hint, None
        if isinstance(ended, Ended):
            if ended.reason == "closed" and hint:
                return hint, None
            return ended.reason, ended.status
        log.error("stream_failed", error=f"{type(ended).__name__}: {ended}", exc_info=ended)
        return "error", None

    async def connected(self) -> None:
        self._generation += 1
        self._connected = True
        self.alive()
        self.metrics.stream_connected.set(1)
        self._health.stream(connected=True)
        self._health.collection(ok=True)
        down_s = (now() - self._down_since).total_seconds() if self._down_since else None
        log.info("stream_connected", accounts=len(self.accounts), down_s=round(down_s, 1) if down_s else None)
        self._todo = set(self.accounts)
        self._start_backfill()

    def _disconnected(self) -> None:
        if self._connected:
            self._down_since = now()
        self._connected = False
        self._covered.clear()
        self.metrics.stream_connected.set(0)
        self._health.stream(connected=False)

    def alive(self) -> None:
        self._last_activity = time.monotonic()
        self.metrics.mark_success("stream")

    def idle_s(self) -> float:
        return time.monotonic() - self._last_activity

    # -- lines ------------------------------------------------------------------------------------

    async def line(self, raw: bytes) -> None:
        """One line of the stream; anything unusable is counted and kept in the errors stream."""
        self.alive()
        try:
            payload = json.loads(raw)
        except ValueError as exc:  # truncated, not JSON, not UTF-8
            self.metrics.stream_lines.labels("unreadable").inc()
            text = raw.decode("utf-8", "replace")
            log.warning("stream_line_unreadable", error=f"{type(exc).__name__}: {exc}", chars=len(text))
            await self._emitter.error(
                {"title": "unreadable stream line", "reason": type(exc).__name__, "line": text[:MAX_UNREADABLE_CHARS]},
                None,
                via=VIA,
            )
            return
        try:
            message = stream_message(payload)
        except BadShape as exc:
            self.metrics.stream_lines.labels("bad_shape").inc()
            await self._emitter.bad_answer(str(exc), payload, None, via=VIA)
            return
        authors = [self.accounts.get(t.get("author_id", "")) for t in message.page.tweets]
        self._spending.record(payload, POST, next((a.username for a in authors if a), ""))
        for rejected in message.page.rejected:
            self.metrics.stream_lines.labels("bad_shape").inc()
            await self._emitter.rejected(rejected, None, via=VIA)
        if not message.page.tweets:  # a message of its own: X's errors about the stream itself
            for error in message.page.errors:
                self.metrics.stream_lines.labels("error").inc()
                if error.get("title") == "operational-disconnect":
                    self._hint = "operational_disconnect"
                log.warning("stream_error", title=error.get("title"), detail=error.get("detail"))
                await self._emitter.error(error, None, via=VIA)
        for tweet in message.page.tweets:
            account = self.accounts.get(tweet.get("author_id", ""))
            if account is None:
                self.metrics.stream_lines.labels("not_followed").inc()
                log.debug("stream_tweet_not_followed", author_id=tweet.get("author_id"))
                continue
            if not self._first_sight(account.id, int(tweet["id"])):
                self.metrics.stream_lines.labels("duplicate").inc()
                continue
            at = now()
            for error in message.page.errors:  # about this tweet's expansions, as on a timeline page
                log.info("api_partial_error", account=account.username, title=error.get("title"))
                await self._emitter.error(error, account, via=VIA, at=at)
            self.metrics.stream_lines.labels("tweet").inc()
            self.metrics.tweets_collected.labels(account.username).inc()
            await self._emitter.tweet(
                tweet, message.page.includes, account, via=VIA, at=at, matching_rules=message.matching_rules
            )

    def _first_sight(self, account_id: str, tweet_id: int) -> bool:
        seen = self._seen.setdefault(account_id, set())
        if tweet_id in seen:
            return False
        seen.add(tweet_id)
        return True

    # -- gap recovery -----------------------------------------------------------------------------

    def _start_backfill(self) -> None:
        if self._backfill is None or self._backfill.done():
            self._backfill = asyncio.create_task(self._backfills(), name="stream-backfill")

    async def _backfills(self) -> None:
        while self._todo:
            account = self.accounts.get(self._todo.pop())
            if account is not None:
                await self._recover(account, self._generation)

    async def _recover(self, account: Account, generation: int) -> None:
        """Read one account's timeline back to its watermark and land what this run has not seen."""
        started = now()
        floor = self._floor.get(account.id)
        if floor is None and self.history_max_tweets == 0:
            await self._advance(account, snowflake_at(started) - 1)
            log.info("history_skipped", account=account.username)
        else:
            limit = TIMELINE_CAP if floor is not None else self.history_max_tweets
            timeline = await read_timeline(
                self._client,
                self._emitter,
                self.metrics,
                self._health,
                account,
                since=floor,
                limit=limit,
                via=BACKFILL_VIA,
            )
            if timeline.failed:
                self._retry.add(account.id)
                return
            await hand_on_side_effects(timeline, self._emitter, self.metrics, via=BACKFILL_VIA)
            recovered = 0
            for tweet, includes, at in timeline.tweets:
                if self._first_sight(account.id, int(tweet["id"])):
                    await self._emitter.tweet(tweet, includes, account, via=BACKFILL_VIA, at=at)
                    recovered += 1
            self.metrics.tweets_collected.labels(account.username).inc(recovered)
            if floor is not None:
                self.metrics.gap_recovered.labels(account.username).inc(recovered)
                gap_from = self._down_since or time_of(floor)
                log.info(
                    "gap_recovered",
                    account=account.username,
                    count=recovered,
                    gap_s=round((started - gap_from).total_seconds(), 1),
                    read=len(timeline.tweets),
                )
            else:
                log.info("history_collected", account=account.username, count=recovered)
            watermark = snowflake_at(started - timedelta(seconds=LATENCY_MARGIN_S)) - 1
            if floor is None and timeline.truncated and timeline.tweets:  # older history is skipped on purpose
                watermark = max(watermark, min(int(t["id"]) for t, _, _ in timeline.tweets) - 1)
            await self._advance(account, watermark)
        if generation == self._generation and self._connected:
            self._covered.add(account.id)

    async def _advance(self, account: Account, watermark: int) -> None:
        if watermark > self._floor.get(account.id, -1):
            self._floor[account.id] = watermark
            await self._out.put(Mark("watermark", account.id, watermark))

    # -- every tick ---------------------------------------------------------------------------------

    async def _ticks(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            await self.tick()

    async def tick(self) -> None:
        """Move covered accounts' watermarks, retry failed backfills and syncs, forget old ids."""
        moment = now()
        watermark = snowflake_at(moment - timedelta(seconds=LATENCY_MARGIN_S)) - 1
        for account_id in sorted(self._covered):
            await self._advance(self.accounts[account_id], watermark)
        if self._retry and self._connected:
            self._todo |= self._retry
            self._retry.clear()
            self._start_backfill()
        if self._sync_needed_later:
            self._sync_needed_later = False
            self._sync_needed.set()
        forget_below = snowflake_at(moment - timedelta(seconds=SEEN_WINDOW_S))
        for account_id, seen in self._seen.items():
            floor = self._floor.get(account_id, -1)
            self._seen[account_id] = {i for i in seen if i > forget_below or i > floor}
