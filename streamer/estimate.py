"""What following an account will cost, estimated from its profile alone (reading posts to
estimate would itself cost): ``tweet-streamer check-config --online``.

An account posts ``tweet_count`` / (days since ``created_at``) posts a day. The first read takes
min(``history_max_tweets``, ``tweet_count``) posts; a month takes 30 days of posts. Each post
read brings its expansions: with ``collect.expansions = "full"`` the recorded timeline pages in
tests/data/xapi carry, per 100 posts, 67 referenced posts, 69 users and 22 media objects
(``FULL_PER_POST``); with ``"lean"`` only the author comes along, one user a day. A user lookup
bills each account's user object once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from streamer.billing import MEDIA, POST, USER
from tweetlake.config import CostConfig
from tweetlake.landing import parse_time

FULL_PER_POST = {POST: 0.67, USER: 0.69, MEDIA: 0.22}
DAYS_PER_MONTH = 30


@dataclass(frozen=True)
class Estimate:
    username: str
    tweet_count: int
    posts_per_day: float
    history_posts: int
    history_usd: float
    month_usd: float


def per_post_usd(cost: CostConfig, expansions: str) -> float:
    """A post read with its expansions (lean: the author's one user a day is counted per day)."""
    usd = cost.post_read_usd
    if expansions == "full":
        usd += sum(
            share * rate
            for share, rate in (
                (FULL_PER_POST[POST], cost.post_read_usd),
                (FULL_PER_POST[USER], cost.user_read_usd),
                (FULL_PER_POST[MEDIA], cost.media_read_usd),
            )
        )
    return usd


def estimate(
    profile: dict[str, Any], cost: CostConfig, *, history_max_tweets: int, expansions: str, now: datetime
) -> Estimate:
    metrics = profile.get("public_metrics") if isinstance(profile.get("public_metrics"), dict) else {}
    tweets = metrics.get("tweet_count")
    tweets = tweets if type(tweets) is int and tweets >= 0 else 0
    try:
        days = max(1.0, (now - parse_time(str(profile.get("created_at")))).total_seconds() / 86400)
    except ValueError:
        days = 1.0
    rate = tweets / days
    post = per_post_usd(cost, expansions)
    history = min(history_max_tweets, tweets)
    author_per_day = cost.user_read_usd if expansions == "lean" else 0.0
    return Estimate(
        username=str(profile.get("username", "?")),
        tweet_count=tweets,
        posts_per_day=rate,
        history_posts=history,
        history_usd=history * post + author_per_day,
        month_usd=DAYS_PER_MONTH * (rate * post + (author_per_day if rate else 0.0)),
    )


def report(estimates: list[Estimate], cost: CostConfig, *, lookup_usd: float, expansions: str) -> list[str]:
    """The lines ``check-config --online`` prints."""
    lines = [f"{'account':<16}{'tweets':>10}{'posts/day':>11}{'first read':>12}{'USD':>10}{'USD/month':>12}"]
    for e in estimates:
        lines.append(
            f"{e.username:<16}{e.tweet_count:>10}{e.posts_per_day:>11.1f}{e.history_posts:>12}"
            f"{e.history_usd:>10.2f}{e.month_usd:>12.2f}"
        )
    history = sum(e.history_usd for e in estimates)
    month = sum(e.month_usd for e in estimates)
    lines.append(
        f"{'total':<16}{'':>10}{'':>11}{sum(e.history_posts for e in estimates):>12}{history:>10.2f}{month:>12.2f}"
    )
    lines.append(
        f"estimated with {expansions} expansions at ${cost.post_read_usd}/post, ${cost.user_read_usd}/user, "
        f"${cost.media_read_usd}/media; this check read {len(estimates)} user objects (${lookup_usd:.2f})"
    )
    budget = cost.monthly_budget_usd
    if budget:
        lines.append(
            f"monthly budget ${budget:.2f}: the first read takes {history / budget:.0%}, a month {month / budget:.0%}"
        )
    return lines
