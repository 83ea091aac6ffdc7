"""Re-read what a run staged, before it becomes visible: an hour that fails here is never published.

Each check can fail on a wrong file: a Parquet file with another schema, a row missing or doubled,
a duplicate id, a CSV that does not parse back to the same number of rows.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from compactor.core import Counts
from compactor.csvfiles import csv_schema


def check_counts(counts: Counts) -> list[str]:
    if counts.balanced:
        return []
    return [
        f"landed records {counts.records_in} != rows {counts.rows_out} + duplicates "
        f"{counts.duplicates_in_hour + counts.duplicates_other_hours} + rejected {counts.rejected}"
    ]


def check_parquet(fs: pafs.FileSystem, name: str, paths: list[str], schema: pa.Schema, rows: int) -> list[str]:
    problems = []
    ids: list[pa.ChunkedArray] = []
    found = 0
    for path in paths:
        with fs.open_input_file(path) as handle:
            parquet = pq.ParquetFile(handle)
            if not parquet.schema_arrow.equals(schema, check_metadata=False):
                problems.append(f"{name}: {path} does not have the table's schema")
                continue
            found += parquet.metadata.num_rows
            ids.append(parquet.read(columns=["id"]).column("id"))
    if found != rows:
        problems.append(f"{name}: the data files hold {found} rows, expected {rows}")
    if ids:
        column = pa.chunked_array([c for chunked in ids for c in chunked.chunks], pa.string())
        if pc.count_distinct(column).as_py() != len(column):
            problems.append(f"{name}: the data files hold duplicate ids")
    return problems


def check_csv(
    fs: pafs.FileSystem, name: str, paths: list[str], schema: pa.Schema, rows: int, max_line_bytes: int
) -> list[str]:
    """Parse the CSV back (quoted newlines allowed, batch by batch: memory stays bounded)."""
    found = 0
    as_strings = {field.name: pa.string() for field in csv_schema(schema)}
    for path in paths:
        with fs.open_input_stream(path) as handle:
            reader = pacsv.open_csv(
                handle,
                parse_options=pacsv.ParseOptions(newlines_in_values=True),
                read_options=pacsv.ReadOptions(block_size=max(8 << 20, 2 * max_line_bytes + (1 << 20))),
                convert_options=pacsv.ConvertOptions(column_types=as_strings),
            )
            if reader.schema.names != schema.names:
                return [f"{name}: {path} does not have the table's columns"]
            found += sum(batch.num_rows for batch in reader)
    return [] if found == rows else [f"{name}: the CSV holds {found} rows, expected {rows}"]
