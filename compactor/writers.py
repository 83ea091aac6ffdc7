"""Files a run writes before anything is published: table parts (Parquet, CSV) and rejected lines."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from compactor import csvfiles
from compactor.filesystems import open_output

# A Parquet row group is written once this many bytes of rows are held: the flattening hands on
# ~2,000 rows at a time, and a row group that small compresses worse, costs a zstd context per
# column and makes every reader's metadata larger.
ROW_GROUP_BYTES = 32 << 20


class PartFiles:
    """One table's part files in one directory, a new part every ``max_rows`` rows.

    ``fmt`` is "parquet" (zstd; the Iceberg data files) or "csv" (lists as JSON arrays).
    """

    def __init__(
        self, fs: pafs.FileSystem, directory: str, schema: pa.Schema, fmt: str, *, max_rows: int, prefix: str
    ) -> None:
        self._fs = fs
        self._dir = directory
        self._schema = schema
        self._fmt = fmt
        self._max_rows = max_rows
        self._prefix = prefix
        self._writer: Any = None
        self._stream: Any = None
        self._rows_in_part = 0
        self._row_group: list[pa.RecordBatch] = []  # parquet: rows held for the next row group
        self._row_group_bytes = 0
        self.paths: list[str] = []
        self.rows = 0
        self.widest_row = 0  # csv: an upper bound of the bytes of any row written (what reading it back needs)

    def renamed(self, suffix: str) -> PartFiles:
        """A new, empty set of parts in the same directory, named apart from these."""
        return PartFiles(
            self._fs, self._dir, self._schema, self._fmt, max_rows=self._max_rows, prefix=f"{self._prefix}-{suffix}"
        )

    def _open(self) -> None:
        path = f"{self._dir}/{self._prefix}-{len(self.paths):05d}.{self._fmt}"
        self._stream = open_output(self._fs, path)
        if self._fmt == "parquet":
            self._writer = pq.ParquetWriter(self._stream, self._schema, compression="zstd")
        else:
            self._writer = pacsv.CSVWriter(self._stream, csvfiles.csv_schema(self._schema))
        self.paths.append(path)
        self._rows_in_part = 0

    def write(self, batch: pa.RecordBatch) -> None:
        offset = 0
        while offset < batch.num_rows:
            if self._writer is None or self._rows_in_part >= self._max_rows:
                self._close_part()
                self._open()
            take = min(batch.num_rows - offset, self._max_rows - self._rows_in_part)
            piece = batch.slice(offset, take)
            if self._fmt == "csv":
                piece = csvfiles.encode(piece)
                self.widest_row = max(self.widest_row, _widest_row(piece))
                self._writer.write_batch(piece)
            else:
                self._row_group.append(piece)
                self._row_group_bytes += piece.nbytes
                if self._row_group_bytes >= ROW_GROUP_BYTES:
                    self._write_row_group()
            self._rows_in_part += take
            self.rows += take
            offset += take

    def _write_row_group(self) -> None:
        if self._row_group:
            self._writer.write_table(pa.Table.from_batches(self._row_group, schema=self._schema))
            self._row_group, self._row_group_bytes = [], 0

    def _close_part(self) -> None:
        if self._writer is not None:
            self._write_row_group()
            self._writer.close()
            self._stream.close()
            self._writer = None

    def close(self) -> list[str]:
        self._close_part()
        return self.paths


def _widest_row(batch: pa.RecordBatch) -> int:
    """At least the CSV bytes of the widest row: the widest cell of each column, quotes doubled."""
    widest = 32 * batch.num_columns  # a number, a timestamp, separators
    for column in batch.columns:
        if pa.types.is_string(column.type) and len(column):
            widest += 2 * (pc.max(pc.binary_length(column)).as_py() or 0)
    return widest


class RejectedFile:
    """Rejected landing lines, one JSON object each: ``{"file", "line", "reason", "raw"}``."""

    def __init__(self, fs: pafs.FileSystem, path: str) -> None:
        self._fs = fs
        self.path = path
        self._stream: Any = None

    def write(self, file: str, line: int | None, reason: str, raw: bytes | None) -> None:
        if self._stream is None:
            self._stream = open_output(self._fs, self.path)
        entry = {
            "file": file,
            "line": line,
            "reason": reason,
            "raw": raw.decode("utf-8", "replace").rstrip("\n") if raw is not None else None,
        }
        self._stream.write(json.dumps(entry, ensure_ascii=False).encode() + b"\n")

    @property
    def written(self) -> bool:
        return self._stream is not None

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
