"""``tweet-streamer check-config --online``: what a config file cannot tell offline.

The offline check proves the file is well formed; this one asks the outside world: does X accept
the credentials, do the accounts exist and can they be read, can the stream rules be read (stream
mode), may this host write to the landing zone (a probe object under ``_probe/``, deleted after,
outside every stream's hour prefixes so the compactor never sees it). Each answer is one
``Finding``; any ``FAIL`` makes the command exit 1. It then prints what collecting will cost.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from streamer.answers import BadShape, stream_rules, user_lookup
from streamer.credentials import Credentials
from streamer.estimate import estimate, report
from streamer.health import Health
from streamer.metrics import Metrics
from streamer.sinks import sink_for
from streamer.xclient import USERS_PER_LOOKUP, ApiError, XClient
from tweetlake.config import Config

PROBE_PREFIX = "_probe"

Status = Literal["ok", "warn", "FAIL"]


@dataclass(frozen=True)
class Finding:
    status: Status
    what: str
    detail: str

    def line(self) -> str:
        return f"  {self.status:<5} {self.what}: {self.detail}"


async def check_online(config: Config, credentials: Credentials) -> tuple[list[Finding], list[dict[str, Any]]]:
    """Every finding, and the profiles of the accounts found (for the cost estimate)."""
    client = XClient(
        config.x_api.base_url, credentials, Metrics(), Health(60), timeout_s=config.x_api.timeout_s, max_retries=1
    )
    try:
        findings, profiles = await _accounts(client, list(config.collect.my_users()), credentials)
        if config.collect.mode == "stream" and findings[0].status == "ok":
            findings.append(await _rules(client, config.stream.rule_tag))
    finally:
        await client.close()
    findings.append(await _probe_landing(config))
    return findings, profiles


async def _accounts(
    client: XClient, usernames: list[str], credentials: Credentials
) -> tuple[list[Finding], list[dict[str, Any]]]:
    profiles: list[dict[str, Any]] = []
    findings: list[Finding] = []
    auth = "OAuth 1.0a user credentials" if credentials.user_context else "app-only bearer token"
    try:
        for start in range(0, len(usernames), USERS_PER_LOOKUP):
            lookup = user_lookup(await client.lookup_users(usernames[start : start + USERS_PER_LOOKUP]))
            profiles += lookup.users
            findings += [
                Finding("FAIL", f"account {error.get('value', '?')}", str(error.get("detail", "not found")))
                for error in lookup.errors
            ]
    except ApiError as exc:
        what = "credentials" if exc.status in (401, 403) else "x_api.base_url"
        return [Finding("FAIL", what, str(exc))], []
    except BadShape as exc:
        return [Finding("FAIL", "x_api.base_url", f"the user lookup answer is not X's: {exc}")], []
    for profile in profiles:
        if profile.get("protected") is True:
            findings.append(
                Finding(
                    "warn" if credentials.user_context else "FAIL",
                    f"account {profile['username']}",
                    "protected: only the user credentials of an approved follower can read its posts",
                )
            )
    found = f"{len(profiles)} of {len(usernames)} accounts found"
    return [Finding("ok", "credentials", f"X accepted the {auth}; {found}"), *findings], profiles


async def _rules(client: XClient, tag: str) -> Finding:
    try:
        rules = stream_rules(await client.stream_rules()).rules
    except (ApiError, BadShape) as exc:
        return Finding("FAIL", "stream", f"cannot read the filtered stream's rules: {exc}")
    ours = sum(rule.tag == tag for rule in rules)
    return Finding("ok", "stream", f"rules readable ({ours} tagged {tag!r}, {len(rules) - ours} others)")


async def _probe_landing(config: Config) -> Finding:
    landing = config.landing
    sink = sink_for(landing.uri, endpoint_url=landing.endpoint_url, region=landing.region)
    key = f"{PROBE_PREFIX}/{config.collect.writer_id}-{uuid.uuid4().hex}"
    uri = sink.location.uri(key)
    try:
        try:
            await sink.put(key, b"tweetlake check-config --online write probe\n")
        except Exception as exc:  # any storage error is the finding itself
            return Finding("FAIL", "landing", f"cannot write {uri}: {type(exc).__name__}: {exc}")
        try:
            await sink.delete(key)
        except Exception as exc:
            return Finding("warn", "landing", f"wrote {uri} but cannot delete it: {type(exc).__name__}: {exc}")
    finally:
        await sink.close()
    return Finding("ok", "landing", f"wrote and deleted {uri}")


def render(config: Config, findings: list[Finding], profiles: list[dict[str, Any]]) -> list[str]:
    """The report: one line per finding, then the cost of the accounts found."""
    lines = ["online:", *(f.line() for f in findings)]
    if profiles:
        collect, now = config.collect, datetime.now(UTC)
        first_read, expansions = collect.history_max_tweets, collect.expansions
        estimates = [
            estimate(p, config.cost, history_max_tweets=first_read, expansions=expansions, now=now) for p in profiles
        ]
        lookup_usd = len(profiles) * config.cost.user_read_usd
        lines += ["", *report(estimates, config.cost, lookup_usd=lookup_usd, expansions=expansions)]
    return lines
