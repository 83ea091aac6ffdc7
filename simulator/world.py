"""The simulated accounts and their timelines.

Tweets get snowflake-shaped, strictly increasing ids and realistic variety: replies, retweets,
quotes, mentions, hashtags, URLs, cashtags, media, polls, places, emoji and right-to-left text,
edit history, withheld countries. Everything is generated from a seed, so a run is repeatable.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

TWITTER_EPOCH_MS = 1288834974657

TEXTS = [
    "Shipping a new release of our API today 🚀",
    "Rendezvous with the ISS tonight at 21:03 UTC 🛰️✨",
    "مرحبا بالعالم! هذا اختبار للنص من اليمين إلى اليسار",
    "שלום עולם — בדיקת טקסט מימין לשמאל",
    "Data engineering is mostly plumbing 🔧 and that's fine",
    "Café crème et croissant ☕🥐 #mondaymotivation",
    "日本語のツイートもちゃんと保存されるかな\uff1f🍣",
    "Thread 🧵 1/ Why idempotent pipelines matter",
    "Emoji stress test: 👩🏽‍🚀👨‍👩‍👧‍👦🏳️‍🌈 done",
    "New blog post on streaming ingestion, link below",
    "Ünïcödé ñormalization is everyone's favourite topic",
    'Quotes "inside" text, commas, and\nnewlines\tand tabs',
]
HASHTAGS = ["DataEngineering", "Python", "NASA", "OpenSource", "ApacheAirflow", "Parquet"]
CASHTAGS = ["TSLA", "AAPL", "SPCE"]
SOURCES = ["Twitter Web App", "Twitter for iPhone", "Twitter for Android", "TweetDeck", "Sprinklr"]
LANGS = ["en", "en", "en", "fr", "ar", "he", "ja", "es"]
PLACES = [
    {
        "id": "01a9a39529b27f36",
        "full_name": "Manhattan, NY",
        "name": "Manhattan",
        "country": "United States",
        "country_code": "US",
        "place_type": "city",
        "geo": {"type": "Feature", "bbox": [-74.02, 40.70, -73.91, 40.88], "properties": {}},
    },
    {
        "id": "09f6a7707f18e0b1",
        "full_name": "Paris, France",
        "name": "Paris",
        "country": "France",
        "country_code": "FR",
        "place_type": "city",
        "geo": {"type": "Feature", "bbox": [2.22, 48.81, 2.46, 48.90], "properties": {}},
    },
]
VERIFIED_TYPES = ["blue", "business", "government", "none"]


def snowflake(ms: int, seq: int) -> int:
    return ((ms - TWITTER_EPOCH_MS) << 22) | (seq & 0x3FFFFF)


@dataclass
class SimAccount:
    id: str
    username: str
    name: str
    suspended: bool = False
    protected: bool = False
    tweets: list[dict[str, Any]] = field(default_factory=list)  # oldest first

    def profile(self, rng: random.Random) -> dict[str, Any]:
        return {
            "id": self.id,
            "username": self.username,
            "name": self.name,
            "created_at": "2009-06-02T20:12:29.000Z",
            "description": f"The official account of {self.name} 🌍",
            "location": "Earth",
            "protected": self.protected,
            "verified": True,
            "verified_type": rng.choice(VERIFIED_TYPES),
            "profile_image_url": f"https://pbs.twimg.com/profile_images/{self.id}/x_normal.jpg",
            "url": "https://t.co/abc123",
            "public_metrics": {
                "followers_count": rng.randint(100, 90_000_000),
                "following_count": rng.randint(0, 5000),
                "tweet_count": len(self.tweets) + rng.randint(0, 10000),
                "listed_count": rng.randint(0, 100000),
            },
        }


class World:
    """Accounts, their tweets, and the bookkeeping tests compare against."""

    def __init__(self, usernames: list[str], *, seed: int = 7, timeline_cap: int = 3200) -> None:
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.timeline_cap = timeline_cap
        self.accounts: dict[str, SimAccount] = {}
        self._seq = 0
        self._last_ms = 0
        for index, username in enumerate(usernames):
            account_id = str(11_348_282 + index * 7_919_123)
            self.accounts[account_id] = SimAccount(account_id, username, username.replace("_", " ").title())
        self.by_username = {a.username.lower(): a for a in self.accounts.values()}
        # called (under the lock) with every tweet posted: the stream endpoint listens here
        self.listeners: list[Callable[[SimAccount, dict[str, Any]], None]] = []
        self.strangers = [SimAccount(str(900_000_000 + i), f"friend_{i}", f"Friend {i}") for i in range(8)]

    def _next_id(self) -> int:
        ms = int(time.time() * 1000)
        if ms <= self._last_ms:
            ms = self._last_ms
            self._seq += 1
        else:
            self._seq = 0
        self._last_ms = ms
        return snowflake(ms, self._seq)

    def generate(self, count: int, username: str | None = None) -> list[str]:
        """Post ``count`` new tweets (round-robin over accounts unless one is named)."""
        made = []
        with self.lock:
            targets = [self.by_username[username.lower()]] if username else list(self.accounts.values())
            for i in range(count):
                account = targets[i % len(targets)]
                tweet = self._make_tweet(account)
                account.tweets.append(tweet)
                made.append(tweet["id"])
                for listener in self.listeners:
                    listener(account, tweet)
        return made

    def all_ids(self) -> dict[str, list[str]]:
        with self.lock:
            return {a.username: [t["id"] for t in a.tweets] for a in self.accounts.values()}

    def _make_tweet(self, account: SimAccount) -> dict[str, Any]:
        rng = self.rng
        tweet_id = str(self._next_id())
        text = rng.choice(TEXTS)
        entities: dict[str, Any] = {}
        mentioned = rng.sample(self.strangers, k=rng.choice([0, 0, 1, 2]))
        if mentioned:
            prefix = " ".join(f"@{m.username}" for m in mentioned) + " "
            entities["mentions"] = []
            pos = 0
            for m in mentioned:
                entities["mentions"].append(
                    {"start": pos, "end": pos + len(m.username) + 1, "username": m.username, "id": m.id}
                )
                pos += len(m.username) + 2
            text = prefix + text
        if rng.random() < 0.5:
            tag = rng.choice(HASHTAGS)
            entities["hashtags"] = [{"start": len(text) + 1, "end": len(text) + 2 + len(tag), "tag": tag}]
            text += f" #{tag}"
        if rng.random() < 0.15:
            tag = rng.choice(CASHTAGS)
            entities["cashtags"] = [{"start": len(text) + 1, "end": len(text) + 2 + len(tag), "tag": tag}]
            text += f" ${tag}"
        if rng.random() < 0.4:
            short = f"https://t.co/{rng.randrange(16**10):010x}"
            entities["urls"] = [
                {
                    "start": len(text) + 1,
                    "end": len(text) + 1 + len(short),
                    "url": short,
                    "expanded_url": f"https://example.org/post/{tweet_id}",
                    "display_url": "example.org/post/…",
                }
            ]
            text += f" {short}"
        created = datetime.now(UTC)
        tweet: dict[str, Any] = {
            "id": tweet_id,
            "text": text,
            "author_id": account.id,
            "conversation_id": tweet_id,
            "created_at": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "lang": rng.choice(LANGS),
            "source": rng.choice(SOURCES),
            "possibly_sensitive": rng.random() < 0.05,
            "reply_settings": "everyone",
            "edit_history_tweet_ids": [tweet_id],
            "edit_controls": {
                "edits_remaining": 5,
                "is_edit_eligible": True,
                "editable_until": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            },
            "public_metrics": {
                "retweet_count": rng.randint(0, 5000),
                "reply_count": rng.randint(0, 500),
                "like_count": rng.randint(0, 50000),
                "quote_count": rng.randint(0, 300),
                "bookmark_count": rng.randint(0, 100),
                "impression_count": rng.randint(0, 10**6),
            },
        }
        if entities:
            tweet["entities"] = entities
        earlier = account.tweets[-20:]
        roll = rng.random()
        if earlier and roll < 0.15:
            target = rng.choice(earlier)
            tweet["referenced_tweets"] = [{"type": "replied_to", "id": target["id"]}]
            tweet["in_reply_to_user_id"] = target["author_id"]
            tweet["conversation_id"] = target["conversation_id"]
        elif earlier and roll < 0.25:
            target = rng.choice(earlier)
            tweet["referenced_tweets"] = [{"type": "retweeted", "id": target["id"]}]
            tweet["text"] = f"RT @{account.username}: {target['text']}"[:280]
        elif earlier and roll < 0.32:
            target = rng.choice(earlier)
            tweet["referenced_tweets"] = [{"type": "quoted", "id": target["id"]}]
        elif roll < 0.34:
            tweet["referenced_tweets"] = [{"type": "replied_to", "id": "1"}]  # deleted: an errors entry
            tweet["in_reply_to_user_id"] = self.strangers[0].id
        if rng.random() < 0.25:
            kind = rng.choice(["photo", "photo", "video", "animated_gif"])
            tweet["attachments"] = {"media_keys": [f"3_{tweet_id}"]}
            tweet["_media"] = {
                "media_key": f"3_{tweet_id}",
                "type": kind,
                "width": 1200,
                "height": 675,
                "url": f"https://pbs.twimg.com/media/{tweet_id}.jpg",
                "alt_text": "a picture 🖼️",
            }
        elif rng.random() < 0.03:
            poll_id = str(int(tweet_id) + 1)
            tweet["attachments"] = {"poll_ids": [poll_id]}
            tweet["_poll"] = {
                "id": poll_id,
                "voting_status": "open",
                "duration_minutes": 1440,
                "options": [
                    {"position": 1, "label": "Parquet", "votes": 10},
                    {"position": 2, "label": "CSV", "votes": 3},
                ],
            }
        if rng.random() < 0.05:
            place = rng.choice(PLACES)
            tweet["geo"] = {"place_id": place["id"]}
        if rng.random() < 0.03:
            tweet["withheld"] = {"copyright": False, "country_codes": ["DE", "FR"]}
        return tweet

    def user_objects(self, ids: set[str]) -> list[dict[str, Any]]:
        everyone = {a.id: a for a in [*self.accounts.values(), *self.strangers]}
        rng = random.Random(len(ids))
        return [everyone[i].profile(rng) for i in sorted(ids) if i in everyone]

    def tweet_by_id(self, account: SimAccount, tweet_id: str) -> dict[str, Any] | None:
        for tweet in account.tweets:
            if tweet["id"] == tweet_id:
                return tweet
        return None
