"""HTTP side of the simulator: the v2 endpoints the streamer uses, rate limits, faults, controls.

Endpoints: ``GET /2/users/by``, ``GET /2/users/:id/tweets`` (since_id, pagination_token,
max_results, the 3,200 cap), with ``x-rate-limit-*`` headers; the filtered stream and its rules
live in ``simulator.stream``. Faults are either scripted (the
next N answers, for exact tests) or random with a probability (for soak runs and the demo).
Controls under ``/_sim/``: generate tweets, list every id generated or served, script faults.
"""

from __future__ import annotations

import asyncio
import copy
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from simulator.billing import USAGE_CAPPED, SimBilling
from simulator.expansions import ALL_EXPANSIONS, expansions_of
from simulator.stream import FilteredStream
from simulator.world import World

# Wrongly shaped 200 answers: the body of a healthy answer, mangled one way.
SHAPE_FAULTS = (
    "bad_tweet_id",  # the newest tweet's id ends in "²" (a digit to str.isdigit, not to int; still traceable)
    "meta_list",  # meta is a list
    "errors_strings",  # errors entries are strings
    "refs_string",  # a tweet's referenced_tweets is a string
    "mentions_string",  # a tweet's entities.mentions is a string
    "data_string",  # data is a string
    "top_list",  # the body is a JSON list
    "user_id_list",  # (users/by) a user id is a list
)
FAULTS = ("none", "429", "500", "503", "502html", "malformed", "slow", "disconnect", "partial_json", *SHAPE_FAULTS)


@dataclass
class RateWindow:
    limit: int
    window_s: float
    used: int = 0
    reset_at: float = 0.0

    def take(self) -> tuple[bool, dict[str, str]]:
        now = time.time()
        if now >= self.reset_at:
            self.used, self.reset_at = 0, now + self.window_s
        allowed = self.used < self.limit
        if allowed:
            self.used += 1
        headers = {
            "x-rate-limit-limit": str(self.limit),
            "x-rate-limit-remaining": str(max(0, self.limit - self.used)),
            "x-rate-limit-reset": str(int(self.reset_at + 0.999)),
        }
        return allowed, headers


@dataclass
class Faults:
    scripted: deque[str] = field(default_factory=deque)
    probabilities: dict[str, float] = field(default_factory=dict)
    slow_s: float = 3.0
    injected: dict[str, int] = field(default_factory=dict)

    def draw(self, rng: random.Random) -> str | None:
        fault = self.scripted.popleft() if self.scripted else None
        if fault == "none":  # a scripted healthy answer, to place a fault on a later request
            return None
        if fault is None:
            for name, p in self.probabilities.items():
                if rng.random() < p:
                    fault = name
                    break
        if fault:
            self.injected[fault] = self.injected.get(fault, 0) + 1
        return fault


def _problem(status: int, title: str, detail: str) -> web.Response:
    return web.json_response({"title": title, "detail": detail, "type": "about:blank", "status": status}, status=status)


class Simulator:
    def __init__(
        self,
        world: World,
        *,
        rate_limit: int = 900,
        window_s: float = 900.0,
        faults: Faults | None = None,
        require_auth: bool = True,
        keepalive_s: float = 20.0,
    ) -> None:
        self.world = world
        self.faults = faults or Faults()
        self.require_auth = require_auth
        self.bearer_token: str | None = None  # when set, any other bearer token is refused (401)
        self._rate = {"users_by": RateWindow(rate_limit, window_s), "timeline": RateWindow(rate_limit, window_s)}
        self._rng = random.Random(world.rng.random())
        self.served: dict[str, set[str]] = {}
        self.mangled: set[str] = set()  # tweet ids sent in a wrongly shaped object (SHAPE_FAULTS)
        self.requests = 0
        self.rate_limited = 0  # 429s for a spent rate-limit window (not scripted faults)
        self.timeline_requests: dict[str, int] = {}  # by username
        self.auth_seen: set[str] = set()
        self.paused = False  # stops the background tweet generator
        self.billing = SimBilling()
        self.stream = FilteredStream(self, keepalive_s=keepalive_s)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/2/users/by", self.users_by)
        app.router.add_get("/2/users/{id}/tweets", self.timeline)
        app.router.add_get("/_sim/ids", self.ctl_ids)
        app.router.add_get("/_sim/served", self.ctl_served)
        app.router.add_get("/_sim/mangled", self.ctl_mangled)
        app.router.add_get("/_sim/stats", self.ctl_stats)
        app.router.add_post("/_sim/generate", self.ctl_generate)
        app.router.add_post("/_sim/faults", self.ctl_faults)
        app.router.add_post("/_sim/suspend", self.ctl_suspend)
        app.router.add_post("/_sim/pause", self.ctl_pause)
        app.router.add_get("/2/usage/tweets", self.usage)
        app.router.add_get("/_sim/bill", self.ctl_bill)
        app.router.add_post("/_sim/usage", self.ctl_usage)
        self.stream.routes(app)
        return app

    async def _gate(
        self, request: web.Request, bucket: str
    ) -> tuple[web.StreamResponse | None, dict[str, str], str | None]:
        """Auth, rate limit and fault injection shared by the API endpoints (the shape fault to apply)."""
        early, headers, fault = await self._faulted(request, bucket)
        return early, headers, fault if fault in SHAPE_FAULTS else None

    async def _faulted(
        self, request: web.Request, bucket: str
    ) -> tuple[web.StreamResponse | None, dict[str, str], str | None]:
        self.requests += 1
        auth = request.headers.get("Authorization", "")
        if self.require_auth and not auth.startswith(("Bearer ", "OAuth ")):
            return _problem(401, "Unauthorized", "Unauthorized"), {}, None
        if self.bearer_token is not None and auth.startswith("Bearer ") and auth != f"Bearer {self.bearer_token}":
            return _problem(401, "Unauthorized", "Unauthorized"), {}, None
        self.auth_seen.add(auth.split(" ", 1)[0])
        allowed, headers = self._rate[bucket].take()
        fault = self.faults.draw(self._rng)
        self.rate_limited += not allowed
        if not allowed or fault == "429":
            response = _problem(429, "Too Many Requests", "Too Many Requests")
            response.headers.update(headers)
            if fault == "429":
                response.headers["x-rate-limit-remaining"] = "0"
                response.headers["x-rate-limit-reset"] = str(int(time.time()) + 1)
            return response, headers, None
        if fault in ("500", "503"):
            return _problem(int(fault), "Service Unavailable", "Internal error, try again"), headers, None
        if fault == "502html":
            html = web.Response(status=502, text="<html><body>Bad Gateway</body></html>", content_type="text/html")
            return html, headers, None
        if fault == "slow":
            await asyncio.sleep(self.faults.slow_s)
        if fault == "disconnect":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500), headers, None
        if fault in ("malformed", "partial_json"):
            text = '{"data": [{"id": "1", "text": "trunc' if fault == "partial_json" else "<<not json>>"
            return web.Response(status=200, text=text, content_type="application/json", headers=headers), headers, None
        return None, headers, fault

    async def users_by(self, request: web.Request) -> web.StreamResponse:
        early, headers, shape = await self._gate(request, "users_by")
        if early is not None:
            return early
        names = [n for n in request.query.get("usernames", "").split(",") if n]
        if not 1 <= len(names) <= 100:  # X's limit per request
            return _problem(400, "Invalid Request", "One or more parameters to your request was invalid.")
        data, errors = [], []
        with self.world.lock:
            for name in names:
                account = self.world.by_username.get(name.lower())
                if account is None:
                    errors.append(
                        {
                            "value": name,
                            "detail": f"Could not find user with usernames: [{name}].",
                            "title": "Not Found Error",
                            "resource_type": "user",
                            "parameter": "usernames",
                            "resource_id": name,
                            "type": "https://api.twitter.com/2/problems/resource-not-found",
                        }
                    )
                elif account.suspended:
                    errors.append(
                        {
                            "value": name,
                            "detail": f"User has been suspended: [{name}].",
                            "title": "Forbidden",
                            "resource_type": "user",
                            "parameter": "usernames",
                            "resource_id": name,
                            "type": "https://api.twitter.com/2/problems/resource-not-found",
                        }
                    )
                else:
                    data.append(account.profile(self.world.rng))
        body: dict[str, Any] = {}
        if data:
            body["data"] = data
        if errors:
            body["errors"] = errors
        self.billing.bill_body(body, "user_read")
        return web.json_response(mangle(body, shape), headers=headers)

    async def timeline(self, request: web.Request) -> web.StreamResponse:
        early, headers, shape = await self._gate(request, "timeline")
        if early is not None:
            return early
        if self.billing.capped:
            return web.json_response(USAGE_CAPPED, status=429, headers=headers)
        account = self.world.accounts.get(request.match_info["id"])
        if account is None:
            return _problem(404, "Not Found Error", "Could not find user")
        if account.suspended:
            return _problem(403, "Forbidden", f"User has been suspended: [{account.username}].")
        self.timeline_requests[account.username] = self.timeline_requests.get(account.username, 0) + 1
        query = request.query
        try:
            max_results = min(100, max(5, int(query.get("max_results", "10"))))
            since = int(query["since_id"]) if query.get("since_id") else 0
            until = int(query["pagination_token"][1:], 36) if query.get("pagination_token") else None
        except ValueError:
            return _problem(400, "Invalid Request", "One or more parameters to your request was invalid.")
        with self.world.lock:
            window = account.tweets[-self.world.timeline_cap :]
            newest_first = [
                t for t in reversed(window) if int(t["id"]) > since and (until is None or int(t["id"]) < until)
            ]
            page = newest_first[:max_results]
            body = self.page_body(account, page, more=len(newest_first) > len(page), expansions=expansions_of(request))
        if shape in ("bad_tweet_id", "refs_string", "mentions_string", "user_id_list"):
            intact = page[1:]  # the first tweet is mangled (its id a list, ...): it lands in the errors stream
            self.mangled.update(t["id"] for t in page[:1])
        elif shape in (None, "errors_strings"):
            intact = page
        else:
            intact = []  # the whole answer is unusable

        self.served.setdefault(account.username, set()).update(t["id"] for t in intact)
        self.billing.bill_body(body)
        return web.json_response(mangle(body, shape), headers=headers)

    def page_body(
        self, account: Any, page: list[dict[str, Any]], *, more: bool, expansions: frozenset[str] = ALL_EXPANSIONS
    ) -> dict[str, Any]:
        """A tweets answer for ``page``, with the includes the requested ``expansions`` ask for."""
        meta: dict[str, Any] = {"result_count": len(page)}
        if not page:
            return {"meta": meta}
        meta.update(newest_id=page[0]["id"], oldest_id=page[-1]["id"])
        if more:
            meta["next_token"] = "p" + _base36(int(page[-1]["id"]))
        tweets_out, users, media, polls, places, refs, errors = [], set(), [], [], [], {}, []
        wants = expansions.__contains__
        for tweet in page:
            clean = {k: v for k, v in tweet.items() if not k.startswith("_")}
            tweets_out.append(clean)
            if wants("author_id"):
                users.add(tweet["author_id"])
            if tweet.get("in_reply_to_user_id") and wants("in_reply_to_user_id"):
                users.add(tweet["in_reply_to_user_id"])
            if wants("entities.mentions.username"):
                users.update(m["id"] for m in tweet.get("entities", {}).get("mentions", []))
            if "_media" in tweet and wants("attachments.media_keys"):
                media.append(tweet["_media"])
            if "_poll" in tweet and wants("attachments.poll_ids"):
                polls.append(tweet["_poll"])
            if "geo" in tweet and wants("geo.place_id"):
                from simulator.world import PLACES

                places.extend(p for p in PLACES if p["id"] == tweet["geo"]["place_id"])
            for ref in tweet.get("referenced_tweets", []) if wants("referenced_tweets.id") else []:
                target = self.world.tweet_by_id(account, ref["id"])
                if target is None:
                    errors.append(
                        {
                            "value": ref["id"],
                            "detail": f"Could not find tweet with referenced_tweets.id: [{ref['id']}].",
                            "title": "Not Found Error",
                            "resource_type": "tweet",
                            "parameter": "referenced_tweets.id",
                            "resource_id": ref["id"],
                            "type": "https://api.twitter.com/2/problems/resource-not-found",
                        }
                    )
                else:
                    refs[target["id"]] = {k: v for k, v in target.items() if not k.startswith("_")}
                    if wants("referenced_tweets.id.author_id"):
                        users.add(target["author_id"])
        includes: dict[str, Any] = {"users": self.world.user_objects(users)}
        for key, values in (("tweets", list(refs.values())), ("media", media), ("polls", polls), ("places", places)):
            if values:
                includes[key] = values
        body: dict[str, Any] = {"data": tweets_out, "includes": includes, "meta": meta}
        if errors:
            body["errors"] = errors
        return body

    async def usage(self, request: web.Request) -> web.Response:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return _problem(403, "Unsupported Authentication", "OAuth 2.0 Application-Only is required.")
        return web.json_response(self.billing.usage())

    async def ctl_bill(self, _: web.Request) -> web.Response:
        return web.json_response(self.billing.counts)

    async def ctl_usage(self, request: web.Request) -> web.Response:
        body = await request.json()
        if "post_cap" in body:
            self.billing.post_cap = int(body["post_cap"])
        if "cap_reset_day" in body:
            self.billing.cap_reset_day = int(body["cap_reset_day"])
        return web.json_response(self.billing.usage())

    async def ctl_ids(self, _: web.Request) -> web.Response:
        return web.json_response(self.world.all_ids())

    async def ctl_served(self, _: web.Request) -> web.Response:
        """Every tweet id sent to a client, by a timeline page or by the stream."""
        served: dict[str, set[str]] = {}
        for source in (self.served, self.stream.delivered):
            for username, ids in source.items():
                served.setdefault(username, set()).update(ids)
        return web.json_response({k: sorted(v) for k, v in served.items()})

    async def ctl_mangled(self, _: web.Request) -> web.Response:
        """Tweet ids sent in a wrongly shaped object (a client quarantines those, unless sent intact later)."""
        return web.json_response(sorted(self.mangled))

    async def ctl_stats(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "requests": self.requests,
                "rate_limited": self.rate_limited,
                "timeline_requests": self.timeline_requests,
                "faults_injected": self.faults.injected,
                "auth_schemes": sorted(self.auth_seen),
            }
        )

    async def ctl_generate(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        ids = self.world.generate(int(body.get("count", 1)), body.get("username"))
        return web.json_response({"generated": ids})

    async def ctl_faults(self, request: web.Request) -> web.Response:
        body = await request.json()
        for fault in body.get("next", []):
            if fault not in FAULTS:
                return web.json_response({"error": f"unknown fault {fault!r}"}, status=400)
            self.faults.scripted.append(fault)
        if "probabilities" in body:
            self.faults.probabilities = {k: float(v) for k, v in body["probabilities"].items()}
        if "slow_s" in body:
            self.faults.slow_s = float(body["slow_s"])
        return web.json_response({"scripted": list(self.faults.scripted), "probabilities": self.faults.probabilities})

    async def ctl_pause(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else {}
        self.paused = bool(body.get("paused", True))
        return web.json_response({"paused": self.paused})

    async def ctl_suspend(self, request: web.Request) -> web.Response:
        body = await request.json()
        account = self.world.by_username[body["username"].lower()]
        account.suspended = bool(body.get("suspended", True))
        return web.json_response({"username": account.username, "suspended": account.suspended})


def mangle(body: dict[str, Any], shape: str | None) -> Any:
    """A copy of a healthy answer made wrongly shaped one way (``SHAPE_FAULTS``); None: the answer itself."""
    if shape is None:
        return body
    body = copy.deepcopy(body)
    tweets = body.get("data") or [{}]
    first = tweets[0] if isinstance(tweets[0], dict) else {}
    if shape == "bad_tweet_id":
        first["id"] = f"{first.get('id', '')}\u00b2"
    elif shape == "meta_list":
        body["meta"] = [body.get("meta")]
    elif shape == "errors_strings":
        body["errors"] = ["something went wrong", 42]
    elif shape == "refs_string":
        first["referenced_tweets"] = "replied_to"
    elif shape == "mentions_string":
        first.setdefault("entities", {})["mentions"] = "@someone"
    elif shape == "data_string":
        body["data"] = "tweets"
    elif shape == "top_list":
        return [body]
    elif shape == "user_id_list":
        first["id"] = [first.get("id")]
    return body


def _base36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while number:
        number, rem = divmod(number, 36)
        out = digits[rem] + out
    return out or "0"


class SimulatorThread:
    """Runs a simulator on its own event loop in a thread: handy for tests and the demo."""

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1", port: int = 0, tweets_per_s: float = 0.0) -> None:
        self.simulator = simulator
        self._host, self._port = host, port
        self._tweets_per_s = tweets_per_s
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="x-simulator", daemon=True)
        self._failed: OSError | None = None
        self.url = ""

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except OSError as exc:  # the address is taken: start() raises it in the caller's thread
            self._failed = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self._runner.cleanup())
        self._loop.close()

    async def _start(self) -> None:
        self._runner = web.AppRunner(self.simulator.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://{self._host}:{port}"
        if self._tweets_per_s > 0:
            self._ticker = asyncio.ensure_future(self._tick())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            count = int(self._tweets_per_s) + (1 if random.random() < self._tweets_per_s % 1 else 0)
            if count and not self.simulator.paused:
                self.simulator.world.generate(count)

    def start(self) -> SimulatorThread:
        self._thread.start()
        self._ready.wait(10)
        if self._failed is not None:
            raise self._failed
        return self

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
