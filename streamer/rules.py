"""tweetlake's own filtered-stream rules: ``from:<id>`` terms packed into as few rules as fit.

Only rules carrying ``stream.rule_tag`` are tweetlake's; every other rule of the app is someone
else's and is never added, changed or deleted. Reconciling keeps every own rule that still fits
(only followed ids, none covered twice, within the length), deletes the rest, and packs the ids
left uncovered into new rules, so a restart with the same accounts changes nothing and adding one
account adds one rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from streamer.answers import BadShape, Rule, stream_rules
from streamer.metrics import Metrics
from streamer.xclient import ApiError, XClient
from tweetlake.logs import get_logger

log = get_logger("streamer.rules")
JOIN = " OR "
_TERM = re.compile(r"from:([0-9]{1,20})", re.ASCII)


def pack(account_ids: Iterable[str], max_length: int) -> list[str]:
    """Rule values ``from:1 OR from:2 ...``, each at most ``max_length`` characters."""
    values: list[str] = []
    current = ""
    for account_id in sorted(set(account_ids), key=int):
        term = f"from:{account_id}"
        if current and len(current) + len(JOIN) + len(term) > max_length:
            values.append(current)
            current = ""
        current = f"{current}{JOIN}{term}" if current else term
    if current:
        values.append(current)
    return values


def ids_of(value: str) -> set[str] | None:
    """The account ids of a value ``pack`` made; None for any other value (say, edited by hand)."""
    ids = set()
    for term in value.split(JOIN):
        match = _TERM.fullmatch(term)
        if match is None:
            return None
        ids.add(match[1])
    return ids


@dataclass(frozen=True)
class RulesPlan:
    add: tuple[str, ...]  # rule values
    delete: tuple[str, ...]  # rule ids
    kept: int
    foreign: int


def plan(wanted: set[str], rules: list[Rule], *, tag: str, max_length: int) -> RulesPlan:
    covered: set[str] = set()
    delete: list[str] = []
    kept = 0
    for rule in sorted((r for r in rules if r.tag == tag), key=lambda r: int(r.id)):
        ids = ids_of(rule.value)
        if ids is None or not ids <= wanted or ids & covered or len(rule.value) > max_length:
            delete.append(rule.id)
        else:
            covered |= ids
            kept += 1
    foreign = sum(1 for r in rules if r.tag != tag)
    return RulesPlan(tuple(pack(wanted - covered, max_length)), tuple(delete), kept, foreign)


class RulesKeeper:
    """Applies a plan through the rules endpoint: additions first, so no followed id is ever uncovered."""

    def __init__(self, client: XClient, metrics: Metrics, *, tag: str, max_length: int) -> None:
        self._client = client
        self._metrics = metrics
        self.tag = tag
        self.max_length = max_length

    async def reconcile(self, account_ids: set[str]) -> bool:
        """Make X's rules match ``account_ids``; False when that has to be tried again later."""
        try:
            current = stream_rules(await self._client.stream_rules())
            todo = plan(account_ids, current.rules, tag=self.tag, max_length=self.max_length)
            ok = True
            if todo.add:
                answer = stream_rules(await self._client.change_stream_rules(add=[(v, self.tag) for v in todo.add]))
                ok = self._count("add", answer.summary.get("created", 0), answer.errors) and ok
            if todo.delete:
                answer = stream_rules(await self._client.change_stream_rules(delete=list(todo.delete)))
                ok = self._count("delete", answer.summary.get("deleted", 0), answer.errors) and ok
        except (ApiError, BadShape) as exc:
            log.error("rules_reconcile_failed", error=str(exc))
            return False
        log.info(
            "rules_reconciled",
            accounts=len(account_ids),
            added=len(todo.add),
            deleted=len(todo.delete),
            kept=todo.kept,
            foreign=todo.foreign,
        )
        return ok

    def _count(self, op: str, done: object, errors: list[dict[str, object]]) -> bool:
        self._metrics.rule_changes.labels(op).inc(done if isinstance(done, int) and done > 0 else 0)
        for error in errors:
            self._metrics.rule_changes.labels("rejected").inc()
            log.error(
                "rule_rejected", op=op, title=error.get("title"), value=error.get("value"), details=error.get("details")
            )
        return not errors
