"""The filtered stream and its rules, as X serves them: ``GET /2/tweets/search/stream`` and
``GET|POST /2/tweets/search/stream/rules``.

Rules: ids as strings, ``meta.sent`` and ``meta.summary``, ``dry_run``, values over
``max_rule_length`` and duplicates refused in ``errors``. Only ``from:<id>`` terms match (joined by
``OR``); any other value is stored and matches nothing. The stream: chunked, one JSON object per
``\\r\\n``-terminated line, a bare ``\\r\\n`` keep-alive every ``keepalive_s``, one connection at a
time (another gets X's 429 ``TooManyConnections``), app-only auth. A tweet is delivered only to
the connection open when it is posted: tweets posted while none is open are on timelines only.

Faults, scripted through ``/_sim/stream``: ``connect`` answers the next connects with 429 or 503;
``do`` acts on the open connection: ``disconnect`` (abrupt close), ``stall`` (silence, no
keep-alives, until the client gives up), ``truncated`` (half of the next tweet's line, then the end of the
stream; the tweet counts as not delivered), ``operational_disconnect`` (X's error object, then close),
``error_object`` and ``non_json`` (one line of each, the connection stays up).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from simulator.billing import USAGE_CAPPED
from simulator.expansions import expansions_of

if TYPE_CHECKING:
    from simulator.server import Simulator
    from simulator.world import SimAccount

STREAM_FAULTS = ("disconnect", "stall", "truncated", "operational_disconnect", "error_object", "non_json")
CONNECT_FAULTS = ("429", "503")
_FROM = re.compile(r"from:([0-9]+)")
TOO_MANY_CONNECTIONS = {
    "title": "ConnectionException",
    "detail": "This stream is currently at the maximum allowed connection limit.",
    "connection_issue": "TooManyConnections",
    "type": "https://api.twitter.com/2/problems/streaming-connection",
}
OPERATIONAL_DISCONNECT = {
    "errors": [
        {
            "title": "operational-disconnect",
            "disconnect_type": "UpstreamOperationalDisconnect",
            "detail": "This stream has been disconnected upstream for operational reasons.",
            "type": "https://api.twitter.com/2/problems/operational-disconnect",
        }
    ]
}


def _sent() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def rule_matches(value: str, author_id: str) -> bool:
    terms = value.split(" OR ")
    return any((m := _FROM.fullmatch(t.strip())) is not None and m[1] == author_id for t in terms)


class FilteredStream:
    """Rules and the one connection; bookkeeping tests compare the landing zone against."""

    def __init__(self, sim: Simulator, *, keepalive_s: float = 20.0, max_rule_length: int = 512) -> None:
        self._sim = sim
        self.keepalive_s = keepalive_s
        self.max_rule_length = max_rule_length
        self.rules: dict[str, dict[str, str]] = {}  # id -> {"id", "value", "tag"?}
        self._next_rule = int(time.time() * 1000) << 22
        self.rule_changes = 0  # POSTs that added or deleted something
        self.connections = 0
        self.connect_faults: deque[str] = deque()
        self.delivered: dict[str, set[str]] = {}  # username -> ids written to a client
        self._queue: asyncio.Queue[tuple[str, Any]] | None = None  # the open connection's
        self._request: web.Request | None = None
        self._expansions = frozenset[str]()
        self._loop: asyncio.AbstractEventLoop | None = None
        sim.world.listeners.append(self._posted)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/2/tweets/search/stream", self.stream)
        app.router.add_get("/2/tweets/search/stream/rules", self.get_rules)
        app.router.add_post("/2/tweets/search/stream/rules", self.post_rules)
        app.router.add_get("/_sim/stream", self.ctl_state)
        app.router.add_post("/_sim/stream", self.ctl_stream)

    @property
    def connected(self) -> bool:
        return self._queue is not None

    def act(self, fault: str) -> None:
        """Apply a fault to the open connection (thread-safe; nothing happens when none is open)."""
        if self._queue is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, ("fault", fault))

    def _posted(self, account: SimAccount, tweet: dict[str, Any]) -> None:
        if self._queue is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, ("tweet", (account, tweet)))

    def _auth_problem(self, request: web.Request) -> web.Response | None:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return None
        status, body = (
            (
                403,
                {
                    "title": "Unsupported Authentication",
                    "type": "https://api.twitter.com/2/problems/unsupported-authentication",
                    "detail": "Authenticating with OAuth 1.0a User Context is forbidden for this endpoint. "
                    "Supported authentication types are [OAuth 2.0 Application-Only].",
                },
            )
            if auth.startswith("OAuth ")
            else (401, {"title": "Unauthorized", "type": "about:blank", "detail": "Unauthorized"})
        )
        return web.json_response({**body, "status": status}, status=status)

    # -- rules -----------------------------------------------------------------------------------

    async def get_rules(self, request: web.Request) -> web.Response:
        if (problem := self._auth_problem(request)) is not None:
            return problem
        ids = [i for i in request.query.get("ids", "").split(",") if i]
        rules = [r for r in self.rules.values() if not ids or r["id"] in ids]
        body: dict[str, Any] = {"meta": {"sent": _sent(), "result_count": len(rules)}}
        if rules:
            body["data"] = rules
        return web.json_response(body)

    async def post_rules(self, request: web.Request) -> web.Response:
        if (problem := self._auth_problem(request)) is not None:
            return problem
        dry_run = request.query.get("dry_run", "false").lower() == "true"
        try:
            body = await request.json()
        except ValueError:
            return _invalid("Request body is not valid JSON")
        if not isinstance(body, dict) or ("add" in body) == ("delete" in body):
            return _invalid("Exactly one of add or delete is required")
        if "add" in body:
            return self._add(body["add"], dry_run)
        return self._delete(body["delete"], dry_run)

    def _add(self, adds: Any, dry_run: bool) -> web.Response:
        if not isinstance(adds, list) or not all(isinstance(a, dict) and isinstance(a.get("value"), str) for a in adds):
            return _invalid("add must be a list of {value, tag} objects")
        created, errors = [], []
        values = {r["value"] for r in self.rules.values()}
        for add in adds:
            value = add["value"]
            if len(value) > self.max_rule_length:
                errors.append(_rule_error(value, f"Rules must not exceed {self.max_rule_length} characters."))
            elif value in values:
                errors.append(
                    {**_rule_error(value, "DuplicateRule"), "title": "DuplicateRule", "id": self._id_of(value)}
                )
            else:
                self._next_rule += 1
                rule = {"id": str(self._next_rule), "value": value}
                if isinstance(add.get("tag"), str):
                    rule["tag"] = add["tag"]
                created.append(rule)
                values.add(value)
        if not dry_run:
            self.rules.update((r["id"], r) for r in created)
            self.rule_changes += bool(created)
        summary = {"created": len(created), "not_created": len(errors), "valid": len(created), "invalid": len(errors)}
        answer: dict[str, Any] = {"meta": {"sent": _sent(), "summary": summary}}
        if created:
            answer["data"] = created
        if errors:
            answer["errors"] = errors
        return web.json_response(answer)

    def _delete(self, delete: Any, dry_run: bool) -> web.Response:
        ids = delete.get("ids") if isinstance(delete, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            return _invalid("delete.ids must be a list of rule id strings")
        found = [i for i in ids if i in self.rules]
        errors = [
            {
                "value": i,
                "details": ["Rule does not exist"],
                "title": "Invalid Request",
                "type": "https://api.twitter.com/2/problems/invalid-request",
            }
            for i in ids
            if i not in self.rules
        ]
        if not dry_run:
            for rule_id in found:
                del self.rules[rule_id]
            self.rule_changes += bool(found)
        answer: dict[str, Any] = {
            "meta": {"sent": _sent(), "summary": {"deleted": len(found), "not_deleted": len(errors)}}
        }
        if errors:
            answer["errors"] = errors
        return web.json_response(answer)

    def _id_of(self, value: str) -> str:
        return next(r["id"] for r in self.rules.values() if r["value"] == value)

    def _matching(self, author_id: str) -> list[dict[str, str]]:
        return [
            {"id": r["id"], "tag": r.get("tag", "")} for r in self.rules.values() if rule_matches(r["value"], author_id)
        ]

    # -- the stream --------------------------------------------------------------------------------

    async def stream(self, request: web.Request) -> web.StreamResponse:
        if (problem := self._auth_problem(request)) is not None:
            return problem
        self._sim.requests += 1
        if self.connect_faults:
            fault = self.connect_faults.popleft()
            if fault == "429":
                return web.json_response(
                    {"title": "Too Many Requests", "detail": "Too Many Requests", "type": "about:blank", "status": 429},
                    status=429,
                )
            return web.json_response({"title": "Service Unavailable", "status": 503}, status=503)
        if self._sim.billing.capped:
            return web.json_response(USAGE_CAPPED, status=429)
        if self._queue is not None and _open(self._request):
            return web.json_response({**TOO_MANY_CONNECTIONS, "status": 429}, status=429)
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._expansions = expansions_of(request)
        self._queue, self._request, self._loop = queue, request, asyncio.get_running_loop()
        self.connections += 1
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        try:
            await response.prepare(request)
            await self._serve(request, response, queue)
        except ConnectionError:
            pass  # the client went away
        finally:
            if self._queue is queue:
                self._queue = None
        return response

    async def _serve(self, request: web.Request, response: web.StreamResponse, queue: asyncio.Queue) -> None:
        cut_next = False
        while True:
            try:
                kind, value = await asyncio.wait_for(queue.get(), timeout=self.keepalive_s)
            except TimeoutError:
                await response.write(b"\r\n")
                continue
            if kind == "tweet":
                account, tweet = value
                message = self._message(account, tweet)
                if message is None:
                    continue
                line = json.dumps(message).encode()
                if cut_next:  # half a line, then the stream ends: the tweet is not delivered
                    await response.write(line[: len(line) // 2])
                    await response.write_eof()
                    return
                await response.write(line + b"\r\n")
                self.delivered.setdefault(account.username, set()).add(tweet["id"])
                self._sim.billing.bill_body(message)
                continue
            if value == "disconnect":
                _close(request)
                return
            if value == "stall":
                # aiohttp has no public "peer went away" event to wait on
                while _open(request):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
                return
            if value == "truncated":
                cut_next = True
            if value == "operational_disconnect":
                await response.write(json.dumps(OPERATIONAL_DISCONNECT).encode() + b"\r\n")
                await response.write_eof()
                return
            if value == "error_object":
                error = {"title": "Invalid Request", "detail": "A simulated error object inside the stream."}
                await response.write(json.dumps({"errors": [error]}).encode() + b"\r\n")
            elif value == "non_json":
                await response.write(b"<html><body>upstream hiccup</body></html>\r\n")

    def _message(self, account: SimAccount, tweet: dict[str, Any]) -> dict[str, Any] | None:
        rules = self._matching(account.id)
        if not rules:
            return None
        with self._sim.world.lock:
            body = self._sim.page_body(account, [tweet], more=False, expansions=self._expansions)
        body.pop("meta", None)
        body["data"] = body["data"][0]
        body["matching_rules"] = rules
        return body

    # -- controls ------------------------------------------------------------------------------------

    async def ctl_state(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "connected": self.connected,
                "connections": self.connections,
                "rules": list(self.rules.values()),
                "rule_changes": self.rule_changes,
                "delivered": {k: sorted(v) for k, v in self.delivered.items()},
            }
        )

    async def ctl_stream(self, request: web.Request) -> web.Response:
        body = await request.json()
        for fault in body.get("connect", []):
            if fault not in CONNECT_FAULTS:
                return web.json_response({"error": f"unknown connect fault {fault!r}"}, status=400)
            self.connect_faults.append(fault)
        if (fault := body.get("do")) is not None:
            if fault not in STREAM_FAULTS:
                return web.json_response({"error": f"unknown stream fault {fault!r}"}, status=400)
            self.act(fault)
        if "keepalive_s" in body:
            self.keepalive_s = float(body["keepalive_s"])
        return web.json_response({"connected": self.connected, "connect": list(self.connect_faults)})


def _open(request: web.Request | None) -> bool:
    """The client still holds the connection (a socket it closed frees the slot, as at X)."""
    return request is not None and request.transport is not None and not request.transport.is_closing()


def _close(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.close()


def _invalid(detail: str) -> web.Response:
    body = {"title": "Invalid Request", "detail": detail, "type": "https://api.twitter.com/2/problems/invalid-request"}
    return web.json_response({"errors": [body], **body}, status=400)


def _rule_error(value: str, detail: str) -> dict[str, Any]:
    return {
        "value": value,
        "details": [detail],
        "title": "UnprocessableEntity",
        "type": "https://api.twitter.com/2/problems/invalid-rules",
    }
