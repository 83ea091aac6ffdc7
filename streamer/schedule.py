"""When to poll each account next: often where the tweets are, rarely where they are not.

With a budget of R requests a second shared by all accounts, polling account i every T_i
seconds leaves its tweets waiting T_i / 2 on average; weighting by its posting rate r_i, the
mean delay over all tweets is minimal, for sum(1 / T_i) = R, when T_i = c / sqrt(r_i) with
c = sum(sqrt(r_j)) / R (the square-root rule). ``collect.schedule = "adaptive"`` spends the same
request budget as the uniform schedule (one poll per account every ``collect.poll_interval_s``),
or less when the rate limit (``x-rate-limit-*``) has less left, that way, each interval held
within ``[poll_min_interval_s, poll_max_interval_s]``.

An account's rate is estimated from the creation times of its recent tweets, counted over the
time it has been watched: (n + 0.5) / span. A new or restarted watch starts out curious (a short
span) and settles as time passes: an account that stays silent drifts to the longest interval.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tweetlake.landing import parse_time

if TYPE_CHECKING:
    from streamer.collect import Timeline

RECENT = 20  # tweets per account the rate is estimated from
MIN_SPAN_S = 60.0
RATE_LIMIT_SHARE = 0.9  # of what the rate limit has left: room for lookups and retries


@dataclass
class Activity:
    """One account's recent tweet creation times (epoch seconds) since ``watched_since``."""

    watched_since: float
    times: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))

    def observe(self, created: list[float]) -> None:
        for moment in sorted(created):
            if not self.times or moment > self.times[-1]:
                self.times.append(moment)

    def rate(self, now: float) -> float:
        """Tweets per second, from the recent window (or since the watch began, when fewer)."""
        if len(self.times) == RECENT:
            start = self.times[0]
        else:
            start = min(self.watched_since, self.times[0]) if self.times else self.watched_since
        return (len(self.times) + 0.5) / max(now - start, MIN_SPAN_S)


@dataclass(frozen=True)
class Schedule:
    mode: str  # "adaptive" | "uniform"
    interval_s: float  # the uniform interval; adaptive spends the same number of requests
    min_interval_s: float
    max_interval_s: float

    def intervals(self, rates: dict[str, float], capacity: float | None = None) -> dict[str, float]:
        """Each account's next interval, from every followed account's rate; ``capacity``: the
        requests per second the rate limit has left, a ceiling on the budget."""
        if self.mode == "uniform" or not rates:
            return {account: self.interval_s for account in rates}
        budget = len(rates) / self.interval_s  # requests per second
        if capacity is not None:
            budget = max(1e-6, min(budget, RATE_LIMIT_SHARE * capacity))
        scale = sum(math.sqrt(r) for r in rates.values()) / budget
        return {
            account: min(self.max_interval_s, max(self.min_interval_s, scale / math.sqrt(rate)))
            for account, rate in rates.items()
        }


def created_times(timeline: Timeline) -> list[float]:
    """Epoch seconds of a read's tweets (a tweet without a readable ``created_at`` tells nothing)."""
    times = []
    for tweet, _, _ in timeline.tweets:
        try:
            times.append(parse_time(str(tweet.get("created_at"))).timestamp())
        except ValueError:
            continue
    return times
