"""What /healthz says, decided from what the components report, and the localhost HTTP endpoint.

The contract (docs/operations.md, used by checks outside the test suite):
``{"status": "ok" | "unhealthy" | "paused", "reasons": [...], "warnings": [...], "components": {...}}``,
HTTP 503 only for ``unhealthy``.

* ``api_failing``: every collection request (timeline page, user lookup, stream connect) since the
  first unresolved failure failed, for ``health.stale_after_s`` (from process start when none has
  succeeded yet). Quiet is not failure: no requests at all is healthy.
* ``stream_down``: stream mode, not connected for ``stale_after_s``.
* ``upload_failing``: a spooled batch has waited ``stale_after_s`` while every upload failed.
* ``component_failed``: a component task ended.
* A deliberate pause (``budget_exhausted``, ``x_usage_cap``) makes the status ``paused``; collection
  staleness is not judged while paused (uploads still are).
* Warnings (``budget_80pct``, ``x_cap_80pct``, ``spool_full``) never change the status.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from streamer.metrics import Metrics

OK, UNHEALTHY, PAUSED = "ok", "unhealthy", "paused"
API_FAILING = "api_failing"
STREAM_DOWN = "stream_down"
UPLOAD_FAILING = "upload_failing"
COMPONENT_FAILED = "component_failed"
BUDGET_EXHAUSTED = "budget_exhausted"
X_USAGE_CAP = "x_usage_cap"
PAUSE_REASONS = (BUDGET_EXHAUSTED, X_USAGE_CAP)
BUDGET_80PCT = "budget_80pct"
X_CAP_80PCT = "x_cap_80pct"
SPOOL_FULL = "spool_full"


@dataclass
class _Failing:
    """When the current run of failures began (None: the last attempt succeeded, or none was made)."""

    since: float | None = None
    ever_succeeded: bool = False

    def record(self, ok: bool, now: float, started: float) -> None:
        if ok:
            self.since, self.ever_succeeded = None, True
        elif self.since is None:
            self.since = now if self.ever_succeeded else started

    def failing_for(self, now: float) -> float:
        return 0.0 if self.since is None else now - self.since


@dataclass
class Health:
    """Pure bookkeeping: components report events, ``report`` turns them into the /healthz body."""

    stale_after_s: float
    clock: Callable[[], float] = time.time
    started: float = field(default=0.0)
    _collection: _Failing = field(default_factory=_Failing)
    _upload: _Failing = field(default_factory=_Failing)
    _stream_down_since: float | None = None
    _stream_mode: bool = False
    _pauses: set[str] = field(default_factory=set)
    _warnings: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.started = self.started or self.clock()

    def collection(self, *, ok: bool) -> None:
        self._collection.record(ok, self.clock(), self.started)

    def upload(self, *, ok: bool) -> None:
        self._upload.record(ok, self.clock(), self.started)

    def stream(self, *, connected: bool) -> None:
        """Stream mode reports every connect and disconnect (the first call switches the check on)."""
        if not self._stream_mode:
            self._stream_mode = True
            self._stream_down_since = self.started
        if connected:
            self._stream_down_since = None
        elif self._stream_down_since is None:
            self._stream_down_since = self.clock()

    def pause(self, reason: str, paused: bool) -> None:
        (self._pauses.add if paused else self._pauses.discard)(reason)

    def warn(self, code: str, on: bool) -> None:
        (self._warnings.add if on else self._warnings.discard)(code)

    @property
    def paused(self) -> bool:
        return bool(self._pauses)

    def report(self, alive: dict[str, bool], *, spool_files: int) -> dict[str, Any]:
        now = self.clock()
        reasons: list[str] = []
        if not all(alive.values()):
            reasons.append(COMPONENT_FAILED)
        if not self._pauses:
            if self._collection.failing_for(now) >= self.stale_after_s:
                reasons.append(API_FAILING)
            if self._stream_down_since is not None and now - self._stream_down_since >= self.stale_after_s:
                reasons.append(STREAM_DOWN)
        if spool_files and self._upload.failing_for(now) >= self.stale_after_s:
            reasons.append(UPLOAD_FAILING)
        status = UNHEALTHY if reasons else PAUSED if self._pauses else OK
        components: dict[str, Any] = {name: {"alive": running} for name, running in sorted(alive.items())}
        components.setdefault("source", {})["failing_for_s"] = round(self._collection.failing_for(now), 1)
        components.setdefault("uploader", {})["failing_for_s"] = round(self._upload.failing_for(now), 1)
        if self._stream_mode:
            down = 0.0 if self._stream_down_since is None else now - self._stream_down_since
            components["stream"] = {"connected": self._stream_down_since is None, "down_for_s": round(down, 1)}
        return {
            "status": status,
            "reasons": reasons + sorted(self._pauses),
            "warnings": sorted(self._warnings),
            "components": components,
        }


class HealthServer:
    """/metrics for Prometheus and /healthz for load balancers and people, on localhost."""

    def __init__(self, metrics: Metrics, report: Callable[[], dict[str, Any]], host: str, port: int) -> None:
        self._metrics = metrics
        self._report = report
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._serve_metrics)
        app.router.add_get("/healthz", self._serve_health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()

    async def _serve_metrics(self, _: web.Request) -> web.Response:
        """The registry, with ``tweetlake_health`` set from the very report /healthz serves."""
        status = self._report()["status"]
        for each in (OK, UNHEALTHY, PAUSED):
            self._metrics.health.labels(each).set(int(each == status))
        body = generate_latest(self._metrics.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _serve_health(self, _: web.Request) -> web.Response:
        body = self._report()
        return web.json_response(body, status=503 if body["status"] == UNHEALTHY else 200)
