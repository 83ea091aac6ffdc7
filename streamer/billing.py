"""What X bills for what tweetlake reads, kept so that a restart neither forgets nor bills twice.

The model (X's pay-per-use pricing since February 2026; rates in ``[cost]``): every post in
``data`` of a tweets answer (a timeline page, a stream line) and in ``includes.tweets``, every
user in ``data`` of a user lookup and in ``includes.users``, and every media object in
``includes.media`` is one billed resource of its kind, at most once per resource id per UTC day.

Each billed id is appended to ``billing/YYYY-MM-DD.tsv`` in the state dir (kind, id, USD,
account) as it is billed. A write survives ``kill -9`` (the page cache outlives the process), so
after one the month-to-date spend is exact; only a power loss can lose the unsynced tail, which
``sync`` bounds to a tick. The billing month starts on X's ``cap_reset_day`` once the usage
endpoint has answered (kept in ``billing/x_usage.json``), else on the 1st (UTC).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from streamer.answers import BadShape, x_usage
from tweetlake.durable import write_atomic

POST, USER, MEDIA = "post_read", "user_read", "media_read"
KINDS = (POST, USER, MEDIA)
KEEP_DAYS = 70  # day files older than this (two billing months and then some) are removed


def billed_resources(payload: Any, data_kind: str) -> dict[str, set[str]]:
    """The billable resource ids of one answer, by kind; ``data_kind`` says what its ``data`` holds."""
    found: dict[str, set[str]] = {kind: set() for kind in KINDS}
    if not isinstance(payload, dict):
        return found
    data = payload.get("data")
    found[data_kind].update(_ids(data if isinstance(data, list) else [data], "id"))
    includes = payload.get("includes")
    if isinstance(includes, dict):
        found[POST].update(_ids(includes.get("tweets"), "id"))
        found[USER].update(_ids(includes.get("users"), "id"))
        found[MEDIA].update(_ids(includes.get("media"), "media_key"))
    return found


def _ids(items: Any, key: str) -> set[str]:
    if not isinstance(items, list):
        return set()
    return {str(item[key]) for item in items if isinstance(item, dict) and isinstance(item.get(key), str | int)}


@dataclass(frozen=True)
class Rates:
    post_read: float
    user_read: float
    media_read: float

    def of(self, kind: str) -> float:
        return float(getattr(self, kind))


def period_start(today: date, reset_day: int | None) -> date:
    """The first day of the billing month ``today`` is in (X's reset day, clamped to short months)."""
    day = reset_day or 1
    start = today.replace(day=min(day, _month_days(today)))
    if start > today:
        previous = (today.replace(day=1) - timedelta(days=1)).replace(day=1)
        start = previous.replace(day=min(day, _month_days(previous)))
    return start


def next_period(start: date, reset_day: int | None) -> date:
    """The first day of the billing month after the one that starts on ``start``."""
    return period_start(start + timedelta(days=32), reset_day)


def _month_days(some_day: date) -> int:
    following = (some_day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return (following - timedelta(days=1)).day


@dataclass
class Charged:
    """What one answer added to the bill: new resources and their cost, by kind."""

    counts: dict[str, int] = field(default_factory=dict)
    usd: dict[str, float] = field(default_factory=dict)


class Bill:
    """Today's billed ids and the month-to-date spend, persisted under ``directory``."""

    def __init__(self, directory: Path, rates: Rates, clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self._dir = directory
        self._dir.mkdir(parents=True, exist_ok=True)
        self.rates = rates
        self._clock = clock
        self.x_usage: dict[str, int] = self._read_usage()
        self._day = clock().date()
        self._today: dict[str, set[str]] = {kind: set() for kind in KINDS}
        self.spent_usd = 0.0
        self.posts = 0  # posts billed this billing month (X's monthly post cap counts these)
        self._handle: Any = None
        self._unsaved: list[str] = []  # billed lines a disk error kept from their file (retried)
        self.save_error: str | None = None
        self._load()

    @property
    def period(self) -> date:
        return period_start(self._day, self.x_usage.get("cap_reset_day"))

    def charge(self, resources: dict[str, set[str]], account: str) -> Charged:
        """Bill what was not billed today; append it to today's file first."""
        self._roll()
        charged = Charged()
        lines = []
        for kind in KINDS:
            new = resources.get(kind, set()) - self._today[kind]
            if not new:
                continue
            rate = self.rates.of(kind)
            self._today[kind] |= new
            charged.counts[kind] = len(new)
            charged.usd[kind] = rate * len(new)
            lines += [f"{kind}\t{i}\t{rate!r}\t{account}\n" for i in sorted(new)]
        if lines:
            self._unsaved += lines
            self.spent_usd += sum(charged.usd.values())
            self.posts += charged.counts.get(POST, 0)
            self.save_error = self._flush()
        return charged

    def _flush(self) -> str | None:
        """Append what is not on disk yet; on a disk error keep it for the next try and say why."""
        try:
            handle = self._file()
            handle.write("".join(self._unsaved))
            handle.flush()
        except OSError as exc:
            return f"{type(exc).__name__}: {exc.strerror or exc}"
        self._unsaved = []
        return None

    def sync(self) -> None:
        """Write what a disk error held back and fsync today's file (a power loss then loses at most
        what was billed since); a disk error is kept in ``save_error``, never raised."""
        if self._unsaved:
            self.save_error = self._flush()
        if self._handle is not None and not self._unsaved:
            try:
                os.fsync(self._handle.fileno())
            except OSError as exc:
                self.save_error = f"{type(exc).__name__}: {exc.strerror or exc}"

    def remember_usage(self, usage: dict[str, int]) -> bool:
        """X's own figures; True when its reset day moved the billing month (spend recounted)."""
        before = self.period
        self.x_usage = usage
        try:
            write_atomic(self._dir / "x_usage.json", json.dumps(usage).encode())
        except OSError as exc:  # known in memory; the next poll writes it again
            self.save_error = f"{type(exc).__name__}: {exc.strerror or exc}"
        if self.period != before:
            self._load()
            return True
        return False

    def roll(self) -> bool:
        """A new UTC day forgets today's ids; a new billing month restarts the spend. True on a new day."""
        return self._roll()

    def close(self) -> None:
        self.sync()
        if self._handle is not None:
            with contextlib.suppress(OSError):  # the lines kept unwritten stay in memory until exit
                self._handle.close()
            self._handle = None

    def _roll(self) -> bool:
        today = self._clock().date()
        if today == self._day:
            return False
        self.close()
        self._day = today
        self._load()
        return True

    def _file(self) -> Any:
        if self._handle is None:
            self._handle = open(self._dir / f"{self._day.isoformat()}.tsv", "a", encoding="utf-8")  # noqa: SIM115
        return self._handle

    def _load(self) -> None:
        """Today's ids and the month's spend from the day files; old files go."""
        self._today = {kind: set() for kind in KINDS}
        self.spent_usd, self.posts = 0.0, 0
        start = self.period
        for path in sorted(self._dir.glob("*.tsv")):
            try:
                day = date.fromisoformat(path.stem)
            except ValueError:
                continue
            if day < self._day - timedelta(days=KEEP_DAYS):
                path.unlink(missing_ok=True)
                continue
            if not start <= day <= self._day:
                continue
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except OSError as exc:
                self.save_error = f"{path.name}: {exc.strerror or exc}"
                continue
            for line in text.splitlines():
                parts = line.split("\t")
                if len(parts) != 4 or parts[0] not in KINDS:
                    continue  # a torn last line after a power loss: that resource is billed again
                try:
                    usd = float(parts[2])
                except ValueError:
                    continue
                self.spent_usd += usd
                self.posts += parts[0] == POST
                if day == self._day:
                    self._today[parts[0]].add(parts[1])

    def _read_usage(self) -> dict[str, int]:
        """The last figures X gave; a damaged file is as good as none (the next poll rewrites it)."""
        try:
            return x_usage({"data": json.loads((self._dir / "x_usage.json").read_bytes())})
        except (OSError, ValueError, BadShape):
            return {}
