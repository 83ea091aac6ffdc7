"""The daemon's durable bookkeeping: its writer instance, file sequence, progress and account ids.

Progress per account is, in poll mode, a checkpoint (the newest durable tweet id: rounds hand
tweets on oldest first, so everything below it is durable too), and in stream mode a watermark
plus the durable ids above it: the stream delivers new tweets while a gap recovery still lands
older ones, so "newest durable" says nothing about what lies below it.

Spool files are the other half of the durable state; ``streamer.state`` reads both at start and
makes them agree. The instance id makes this state dir's landed keys its own: two daemons (or a
ledger rebuilt after damage) never produce the same key, because each starts a new instance.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamer.items import Mark
from tweetlake.durable import write_atomic

STATE_VERSION = 2


class DamagedState(Exception):
    """state.json cannot be read back; ``str()`` says why."""


def new_instance() -> str:
    return secrets.token_hex(4)


@dataclass
class Ledger:
    path: Path
    instance: str = field(default_factory=new_instance)
    checkpoints: dict[str, int] = field(default_factory=dict)  # poll: account id -> newest durable tweet id
    watermarks: dict[str, int] = field(default_factory=dict)  # stream: account id -> all below are durable
    above: dict[str, set[int]] = field(default_factory=dict)  # stream: durable ids above the watermark
    next_seq: int = 0  # of this instance
    accounts: dict[str, str] = field(default_factory=dict)  # lower-cased username -> account id

    @classmethod
    def load(cls, path: Path) -> Ledger:
        """The saved ledger, a new one when there is none; DamagedState when it cannot be read."""
        if not path.exists():
            return cls(path)
        try:
            data = json.loads(path.read_bytes())
            return cls._from(path, data)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # JSONDecodeError is a ValueError
            raise DamagedState(f"{type(exc).__name__}: {exc}") from None

    @classmethod
    def _from(cls, path: Path, data: Any) -> Ledger:
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        version = data.get("version")
        if version not in (1, STATE_VERSION):
            raise ValueError(f"unsupported state version {version!r}")
        accounts = data.get("accounts", {})
        if not all(
            isinstance(k, str) and isinstance(v, str) and v.isascii() and v.isdigit() for k, v in accounts.items()
        ):
            raise ValueError("accounts must map names to numeric id strings")
        ledger = cls(
            path,
            checkpoints={str(k): _id(v) for k, v in data.get("checkpoints", {}).items()},
            watermarks={str(k): _id(v) for k, v in data.get("watermarks", {}).items()},
            above={str(k): {_id(i) for i in v} for k, v in data.get("above", {}).items()},
            accounts=dict(accounts),
        )
        if version == STATE_VERSION:  # version 1 had no instance: keep the fresh one, sequence from 0
            instance = data["instance"]
            if not (isinstance(instance, str) and instance.isascii() and instance.isalnum()):
                raise ValueError(f"bad instance {instance!r}")
            ledger.instance = instance
            ledger.next_seq = _id(data["next_seq"])
        return ledger

    def save(self) -> None:
        self.write(self.encode())

    def write(self, encoded: bytes) -> None:
        """Durably replace state.json (blocking: components run it on a thread, with ``encode``'s bytes)."""
        write_atomic(self.path, encoded)

    def encode(self) -> bytes:
        """The ledger as saved, built on the event loop so that no component changes it mid-way."""
        data = {
            "version": STATE_VERSION,
            "instance": self.instance,
            "next_seq": self.next_seq,
            # ids as strings: 64-bit ids do not survive every JSON reader as numbers
            "checkpoints": {k: str(v) for k, v in sorted(self.checkpoints.items())},
            "watermarks": {k: str(v) for k, v in sorted(self.watermarks.items())},
            "above": {k: [str(i) for i in sorted(v)] for k, v in sorted(self.above.items()) if v},
            "accounts": dict(sorted(self.accounts.items())),
        }
        return json.dumps(data, indent=1).encode()

    def writer(self, writer_id: str) -> str:
        """This state dir's name in landed file names."""
        return f"{writer_id}-{self.instance}"

    def allocate(self) -> int:
        """The next sequence number of this instance (saved with the next ``save``)."""
        seq = self.next_seq
        self.next_seq += 1
        return seq

    def new_instance(self) -> None:
        """Start a new writer instance: every key from now on differs from every earlier one."""
        self.instance = new_instance()
        self.next_seq = 0

    def advance(self, max_ids: dict[str, int]) -> None:
        """Poll mode: tweets up to these ids are durable."""
        for account, newest in max_ids.items():
            if newest > self.checkpoints.get(account, 0):
                self.checkpoints[account] = newest

    def durable(self, ids: dict[str, list[int]]) -> None:
        """Stream mode: these tweets are durable (those at or below a watermark already count)."""
        for account, found in ids.items():
            watermark = self.watermarks.get(account, -1)
            self.above.setdefault(account, set()).update(i for i in found if i > watermark)

    def record(self, ids: dict[str, list[int]], *, stream: bool) -> None:
        """Tweets just made durable, by the rule of the collection mode."""
        if stream:
            self.durable(ids)
        else:
            self.advance({account: max(found) for account, found in ids.items() if found})

    def apply(self, mark: Mark) -> None:
        if mark.kind == "checkpoint":
            self.advance({mark.account_id: mark.tweet_id})
        elif mark.tweet_id > self.watermarks.get(mark.account_id, -1):
            self.watermarks[mark.account_id] = mark.tweet_id
            self.above[mark.account_id] = {i for i in self.above.get(mark.account_id, ()) if i > mark.tweet_id}


def _id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isascii():
        raise ValueError(f"not a number: {value!r}")
    number = int(value)
    if number < 0:
        raise ValueError(f"negative: {value!r}")
    return number
