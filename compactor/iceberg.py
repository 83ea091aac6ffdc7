"""The tweets and users tables as Apache Iceberg tables: catalog, schema evolution, hourly commits.

* Catalogs (``tables.catalog``): ``sql`` (pyiceberg's SQL catalog; SQLite on the compacting host by
  default, no server), ``glue`` (the AWS Glue Data Catalog: Athena and Spark find the tables there),
  ``rest`` (e.g. S3 Tables, SigV4-signed; the catalog picks data locations).
* Tables ``{namespace}.tweets`` and ``{namespace}.users``, partitioned by ``hour(collected_at)``.
  The Arrow schemas in ``compactor.schema`` are the source of truth: a column they have and the
  table lacks is added by schema evolution (a new field id; older rows read it as null).
* One hour is replaced by one commit: delete the hour (whole data files, the partition lines up
  with the filter) and add the run's data files, in one transaction. The optimistic commit fails
  if the table moved underneath; then it is retried on the new state, unless another run committed
  this same hour meanwhile: two runs of an hour never both win.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from pyiceberg.catalog import Catalog
from pyiceberg.exceptions import (
    CommitFailedException,
    NamespaceAlreadyExistsError,
    NoSuchTableError,
    TableAlreadyExistsError,
)
from pyiceberg.expressions import And, BooleanExpression, GreaterThanOrEqual, LessThan, Or
from pyiceberg.table import Table as IcebergTable
from pyiceberg.transforms import HourTransform

from compactor.filesystems import S3Settings
from compactor.tables import PARTITION_COLUMN, Table
from tweetlake.config import TablesConfig
from tweetlake.landing import Hour
from tweetlake.location import Location
from tweetlake.logs import get_logger

log = get_logger("compactor.iceberg")
HOUR_PROPERTY = "tweetlake.hour"
RUN_PROPERTY = "tweetlake.run-id"
COMMIT_ATTEMPTS = 5
TABLE_PROPERTIES = {
    # pyiceberg would re-apply a failed commit on the new state itself; replace_hour decides instead
    # (retry when another hour moved the table, fail when another run committed this same hour)
    "commit.retry.num-retries": "0",
    "write.parquet.compression-codec": "zstd",
    "write.metadata.delete-after-commit.enabled": "true",  # old metadata JSON files do not pile up
    "write.metadata.previous-versions-max": "100",
}


class ConcurrentCompaction(Exception):
    """Another run committed the same hour while this one worked: this run publishes nothing."""


def open_catalog(config: TablesConfig, s3: S3Settings | None, *, region: str) -> Catalog:
    """The configured catalog, with S3 access for the table files from the same settings as the lake."""
    properties: dict[str, str] = {}
    if s3 is not None:
        properties.update(_s3_properties(s3))
    region = config.region or region
    if config.catalog == "sql":
        from pyiceberg.catalog.sql import SqlCatalog

        uri = config.catalog_uri or config.default_catalog_uri()
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        return SqlCatalog("tweetlake", uri=uri, warehouse=config.uri, **properties)
    if config.catalog == "glue":
        from pyiceberg.catalog.glue import GlueCatalog

        glue = {"glue.region": region, "client.region": region}
        if s3 is not None and s3.endpoint_url:
            glue["glue.endpoint"] = s3.endpoint_url  # an emulator serves Glue beside S3
        if s3 is not None and s3.access_key:
            glue.update({"glue.access-key-id": s3.access_key, "glue.secret-access-key": s3.secret_key or ""})
            if s3.session_token:
                glue["glue.session-token"] = s3.session_token
        return GlueCatalog("tweetlake", **glue, **properties)
    from pyiceberg.catalog.rest import RestCatalog

    rest = {
        "uri": config.catalog_uri,
        "warehouse": config.warehouse,
        "rest.sigv4-enabled": "true",
        "rest.signing-region": region,
        "rest.signing-name": "s3tables",
    }
    return RestCatalog("tweetlake", **rest, **properties)


def _s3_properties(s3: S3Settings) -> dict[str, str]:
    properties = {"s3.region": s3.region}
    if s3.endpoint_url:
        properties["s3.endpoint"] = s3.endpoint_url
    if s3.access_key and s3.secret_key:
        properties.update({"s3.access-key-id": s3.access_key, "s3.secret-access-key": s3.secret_key})
        if s3.session_token:
            properties["s3.session-token"] = s3.session_token
    return properties


def open_table(catalog: Catalog, namespace: str, table: Table, location: Location | None) -> IcebergTable:
    """The table, created partitioned by hour(collected_at) if absent, with every column of the schema."""
    identifier = f"{namespace}.{table.name}"
    try:
        found = catalog.load_table(identifier)
    except NoSuchTableError:
        found = _create(catalog, namespace, identifier, table, location)
    unset = {k: v for k, v in TABLE_PROPERTIES.items() if found.properties.get(k) != v}
    if unset:  # a table created elsewhere, or by an older version
        with found.transaction() as transaction:
            transaction.set_properties(unset)
        found = catalog.load_table(identifier)
    missing = [name for name in table.schema.names if name not in {f.name for f in found.schema().fields}]
    if missing:
        with found.update_schema() as update:
            update.union_by_name(table.schema)
        log.info("schema_evolved", table=identifier, added=missing)
        found = catalog.load_table(identifier)
    return found


def _create(catalog: Catalog, namespace: str, identifier: str, table: Table, location: Location | None) -> IcebergTable:
    with contextlib.suppress(NamespaceAlreadyExistsError):
        catalog.create_namespace(namespace)
    kwargs: dict[str, Any] = {"properties": TABLE_PROPERTIES}
    if location is not None:  # sql and glue: the data lives under tables.uri; rest: the catalog decides
        kwargs["location"] = location.uri(table.name)
    try:
        created = catalog.create_table(identifier, schema=table.schema, **kwargs)
    except TableAlreadyExistsError:  # another run created it first
        return catalog.load_table(identifier)
    with created.update_spec() as spec:
        spec.add_field(PARTITION_COLUMN, HourTransform(), f"{PARTITION_COLUMN}_hour")
    log.info("table_created", table=identifier, location=created.location())
    return catalog.load_table(identifier)


def hour_filter(start: datetime, end: datetime) -> BooleanExpression:
    return And(GreaterThanOrEqual(PARTITION_COLUMN, start.isoformat()), LessThan(PARTITION_COLUMN, end.isoformat()))


def data_dir(table: IcebergTable, hour: Hour) -> str:
    """Where a run writes the hour's data files (under the table location, so orphans can be found)."""
    return f"{table.location().rstrip('/')}/data/{hour.partition}"


def other_hours_ids(table: IcebergTable, hour: Hour, around: int) -> Iterator[pa.Array]:
    """The ids published in the ``around`` hours before and after ``hour``, batch by batch."""
    if around <= 0 or table.current_snapshot() is None:
        return
    row_filter = Or(
        hour_filter(hour.shift(-around).start, hour.start),
        hour_filter(hour.shift(1).start, hour.shift(around + 1).start),
    )
    reader = table.scan(row_filter=row_filter, selected_fields=("id",)).to_arrow_batch_reader()
    for batch in reader:
        yield batch.column("id")


@dataclass(frozen=True)
class Committed:
    snapshot_id: int | None
    files: int


def replace_hour(table: IcebergTable, hour: Hour, files: list[str], run_id: str) -> Committed:
    """One commit: the hour's rows become exactly those in ``files`` (none: the hour is emptied)."""
    properties = {HOUR_PROPERTY: str(hour), RUN_PROPERTY: run_id}
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        base = table.current_snapshot()
        transaction = table.transaction()
        with warnings.catch_warnings():  # a first compaction of an hour has nothing to delete: expected
            warnings.filterwarnings("ignore", "Delete operation did not match any records")
            transaction.delete(hour_filter(hour.start, hour.shift(1).start), snapshot_properties=properties)
        if files:
            transaction.add_files(files, snapshot_properties=properties, check_duplicate_files=False)
        try:
            transaction.commit_transaction()
        except CommitFailedException:
            table = table.refresh()
            rival = _committed_since(table, base.snapshot_id if base else None, str(hour))
            if rival is not None:
                raise ConcurrentCompaction(
                    f"{'.'.join(table.name())} hour {hour} was committed by run {rival} while this run worked"
                ) from None
            log.warning("commit_retried", table=".".join(table.name()), hour=str(hour), attempt=attempt)
            continue
        table = table.refresh()
        snapshot = table.current_snapshot()
        return Committed(snapshot.snapshot_id if snapshot else None, len(files))
    raise ConcurrentCompaction(f"{'.'.join(table.name())}: gave up after {COMMIT_ATTEMPTS} conflicting commits")


def _committed_since(table: IcebergTable, base_id: int | None, hour: str) -> str | None:
    """The run id of a snapshot newer than ``base_id`` that replaced ``hour``, if any."""
    for snapshot in reversed(table.snapshots()):
        if snapshot.snapshot_id == base_id:
            return None
        summary = snapshot.summary.additional_properties if snapshot.summary else {}
        if summary.get(HOUR_PROPERTY) == hour:
            return summary.get(RUN_PROPERTY, "?")
    return None


def expire_snapshots(table: IcebergTable, older_than: timedelta) -> int:
    """Drop snapshots older than ``older_than`` (the current one always stays)."""
    cutoff = datetime.now(UTC) - older_than
    current = table.current_snapshot()
    old = [
        s.snapshot_id
        for s in table.snapshots()
        if s.timestamp_ms < cutoff.timestamp() * 1000 and (current is None or s.snapshot_id != current.snapshot_id)
    ]
    if old:
        table.maintenance.expire_snapshots().by_ids(old).commit()
    return len(old)


def referenced_files(table: IcebergTable) -> set[str]:
    """Every file a snapshot or the metadata still points at (data, manifests, manifest lists, metadata)."""
    table = table.refresh()
    referenced = {table.metadata_location}
    referenced.update(entry["file"] for entry in table.inspect.metadata_log_entries().to_pylist())
    for snapshot in table.snapshots():
        referenced.add(snapshot.manifest_list)
    if table.current_snapshot() is not None:
        referenced.update(m["path"] for m in table.inspect.all_manifests().to_pylist())
        referenced.update(f["file_path"] for f in table.inspect.all_files().to_pylist())
    return referenced
