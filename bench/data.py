"""Benchmark input that looks like real data: landing files made from recorded X API answers.

The simulator's tweets are ~2.2 KB of NDJSON; real timeline tweets with full expansions are ~5-6 KB
(annotations, context annotations, entities, referenced tweets with their authors, media,
places). This generator replays the recorded answers in tests/data/xapi as landing lines (each
with a unique id, its own text and the includes it references), weighted towards the richer
ones so the mean line is about 5.6 KB, and writes them as the streamer does: gzip files of
``per_file`` lines under one collection hour.
"""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tweetlake.landing import Hour, encode_line, landing_key, tweet_record

XAPI = Path(__file__).resolve().parent.parent / "tests" / "data" / "xapi"
HOUR = Hour.parse("2026-11-25T10")


@dataclass(frozen=True)
class Written:
    tweets: int
    files: int
    ndjson_bytes: int
    gzip_bytes: int

    @property
    def bytes_per_tweet(self) -> float:
        return self.ndjson_bytes / self.tweets


def templates() -> list[tuple[dict[str, Any], dict[str, Any], list[Any] | None]]:
    """(tweet, includes, matching_rules) for every recorded tweet."""
    found = []
    for path in sorted(XAPI.glob("*/*.json")):
        if path.name.endswith(".meta.json"):
            continue
        answer = json.loads(path.read_text())
        tweets = answer["data"] if isinstance(answer["data"], list) else [answer["data"]]
        rules = answer.get("matching_rules") if "stream" in path.parent.name else None
        found.extend((tweet, answer.get("includes", {}), rules) for tweet in tweets)
    return found


def _line(
    template: tuple[dict[str, Any], dict[str, Any], list[Any] | None],
    tweet_id: int,
    at: datetime,
    *,
    own_author: bool = False,
) -> bytes:
    tweet, includes, rules = template
    text = f"{tweet['text']} #{tweet_id % 9973}"
    tweet = {**tweet, "id": str(tweet_id), "conversation_id": str(tweet_id), "text": text}
    if own_author:  # the author gets an id (and username) of its own, its profile in the includes with it
        author_id, new_id = tweet.get("author_id"), str(tweet_id - 1_000_000_000_000_000_000)
        username = next((u.get("username") for u in includes.get("users", []) if u.get("id") == author_id), "u")
        own = {"id": new_id, "username": f"{username}_{tweet_id % 10**9}"}
        users = [{**u, **own} if u.get("id") == author_id else u for u in includes.get("users", [])]
        tweet, includes = {**tweet, "author_id": new_id}, {**includes, "users": users}
    return encode_line(
        tweet_record(
            tweet,
            includes,
            collected_at=at,
            collected_via="stream:filtered" if rules else "poll:users_tweets",
            account={"id": "2351222345", "username": "PhillyNEFL"},
            matching_rules=rules,
        )
    )


def write_hour(
    root: Path, tweets: int, *, per_file: int = 5000, seed: int = 7, distinct_authors: bool = False
) -> Written:
    """Land ``tweets`` real-shaped lines in ``root/landing`` under HOUR; returns what was written.

    The recorded answers have a few hundred authors, like an hour of a few followed accounts;
    ``distinct_authors`` gives every tweet an author of its own, like an hour of a filtered stream.
    """
    rng = random.Random(seed)
    pool = templates()
    sizes = [len(_line(t, 1, HOUR.start)) for t in pool]
    # richer answers weigh more, so the mean line is about 5.6 KB like real timelines with expansions
    weights = [1.0 + max(0.0, (size - 2500) / 1350) for size in sizes]
    first_id = 1_860_000_000_000_000_000
    lines: list[bytes] = []
    ndjson = compressed = files = 0
    for n in range(tweets):
        template = rng.choices(pool, weights)[0]
        at = HOUR.start + timedelta(seconds=n * 3600 // max(tweets, 1))
        lines.append(_line(template, first_id + n, at, own_author=distinct_authors))
        if len(lines) == per_file or n == tweets - 1:
            path = root / "landing" / landing_key("tweets", HOUR, "bench-0001", files)
            path.parent.mkdir(parents=True, exist_ok=True)
            blob = b"".join(lines)
            data = gzip.compress(blob, compresslevel=6, mtime=0)
            path.write_bytes(data)
            ndjson, compressed, files = ndjson + len(blob), compressed + len(data), files + 1
            lines = []
    return Written(tweets, files, ndjson, compressed)


if __name__ == "__main__":
    import sys

    written = write_hour(Path(sys.argv[1]), int(sys.argv[2]))
    print(json.dumps({**written.__dict__, "bytes_per_tweet": round(written.bytes_per_tweet)}))
