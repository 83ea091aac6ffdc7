"""Follows accounts by polling their timelines (GET /2/users/:id/tweets with since_id).

One round per account pages from the newest tweet back to the checkpoint, then hands the
tweets on oldest first. That order is what makes "checkpoint = newest durable id" safe: when a
crash cuts a round short, what reached the spool is always a contiguous oldest part of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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


def _valid_tweet(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("id"), str) and obj["id"].isdigit()


class PollSource:
    def __init__(
        self,
        client: XClient,
        ledger: Ledger,
        out: asyncio.Queue[Any],
        metrics: Metrics,
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
        self._usernames = usernames
        self._interval = poll_interval_s
        self._max_pages = max_pages
        self._clock = clock
        # Where the next round starts: ahead of the durable checkpoint while items are in flight.
        self._cursor: dict[str, int] = dict(ledger.checkpoints)
        self._reported_lookup_errors: set[str] = set()  # land a lookup error once per run, log it every round
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
            for user in payload.get("data") or ():
                if isinstance(user, dict) and user.get("id") and user.get("username"):
                    self._ledger.accounts[str(user["username"]).lower()] = str(user["id"])
                    log.info("account_resolved", username=user["username"], account_id=user["id"])
            for error in payload.get("errors") or ():
                value = str(error.get("value", "?"))
                log.warning("account_unavailable", detail=error.get("detail"), value=value)
                self._metrics.account_errors.labels(value, "lookup").inc()
                if value not in self._reported_lookup_errors:
                    self._reported_lookup_errors.add(value)
                    await self._emit_error(error, None)
        return [
            Account(self._ledger.accounts[u.lower()], u) for u in self._usernames if u.lower() in self._ledger.accounts
        ]

    async def poll_account(self, account: Account) -> int:
        """One round for one account; returns how many tweets it handed on."""
        since = self._cursor.get(account.id)
        pages: list[tuple[dict[str, Any], datetime]] = []
        token: str | None = None
        try:
            while True:
                payload = await self._client.timeline_page(
                    account.id, since_id=str(since) if since else None, pagination_token=token
                )
                pages.append((payload, self._clock()))
                token = (payload.get("meta") or {}).get("next_token")
                if not token or len(pages) >= self._max_pages:
                    break
        except AccountUnavailable as exc:
            log.warning("account_unavailable", account=account.username, error=str(exc))
            self._metrics.account_errors.labels(account.username, exc.kind).inc()
            await self._emit_error({"title": "account unavailable", "detail": str(exc), "status": exc.status}, account)
            return 0
        except ApiError as exc:
            # Handing on only the newer pages would move the cursor past the unfetched older ones:
            # drop the partial round instead; the next round asks again from the same checkpoint.
            log.error("poll_failed", account=account.username, error=str(exc), pages_discarded=len(pages))
            self._metrics.account_errors.labels(account.username, exc.kind).inc()
            return 0
        return await self._hand_on(account, since, pages, truncated=bool(token))

    async def _hand_on(
        self, account: Account, since: int | None, pages: list[tuple[dict[str, Any], datetime]], *, truncated: bool
    ) -> int:
        tweets: dict[int, tuple[dict[str, Any], dict[str, Any], datetime]] = {}
        for payload, collected_at in pages:
            includes = payload.get("includes") if isinstance(payload.get("includes"), dict) else {}
            data = payload.get("data") or []
            if not isinstance(data, list):
                data = [data]
            for tweet in data:
                if not _valid_tweet(tweet):
                    self._metrics.api_failures.labels("malformed_tweet").inc()
                    log.warning("malformed_tweet", account=account.username)
                    await self._emit_error({"title": "malformed tweet object", "object": tweet}, account, collected_at)
                    continue
                tweets[int(tweet["id"])] = (tweet, includes, collected_at)
            for error in payload.get("errors") or ():
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
