"""Adopt a lake written before the Iceberg tables: Hive-partitioned Parquet hours become table hours.

The old layout kept each table's hours as ``{tables.uri}/{table}/dt=…/hour=…/part-*.parquet`` with a
``_manifest.json`` beside them. Each hour is rewritten to the current schema (new columns null,
timestamps in microseconds) and committed like a compaction (one commit per table and hour);
then its old files move to ``{tables.uri}/_legacy/`` (out of the table location, where orphan
removal would otherwise find them) and its manifest to ``_manifests/``. The CSV export and the
rejected lines are already where they belong. Running it again adopts only what is left.
"""

from __future__ import annotations

import json
import re

import pyarrow as pa
import pyarrow.parquet as pq

from compactor import iceberg
from compactor.filesystems import list_files, move
from compactor.lake import Lake
from compactor.lease import Lease
from compactor.manifest import write_manifest
from compactor.tables import TABLES, Table, lease_file
from compactor.writers import PartFiles
from tweetlake.landing import Hour
from tweetlake.logs import get_logger

log = get_logger("compactor.migrate")
_HOUR_FILE = re.compile(r"dt=(\d{4}-\d{2}-\d{2})/hour=(\d{2})/[^/]+")
RUN_ID = "migrated"


def legacy_hours(lake: Lake) -> list[Hour]:
    """Hours that still have Hive-layout files under a table's directory (not its data/ or metadata/)."""
    import pyarrow.fs as pafs

    found: set[Hour] = set()
    fs = lake.storage.fs
    for table in TABLES:
        base = lake.storage.tables.arrow_path(table.name)
        for info in fs.get_file_info(pafs.FileSelector(base, allow_not_found=True, recursive=True)):
            relative = info.path.removeprefix(base + "/")
            if info.type == pafs.FileType.File and (match := _HOUR_FILE.fullmatch(relative)):
                found.add(Hour.parse(f"{match[1]}T{match[2]}"))
    return sorted(found)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """An older table version's rows in the current schema: missing columns null, types cast."""
    columns = [
        table.column(field.name).cast(field.type)
        if field.name in table.column_names
        else pa.nulls(len(table), field.type)
        for field in schema
    ]
    return pa.Table.from_arrays(columns, schema=schema)


def migrate_hour(lake: Lake, hour: Hour, *, lease_s: float) -> dict[str, int]:
    """Adopt one hour of every table; returns the rows committed per table."""
    storage = lake.storage
    rows: dict[str, int] = {}
    lease = Lease(storage.lease_store(), storage.lease_key(lease_file(hour)), run_id=RUN_ID, term_s=lease_s)
    with lease:
        for table in TABLES:
            rows[table.name] = _adopt(lake, table, hour)
        old_manifest = storage.tables.arrow_path(f"tweets/{hour.partition}/_manifest.json")
        try:
            with storage.fs.open_input_stream(old_manifest) as handle:
                manifest = json.loads(handle.read())
        except (OSError, ValueError):
            manifest = {"hour": str(hour)}
        manifest.update({"hour": str(hour), "valid": True, "migrated_from": "hive-parquet"})
        write_manifest(storage, manifest)
        for table in TABLES:
            source = storage.tables.arrow_path(f"{table.name}/{hour.partition}")
            for info in list_files(storage.fs, source):
                move(
                    storage.fs,
                    info.path,
                    storage.tables.arrow_path(f"_legacy/{table.name}/{hour.partition}/") + info.path.rsplit("/", 1)[-1],
                )
    log.info("hour_migrated", hour=str(hour), rows=rows)
    return rows


def _adopt(lake: Lake, table: Table, hour: Hour) -> int:
    storage = lake.storage
    iceberg_table = lake.table(table)
    parts = PartFiles(
        storage.fs,
        storage.path(iceberg.data_dir(iceberg_table, hour)),
        table.schema,
        "parquet",
        max_rows=1_000_000,
        prefix=RUN_ID,
    )
    source = storage.tables.arrow_path(f"{table.name}/{hour.partition}")
    for info in list_files(storage.fs, source):
        if info.path.endswith(".parquet"):
            with storage.fs.open_input_file(info.path) as handle:
                for batch in conform(pq.read_table(handle), table.schema).to_batches():
                    parts.write(batch)
    paths = parts.close()
    scheme = "s3://" if storage.s3 is not None else "file://"
    iceberg.replace_hour(iceberg_table, hour, [f"{scheme}{p}" for p in paths], RUN_ID)
    return parts.rows
