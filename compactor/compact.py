"""Compact one collection hour: read -> flatten -> dedupe -> write (staged) -> publish.

Memory stays bounded: lines are flattened into chunks that are written as they fill, so an
hour is never held whole; what is kept for the whole hour is the set of ids seen (for dedupe)
and one profile per author. Output is written under ``_staging/`` (ignored by every reader,
since it starts with an underscore) and only then moved over the hour's partition, so a
crashed run never leaves duplicate data visible: re-running replaces exactly that partition.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import uuid
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from compactor import schema
from compactor.flatten import Rejected, flatten_tweet, flatten_users
from compactor.storage import Storage, delete_files, list_files, move, open_output
from tweetlake.landing import STREAM_TWEETS, Hour, hour_prefix, parse_file_name
from tweetlake.logs import get_logger

log = get_logger("compactor")
TABLES = {  # name -> (relative directory, schema, format)
    "tweets": ("tweets", schema.TWEETS, "parquet"),
    "tweets_csv": ("csv/tweets", schema.TWEETS, "csv"),
    "users": ("users", schema.USERS, "parquet"),
    "users_csv": ("csv/users", schema.USERS, "csv"),
}
MANIFEST = "_manifest.json"
CHUNK_ROWS = 20_000


@dataclass
class HourReport:
    hour: str
    run_id: str
    input_files: list[str] = field(default_factory=list)
    records_in: int = 0
    rows_out: int = 0
    duplicates_in_hour: int = 0
    duplicates_prior_hours: int = 0
    rejected: int = 0
    rejected_reasons: dict[str, int] = field(default_factory=dict)
    users_out: int = 0
    schema_version: int = schema.SCHEMA_VERSION
    outputs: dict[str, list[str]] = field(default_factory=dict)
    started_at: str = ""
    finished_at: str = ""

    @property
    def duplicates(self) -> int:
        return self.duplicates_in_hour + self.duplicates_prior_hours

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _PartWriter:
    """Writes one table's part files into a staging directory, rotating at max_rows."""

    def __init__(self, storage: Storage, directory: str, table_schema: pa.Schema, fmt: str, max_rows: int) -> None:
        self._fs = storage.fs
        self._dir = directory
        self._schema = table_schema
        self._fmt = fmt
        self._max_rows = max_rows
        self._writer: Any = None
        self._stream: Any = None
        self._rows_in_part = 0
        self.paths: list[str] = []

    def _open(self) -> None:
        path = f"{self._dir}/part-{len(self.paths):05d}.{self._fmt}"
        self._stream = open_output(self._fs, path)
        if self._fmt == "parquet":
            self._writer = pq.ParquetWriter(self._stream, self._schema, compression="zstd")
        else:
            csv_schema = schema.csv_encode(pa.RecordBatch.from_pylist([], schema=self._schema)).schema
            self._writer = pacsv.CSVWriter(self._stream, csv_schema)
        self.paths.append(path)
        self._rows_in_part = 0

    def write(self, batch: pa.RecordBatch) -> None:
        offset = 0
        while offset < batch.num_rows:
            if self._writer is None or self._rows_in_part >= self._max_rows:
                self.close()
                self._open()
            take = min(batch.num_rows - offset, self._max_rows - self._rows_in_part)
            piece = batch.slice(offset, take)
            if self._fmt == "parquet":
                self._writer.write_batch(piece)
            else:
                self._writer.write_batch(schema.csv_encode(piece))
            self._rows_in_part += take
            offset += take

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._stream.close()
            self._writer = None


def _lines(data: bytes) -> Iterator[tuple[int, bytes | None, str | None]]:
    """(line number, line, None), or (line number, None, reason) once a gzip stream breaks."""
    reader = gzip.GzipFile(fileobj=io.BytesIO(data))
    number = 0
    try:
        for line in reader:
            number += 1
            if line.strip():
                yield number, line, None
    except (EOFError, OSError, zlib.error) as exc:
        yield number + 1, None, f"unreadable gzip data after line {number}: {type(exc).__name__}"


def prior_ids(storage: Storage, hour: Hour, lookback_hours: int) -> set[str]:
    """Ids already published in the previous hours: duplicates across hours are dropped here."""
    seen: set[str] = set()
    for back in range(1, lookback_hours + 1):
        directory = storage.tables.arrow_path(f"tweets/{hour.shift(-back).partition}")
        files = [i.path for i in list_files(storage.fs, directory) if i.path.endswith(".parquet")]
        if files:
            table = pads.dataset(files, filesystem=storage.fs, format="parquet").to_table(columns=["id"])
            seen.update(table.column("id").to_pylist())
    return seen


def compact_hour(
    storage: Storage,
    hour: Hour,
    *,
    lookback_hours: int = 24,
    max_rows_per_file: int = 1_000_000,
    chunk_rows: int = CHUNK_ROWS,
    run_id: str | None = None,
) -> HourReport:
    run_id = run_id or uuid.uuid4().hex[:12]
    report = HourReport(str(hour), run_id, started_at=datetime.now(UTC).isoformat())
    fs = storage.fs
    landing_dir = storage.landing.arrow_path(hour_prefix(STREAM_TWEETS, hour))
    inputs = [i.path for i in list_files(fs, landing_dir) if parse_file_name(i.path)]
    report.input_files = [storage.landing.uri(p.split(storage.landing.arrow_path() + "/", 1)[-1]) for p in inputs]
    earlier = prior_ids(storage, hour, lookback_hours)
    staging = storage.tables.arrow_path(f"_staging/{hour}-{run_id}")
    writers = {
        name: _PartWriter(storage, f"{staging}/{name}", tbl_schema, fmt, max_rows_per_file)
        for name, (_, tbl_schema, fmt) in TABLES.items()
    }
    rejected_path = f"{staging}/rejected.ndjson"
    rejected_stream = None
    seen: set[str] = set()
    users: dict[str, dict[str, Any]] = {}
    chunk: list[dict[str, Any]] = []
    reasons: Counter[str] = Counter()

    def reject(file: str, line: int | None, reason: str, raw: bytes | None) -> None:
        nonlocal rejected_stream
        if rejected_stream is None:
            rejected_stream = open_output(fs, rejected_path)
        entry = {
            "file": file,
            "line": line,
            "reason": reason,
            "raw": raw.decode("utf-8", "replace").rstrip("\n") if raw is not None else None,
        }
        rejected_stream.write(json.dumps(entry, ensure_ascii=False).encode() + b"\n")
        report.rejected += 1
        reasons[reason.split(":")[0]] += 1

    def flush() -> None:
        if chunk:
            batch = pa.RecordBatch.from_pylist(chunk, schema=schema.TWEETS)
            writers["tweets"].write(batch)
            writers["tweets_csv"].write(batch)
            chunk.clear()

    for path, uri in zip(inputs, report.input_files, strict=True):
        try:
            with fs.open_input_stream(path, compression=None) as handle:
                data = handle.read()
        except OSError as exc:
            report.records_in += 1
            reject(uri, None, f"unreadable file: {exc}", None)
            continue
        for number, line, broken in _lines(data):
            report.records_in += 1
            if broken:
                reject(uri, number, broken, None)
                continue
            assert line is not None
            try:
                record = json.loads(line)
                row = flatten_tweet(record)
                author_rows = flatten_users(record)
            except json.JSONDecodeError as exc:
                reject(uri, number, f"malformed JSON: {exc.msg}", line)
                continue
            except UnicodeDecodeError:
                reject(uri, number, "invalid UTF-8", line)
                continue
            except Rejected as exc:
                reject(uri, number, f"shape: {exc}", line)
                continue
            if row["id"] in seen:
                report.duplicates_in_hour += 1
                continue
            if row["id"] in earlier:
                report.duplicates_prior_hours += 1
                continue
            seen.add(row["id"])
            chunk.append(row)
            for user in author_rows:
                current = users.get(user["id"])
                if current is None or user["collected_at"] >= current["collected_at"]:
                    users[user["id"]] = user
            if len(chunk) >= chunk_rows:
                flush()
    flush()
    if users:
        batch = pa.RecordBatch.from_pylist(sorted(users.values(), key=lambda u: u["id"]), schema=schema.USERS)
        writers["users"].write(batch)
        writers["users_csv"].write(batch)
    for writer in writers.values():
        writer.close()
    if rejected_stream is not None:
        rejected_stream.close()
    report.rows_out = len(seen)
    report.users_out = len(users)
    report.rejected_reasons = dict(reasons)
    _publish(storage, hour, staging, writers, rejected_path if rejected_stream is not None else None, report)
    report.finished_at = datetime.now(UTC).isoformat()
    log.info(
        "hour_compacted",
        hour=str(hour),
        files=len(inputs),
        records_in=report.records_in,
        rows_out=report.rows_out,
        duplicates=report.duplicates,
        rejected=report.rejected,
        run_id=run_id,
    )
    return report


def _publish(
    storage: Storage,
    hour: Hour,
    staging: str,
    writers: dict[str, _PartWriter],
    rejected: str | None,
    report: HourReport,
) -> None:
    """Swap the staged files in for the hour's partitions, then drop the staging directory."""
    fs = storage.fs
    for name, (relative, _, _) in TABLES.items():
        target = storage.tables.arrow_path(f"{relative}/{hour.partition}")
        delete_files(fs, target)  # the old manifest goes too: it is rewritten last by publish
        moved = []
        for source in writers[name].paths:
            destination = f"{target}/{source.rsplit('/', 1)[-1]}"
            move(fs, source, destination)
            moved.append(destination)
        report.outputs[name] = moved
    rejected_dir = storage.tables.arrow_path(f"_rejected/{hour.partition}")
    delete_files(fs, rejected_dir)
    if rejected:
        move(fs, rejected, f"{rejected_dir}/rejected.ndjson")
        report.outputs["rejected"] = [f"{rejected_dir}/rejected.ndjson"]
    fs.delete_dir_contents(staging, missing_dir_ok=True)
    with contextlib.suppress(OSError):  # S3 has no real directories
        fs.delete_dir(staging)


def validate(storage: Storage, report: HourReport) -> list[str]:
    """Re-read what was published and check it adds up; an empty list means valid."""
    problems = []
    accounted = report.rows_out + report.duplicates + report.rejected
    if report.records_in != accounted:
        problems.append(
            f"landed records {report.records_in} != rows {report.rows_out} + duplicates "
            f"{report.duplicates} + rejected {report.rejected}"
        )
    parquet = report.outputs.get("tweets", [])
    if parquet:
        dataset = pads.dataset(parquet, filesystem=storage.fs, format="parquet")
        if not dataset.schema.equals(schema.TWEETS, check_metadata=False):
            problems.append("tweets parquet schema differs from schema.TWEETS")
        ids = dataset.to_table(columns=["id"]).column("id")
        if len(ids) != report.rows_out:
            problems.append(f"tweets parquet has {len(ids)} rows, expected {report.rows_out}")
        if len(set(ids.to_pylist())) != len(ids):
            problems.append("tweets parquet has duplicate ids")
    elif report.rows_out:
        problems.append("rows were counted but no parquet file was published")
    csv_rows = 0
    for path in report.outputs.get("tweets_csv", []):
        with storage.fs.open_input_stream(path) as handle:
            # text keeps its newlines (quoted, RFC 4180): the reader must allow them inside values
            # streamed batch by batch: memory stays bounded however large the hour
            reader = pacsv.open_csv(
                handle,
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                read_options=pacsv.ReadOptions(block_size=8 << 20),
                convert_options=pacsv.ConvertOptions(column_types={name: pa.string() for name in schema.TWEETS.names}),
            )
            csv_rows += sum(batch.num_rows for batch in reader)
    if csv_rows != report.rows_out:
        problems.append(f"tweets csv has {csv_rows} rows, expected {report.rows_out}")
    return problems


def write_manifest(storage: Storage, report: HourReport, *, valid: bool) -> str:
    """Written last, beside the data: its presence says the partition is complete."""
    path = storage.tables.arrow_path(f"tweets/{Hour.parse(report.hour).partition}/{MANIFEST}")
    body = {**report.to_dict(), "valid": valid, "manifest_written_at": datetime.now(UTC).isoformat()}
    with open_output(storage.fs, path) as out:
        out.write(json.dumps(body, indent=1).encode())
    return path


def read_manifest(storage: Storage, hour: Hour) -> dict[str, Any] | None:
    path = storage.tables.arrow_path(f"tweets/{hour.partition}/{MANIFEST}")
    try:
        with storage.fs.open_input_stream(path) as handle:
            return json.loads(handle.read())
    except OSError:  # FileNotFoundError included: no manifest yet
        return None
