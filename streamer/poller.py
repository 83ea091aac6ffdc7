"""Follows accounts by polling their timelines (GET /2/users/:id/tweets with since_id).

One round per account pages from the newest tweet back to the checkpoint, then hands the
tweets on oldest first. That order is what makes "checkpoint = newest durable id" safe: when a
crash cuts a round short, what reached the spool is always a contiguous oldest part of it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from streamer.answers import BadShape, Rejected, TimelinePage, timeline_page, user_lookup
from streamer.health import Health
from streamer.items import Item
from streamer.ledger import Ledger
from streamer.metrics import Metrics
from streamer.xclient import AccountUnavailable, ApiError, XClient
from tweetlake.landing import STREAM_ERRORS, STREAM_TWEETS, encode_line, error_record, tweet_record
from tweetlake.logs import get_logger

log = get_logger("streamer.poller")
VIA = "poll:users_tweets"
TIMELINE_CAP = 3200  # the API serves at most this many of an account's newest tweets


@dataclass(frozen=True)
class Account:
    id: str
    username: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "username": self.username}


def _now() -> datetime:
    return datetime.now(UTC)


class PollSource:
    def __init__(
        self,
        client: XClient,
        ledger: Ledger,
        out: asyncio.Queue[Any],
        metrics: Metrics,
        health: Health,
        *,
        usernames: tuple[str, ...],
        poll_interval_s: float,
        max_pages: int = 32,
        clock: Callable[[], datetime] = _now,
    ) -> None:
        self._client = client
        self._ledger = ledger
        self._out = out
        self._metrics = metrics
        self._health = health
        self._usernames = usernames
        self._interval = poll_interval_s
        self._max_pages = max_pages
        self._clock = clock
        # Where the next round starts: ahead of the durable checkpoint while items are in flight.
        self._cursor: dict[str, int] = dict(ledger.checkpoints)
        self._reported: set[str] = set()  # what was landed as an error once this run (logged every round)
        self.rounds = 0

    async def run(self) -> None:
        while True:
            accounts = await self.resolve_accounts()
            for account in accounts:
                await self.poll_account(account)
            self.rounds += 1
            self._metrics.mark_success("poll_round")
            await asyncio.sleep(self._interval)

    async def resolve_accounts(self) -> list[Account]:
        """Username -> id once (cached in the ledger); unknown names are retried every round."""
        missing = [u for u in self._usernames if u.lower() not in self._ledger.accounts]
        for start in range(0, len(missing), 100):
            chunk = missing[start : start + 100]
            try:
                payload = await self._client.lookup_users(chunk)
            except ApiError as exc:
                log.error("user_lookup_failed", usernames=chunk, error=str(exc))
                continue
            try:
                lookup = user_lookup(payload)
            except BadShape as exc:
                self._health.collection(ok=False)
                await self._bad_answer(str(exc), payload, None)
                continue
            for user in lookup.users:
                self._ledger.accounts[user["username"].lower()] = user["id"]
                log.info("account_resolved", account=user["username"], account_id=user["id"])
            for rejected in lookup.rejected:
                await self._land_rejected(rejected, None)
            for error in lookup.errors:
                value = str(error.get("value", "?"))
                log.warning("account_unavailable", account=value, detail=error.get("detail"))
                self._metrics.account_errors.labels(value, "lookup").inc()
                if self._first_time(f"lookup:{value}"):
                    await self._emit_error(error, None)
        accounts = [
            Account(self._ledger.accounts[u.lower()], u) for u in self._usernames if u.lower() in self._ledger.accounts
        ]
        for account in accounts:
            self._metrics.name_account(account.id, account.username)
        return accounts

    async def poll_account(self, account: Account) -> int:
        """One round for one account; returns how many tweets it handed on."""
        since = self._cursor.get(account.id)
        pages: list[tuple[TimelinePage, datetime]] = []
        token: str | None = None
        payload: Any = None
        try:
            while True:
                payload = await self._client.timeline_page(
                    account.id, since_id=str(since) if since else None, pagination_token=token
                )
                page = timeline_page(payload)
                pages.append((page, self._clock()))
                token = page.next_token
                if not token or len(pages) >= self._max_pages:
                    break
        except AccountUnavailable as exc:
            log.warning("account_unavailable", account=account.username, error=str(exc))
            self._metrics.account_errors.labels(account.username, exc.kind).inc()
            if self._first_time(f"unavailable:{account.id}:{exc}"):
                await self._emit_error(
                    {"title": "account unavailable", "detail": str(exc), "status": exc.status}, account
                )
            return 0
        except (ApiError, BadShape) as exc:
            # Handing on only the newer pages would move the cursor past the unfetched older ones:
            # drop the partial round instead; the next round asks again from the same checkpoint.
            if isinstance(exc, BadShape):
                self._health.collection(ok=False)  # X answered, but with nothing usable
                await self._bad_answer(str(exc), payload, account)
            kind = exc.kind if isinstance(exc, ApiError) else "bad_shape"
            log.error("poll_failed", account=account.username, error=str(exc), pages_discarded=len(pages))
            self._metrics.account_errors.labels(account.username, kind).inc()
            return 0
        return await self._hand_on(account, since, pages, truncated=bool(token))

    def _first_time(self, what: str) -> bool:
        if what in self._reported:
            return False
        self._reported.add(what)
        return True

    async def _bad_answer(self, reason: str, payload: Any, account: Account | None) -> None:
        """A whole answer without the expected shape: counted and logged always, landed raw once."""
        self._metrics.api_failures.labels("bad_shape").inc()
        log.error("bad_answer", account=account.username if account else "", reason=reason)
        if self._first_time(f"bad:{reason}:{json.dumps(payload, sort_keys=True, default=str)}"):
            await self._emit_error(
                {"title": "answer without the expected shape", "reason": reason, "answer": payload}, account
            )

    async def _land_rejected(self, rejected: Rejected, account: Account | None, at: datetime | None = None) -> None:
        """One wrongly shaped object of an answer, landed raw in the errors stream with the reason."""
        self._metrics.api_failures.labels("bad_shape").inc()
        log.warning("malformed_object", account=account.username if account else "", reason=rejected.reason)
        await self._emit_error(
            {"title": "object without the expected shape", "reason": rejected.reason, "object": rejected.value},
            account,
            at,
        )

    async def _hand_on(
        self, account: Account, since: int | None, pages: list[tuple[TimelinePage, datetime]], *, truncated: bool
    ) -> int:
        tweets: dict[int, tuple[dict[str, Any], dict[str, Any], datetime]] = {}
        for page, collected_at in pages:
            for rejected in page.rejected:
                await self._land_rejected(rejected, account, collected_at)
            for tweet in page.tweets:
                tweets[int(tweet["id"])] = (tweet, page.includes, collected_at)
            for error in page.errors:
                log.info(
                    "api_partial_error", account=account.username, title=error.get("title"), value=error.get("value")
                )
                await self._emit_error(error, account, collected_at)
        if since is not None and (truncated or len(tweets) >= TIMELINE_CAP):
            oldest = min(tweets) if tweets else None
            self._metrics.timeline_gaps.labels(account.username).inc()
            log.error("timeline_gap", account=account.username, since_id=str(since), oldest_collected=str(oldest))
            await self._emit_error(
                {
                    "title": "timeline gap",
                    "detail": "tweets between since_id and oldest_collected could not be fetched",
                    "since_id": str(since),
                    "oldest_collected": str(oldest),
                },
                account,
            )
        elif since is None and truncated:
            log.info("history_truncated", account=account.username, collected=len(tweets))
        for tweet_id in sorted(tweets):
            tweet, includes, collected_at = tweets[tweet_id]
            record = tweet_record(
                tweet, includes, collected_at=collected_at, collected_via=VIA, account=account.as_dict()
            )
            await self._out.put(Item(STREAM_TWEETS, encode_line(record), collected_at, account.id, tweet_id))
            self._cursor[account.id] = tweet_id
        if tweets:
            self._metrics.tweets_collected.labels(account.username).inc(len(tweets))
        self._metrics.mark_success("poll")
        log.info(
            "poll_done",
            account=account.username,
            tweets=len(tweets),
            pages=len(pages),
            newest_id=str(max(tweets)) if tweets else None,
        )
        return len(tweets)

    async def _emit_error(self, error: dict[str, Any], account: Account | None, at: datetime | None = None) -> None:
        collected_at = at or self._clock()
        record = error_record(
            error, collected_at=collected_at, collected_via=VIA, account=account.as_dict() if account else None
        )
        await self._out.put(Item(STREAM_ERRORS, encode_line(record), collected_at, account.id if account else ""))
