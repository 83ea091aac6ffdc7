"""The daemon's durable state: per-account checkpoints, the next file sequence number, the
resolved account ids. Spool files are the other half of that state; ``reconcile`` makes the
two agree after a crash (a spooled batch newer than the checkpoint moves the checkpoint on).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from streamer.durable import write_atomic
from streamer.items import SpooledBatch

STATE_VERSION = 1


@dataclass
class Ledger:
    path: Path
    checkpoints: dict[str, int] = field(default_factory=dict)  # account id -> newest durable tweet id
    next_seq: int = 0
    accounts: dict[str, str] = field(default_factory=dict)  # lower-cased username -> account id

    @classmethod
    def load(cls, path: Path) -> Ledger:
        if not path.exists():
            return cls(path)
        data = json.loads(path.read_text())
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"{path}: unsupported state version {data.get('version')!r}")
        return cls(
            path,
            checkpoints={k: int(v) for k, v in data.get("checkpoints", {}).items()},
            next_seq=int(data.get("next_seq", 0)),
            accounts=dict(data.get("accounts", {})),
        )

    def save(self) -> None:
        data = {
            "version": STATE_VERSION,
            # ids as strings: 64-bit ids do not survive every JSON reader as numbers
            "checkpoints": {k: str(v) for k, v in sorted(self.checkpoints.items())},
            "next_seq": self.next_seq,
            "accounts": dict(sorted(self.accounts.items())),
        }
        write_atomic(self.path, json.dumps(data, indent=1).encode())

    def advance(self, max_ids: dict[str, int]) -> None:
        for account, newest in max_ids.items():
            if newest > self.checkpoints.get(account, 0):
                self.checkpoints[account] = newest

    def reconcile(self, spooled: Iterable[SpooledBatch]) -> bool:
        """Fold batches found in the spool into the state; True when anything moved."""
        before = (dict(self.checkpoints), self.next_seq)
        for batch in spooled:
            self.advance(batch.max_ids)
            self.next_seq = max(self.next_seq, batch.seq + 1)
        return before != (self.checkpoints, self.next_seq)
