"""How long to wait before reconnecting the filtered stream, by X's guidance for the kind of failure.

https://docs.x.com/x-api/fundamentals/handling-disconnections: reconnect at once, then back off
linearly by 250 ms up to 16 s for network errors, exponentially from 5 s up to 320 s for HTTP
errors, and exponentially from 60 s for 429s. A connection that stayed up ``STEADY_S`` resets all
three: a stream that drops once a day reconnects at once every time.
"""

from __future__ import annotations

NETWORK, HTTP, RATE_LIMITED = "network", "http", "rate_limited"
NETWORK_STEP_S, NETWORK_MAX_S = 0.25, 16.0
HTTP_START_S, HTTP_MAX_S = 5.0, 320.0
RATE_LIMITED_START_S, RATE_LIMITED_MAX_S = 60.0, 960.0  # X names no ceiling; 16 min outlasts its 15 min window
STEADY_S = 60.0


class ReconnectPolicy:
    """The next wait for each kind of failure; pure, so the schedule is tested without wall time."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def next_wait(self, kind: str) -> float:
        last = self._last.get(kind)
        if kind == NETWORK:
            wait = 0.0 if last is None else min(NETWORK_MAX_S, last + NETWORK_STEP_S)
        elif kind == RATE_LIMITED:
            wait = RATE_LIMITED_START_S if last is None else min(RATE_LIMITED_MAX_S, last * 2)
        else:
            wait = HTTP_START_S if last is None else min(HTTP_MAX_S, last * 2)
        self._last[kind] = wait
        return wait

    def connected_for(self, seconds: float) -> None:
        """A connection ended after ``seconds``: a steady one starts every schedule again."""
        if seconds >= STEADY_S:
            self._last.clear()
