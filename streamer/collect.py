"""What both sources share: the followed accounts, reading a timeline, handing lines on.

A source (poll or stream) differs from the other in how it talks to X, not in what it hands on:
``Emitter`` builds every landed line through the landing contract and puts it on the items
queue; ``Resolver`` turns usernames into accounts; ``read_timeline`` reads one account's timeline
back to a tweet id, the way polling does every round and the stream's gap recovery does after
every (re)connect.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streamer.answers import BadShape, Rejected, TimelinePage, timeline_page, user_lookup
from streamer.health import Health
from streamer.items import Item
from streamer.ledger import Ledger
from streamer.metrics import Metrics
from streamer.xclient import USERS_PER_LOOKUP, AccountUnavailable, ApiError, XClient
from tweetlake.landing import STREAM_ERRORS, STREAM_TWEETS, encode_line, error_record, tweet_record
from tweetlake.logs import get_logger

log = get_logger("streamer.collect")
TIMELINE_CAP = 3200  # the API serves at most this many of an account's newest tweets
PAGE_SIZE = 100
PAGE_ATTEMPTS = 3  # wrongly shaped answers a read takes (each page asked again) before it fails
TWITTER_EPOCH_MS = 1288834974657


@dataclass(frozen=True)
class Account:
    id: str
    username: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "username": self.username}


def now() -> datetime:
    return datetime.now(UTC)


def snowflake_at(moment: datetime) -> int:
    """The smallest tweet id X could give a tweet posted at ``moment`` (ids are time-ordered)."""
    return max(0, int(moment.timestamp() * 1000) - TWITTER_EPOCH_MS) << 22


def time_of(tweet_id: int) -> datetime:
    """When a tweet with this id was posted (the inverse of ``snowflake_at``, to the millisecond)."""
    return datetime.fromtimestamp(((tweet_id >> 22) + TWITTER_EPOCH_MS) / 1000, tz=UTC)


class Emitter:
    """Builds landed lines and hands them on; an error landed once per run is only logged after."""

    def __init__(self, out: asyncio.Queue[Any], metrics: Metrics, clock: Callable[[], datetime] = now) -> None:
        self._out = out
        self._metrics = metrics
        self.clock = clock
        self._landed: set[str] = set()

    async def tweet(
        self,
        tweet: dict[str, Any],
        includes: dict[str, Any],
        account: Account,
        *,
        via: str,
        at: datetime,
        matching_rules: list[Any] | None = None,
    ) -> None:
        record = tweet_record(
            tweet,
            includes,
            collected_at=at,
            collected_via=via,
            account=account.as_dict(),
            matching_rules=matching_rules,
        )
        await self._out.put(Item(STREAM_TWEETS, encode_line(record), at, account.id, int(tweet["id"])))

    async def error(
        self, error: dict[str, Any], account: Account | None, *, via: str, at: datetime | None = None
    ) -> None:
        collected_at = at or self.clock()
        record = error_record(
            error, collected_at=collected_at, collected_via=via, account=account.as_dict() if account else None
        )
        await self._out.put(Item(STREAM_ERRORS, encode_line(record), collected_at, account.id if account else ""))

    def first_time(self, what: str) -> bool:
        if what in self._landed:
            return False
        self._landed.add(what)
        return True

    async def bad_answer(self, reason: str, payload: Any, account: Account | None, *, via: str) -> None:
        """A whole answer without the expected shape: counted and logged always, landed raw once."""
        self._metrics.api_failures.labels("bad_shape").inc()
        log.error("bad_answer", account=account.username if account else "", reason=reason)
        if self.first_time(f"bad:{reason}:{json.dumps(payload, sort_keys=True, default=str)}"):
            await self.error(
                {"title": "answer without the expected shape", "reason": reason, "answer": payload}, account, via=via
            )

    async def rejected(
        self, rejected: Rejected, account: Account | None, *, via: str, at: datetime | None = None
    ) -> None:
        """One wrongly shaped object of an answer, landed raw in the errors stream with the reason."""
        self._metrics.api_failures.labels("bad_shape").inc()
        log.warning("malformed_object", account=account.username if account else "", reason=rejected.reason)
        await self.error(
            {"title": "object without the expected shape", "reason": rejected.reason, "object": rejected.value},
            account,
            via=via,
            at=at,
        )


class Resolver:
    """Username -> account id once (cached in the ledger); unknown names are asked again every round."""

    def __init__(self, client: XClient, ledger: Ledger, emitter: Emitter, metrics: Metrics, health: Health) -> None:
        self._client = client
        self._ledger = ledger
        self._emitter = emitter
        self._metrics = metrics
        self._health = health

    async def resolve(self, usernames: tuple[str, ...], *, via: str) -> list[Account]:
        missing = [u for u in usernames if u.lower() not in self._ledger.accounts]
        for start in range(0, len(missing), USERS_PER_LOOKUP):
            chunk = missing[start : start + USERS_PER_LOOKUP]
            try:
                payload = await self._client.lookup_users(chunk)
            except ApiError as exc:
                log.error("user_lookup_failed", accounts=chunk, error=str(exc))
                continue
            try:
                lookup = user_lookup(payload)
            except BadShape as exc:
                self._health.collection(ok=False)
                await self._emitter.bad_answer(str(exc), payload, None, via=via)
                continue
            for user in lookup.users:
                self._ledger.accounts[user["username"].lower()] = user["id"]
                log.info("account_resolved", account=user["username"], account_id=user["id"])
            for rejected in lookup.rejected:
                await self._emitter.rejected(rejected, None, via=via)
            for error in lookup.errors:
                value = str(error.get("value", "?"))
                log.warning("account_unavailable", account=value, detail=error.get("detail"))
                self._metrics.account_errors.labels(value, "lookup").inc()
                if self._emitter.first_time(f"lookup:{value}"):
                    await self._emitter.error(error, None, via=via)
        accounts = [
            Account(self._ledger.accounts[u.lower()], u) for u in usernames if u.lower() in self._ledger.accounts
        ]
        for account in accounts:
            self._metrics.name_account(account.id, account.username)
        return accounts


@dataclass
class Timeline:
    """One read of an account's timeline back to ``since``: its tweets oldest first, ready to hand on."""

    account: Account
    since: int | None
    tweets: list[tuple[dict[str, Any], dict[str, Any], datetime]] = field(default_factory=list)
    pages: list[tuple[TimelinePage, datetime]] = field(default_factory=list)
    truncated: bool = False  # stopped before reaching ``since`` (history limit, or the API's cap)
    failed: str | None = None  # why the read failed (nothing of it may be handed on)

    @property
    def gap(self) -> bool:
        """More new tweets than the API serves: some between ``since`` and the oldest read are gone."""
        return self.since is not None and (self.truncated or len(self.tweets) >= TIMELINE_CAP)

    @property
    def newest(self) -> int | None:
        return max((int(t["id"]) for t, _, _ in self.tweets), default=None)


async def read_timeline(
    client: XClient,
    emitter: Emitter,
    metrics: Metrics,
    health: Health,
    account: Account,
    *,
    since: int | None,
    limit: int,
    via: str,
) -> Timeline:
    """Page from the newest tweet back to ``since`` (at most ``limit`` tweets); a failure hands on nothing.

    Handing on only the newer pages of a failed read would move the checkpoint past the unfetched
    older ones, so a read that fails midway returns ``failed`` and the caller asks again later.
    A wrongly shaped answer is landed raw and its page asked again; the read fails at the
    ``PAGE_ATTEMPTS``-th such answer: a backlog of 32 pages read all-or-nothing would otherwise
    rarely get through an API that garbles a few answers in a hundred, and fall out of the 3,200
    tweets X serves.
    """
    timeline = Timeline(account, since)
    token: str | None = None
    bad_pages = 0
    try:
        while True:
            payload = await client.timeline_page(
                account.id,
                account=account.username,
                since_id=str(since) if since else None,
                pagination_token=token,
                max_results=max(5, min(PAGE_SIZE, limit - sum(len(p.tweets) for p, _ in timeline.pages))),
            )
            try:
                page = timeline_page(payload)
            except BadShape as exc:
                health.collection(ok=False)  # X answered, but with nothing usable
                await emitter.bad_answer(str(exc), payload, account, via=via)
                bad_pages += 1
                if bad_pages < PAGE_ATTEMPTS:
                    continue
                raise
            timeline.pages.append((page, emitter.clock()))
            token = page.next_token
            if not token or sum(len(p.tweets) for p, _ in timeline.pages) >= limit:
                break
    except AccountUnavailable as exc:
        log.warning("account_unavailable", account=account.username, error=str(exc))
        metrics.account_errors.labels(account.username, exc.kind).inc()
        if emitter.first_time(f"unavailable:{account.id}:{exc}"):
            await emitter.error(
                {"title": "account unavailable", "detail": str(exc), "status": exc.status}, account, via=via
            )
        timeline.failed = "account unavailable"
        return timeline
    except (ApiError, BadShape) as exc:
        kind = exc.kind if isinstance(exc, ApiError) else "bad_shape"
        log.error("timeline_failed", account=account.username, error=str(exc), pages_discarded=len(timeline.pages))
        metrics.account_errors.labels(account.username, kind).inc()
        timeline.failed = str(exc)
        return timeline
    timeline.truncated = bool(token)
    by_id: dict[int, tuple[dict[str, Any], dict[str, Any], datetime]] = {}
    for page, at in timeline.pages:
        for tweet in page.tweets:
            by_id[int(tweet["id"])] = (tweet, page.includes, at)
    timeline.tweets = [by_id[i] for i in sorted(by_id)][-limit:] if limit else []
    return timeline


async def hand_on_side_effects(timeline: Timeline, emitter: Emitter, metrics: Metrics, *, via: str) -> None:
    """What a read found besides tweets: rejected objects, partial errors, a gap in the timeline."""
    account = timeline.account
    for page, at in timeline.pages:
        for rejected in page.rejected:
            await emitter.rejected(rejected, account, via=via, at=at)
        for error in page.errors:
            log.info("api_partial_error", account=account.username, title=error.get("title"), value=error.get("value"))
            await emitter.error(error, account, via=via, at=at)
    if timeline.gap:
        oldest = min((int(t["id"]) for t, _, _ in timeline.tweets), default=None)
        metrics.timeline_gaps.labels(account.username).inc()
        log.error("timeline_gap", account=account.username, since_id=str(timeline.since), oldest_collected=str(oldest))
        await emitter.error(
            {
                "title": "timeline gap",
                "detail": "tweets between since_id and oldest_collected could not be fetched",
                "since_id": str(timeline.since),
                "oldest_collected": str(oldest),
            },
            account,
            via=via,
        )
    elif timeline.since is None and timeline.truncated:
        log.info("history_truncated", account=account.username, collected=len(timeline.tweets))
