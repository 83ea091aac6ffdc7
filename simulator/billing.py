"""What the simulated X bills: each post, user and media object it returns, once per id per UTC day.

It counts from what it sends (timeline pages, user lookups, stream lines), so a test can hold the
streamer's own bookkeeping against it; ``GET /2/usage/tweets`` reports the posts, and past
``post_cap`` post reads are refused with X's ``UsageCapExceeded`` 429.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

USAGE_CAPPED = {
    "title": "UsageCapExceeded",
    "detail": "Usage cap exceeded: Monthly product cap",
    "type": "https://api.twitter.com/2/problems/usage-capped",
    "period": "Monthly",
    "scope": "Product",
    "status": 429,
}


class SimBilling:
    def __init__(self, post_cap: int = 2_000_000, cap_reset_day: int = 1) -> None:
        self.post_cap = post_cap
        self.cap_reset_day = cap_reset_day
        self.counts = {"post_read": 0, "user_read": 0, "media_read": 0}
        self._day = ""
        self._today: dict[str, set[str]] = {kind: set() for kind in self.counts}
        self._lock = threading.Lock()

    @property
    def capped(self) -> bool:
        return self.counts["post_read"] >= self.post_cap

    def bill_body(self, body: dict[str, Any], data_kind: str = "post_read") -> None:
        """Bill an answer built by the simulator: ``data`` of ``data_kind`` and its includes."""
        data = body.get("data") or []
        includes = body.get("includes") or {}
        self.bill(data_kind, (d["id"] for d in (data if isinstance(data, list) else [data])))
        self.bill("post_read", (t["id"] for t in includes.get("tweets", [])))
        self.bill("user_read", (u["id"] for u in includes.get("users", [])))
        self.bill("media_read", (m["media_key"] for m in includes.get("media", [])))

    def bill(self, kind: str, ids: Iterable[str]) -> None:
        with self._lock:
            day = datetime.now(UTC).date().isoformat()
            if day != self._day:
                self._day, self._today = day, {k: set() for k in self.counts}
            new = set(ids) - self._today[kind]
            self._today[kind] |= new
            self.counts[kind] += len(new)

    def usage(self) -> dict[str, Any]:
        return {
            "data": {
                "cap_reset_day": self.cap_reset_day,
                "project_cap": str(self.post_cap),
                "project_id": "1369785403853424",
                "project_usage": str(self.counts["post_read"]),
            }
        }
