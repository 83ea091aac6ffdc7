"""What flows between the daemon's components."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tweetlake.landing import Hour, landing_key


@dataclass(frozen=True, slots=True)
class Item:
    """One landed line as a source hands it on, already encoded."""

    stream: str
    line: bytes
    collected_at: datetime
    account_id: str
    tweet_id: int | None = None  # set on tweets: what checkpoints are made of


@dataclass(frozen=True, slots=True)
class Mark:
    """A ledger update that may only apply once everything handed on before it is durable.

    ``checkpoint``: poll mode's "collect after this id" (a first round that reads no history).
    ``watermark``: stream mode's "every tweet up to this id is durable" (after a gap recovery).
    """

    kind: str
    account_id: str
    tweet_id: int


@dataclass
class Batch:
    stream: str
    hour: Hour
    opened_at: float
    lines: list[bytes] = field(default_factory=list)
    nbytes: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    ids: dict[str, list[int]] = field(default_factory=dict)  # tweet ids per account id
    marks: list[Mark] = field(default_factory=list)  # applied after this batch is durable

    def add(self, item: Item) -> None:
        self.lines.append(item.line)
        self.nbytes += len(item.line)
        self.counts[item.account_id] = self.counts.get(item.account_id, 0) + 1
        if item.tweet_id is not None:
            self.ids.setdefault(item.account_id, []).append(item.tweet_id)

    @property
    def max_ids(self) -> dict[str, int]:
        return {account: max(ids) for account, ids in self.ids.items()}


@dataclass(frozen=True)
class SpooledBatch:
    """A batch that is durable on local disk and waits for its upload under ``key``."""

    path: Path
    writer: str
    seq: int
    stream: str
    hour: Hour
    size: int
    counts: dict[str, int]
    ids: dict[str, list[int]]  # tweet ids per account id

    @property
    def max_ids(self) -> dict[str, int]:
        return {account: max(ids) for account, ids in self.ids.items()}

    @property
    def key(self) -> str:
        return landing_key(self.stream, self.hour, self.writer, self.seq)


class Flush:
    """Sentinel sent down the queues at shutdown: flush what you hold, pass it on, stop."""

    def __repr__(self) -> str:
        return "FLUSH"


FLUSH = Flush()
