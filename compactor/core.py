"""The pure core of one hour's compaction: fed rows in landing order, it decides what the hour holds.

No I/O: the caller reads landed files, flattens them (``compactor.engine`` / ``compactor.flatten``)
and feeds the rows here in file and line order; what comes back is what to write. The core keeps
only what an hour needs: the ids seen (for "the first occurrence wins") and, per author, the
latest profile snapshot; the counts add up to the records read (``Counts.balanced``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from compactor import schema

_ORDER = "__order"
_MIN_REDUCE_ROWS = 8192  # author rows gathered at least before a reduction (~0.5-1 KB a row)


@dataclass
class Counts:
    records_in: int = 0
    rows_out: int = 0
    duplicates_in_hour: int = 0
    duplicates_other_hours: int = 0
    rejected: int = 0
    rejected_reasons: Counter[str] = field(default_factory=Counter)
    users_out: int = 0

    @property
    def balanced(self) -> bool:
        accounted = self.rows_out + self.duplicates_in_hour + self.duplicates_other_hours + self.rejected
        return self.records_in == accounted


class IdSet:
    """Tweet ids seen so far: canonical ids as sorted uint64 runs (8 bytes an id), the rest as strings.

    A run per batch, merged with the previous one while that one is no larger (as a binary counter
    carries), so adding n ids costs O(n log n) and a lookup searches O(log n) runs.
    """

    def __init__(self) -> None:
        self._runs: list[np.ndarray] = []
        self._strings: set[str] = set()

    def __len__(self) -> int:
        return sum(len(run) for run in self._runs) + len(self._strings)

    def add_new(self, ids: pa.Array) -> np.ndarray:
        """Add ``ids`` in order; the mask of those seen for the first time (repeats in ``ids`` too)."""
        ints, canonical = canonical_ints(ids)
        fresh = np.zeros(len(ids), dtype=bool)
        positions = np.flatnonzero(canonical)
        unique, first = np.unique(ints[positions], return_index=True)
        new = ~self._contains(unique)
        fresh[positions[first[new]]] = True
        self._push(unique[new])
        if not canonical.all():
            strings = ids.to_pylist()
            for index in np.flatnonzero(~canonical).tolist():
                if strings[index] not in self._strings:
                    self._strings.add(strings[index])
                    fresh[index] = True
        return fresh

    def found_in(self, ids: pa.Array) -> list[str]:
        """The ids of ``ids`` that are in this set (a scan of other hours' ids, batch by batch)."""
        ints, canonical = canonical_ints(ids)
        hit = canonical & self._contains(ints)
        if not canonical.all():
            strings = ids.to_pylist()
            hit |= np.array([not c and s in self._strings for c, s in zip(canonical, strings, strict=True)])
        return [ids[int(i)].as_py() for i in np.flatnonzero(hit)]

    def _contains(self, values: np.ndarray) -> np.ndarray:
        found = np.zeros(len(values), dtype=bool)
        for run in self._runs:
            at = np.minimum(np.searchsorted(run, values), len(run) - 1)
            found |= run[at] == values
        return found

    def _push(self, run: np.ndarray) -> None:
        if not len(run):
            return
        self._runs.append(run)
        while len(self._runs) > 1 and len(self._runs[-2]) <= len(self._runs[-1]):
            last = self._runs.pop()
            self._runs[-1] = np.sort(np.concatenate([self._runs[-1], last]))


def canonical_ints(ids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(uint64 values, mask of ids that are canonical: 1-19 digits, no leading zero) of id strings."""
    lengths = pc.utf8_length(ids).to_numpy(zero_copy_only=False)
    first = pc.utf8_slice_codeunits(ids, 0, 1)
    canonical = (
        (lengths >= 1) & (lengths <= 19) & ~(pc.equal(first, "0").to_numpy(zero_copy_only=False) & (lengths > 1))
    )
    values = np.zeros(len(ids), dtype=np.uint64)
    if canonical.any():
        picked = pc.filter(ids, pa.array(canonical))
        values[canonical] = pc.cast(picked, pa.uint64()).to_numpy(zero_copy_only=False)
    return values, canonical


class HourCompaction:
    """Dedupe by tweet id (first occurrence in landing order wins) and latest author snapshots."""

    def __init__(self) -> None:
        self.counts = Counts()
        self.ids = IdSet()
        self._users: pa.Table | None = None  # latest snapshot per author of the rows reduced so far
        self._pending: list[pa.Table] = []  # author rows not reduced yet
        self._pending_rows = 0
        self._user_rows = 0

    def records_read(self, count: int) -> None:
        self.counts.records_in += count

    def reject(self, reason: str) -> None:
        self.counts.rejected += 1
        self.counts.rejected_reasons[reason.split(":")[0]] += 1

    def take_tweets(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """The rows of ``batch`` whose id the hour has not seen yet."""
        fresh = self.ids.add_new(batch.column("id"))
        kept = int(fresh.sum())
        self.counts.duplicates_in_hour += batch.num_rows - kept
        self.counts.rows_out += kept
        return batch if kept == batch.num_rows else batch.filter(pa.array(fresh))

    def take_users(self, batch: pa.RecordBatch) -> None:
        """Author rows in landing order: per user the latest ``collected_at`` wins (a tie: the later row)."""
        if not batch.num_rows:
            return
        order = np.arange(self._user_rows, self._user_rows + batch.num_rows, dtype=np.int64)
        self._user_rows += batch.num_rows
        self._pending.append(pa.Table.from_batches([batch]).append_column(_ORDER, pa.array(order)))
        self._pending_rows += batch.num_rows
        # Reduced once the rows held reach the size of the reduced table (and _MIN_REDUCE_ROWS): an
        # hour of mostly distinct authors costs O(n log n) in all, not a sort of everything per batch.
        if self._pending_rows >= max(_MIN_REDUCE_ROWS, 0 if self._users is None else self._users.num_rows):
            self._reduce()

    def _reduce(self) -> None:
        tables = self._pending if self._users is None else [self._users, *self._pending]
        self._users = _latest_per_id(pa.concat_tables(tables))
        self._pending, self._pending_rows = [], 0

    def drop_other_hours(self, ids: list[str]) -> None:
        """Ids found published in other hours: counted as duplicates; the caller filters its files."""
        self.counts.duplicates_other_hours += len(ids)
        self.counts.rows_out -= len(ids)

    def users(self) -> pa.Table:
        """One row per author, by id."""
        if self._pending:
            self._reduce()
        if self._users is None:
            return schema.USERS.empty_table()
        users = self._users.drop_columns([_ORDER]).sort_by("id")
        self.counts.users_out = users.num_rows
        return users


def _latest_per_id(table: pa.Table) -> pa.Table:
    ordered = table.sort_by([("id", "ascending"), ("collected_at", "ascending"), (_ORDER, "ascending")])
    ids = ordered.column("id").combine_chunks()
    if len(ids) < 2:
        return ordered
    last = pc.not_equal(ids.slice(0, len(ids) - 1), ids.slice(1)).to_numpy(zero_copy_only=False)
    keep = np.append(last, True)
    return ordered.filter(pa.array(keep))
