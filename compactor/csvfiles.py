"""The CSV export's one rule: a list is a JSON array in its cell (``["a", "b"]``, ``[]`` when empty).

The arrays are built vectorized with Arrow compute, exactly as ``json.dumps(value, ensure_ascii=False)``
writes them (a test holds it to that): strings escape backslash and quote; the rare cell with a
control character goes through ``json.dumps`` itself. Numbers are written by Arrow (shortest
digits that read back to the same double).
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc


def csv_schema(table_schema: pa.Schema) -> pa.Schema:
    """The CSV file's schema: list columns become strings."""
    return pa.schema([pa.field(f.name, pa.string()) if pa.types.is_list(f.type) else f for f in table_schema])


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
    target = csv_schema(batch.schema)
    columns = [
        _json_array(batch.column(f.name)) if pa.types.is_list(f.type) else batch.column(f.name) for f in batch.schema
    ]
    return pa.RecordBatch.from_arrays(columns, schema=target)
