"""Compact one collection hour: lease -> read + flatten -> dedupe -> stage -> check -> commit -> export.

What becomes visible, and when (docs/architecture.md says the same):

1. Staging: the hour's Iceberg data files are written under the table location (invisible: no
   snapshot references them yet), the CSV parts and rejected lines under ``_staging/``.
2. Checks: the staged files are read back (schema, row counts, unique ids, CSV parse). An hour
   that fails is not published at all; the previous version stays.
3. Commit: one Iceberg commit per table replaces exactly that hour. This is the moment a reader
   of the tables sees the new hour, whole.
4. Export: the CSV parts and rejected lines are moved over the hour's previous ones, then the
   manifest is written last. The hour's lease (taken first) keeps every other run out meanwhile.

Dedupe: within the hour the first occurrence in landing order (file key, then line) wins; across
hours a tweet stays in the hour that published it first (ids already in the ``lookback_hours``
before or after are dropped), so re-running any hour, in any order, never puts a tweet in two.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from compactor import csvfiles
from compactor.checks import check_counts, check_csv, check_parquet
from compactor.core import HourCompaction
from compactor.engine import Flattened
from compactor.filesystems import Storage, delete_files, delete_tree, list_files, move, open_output
from compactor.flatten import Rejected, flatten_tweet, flatten_users
from compactor.lake import Lake
from compactor.lease import Lease
from compactor.manifest import write_manifest
from compactor.reading import FileFailed, Flattening, Item
from compactor.tables import TWEETS, USERS, Table, lease_file, rejected_file, staging_dir
from compactor.writers import PartFiles, RejectedFile
from tweetlake.config import Config
from tweetlake.landing import STREAM_TWEETS, Hour, Unreadable, decode_line, hour_prefix, parse_file_name
from tweetlake.logs import get_logger

log = get_logger("compactor")
# Flattening workers when ``tables.workers`` is 0: the main thread (dedupe, writers) takes 4.9-6.2
# CPU s per 100k tweets and the workers 11.6-16 together, so past ~3 workers a run waits on the
# main thread and each further worker only adds its ~145 MB (docs/benchmarks.md).
AUTO_WORKERS = 4


@dataclass(frozen=True)
class Options:
    lookback_hours: int = 24
    max_rows_per_file: int = 1_000_000
    max_line_bytes: int = 4 << 20
    workers: int = 0
    lease_s: float = 1800.0

    @classmethod
    def from_config(cls, config: Config) -> Options:
        t = config.tables
        return cls(t.lookback_hours, t.max_rows_per_file, t.max_line_bytes, t.workers, t.lease_s)

    @property
    def flattening_workers(self) -> int:
        """``workers``, or one per CPU up to ``AUTO_WORKERS``."""
        return self.workers or min(os.cpu_count() or 1, AUTO_WORKERS)


@dataclass
class HourReport:
    hour: str
    run_id: str
    inputs: list[dict[str, Any]] = field(default_factory=list)  # {"key", "size"} of every object read
    records_in: int = 0
    rows_out: int = 0
    duplicates_in_hour: int = 0
    duplicates_other_hours: int = 0
    rejected: int = 0
    rejected_reasons: dict[str, int] = field(default_factory=dict)
    users_out: int = 0
    snapshots: dict[str, int | None] = field(default_factory=dict)
    commit_seconds: dict[str, float] = field(default_factory=dict)  # per table: what publishing cost
    outputs: dict[str, list[str]] = field(default_factory=dict)
    valid: bool = False
    problems: list[str] = field(default_factory=list)
    started_at: str = ""
    finished_at: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compact_hour(lake: Lake, hour: Hour, options: Options, *, run_id: str | None = None) -> HourReport:
    """Compact ``hour`` under its lease; the report says whether it was published (``valid``).

    Raises HourLeased when another run holds the hour, and LeaseLost / ConcurrentCompaction when
    another run took it over meanwhile (this run then publishes nothing).
    """
    # Arrow's default allocator (mimalloc) keeps freed pages per thread: with a flattening worker
    # per core that held ~60 MB more at the same speed (bench/compaction.py, 100k tweets).
    pa.set_memory_pool(pa.system_memory_pool())
    run = _HourRun(lake, hour, options, run_id or uuid.uuid4().hex[:12])
    storage = lake.storage
    lease = Lease(
        storage.lease_store(), storage.lease_key(lease_file(hour)), run_id=run.report.run_id, term_s=options.lease_s
    )
    with lease:
        return run.run(lease)


class _HourRun:
    def __init__(self, lake: Lake, hour: Hour, options: Options, run_id: str) -> None:
        self.lake = lake
        self.storage = storage = lake.storage
        self.fs = storage.fs
        self.hour = hour
        self.options = options
        self.report = HourReport(str(hour), run_id, started_at=datetime.now(UTC).isoformat())
        self.core = HourCompaction()
        self.staging = storage.tables.arrow_path(staging_dir(hour, run_id))
        self.workers = options.flattening_workers

    def run(self, lease: Lease) -> HourReport:
        inputs = self._inputs()
        self.report.inputs = [{"key": key, "size": size} for _, key, size in inputs]
        landed = [(path, key) for path, key, _ in inputs if parse_file_name(key)]
        paths = [path for path, _ in landed]
        with Flattening(self.fs, paths, workers=self.workers, max_line_bytes=self.options.max_line_bytes) as items:
            return self._run(lease, inputs, landed, items)

    def _run(
        self,
        lease: Lease,
        inputs: list[tuple[str, str, int]],
        landed: list[tuple[str, str]],
        items: Iterator[tuple[int, Item]],
    ) -> HourReport:
        from compactor import iceberg  # pyiceberg (~1 s to import) loads while the workers parse

        tables = {t.name: self.lake.table(t) for t in (TWEETS, USERS)}
        data = {
            name: PartFiles(
                self.fs,
                self.storage.path(iceberg.data_dir(table, self.hour)),
                _table(name).schema,
                "parquet",
                max_rows=self.options.max_rows_per_file,
                prefix=self.report.run_id,
            )
            for name, table in tables.items()
        }
        csv = {
            name: PartFiles(
                self.fs,
                f"{self.staging}/csv/{name}",
                _table(name).schema,
                "csv",
                max_rows=self.options.max_rows_per_file,
                prefix="part",
            )
            for name in tables
        }
        rejected = RejectedFile(self.fs, f"{self.staging}/rejected.ndjson")
        uncommitted = set(tables)
        try:
            self._read(inputs, landed, items, data, csv, rejected)
            other_hours = iceberg.other_hours_ids(tables["tweets"], self.hour, self.options.lookback_hours)
            self._drop_other_hours(other_hours, data, csv)
            users = self.core.users()
            for batch in users.to_batches():
                data["users"].write(batch)
                csv["users"].write(batch)
            parquet_paths = {name: files.close() for name, files in data.items()}
            csv_paths = {name: files.close() for name, files in csv.items()}
            rejected.close()
            self._count()
            self.report.problems = self._check(parquet_paths, csv)
            if self.report.problems:
                log.error("hour_invalid", hour=str(self.hour), problems=self.report.problems, run_id=self.report.run_id)
                self._discard(parquet_paths)
                return self._finish()
            for name, table in tables.items():
                lease.check()
                files = [f"{_scheme(self.storage)}{p}" for p in parquet_paths[name]]
                started = time.perf_counter()
                committed = iceberg.replace_hour(table, self.hour, files, self.report.run_id)
                self.report.commit_seconds[name] = round(time.perf_counter() - started, 4)
                uncommitted.discard(name)
                self.report.snapshots[name] = committed.snapshot_id
            lease.check()
            self._export(csv_paths, rejected)
            self.report.valid = True
            write_manifest(self.storage, self.report.to_dict())
            return self._finish()
        except BaseException:  # data files of a committed table are the table's now: only the others go
            self._discard({name: files.close() for name, files in data.items() if name in uncommitted})
            raise
        finally:
            delete_tree(self.fs, self.staging)

    def _inputs(self) -> list[tuple[str, str, int]]:
        """(fs path, key relative to landing.uri, size) of every object under the hour's prefix."""
        prefix = hour_prefix(STREAM_TWEETS, self.hour)
        root = self.storage.landing.arrow_path()
        found = []
        for info in list_files(self.fs, self.storage.landing.arrow_path(prefix)):
            found.append((info.path, info.path.removeprefix(root + "/"), info.size))
        return found

    def _read(
        self,
        inputs: list[tuple[str, str, int]],
        landed: list[tuple[str, str]],
        items: Iterator[tuple[int, Item]],
        data: dict[str, PartFiles],
        csv: dict[str, PartFiles],
        rejected: RejectedFile,
    ) -> None:
        for _, key, _ in inputs:
            if not parse_file_name(key):  # every object is accounted for: compacted or rejected
                self.core.records_read(1)
                self._reject(rejected, key, None, f"not a landing file name: {key.rsplit('/', 1)[-1]!r}", None)
        for index, item in items:
            uri = self.storage.landing.uri(landed[index][1])
            if isinstance(item, Unreadable):
                self.core.records_read(1)
                self._reject(rejected, uri, item.line, item.reason, item.raw)
            elif isinstance(item, FileFailed):
                self.core.records_read(1)
                self._reject(rejected, uri, None, item.reason, None)
            else:
                self._take(item, uri, rejected, data, csv)

    def _drop_other_hours(
        self, other_hours: Iterable[pa.Array], data: dict[str, PartFiles], csv: dict[str, PartFiles]
    ) -> None:
        """Tweets already published in the hours around this one (their ids, batch by batch) stay there."""
        found = []
        for ids in other_hours:
            found.extend(self.core.ids.found_in(ids))
        if found:
            self.core.drop_other_hours(found)
            data["tweets"], csv["tweets"] = _without(self.fs, data["tweets"], csv["tweets"], found)
            log.info("duplicates_in_other_hours", hour=str(self.hour), count=len(found))

    def _take(
        self, flat: Flattened, uri: str, rejected: RejectedFile, data: dict[str, PartFiles], csv: dict[str, PartFiles]
    ) -> None:
        self.core.records_read(flat.tweets.num_rows + len(flat.slow))
        tweets, users, rejections = with_slow_lines(flat)
        for line, reason, raw in rejections:
            self._reject(rejected, uri, line, reason, raw)
        kept = self.core.take_tweets(tweets)
        if kept.num_rows:
            data["tweets"].write(kept)
            csv["tweets"].write(kept)
        self.core.take_users(users)

    def _reject(self, rejected: RejectedFile, uri: str, line: int | None, reason: str, raw: bytes | None) -> None:
        self.core.reject(reason)
        rejected.write(uri, line, reason, raw)

    def _count(self) -> None:
        counts = self.core.counts
        self.report.records_in = counts.records_in
        self.report.rows_out = counts.rows_out
        self.report.duplicates_in_hour = counts.duplicates_in_hour
        self.report.duplicates_other_hours = counts.duplicates_other_hours
        self.report.rejected = counts.rejected
        self.report.rejected_reasons = dict(counts.rejected_reasons)
        self.report.users_out = counts.users_out

    def _check(self, parquet: dict[str, list[str]], csv: dict[str, PartFiles]) -> list[str]:
        """Every staged file read back, the files side by side (Arrow reads without the GIL)."""
        rows = {"tweets": self.report.rows_out, "users": self.report.users_out}
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="check") as pool:
            checks = []
            for name in ("tweets", "users"):
                schema = _table(name).schema
                checks.append(pool.submit(check_parquet, self.fs, name, parquet[name], schema, rows[name]))
                parts = csv[name]
                checks.append(
                    pool.submit(check_csv, self.fs, f"{name} csv", parts.paths, schema, rows[name], parts.widest_row)
                )
            return check_counts(self.core.counts) + [problem for check in checks for problem in check.result()]

    def _export(self, csv: dict[str, list[str]], rejected: RejectedFile) -> None:
        """Move the staged CSV parts and rejected lines over the hour's previous ones."""
        for name, paths in csv.items():
            table = _table(name)
            description = json.dumps(csvfiles.describe(name, table.schema), indent=1).encode()
            with open_output(self.fs, self.storage.tables.arrow_path(table.csv_description)) as out:
                out.write(description)  # the same bytes every run: rewriting it is harmless
            target = self.storage.tables.arrow_path(table.csv_partition(self.hour))
            delete_files(self.fs, target)
            self.report.outputs[f"{name}_csv"] = []
            for number, source in enumerate(paths):
                destination = f"{target}/part-{number:05d}.csv"
                move(self.fs, source, destination)
                self.report.outputs[f"{name}_csv"].append(destination)
        target = self.storage.tables.arrow_path(rejected_file(self.hour))
        delete_files(self.fs, target.rsplit("/", 1)[0])
        if rejected.written:
            move(self.fs, rejected.path, target)
            self.report.outputs["rejected"] = [target]

    def _discard(self, parquet: dict[str, list[str]]) -> None:
        """Data files no commit will reference (a failed check or a crash): delete them now."""
        for paths in parquet.values():
            for path in paths:
                try:
                    self.fs.delete_file(path)
                except OSError:
                    log.warning("orphan_left", path=path, detail="removed by `tweet-compactor maintain`")

    def _finish(self) -> HourReport:
        self.report.finished_at = datetime.now(UTC).isoformat()
        log.info(
            "hour_compacted" if self.report.valid else "hour_not_published",
            hour=str(self.hour),
            files=len(self.report.inputs),
            records_in=self.report.records_in,
            rows_out=self.report.rows_out,
            duplicates=self.report.duplicates_in_hour + self.report.duplicates_other_hours,
            rejected=self.report.rejected,
            snapshots=self.report.snapshots,
            commit_s=self.report.commit_seconds,
            run_id=self.report.run_id,
        )
        return self.report


def _table(name: str) -> Table:
    return TWEETS if name == "tweets" else USERS


def _scheme(storage: Storage) -> str:
    return "s3://" if storage.s3 is not None else "file://"


def with_slow_lines(flat: Flattened) -> tuple[pa.RecordBatch, pa.RecordBatch, list[tuple[int, str, bytes]]]:
    """One file's rows in line order (the engine's, plus the reference's for the lines it left), and
    the (line number, reason, raw line) of each line the reference rejects."""
    if not flat.slow:
        return flat.tweets, flat.users, []
    rows, users, row_numbers, user_numbers, rejections = [], [], [], [], []
    for _, number, line in flat.slow:
        try:
            record = decode_line(line)
            row, authors = flatten_tweet(record), flatten_users(record)
        except Rejected as exc:
            rejections.append((number, f"shape: {exc}", line))
            continue
        except UnicodeDecodeError:
            rejections.append((number, "invalid UTF-8", line))
            continue
        except ValueError as exc:  # JSONDecodeError
            rejections.append((number, f"malformed JSON: {getattr(exc, 'msg', exc)}", line))
            continue
        except RecursionError:
            rejections.append((number, "malformed JSON: nested too deeply", line))
            continue
        rows.append(row)
        row_numbers.append(number)
        users.extend(authors)
        user_numbers.extend([number] * len(authors))
    tweets = _merge(
        flat.tweets, flat.tweet_numbers, pa.RecordBatch.from_pylist(rows, schema=TWEETS.schema), row_numbers
    )
    authors = _merge(
        flat.users, flat.user_numbers, pa.RecordBatch.from_pylist(users, schema=USERS.schema), user_numbers
    )
    return tweets, authors, rejections


def _merge(
    fast: pa.RecordBatch, fast_numbers: np.ndarray, slow: pa.RecordBatch, slow_numbers: list[int]
) -> pa.RecordBatch:
    """Both sets of rows in line-number order (a stable sort: a line's author rows keep their order)."""
    if not slow.num_rows:
        return fast
    order = np.argsort(np.concatenate([fast_numbers, np.array(slow_numbers, dtype=np.int64)]), kind="stable")
    return pa.Table.from_batches([fast, slow]).take(order).combine_chunks().to_batches()[0]


def _without(fs: Any, data: PartFiles, csv: PartFiles, ids: list[str]) -> tuple[PartFiles, PartFiles]:
    """The staged tweets rewritten without ``ids`` (tweets found already published in another hour)."""
    drop = pa.array(ids, pa.string())
    new_data, new_csv = data.renamed("dedup"), csv.renamed("dedup")
    for path in data.close():
        with fs.open_input_file(path) as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=8192):  # a part can hold 1M rows
                kept = batch.filter(pc.invert(pc.is_in(batch.column("id"), value_set=drop)))
                new_data.write(kept)
                new_csv.write(kept)
        fs.delete_file(path)
    for path in csv.close():
        fs.delete_file(path)
    return new_data, new_csv
