"""The landing contract: what one landed line looks like and where landed files live.

Both halves import this module and nothing else builds landing keys or lines by hand. A line is
one self-contained JSON object: the tweet exactly as the API sent it, the expansions it
references, and how it was collected. File names are deterministic (writer + sequence number)
so re-uploading a spooled batch after a crash overwrites the same key instead of adding one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

FORMAT_VERSION = 1
STREAM_TWEETS = "tweets"
STREAM_ERRORS = "errors"
STREAMS = (STREAM_TWEETS, STREAM_ERRORS)
FILE_SUFFIX = ".ndjson.gz"
INCLUDE_KINDS = ("users", "tweets", "media", "places", "polls")

_NAME_RE = re.compile(r"^(?P<writer>[A-Za-z0-9_-]+)-(?P<seq>\d{12})\.ndjson\.gz$")


@dataclass(frozen=True, order=True)
class Hour:
    """One UTC collection hour: the unit of partitioning on both sides of the landing zone."""

    day: date
    hour: int

    @classmethod
    def of(cls, moment: datetime) -> Hour:
        moment = moment.astimezone(UTC)
        return cls(moment.date(), moment.hour)

    @classmethod
    def parse(cls, text: str) -> Hour:
        """Accept ``2026-11-25T10`` (also with ``:00``, seconds or an offset)."""
        text = text.strip()
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}", text):
            text += ":00"
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return cls.of(moment)

    @property
    def start(self) -> datetime:
        return datetime(self.day.year, self.day.month, self.day.day, self.hour, tzinfo=UTC)

    def shift(self, hours: int) -> Hour:
        return Hour.of(self.start + timedelta(hours=hours))

    @property
    def partition(self) -> str:
        return f"dt={self.day.isoformat()}/hour={self.hour:02d}"

    def __str__(self) -> str:
        return f"{self.day.isoformat()}T{self.hour:02d}"


def landing_key(stream: str, hour: Hour, writer: str, seq: int) -> str:
    """Key of one landed file, relative to ``landing.uri``."""
    if stream not in STREAMS:
        raise ValueError(f"unknown landing stream {stream!r}")
    return f"{hour_prefix(stream, hour)}{writer}-{seq:012d}{FILE_SUFFIX}"


def hour_prefix(stream: str, hour: Hour) -> str:
    return f"{stream}/{hour.partition}/"


def parse_file_name(name: str) -> tuple[str, int] | None:
    """(writer, seq) of a landed file name, or None for anything that is not one."""
    match = _NAME_RE.match(name.rsplit("/", 1)[-1])
    return (match["writer"], int(match["seq"])) if match else None


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def select_includes(tweet: Mapping[str, Any], includes: Mapping[str, Any]) -> dict[str, list]:
    """The expansions one tweet references, so a line stands on its own.

    Follows author, mentions, reply target, referenced tweets (and their authors, one level),
    media, places and polls. Objects the response did not include are simply absent: the API
    reports those in ``errors``, which are landed separately.
    """
    users = {u.get("id"): u for u in includes.get("users", ()) if isinstance(u, Mapping)}
    tweets = {t.get("id"): t for t in includes.get("tweets", ()) if isinstance(t, Mapping)}
    media = {m.get("media_key"): m for m in includes.get("media", ()) if isinstance(m, Mapping)}
    places = {p.get("id"): p for p in includes.get("places", ()) if isinstance(p, Mapping)}
    polls = {p.get("id"): p for p in includes.get("polls", ()) if isinstance(p, Mapping)}
    by_username = {str(u.get("username", "")).lower(): u for u in users.values()}

    want_users: list[str] = []
    want_tweets: list[str] = []

    def user_refs(obj: Mapping[str, Any]) -> Iterable[str]:
        for key in ("author_id", "in_reply_to_user_id"):
            if obj.get(key):
                yield obj[key]
        for mention in (obj.get("entities") or {}).get("mentions") or ():
            found = mention.get("id") or (by_username.get(str(mention.get("username", "")).lower()) or {}).get("id")
            if found:
                yield found

    want_users.extend(user_refs(tweet))
    for ref in tweet.get("referenced_tweets") or ():
        ref_id = ref.get("id")
        if ref_id in tweets:
            want_tweets.append(ref_id)
            want_users.extend(user_refs(tweets[ref_id]))
    attachments = tweet.get("attachments") or {}
    geo = tweet.get("geo") or {}

    def pick(table: Mapping[Any, Any], keys: Iterable[Any]) -> list:
        seen: dict[Any, Any] = {}
        for key in keys:
            if key in table and key not in seen:
                seen[key] = table[key]
        return list(seen.values())

    chosen = {
        "users": pick(users, want_users),
        "tweets": pick(tweets, want_tweets),
        "media": pick(media, attachments.get("media_keys") or ()),
        "places": pick(places, [geo.get("place_id")]),
        "polls": pick(polls, attachments.get("poll_ids") or ()),
    }
    return {kind: items for kind, items in chosen.items() if items}


def tweet_record(
    tweet: Mapping[str, Any],
    includes: Mapping[str, Any],
    *,
    collected_at: datetime,
    collected_via: str,
    account: Mapping[str, str],
    matching_rules: list | None = None,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "v": FORMAT_VERSION,
        "tweet": dict(tweet),
        "includes": select_includes(tweet, includes),
        "collected_at": format_time(collected_at),
        "collected_via": collected_via,
        "account": dict(account),
    }
    if matching_rules is not None:
        record["matching_rules"] = matching_rules
    return record


def error_record(
    error: Mapping[str, Any],
    *,
    collected_at: datetime,
    collected_via: str,
    account: Mapping[str, str] | None,
) -> dict[str, Any]:
    return {
        "v": FORMAT_VERSION,
        "error": dict(error),
        "collected_at": format_time(collected_at),
        "collected_via": collected_via,
        "account": dict(account or {}),
    }


def encode_line(record: Mapping[str, Any]) -> bytes:
    """Compact UTF-8 JSON: text stays exactly as the API sent it (no ASCII escaping)."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def decode_line(line: bytes | str) -> Any:
    return json.loads(line)
