"""Re-read what a run staged, before it becomes visible: an hour that fails here is never published.

Each check can fail on a wrong file: a Parquet file with another schema, a row missing or doubled,
a duplicate id, a CSV that does not parse back to the same number of rows.
"""

from __future__ import annotations

import csv

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from compactor.core import Counts, IdSet


def check_counts(counts: Counts) -> list[str]:
    if counts.balanced:
        return []
    return [
        f"landed records {counts.records_in} != rows {counts.rows_out} + duplicates "
        f"{counts.duplicates_in_hour + counts.duplicates_other_hours} + rejected {counts.rejected}"
    ]


def check_parquet(fs: pafs.FileSystem, name: str, paths: list[str], schema: pa.Schema, rows: int) -> list[str]:
    """Schema, row count and unique ids; the ids read batch by batch into an ``IdSet`` (8 bytes an
    id: reading a 1M-row file's id column whole and hashing it held ~225 MB)."""
    problems = []
    seen = IdSet()
    doubled = False
    found = 0
    for path in paths:
        with fs.open_input_file(path) as handle:
            parquet = pq.ParquetFile(handle)
            if not parquet.schema_arrow.equals(schema, check_metadata=False):
                problems.append(f"{name}: {path} does not have the table's schema")
                continue
            found += parquet.metadata.num_rows
            for batch in parquet.iter_batches(batch_size=65_536, columns=["id"]):
                doubled |= not seen.add_new(batch.column("id")).all()
    if found != rows:
        problems.append(f"{name}: the data files hold {found} rows, expected {rows}")
    if doubled:
        problems.append(f"{name}: the data files hold duplicate ids")
    return problems


def check_csv(
    fs: pafs.FileSystem, name: str, paths: list[str], schema: pa.Schema, rows: int, widest_row: int
) -> list[str]:
    """Parse the CSV back: the header, then every row (quoted newlines allowed).

    Batch by batch, in blocks just larger than the widest row written (``PartFiles.widest_row``):
    the reader holds some dozens of blocks, so a fixed large block would cost hundreds of MB.
    Only the first column is converted; the parser still checks every row's columns.
    """
    found = 0
    block = max(1 << 20, 2 * widest_row + (1 << 16))
    for path in paths:
        with fs.open_input_stream(path) as handle:
            header = next(csv.reader([handle.read(1 << 16).split(b"\n", 1)[0].decode("utf-8", "replace")]), [])
        if header != schema.names:
            return [f"{name}: {path} does not have the table's columns"]
        try:
            with fs.open_input_stream(path) as handle:
                reader = pacsv.open_csv(
                    handle,
                    parse_options=pacsv.ParseOptions(newlines_in_values=True),
                    read_options=pacsv.ReadOptions(block_size=block, use_threads=False),
                    convert_options=pacsv.ConvertOptions(
                        column_types={schema.names[0]: pa.string()}, include_columns=schema.names[:1]
                    ),
                )
                found += sum(batch.num_rows for batch in reader)
        except pa.ArrowInvalid as exc:
            return [f"{name}: {path} does not parse: {exc}"]
    return [] if found == rows else [f"{name}: the CSV holds {found} rows, expected {rows}"]
