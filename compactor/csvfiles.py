"""The CSV export's one rule: a list is a JSON array in its cell (``["a", "b"]``, ``[]`` when empty).

Both halves live here: ``encode`` for the writer, ``read_csv`` (and ``describe``, the CSVW file
written beside each CSV table) for whoever reads the export: ``pandas.read_csv`` alone would read
ids as int64 and nullable ids as float64, which corrupts them.

The arrays are built vectorized with Arrow compute, exactly as ``json.dumps(value, ensure_ascii=False)``
writes them (a test holds it to that): strings escape backslash and quote; the rare cell with a
control character goes through ``json.dumps`` itself. Numbers are written by Arrow (shortest
digits that read back to the same double).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.fs as pafs

if TYPE_CHECKING:
    import pandas as pd

TIMESTAMP_FORMAT = "yyyy-MM-dd HH:mm:ss.SSSSSSX"  # what Arrow's CSV writer writes (UTC, 'Z')


def csv_schema(table_schema: pa.Schema) -> pa.Schema:
    """The CSV file's schema as written: lists (JSON arrays) and timestamps (``_timestamps``) are text."""
    return pa.schema([pa.field(f.name, pa.string()) if _as_text(f.type) else f for f in table_schema])


def _as_text(arrow_type: pa.DataType) -> bool:
    return pa.types.is_list(arrow_type) or pa.types.is_timestamp(arrow_type)


def _timestamps(column: pa.TimestampArray) -> pa.Array:
    """UTC timestamps in ``TIMESTAMP_FORMAT``: Arrow's CSV writer formats a zoned timestamp at ~1.7 µs
    a value (its time zone looked up each time), the same text from the naive value takes ~0.15."""
    naive = pc.cast(column, pa.timestamp(column.type.unit))  # the same UTC instant, no zone
    return pc.binary_join_element_wise(pc.cast(naive, pa.string()), "Z", "")


def _json_array(column: pa.ListArray) -> pa.Array:
    offsets = column.offsets.to_numpy(zero_copy_only=False)
    values = column.values.slice(int(offsets[0]), int(offsets[-1] - offsets[0]))
    offsets = pa.array(offsets - offsets[0], pa.int32())
    if pa.types.is_string(values.type):
        escaped = pc.replace_substring(pc.replace_substring(values, "\\", "\\\\"), '"', '\\"')
        items = pc.binary_join_element_wise('"', escaped, '"', "")
    else:
        items = pc.cast(values, pa.string())
    rebuilt = pa.ListArray.from_arrays(offsets, items, mask=column.is_null())
    joined = pc.binary_join_element_wise("[", pc.binary_join(rebuilt, ", "), "]", "")
    if not pa.types.is_string(values.type):
        return joined
    controls = pc.match_substring_regex(values, r"[\x00-\x1f]")
    if not pc.any(controls).as_py():
        return joined
    # rows holding a control character: json.dumps decides their escapes (\n, \t, \u0001, ...)
    parents = pc.list_parent_indices(pa.ListArray.from_arrays(offsets, values))
    bad_rows = set(parents.filter(controls).to_pylist())
    cells = joined.to_pylist()
    for row in bad_rows:
        cells[row] = json.dumps(column[row].as_py(), ensure_ascii=False)
    return pa.array(cells, pa.string())


def encode(batch: pa.RecordBatch) -> pa.RecordBatch:
    """A table batch as the CSV file holds it."""
    columns = [_as_written(column) for column in batch.columns]
    return pa.RecordBatch.from_arrays(columns, schema=csv_schema(batch.schema))


def _as_written(column: pa.Array) -> pa.Array:
    if pa.types.is_list(column.type):
        return _json_array(column)
    if pa.types.is_timestamp(column.type):
        return _timestamps(column)
    return column


def decode(table: pa.Table, table_schema: pa.Schema) -> pa.Table:
    """The inverse of ``encode``: JSON-array cells back to typed lists."""
    columns = [
        pa.array([None if cell is None else json.loads(cell) for cell in table.column(f.name).to_pylist()], f.type)
        if pa.types.is_list(f.type)
        else table.column(f.name)
        for f in table_schema
    ]
    return pa.Table.from_arrays(columns, schema=table_schema)


def read(path: str, table_schema: pa.Schema, filesystem: pafs.FileSystem) -> pa.Table:
    """One CSV part, typed as the table: a null is an empty field, an empty string is ``""``."""
    with filesystem.open_input_stream(path) as stream:
        raw = pacsv.read_csv(
            stream,
            parse_options=pacsv.ParseOptions(newlines_in_values=True),
            convert_options=pacsv.ConvertOptions(
                column_types={f.name: pa.string() if pa.types.is_list(f.type) else f.type for f in table_schema},
                strings_can_be_null=True,
                quoted_strings_can_be_null=False,
            ),
        )
    return decode(raw, table_schema)


def read_csv(source: str, table: str = "tweets", filesystem: pafs.FileSystem | None = None) -> pd.DataFrame:
    """The CSV export of ``table`` (a part file, an hour's folder or the whole ``csv/<table>``
    folder; a path or an ``s3://`` URI) as a DataFrame with the table's exact values: ids as
    strings, nullable integers and booleans, UTC timestamps, lists as lists (Arrow-backed dtypes).
    """
    import pandas as pd

    from compactor.tables import TABLES

    schema = next(t.schema for t in TABLES if t.name == table)
    if filesystem is None:
        filesystem, source = pafs.FileSystem.from_uri(source)
    info = filesystem.get_file_info(source)
    if info.type == pafs.FileType.Directory:
        infos = filesystem.get_file_info(pafs.FileSelector(source, recursive=True))
        paths = sorted(i.path for i in infos if i.type == pafs.FileType.File and i.path.endswith(".csv"))
    else:
        paths = [source]
    parts = [read(path, schema, filesystem) for path in paths]
    whole = pa.concat_tables(parts) if parts else schema.empty_table()
    return whole.to_pandas(types_mapper=pd.ArrowDtype)


def _datatype(arrow_type: pa.DataType) -> Any:
    if pa.types.is_list(arrow_type):
        return {"base": "json", "dc:description": f"a JSON array of {_datatype(arrow_type.value_type)}"}
    if pa.types.is_timestamp(arrow_type):
        return {"base": "datetime", "format": TIMESTAMP_FORMAT}
    if pa.types.is_boolean(arrow_type):
        return {"base": "boolean", "format": "true|false"}
    return {"int64": "long", "double": "double", "string": "string"}[str(arrow_type)]


def describe(table: str, table_schema: pa.Schema) -> dict[str, Any]:
    """The CSVW (W3C "CSV on the Web") description written beside a CSV table as ``_schema.json``.

    Each column also carries its Arrow type: what the Parquet/Iceberg table holds.
    """
    return {
        "@context": "http://www.w3.org/ns/csvw",
        "dc:title": f"tweetlake {table} (CSV export)",
        "url": "dt=*/hour=*/part-*.csv",
        "dialect": {"header": True, "encoding": "utf-8", "doubleQuote": True, "quoteChar": '"'},
        "tableSchema": {
            "columns": [
                {
                    "name": f.name,
                    "datatype": _datatype(f.type),
                    "required": not f.nullable,
                    "null": "",
                    "arrow:type": str(f.type),
                }
                for f in table_schema
            ],
            "primaryKey": "id",
        },
    }
