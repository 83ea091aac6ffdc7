"""tweepy's AsyncClient pointed at a configurable base URL, with pacing, retries and metrics.

tweepy 4.17 hard-codes ``https://api.twitter.com``; an aiohttp client middleware on the
session rewrites scheme, host and port of every request to ``x_api.base_url``. The same
middleware is the one place that sees every HTTP answer, so it also feeds the rate-limit
pacer and the request counters. Responses come back as raw JSON dicts: the landing zone keeps
what the API sent, not tweepy's model objects.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import tweepy
import tweepy.asynchronous
from yarl import URL

from streamer.backoff import Backoff
from streamer.billing import POST, USER
from streamer.credentials import Credentials
from streamer.health import Health
from streamer.metrics import Metrics
from tweetlake.logs import get_logger

if TYPE_CHECKING:
    from streamer.spending import Spending

log = get_logger("streamer.xclient")

TWEET_FIELDS = [
    "attachments",
    "author_id",
    "context_annotations",
    "conversation_id",
    "created_at",
    "edit_controls",
    "edit_history_tweet_ids",
    "entities",
    "geo",
    "id",
    "in_reply_to_user_id",
    "lang",
    "note_tweet",
    "possibly_sensitive",
    "public_metrics",
    "referenced_tweets",
    "reply_settings",
    "source",
    "text",
    "withheld",
]
EXPANSIONS = [
    "author_id",
    "in_reply_to_user_id",
    "referenced_tweets.id",
    "referenced_tweets.id.author_id",
    "entities.mentions.username",
    "attachments.poll_ids",
    "attachments.media_keys",
    "geo.place_id",
    "edit_history_tweet_ids",
]
USER_FIELDS = [
    "created_at",
    "description",
    "entities",
    "id",
    "location",
    "name",
    "pinned_tweet_id",
    "profile_image_url",
    "protected",
    "public_metrics",
    "url",
    "username",
    "verified",
    "verified_type",
    "withheld",
]
MEDIA_FIELDS = [
    "alt_text",
    "duration_ms",
    "height",
    "media_key",
    "preview_image_url",
    "public_metrics",
    "type",
    "url",
    "variants",
    "width",
]
PLACE_FIELDS = ["contained_within", "country", "country_code", "full_name", "geo", "id", "name", "place_type"]
POLL_FIELDS = ["duration_minutes", "end_datetime", "id", "options", "voting_status"]
MAX_RESULTS = 100
USERS_PER_LOOKUP = 100  # X's limit of usernames per GET /2/users/by
TIMELINE_ENDPOINT = "/2/users/:id/tweets"
STREAM_ENDPOINT = "/2/tweets/search/stream"
RULES_ENDPOINT = "/2/tweets/search/stream/rules"
USAGE_ENDPOINT = "/2/usage/tweets"
LEAN_EXPANSIONS = ["author_id"]

_ROUTE_IDS = re.compile(r"(?<=/users/)\d+(?=/|$)")


def endpoint_of(path: str) -> str:
    """``/2/users/123/tweets`` -> ``/2/users/:id/tweets``: a label with bounded cardinality."""
    return _ROUTE_IDS.sub(":id", path)


def _ignore(*, ok: bool) -> None:
    """What non-collection calls (the usage endpoint) report to /healthz: nothing."""


async def _usage_cap(exc: tweepy.TooManyRequests) -> str | None:
    """The detail of a 429 that says the project's monthly usage cap is spent, else None."""
    try:
        body = json.loads(await exc.response.text())
    except (ValueError, aiohttp.ClientError, AttributeError):
        return None
    if not isinstance(body, dict):
        return None
    if body.get("title") == "UsageCapExceeded" or str(body.get("type", "")).endswith("/usage-capped"):
        return str(body.get("detail", "usage cap exceeded"))
    return None


class ApiError(Exception):
    """The request cannot succeed by retrying now (bad request, auth, account state)."""

    def __init__(self, kind: str, status: int | None, message: str) -> None:
        self.kind = kind
        self.status = status
        super().__init__(f"{kind} ({status}): {message}")


class AccountUnavailable(ApiError):
    """Suspended, protected or unknown account: skip it this round, keep the others going."""


@dataclass
class _Window:
    remaining: int | None = None
    reset_at: float = 0.0
    last_request: float = 0.0


class RateLimiter:
    """Spreads requests over each endpoint's window using the x-rate-limit-* headers."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def observe(self, endpoint: str, headers: Any) -> None:
        window = self._windows.setdefault(endpoint, _Window())
        try:
            if "x-rate-limit-remaining" in headers:
                window.remaining = int(headers["x-rate-limit-remaining"])
            if "x-rate-limit-reset" in headers:
                window.reset_at = float(headers["x-rate-limit-reset"])
        except (TypeError, ValueError):
            log.warning("rate_limit_headers_unreadable", endpoint=endpoint)

    def capacity(self, endpoint: str) -> float | None:
        """Requests per second the rest of the current window allows (None: not known yet)."""
        window = self._windows.get(endpoint)
        now = self._clock()
        if window is None or window.remaining is None or now >= window.reset_at:
            return None
        return max(0, window.remaining) / (window.reset_at - now)

    def reserve(self, endpoint: str) -> float:
        """Seconds to wait before the next request to ``endpoint``; the slot is taken at once, so
        requests in flight together are spread over the window instead of all going at once."""
        window = self._windows.setdefault(endpoint, _Window())
        now = self._clock()
        if window.remaining is None or now >= window.reset_at:
            start = now
        elif window.remaining <= 0:
            start = window.reset_at + 0.5
        else:
            start = max(now, window.last_request + (window.reset_at - now) / window.remaining)
            window.remaining -= 1  # until the answer's headers say how many are left
        window.last_request = start
        return start - now


class XClient:
    """The few X API v2 calls the daemon makes, each retried until it succeeds or cannot."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        metrics: Metrics,
        health: Health,
        *,
        timeout_s: float = 30.0,
        max_retries: int = 8,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        spending: Spending | None = None,
        expansions: Sequence[str] = EXPANSIONS,
    ) -> None:
        self._base = URL(base_url.rstrip("/"))
        self._spending = spending
        self.expansions = list(expansions)
        self._metrics = metrics
        self._health = health
        self._max_retries = max_retries
        self._backoff = (backoff_base, backoff_cap)
        self._sleep = sleep
        self.limiter = RateLimiter()
        self._session = aiohttp.ClientSession(
            middlewares=(self._route,),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
        )
        reveal = lambda s: s.reveal() if s else None  # noqa: E731
        self._client = tweepy.asynchronous.AsyncClient(
            bearer_token=reveal(credentials.bearer_token),
            consumer_key=reveal(credentials.consumer_key),
            consumer_secret=reveal(credentials.consumer_secret),
            access_token=reveal(credentials.access_token),
            access_token_secret=reveal(credentials.access_token_secret),
            return_type=aiohttp.ClientResponse,
            wait_on_rate_limit=False,
        )
        self._client.session = self._session
        self._user_auth = credentials.user_context
        # the rules endpoint takes only the app's bearer token (stream mode requires one)
        self._rules = tweepy.asynchronous.AsyncStreamingClient(
            reveal(credentials.bearer_token), return_type=aiohttp.ClientResponse
        )
        self._rules.session = self._session

    async def _route(self, request: aiohttp.ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        """Client middleware: send tweepy's request to our base URL and observe the answer."""
        base = self._base
        request.url = request.url.with_scheme(base.scheme).with_host(base.host or "").with_port(base.port)
        if base.path not in ("", "/"):
            request.url = request.url.with_path(base.path + request.url.path, encoded=False)
        request.headers["Host"] = base.host_port_subcomponent or base.host or ""
        endpoint = endpoint_of(request.url.path)
        response = await handler(request)
        self.limiter.observe(endpoint, response.headers)
        self._metrics.api_requests.labels(endpoint, str(response.status)).inc()
        return response

    async def close(self) -> None:
        await self._session.close()

    async def lookup_users(self, usernames: list[str]) -> Any:
        return await self._call(
            "/2/users/by",
            lambda: self._client.get_users(usernames=usernames, user_fields=USER_FIELDS, user_auth=self._user_auth),
            billed=(USER, ""),
        )

    async def timeline_page(
        self,
        user_id: str,
        *,
        account: str,
        since_id: str | None,
        pagination_token: str | None,
        max_results: int = MAX_RESULTS,
    ) -> Any:
        """One page of ``account``'s timeline (``account``: the username its cost is booked to)."""
        return await self._call(
            TIMELINE_ENDPOINT,
            lambda: self._client.get_users_tweets(
                user_id,
                since_id=since_id,
                pagination_token=pagination_token,
                max_results=max_results,
                tweet_fields=TWEET_FIELDS,
                expansions=self.expansions,
                user_fields=USER_FIELDS,
                media_fields=MEDIA_FIELDS,
                place_fields=PLACE_FIELDS,
                poll_fields=POLL_FIELDS,
                user_auth=self._user_auth,
            ),
            billed=(POST, account),
        )

    async def stream_rules(self) -> Any:
        return await self._call(RULES_ENDPOINT, self._rules.get_rules, collection=False)

    async def change_stream_rules(self, *, add: Sequence[tuple[str, str]] = (), delete: Sequence[str] = ()) -> Any:
        """Add ``(value, tag)`` rules or delete rules by id (one of the two per request, as X asks)."""
        if add:
            rules = [tweepy.StreamRule(value, tag=tag) for value, tag in add]
            return await self._call(RULES_ENDPOINT, lambda: self._rules.add_rules(rules), collection=False)
        return await self._call(RULES_ENDPOINT, lambda: self._rules.delete_rules(list(delete)), collection=False)

    async def usage(self) -> Any:
        """X's own count of this project's post reads (``GET /2/usage/tweets``; app-only auth)."""
        return await self._call(USAGE_ENDPOINT, lambda: self._rules.request("GET", USAGE_ENDPOINT), collection=False)

    async def _call(
        self,
        endpoint: str,
        request: Callable[[], Awaitable[Any]],
        *,
        collection: bool = True,
        billed: tuple[str, str] | None = None,
    ) -> Any:
        """One API call, retried; each attempt of a collection call is reported to /healthz as it ends.

        A ``billed`` call (what its ``data`` holds, the account it is for) waits while reading is
        paused and books what the answer returned.
        """
        backoff = Backoff(*self._backoff)
        failures = 0
        report = self._health.collection if collection else _ignore
        while True:
            if billed and self._spending:
                await self._spending.may_read()
            wait = self.limiter.reserve(endpoint)
            if wait > 0:
                self._metrics.rate_limit_wait.labels(endpoint).inc(wait)
                await self._sleep(wait)
                if billed and self._spending and self._spending.paused:
                    continue  # paused while it waited for its turn (another answer spent the budget)
            kind: str
            try:
                response = await request()
                body = await response.text()
                payload = json.loads(body)  # any JSON: streamer.answers checks its shape
                report(ok=True)
                if billed and self._spending:
                    self._spending.record(payload, *billed)
                return payload
            except tweepy.TooManyRequests as exc:
                if self._spending and (detail := await _usage_cap(exc)) is not None:
                    self._spending.usage_capped(detail)  # not a rate limit: reading pauses until X's reset day
                    continue
                report(ok=False)
                self._metrics.rate_limited.labels(endpoint).inc()
                reset = exc.reset_time
                wait = max(1.0, reset - time.time() + 1.0) if reset else backoff.next_delay() + 15
                log.warning("rate_limited", endpoint=endpoint, wait_s=round(wait, 2))
                self._metrics.rate_limit_wait.labels(endpoint).inc(wait)
                await self._sleep(wait)
                continue
            except (tweepy.Forbidden, tweepy.NotFound) as exc:
                report(ok=True)  # X answered: the account is the problem, not collection
                raise AccountUnavailable(
                    "account_unavailable", exc.response.status, "; ".join(exc.api_messages) or "no detail"
                ) from None
            except tweepy.Unauthorized as exc:
                report(ok=False)
                raise ApiError("unauthorized", 401, "; ".join(exc.api_messages) or "check the credentials") from None
            except tweepy.BadRequest as exc:
                report(ok=False)
                raise ApiError("bad_request", 400, "; ".join(exc.api_messages) or "no detail") from None
            except tweepy.TwitterServerError as exc:
                kind, detail = "server_error", f"HTTP {exc.response.status}"
            except tweepy.HTTPException as exc:
                kind, detail = "http_error", f"HTTP {exc.response.status}"
            except (aiohttp.ContentTypeError, json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
                kind, detail = "malformed_response", type(exc).__name__
            except (aiohttp.ClientError, TimeoutError) as exc:
                kind, detail = "network", f"{type(exc).__name__} talking to {self._base.host}:{self._base.port}"
            report(ok=False)
            failures += 1
            self._metrics.api_failures.labels(kind).inc()
            if failures > self._max_retries:
                raise ApiError(kind, None, f"{detail}; gave up after {failures} attempts")
            delay = backoff.next_delay()
            log.warning(
                "api_retry", endpoint=endpoint, kind=kind, detail=detail, attempt=failures, wait_s=round(delay, 2)
            )
            await self._sleep(delay)
