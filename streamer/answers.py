"""X API answers checked for the shape the daemon relies on, before anything uses them.

An answer from outside is hostile until checked: each function here takes any JSON value and
either returns the parts that have the expected shape, with every part that does not as a
``Rejected`` (landed raw in the errors stream with its reason), or raises ``BadShape`` when the
answer as a whole cannot be used (its containers are wrong: ``meta`` a list, ``data`` a string).
Nothing here raises anything else, for any input (a hypothesis test holds it to that).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from tweetlake.landing import INCLUDE_KINDS

_ID = re.compile(r"[0-9]{1,20}", re.ASCII)


class BadShape(Exception):
    """The answer as a whole does not have the expected shape; ``str()`` is the reason."""


@dataclass(frozen=True)
class Rejected:
    """One part of an answer that does not have the expected shape, with the reason."""

    reason: str
    value: Any


@dataclass
class TimelinePage:
    tweets: list[dict[str, Any]] = field(default_factory=list)
    includes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    next_token: str | None = None


@dataclass
class UserLookup:
    users: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def is_id(value: Any) -> bool:
    """A numeric id string as X sends them (ASCII digits only: '²' is a digit to ``str.isdigit``)."""
    return isinstance(value, str) and bool(_ID.fullmatch(value))


def tweet_problem(tweet: Any) -> str | None:
    """Why a tweet object cannot be landed as a tweet, or None when it can."""
    if not isinstance(tweet, dict):
        return "tweet is not an object"
    if not is_id(tweet.get("id")):
        return "tweet.id is not a numeric id string"
    for key in ("author_id", "in_reply_to_user_id", "conversation_id"):
        if tweet.get(key) is not None and not is_id(tweet[key]):
            return f"tweet.{key} is not a numeric id string"
    refs = tweet.get("referenced_tweets")
    if refs is not None and not (isinstance(refs, list) and all(_ref_ok(r) for r in refs)):
        return "tweet.referenced_tweets is not a list of {type, id} objects"
    for key in ("entities", "attachments", "geo", "public_metrics", "edit_controls", "withheld", "note_tweet"):
        if tweet.get(key) is not None and not isinstance(tweet[key], dict):
            return f"tweet.{key} is not an object"
    entities = tweet.get("entities") or {}
    for key in ("mentions", "hashtags", "cashtags", "urls", "annotations"):
        value = entities.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
            return f"tweet.entities.{key} is not a list of objects"
    attachments = tweet.get("attachments") or {}
    for key in ("media_keys", "poll_ids"):
        value = attachments.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return f"tweet.attachments.{key} is not a list of strings"
    return None


def _ref_ok(ref: Any) -> bool:
    return isinstance(ref, dict) and isinstance(ref.get("type"), str) and is_id(ref.get("id"))


def error_entries(value: Any, where: str = "errors") -> list[dict[str, Any]]:
    """The API's ``errors`` list; an entry that is not an object is kept, wrapped with a title."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadShape(f"{where} is not a list")
    return [e if isinstance(e, dict) else {"title": "malformed error entry", "value": e} for e in value]


def _object(payload: Any, key: str) -> dict[str, Any]:
    value = payload.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadShape(f"{key} is not an object")
    return value


def timeline_page(payload: Any) -> TimelinePage:
    """A page of ``GET /2/users/:id/tweets`` (or any tweets answer with data, includes, errors, meta)."""
    if not isinstance(payload, dict):
        raise BadShape("the answer is not a JSON object")
    page = TimelinePage(errors=error_entries(payload.get("errors")))
    meta = _object(payload, "meta")
    token = meta.get("next_token")
    if token is not None and not isinstance(token, str):
        raise BadShape("meta.next_token is not a string")
    page.next_token = token or None
    includes = _object(payload, "includes")
    for kind in INCLUDE_KINDS:
        items = includes.get(kind)
        if items is None:
            continue
        if not isinstance(items, list):
            raise BadShape(f"includes.{kind} is not a list")
        page.includes[kind] = [item for item in items if isinstance(item, dict)]
        page.rejected.extend(
            Rejected(f"includes.{kind} entry is not an object", item) for item in items if not isinstance(item, dict)
        )
    data = payload.get("data")
    if data is None:
        return page
    if isinstance(data, dict):
        data = [data]  # a single-tweet answer
    if not isinstance(data, list):
        raise BadShape("data is not a list")
    for tweet in data:
        problem = tweet_problem(tweet)
        if problem:
            page.rejected.append(Rejected(problem, tweet))
        else:
            page.tweets.append(tweet)
    return page


def user_lookup(payload: Any) -> UserLookup:
    """An answer of ``GET /2/users/by``: users with a numeric id and a username, errors, rejects."""
    if not isinstance(payload, dict):
        raise BadShape("the answer is not a JSON object")
    data = payload.get("data")
    if data is not None and not isinstance(data, list):
        raise BadShape("data is not a list")
    lookup = UserLookup(errors=error_entries(payload.get("errors")))
    for user in data or ():
        if not isinstance(user, dict):
            lookup.rejected.append(Rejected("user is not an object", user))
        elif not is_id(user.get("id")):
            lookup.rejected.append(Rejected("user.id is not a numeric id string", user))
        elif not isinstance(user.get("username"), str) or not user["username"]:
            lookup.rejected.append(Rejected("user.username is not a string", user))
        else:
            lookup.users.append(user)
    return lookup


@dataclass
class StreamMessage:
    """One line of the filtered stream: a tweet with its includes and matching rules, or errors."""

    page: TimelinePage
    matching_rules: list[dict[str, Any]] = field(default_factory=list)


def stream_message(payload: Any) -> StreamMessage:
    """A line of ``GET /2/tweets/search/stream``: ``data`` (one tweet), ``includes``, ``matching_rules``, ``errors``."""
    page = timeline_page(payload)
    rules = payload.get("matching_rules")
    if rules is None:
        return StreamMessage(page)
    if not (isinstance(rules, list) and all(isinstance(r, dict) and _rule_id(r.get("id")) for r in rules)):
        raise BadShape("matching_rules is not a list of rule objects with numeric ids")
    return StreamMessage(page, rules)


def _rule_id(value: Any) -> bool:
    """X sends rule ids as strings today; recorded streams from 2021 carry them as JSON numbers."""
    return is_id(value) or (type(value) is int and value >= 0)


@dataclass(frozen=True)
class Rule:
    id: str
    value: str
    tag: str | None


@dataclass
class RulesAnswer:
    rules: list[Rule] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def stream_rules(payload: Any) -> RulesAnswer:
    """An answer of ``GET`` or ``POST /2/tweets/search/stream/rules``: rules, errors, ``meta.summary``."""
    if not isinstance(payload, dict):
        raise BadShape("the answer is not a JSON object")
    data = payload.get("data")
    if data is not None and not isinstance(data, list):
        raise BadShape("data is not a list")
    summary = _object(payload, "meta").get("summary", {})
    if not isinstance(summary, dict):
        raise BadShape("meta.summary is not an object")
    answer = RulesAnswer(errors=error_entries(payload.get("errors")), summary=summary)
    for rule in data or ():
        tag = rule.get("tag") if isinstance(rule, dict) else None
        if not (isinstance(rule, dict) and is_id(rule.get("id")) and isinstance(rule.get("value"), str)):
            answer.rejected.append(Rejected("rule is not an object with a numeric id and a value", rule))
        elif tag is not None and not isinstance(tag, str):
            answer.rejected.append(Rejected("rule.tag is not a string", rule))
        else:
            answer.rules.append(Rule(rule["id"], rule["value"], tag))
    return answer


def x_usage(payload: Any) -> dict[str, int]:
    """``GET /2/usage/tweets``: ``project_usage``, ``project_cap`` (numbers or digit strings) and
    ``cap_reset_day`` (1 to 31) from ``data``."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, dict):
        raise BadShape("data is not an object")
    figures = {}
    for key in ("project_usage", "project_cap", "cap_reset_day"):
        value = data.get(key)
        if isinstance(value, str) and value.isascii() and value.isdigit():
            value = int(value)
        if type(value) is not int or value < 0:
            raise BadShape(f"data.{key} is not a count")
        figures[key] = value
    if not 1 <= figures["cap_reset_day"] <= 31:
        raise BadShape("data.cap_reset_day is not a day of the month")
    return figures
