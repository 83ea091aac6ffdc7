"""Landing record -> one flat row per tweet (and author snapshots). Pure functions, no I/O.

This is the reference: ``compactor.engine`` computes the same rows vectorized and hands every line
it cannot vouch for to these functions, so a value or a rejection reason is defined here once.
A record that does not have the landing shape raises ``Rejected`` with a short reason; the
compactor files it under ``_rejected/`` instead of failing the hour. Unknown fields are simply
not columns: the landing files stay the lossless record (docs/schema.md says how to reach them).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from tweetlake.landing import FORMAT_VERSION, parse_time

_ID = re.compile(r"[0-9]+", re.ASCII)
_INT = re.compile(r"-?[0-9]+", re.ASCII)


class Rejected(ValueError):
    """This record cannot become a row; ``str()`` is the reason recorded for it."""


def _text(value: str, what: str) -> str:
    """A string Arrow can store: lone surrogates (legal in JSON escapes) are not text."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Rejected(f"{what} is not valid Unicode") from None
    return value


def _obj(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise Rejected(f"{what} is not an object")
    return value


def _id(value: Any, what: str, *, required: bool = False) -> str | None:
    if value is None:
        if required:
            raise Rejected(f"missing {what}")
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # some stream payloads carry numeric ids (matching rule ids)
    if not isinstance(value, str) or not _ID.fullmatch(value):  # ASCII digits: '²' is no id
        raise Rejected(f"{what} is not a numeric id string")
    return value


def _str(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return _text(value, what)
    raise Rejected(f"{what} is not a string")


def _int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, str) and _INT.fullmatch(value.strip(" ")):
        value = int(value)  # the API sends some counters as strings (edit_controls.edits_remaining)
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**63) <= value < 2**63:
        raise Rejected(f"{what} is not an integer")
    return value


def _bool(value: Any, what: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise Rejected(f"{what} is not a boolean")


def _time(value: Any, what: str, *, required: bool = False) -> datetime | None:
    if value is None:
        if required:
            raise Rejected(f"missing {what}")
        return None
    if not isinstance(value, str):
        raise Rejected(f"{what} is not a timestamp string")
    try:
        return parse_time(value)
    except (ValueError, OverflowError):  # year 1 with an offset overflows converting to UTC
        raise Rejected(f"{what} is not an ISO timestamp") from None


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise Rejected(f"{what} is not a list")
    return value


def _scalars(value: Any, what: str) -> list[str]:
    """A list of ids or codes as strings (numbers as their digits)."""
    return [_text(str(item), what) for item in _list(value, what)]


def _strings(items: list[Any], key: str, what: str) -> list[str]:
    out = []
    for item in items:
        value = _obj(item, what).get(key)
        if value is not None:
            out.append(_text(str(value), what))
    return out


def _urls(value: Any, what: str) -> list[str]:
    return [_text(str(_obj(u, what).get("expanded_url") or _obj(u, what).get("url")), what) for u in _list(value, what)]


def _numbers(value: Any, what: str) -> list[float] | None:
    if value is None:
        return None
    items = _list(value, what)
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in items):
        raise Rejected(f"{what} is not a list of numbers")
    return [float(v) for v in items]


def _json(value: Any, what: str) -> str | None:
    if value in (None, [], {}):
        return None
    return _text(json.dumps(value, ensure_ascii=False, separators=(",", ":")), what)


def _by_key(items: list[Any], key: str, what: str) -> dict[Any, Mapping[str, Any]]:
    """Objects of an includes list by ``key`` (the last one wins; non-objects are skipped)."""
    found: dict[Any, Mapping[str, Any]] = {}
    for item in items:
        if isinstance(item, Mapping):
            if isinstance(item.get(key), list | dict):
                raise Rejected(f"{what}.{key} is not a string")
            found[item.get(key)] = item
    return found


def check_record(record: Any) -> Mapping[str, Any]:
    if not isinstance(record, Mapping):
        raise Rejected("line is not a JSON object")
    if record.get("v") != FORMAT_VERSION:
        raise Rejected(f"unsupported landing format version {record.get('v')!r}")
    if not isinstance(record.get("tweet"), Mapping):
        raise Rejected("missing tweet object")
    return record


def flatten_tweet(record: Any) -> dict[str, Any]:
    record = check_record(record)
    tweet = record["tweet"]
    includes = _obj(record.get("includes"), "includes")
    users = _by_key(_list(includes.get("users"), "includes.users"), "id", "includes.users")
    ref_tweets = _by_key(_list(includes.get("tweets"), "includes.tweets"), "id", "includes.tweets")
    media = _by_key(_list(includes.get("media"), "includes.media"), "media_key", "includes.media")
    places = _by_key(_list(includes.get("places"), "includes.places"), "id", "includes.places")
    polls = _by_key(_list(includes.get("polls"), "includes.polls"), "id", "includes.polls")

    tweet_id = _id(tweet.get("id"), "tweet.id", required=True)
    text = tweet.get("text")
    if not isinstance(text, str):
        raise Rejected("tweet.text is missing or not a string")
    author_id = _id(tweet.get("author_id"), "tweet.author_id")
    author = _obj(users.get(author_id), "author")
    metrics = _obj(tweet.get("public_metrics"), "tweet.public_metrics")
    entities = _obj(tweet.get("entities"), "tweet.entities")
    attachments = _obj(tweet.get("attachments"), "tweet.attachments")
    geo = _obj(tweet.get("geo"), "tweet.geo")
    withheld = _obj(tweet.get("withheld"), "tweet.withheld")
    edit_controls = _obj(tweet.get("edit_controls"), "tweet.edit_controls")
    account = _obj(record.get("account"), "account")

    refs: dict[str, str] = {}
    for ref in _list(tweet.get("referenced_tweets"), "tweet.referenced_tweets"):
        ref = _obj(ref, "referenced tweet")
        ref_type = _str(ref.get("type"), "referenced_tweets.type")
        ref_id = _id(ref.get("id"), "referenced_tweets.id")
        if ref_type and ref_id:
            refs.setdefault(ref_type, ref_id)

    def username(user_id: str | None) -> str | None:
        return _str(_obj(users.get(user_id), "user").get("username"), "user.username") if user_id else None

    def ref_author(ref_type: str) -> tuple[str | None, str | None]:
        target = ref_tweets.get(refs.get(ref_type))
        user_id = _id(_obj(target, "referenced tweet").get("author_id"), "referenced author_id") if target else None
        return user_id, username(user_id)

    retweeted_user_id, retweeted_username = ref_author("retweeted")
    quoted_user_id, quoted_username = ref_author("quoted")
    reply_user = _id(tweet.get("in_reply_to_user_id"), "tweet.in_reply_to_user_id")
    media_keys = _scalars(attachments.get("media_keys"), "attachments.media_keys")
    media_objs = [_obj(media[k], "media") for k in media_keys if k in media]
    poll_ids = _scalars(attachments.get("poll_ids"), "attachments.poll_ids")
    poll = _obj(polls.get(poll_ids[0]), "poll") if poll_ids else {}
    place_id = _str(geo.get("place_id"), "geo.place_id")
    place = _obj(places.get(place_id), "place")
    note = _obj(tweet.get("note_tweet"), "tweet.note_tweet")
    rules = []
    for rule in _list(record.get("matching_rules"), "matching_rules"):
        rule = _obj(rule, "matching rule")
        rule_id, tag = rule.get("id"), rule.get("tag")
        rules.append(_text(f"{rule_id}:{tag}" if tag else str(rule_id), "matching rule"))

    return {
        "id": tweet_id,
        "created_at": _time(tweet.get("created_at"), "tweet.created_at"),
        "author_id": author_id,
        "author_username": _str(author.get("username"), "author.username"),
        "author_name": _str(author.get("name"), "author.name"),
        "text": _text(text, "tweet.text"),
        "note_tweet_text": _str(note.get("text"), "note_tweet.text"),
        "lang": _str(tweet.get("lang"), "tweet.lang"),
        "conversation_id": _id(tweet.get("conversation_id"), "tweet.conversation_id"),
        "in_reply_to_user_id": reply_user,
        "in_reply_to_username": username(reply_user),
        "replied_to_id": refs.get("replied_to"),
        "retweeted_id": refs.get("retweeted"),
        "retweeted_user_id": retweeted_user_id,
        "retweeted_username": retweeted_username,
        "quoted_id": refs.get("quoted"),
        "quoted_user_id": quoted_user_id,
        "quoted_username": quoted_username,
        "retweet_count": _int(metrics.get("retweet_count"), "public_metrics.retweet_count"),
        "reply_count": _int(metrics.get("reply_count"), "public_metrics.reply_count"),
        "like_count": _int(metrics.get("like_count"), "public_metrics.like_count"),
        "quote_count": _int(metrics.get("quote_count"), "public_metrics.quote_count"),
        "bookmark_count": _int(metrics.get("bookmark_count"), "public_metrics.bookmark_count"),
        "impression_count": _int(metrics.get("impression_count"), "public_metrics.impression_count"),
        "hashtags": _strings(_list(entities.get("hashtags"), "entities.hashtags"), "tag", "hashtag"),
        "cashtags": _strings(_list(entities.get("cashtags"), "entities.cashtags"), "tag", "cashtag"),
        "mentions": _strings(_list(entities.get("mentions"), "entities.mentions"), "username", "mention"),
        "urls": _urls(entities.get("urls"), "entities.urls"),
        "annotations": _json(entities.get("annotations"), "entities.annotations"),
        "context_annotations": _json(tweet.get("context_annotations"), "tweet.context_annotations"),
        "media_keys": media_keys,
        "media_types": [_text(str(m.get("type")), "media.type") for m in media_objs],
        "media_urls": [_text(str(m.get("url") or m.get("preview_image_url") or ""), "media.url") for m in media_objs],
        "poll_id": poll_ids[0] if poll_ids else None,
        "poll_options": _json(poll.get("options"), "poll.options"),
        "poll_voting_status": _str(poll.get("voting_status"), "poll.voting_status"),
        "poll_end_datetime": _time(poll.get("end_datetime"), "poll.end_datetime"),
        "place_id": place_id,
        "place_full_name": _str(place.get("full_name"), "place.full_name"),
        "place_country_code": _str(place.get("country_code"), "place.country_code"),
        "place_type": _str(place.get("place_type"), "place.place_type"),
        "geo_coordinates": _json(geo.get("coordinates"), "geo.coordinates"),
        "possibly_sensitive": _bool(tweet.get("possibly_sensitive"), "tweet.possibly_sensitive"),
        "source": _str(tweet.get("source"), "tweet.source"),
        "reply_settings": _str(tweet.get("reply_settings"), "tweet.reply_settings"),
        "withheld_in": _scalars(withheld.get("country_codes"), "withheld.country_codes"),
        "withheld_copyright": _bool(withheld.get("copyright"), "withheld.copyright"),
        "withheld_scope": _str(withheld.get("scope"), "withheld.scope"),
        "edit_history_tweet_ids": _scalars(tweet.get("edit_history_tweet_ids"), "tweet.edit_history_tweet_ids"),
        "edits_remaining": _int(edit_controls.get("edits_remaining"), "edit_controls.edits_remaining"),
        "is_edit_eligible": _bool(edit_controls.get("is_edit_eligible"), "edit_controls.is_edit_eligible"),
        "editable_until": _time(edit_controls.get("editable_until"), "edit_controls.editable_until"),
        "matching_rules": rules,
        "collected_at": _time(record.get("collected_at"), "collected_at", required=True),
        "collected_via": _str(record.get("collected_via"), "collected_via"),
        "collected_for": _str(account.get("username"), "account.username"),
        "poll_duration_minutes": _int(poll.get("duration_minutes"), "poll.duration_minutes"),
        "place_name": _str(place.get("name"), "place.name"),
        "place_country": _str(place.get("country"), "place.country"),
        "place_bbox": _numbers(_obj(place.get("geo"), "place.geo").get("bbox"), "place.geo.bbox"),
    }


def flatten_users(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Profile snapshots of the authors a record carries (the tweet's and referenced tweets')."""
    includes = _obj(record.get("includes"), "includes")
    tweet = record["tweet"]
    authors = {tweet.get("author_id")}
    authors.update(
        t.get("author_id") for t in _list(includes.get("tweets"), "includes.tweets") if isinstance(t, Mapping)
    )
    collected_at = _time(record.get("collected_at"), "collected_at", required=True)
    rows = []
    for user in _list(includes.get("users"), "includes.users"):
        if not isinstance(user, Mapping) or user.get("id") not in authors:
            continue
        metrics = _obj(user.get("public_metrics"), "user.public_metrics")
        withheld = _obj(user.get("withheld"), "user.withheld")
        entities = _obj(user.get("entities"), "user.entities")
        url_urls = _list(_obj(entities.get("url"), "user.entities.url").get("urls"), "user.entities.url.urls")
        description = _obj(entities.get("description"), "user.entities.description")
        rows.append(
            {
                "id": _id(user.get("id"), "user.id", required=True),
                "username": _str(user.get("username"), "user.username"),
                "name": _str(user.get("name"), "user.name"),
                "created_at": _time(user.get("created_at"), "user.created_at"),
                "description": _str(user.get("description"), "user.description"),
                "location": _str(user.get("location"), "user.location"),
                "url": _str(user.get("url"), "user.url"),
                "profile_image_url": _str(user.get("profile_image_url"), "user.profile_image_url"),
                "pinned_tweet_id": _id(user.get("pinned_tweet_id"), "user.pinned_tweet_id"),
                "protected": _bool(user.get("protected"), "user.protected"),
                "verified": _bool(user.get("verified"), "user.verified"),
                "verified_type": _str(user.get("verified_type"), "user.verified_type"),
                "followers_count": _int(metrics.get("followers_count"), "followers_count"),
                "following_count": _int(metrics.get("following_count"), "following_count"),
                "tweet_count": _int(metrics.get("tweet_count"), "tweet_count"),
                "listed_count": _int(metrics.get("listed_count"), "listed_count"),
                "like_count": _int(metrics.get("like_count"), "like_count"),
                "withheld_in": _scalars(withheld.get("country_codes"), "user.withheld.country_codes"),
                "collected_at": collected_at,
                "url_expanded": _str(
                    _obj(url_urls[0], "user.entities.url.urls").get("expanded_url") if url_urls else None,
                    "user.entities.url.urls.expanded_url",
                ),
                "description_hashtags": _strings(
                    _list(description.get("hashtags"), "user.entities.description.hashtags"), "tag", "hashtag"
                ),
                "description_mentions": _strings(
                    _list(description.get("mentions"), "user.entities.description.mentions"), "username", "mention"
                ),
                "description_urls": _urls(description.get("urls"), "user.entities.description.urls"),
                "withheld_scope": _str(withheld.get("scope"), "user.withheld.scope"),
                "withheld_copyright": _bool(withheld.get("copyright"), "user.withheld.copyright"),
            }
        )
    return rows
