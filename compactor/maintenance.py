"""Keeping the tables small and clean: snapshot expiry, orphan files, abandoned staging.

* Snapshots older than ``tables.snapshot_retention_hours`` are expired (time travel goes back that far).
* Orphans: files under a table's ``data/`` or ``metadata/`` that no snapshot or metadata file
  references and that are older than ``tables.orphan_age_hours`` (a run that crashed between
  writing its data files and committing them). pyiceberg 0.12 has no such step; this is it. The
  age keeps files of a run that is still working out of reach.
* ``_staging/`` directories of runs older than the same age (a crash before the CSV export).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import timedelta

import pyarrow.fs as pafs

from compactor import iceberg
from compactor.lake import Lake
from compactor.tables import TABLES
from tweetlake.logs import get_logger

log = get_logger("compactor.maintenance")


@dataclass
class MaintenanceReport:
    snapshots_expired: dict[str, int] = field(default_factory=dict)
    orphans_removed: list[str] = field(default_factory=list)
    staging_removed: list[str] = field(default_factory=list)


def maintain(lake: Lake, *, snapshot_retention: timedelta, orphan_age: timedelta) -> MaintenanceReport:
    report = MaintenanceReport()
    storage = lake.storage
    cutoff = time.time() - orphan_age.total_seconds()
    scheme = "s3://" if storage.s3 is not None else "file://"
    for table in TABLES:
        iceberg_table = lake.table(table)
        report.snapshots_expired[table.name] = iceberg.expire_snapshots(iceberg_table, snapshot_retention)
        referenced = iceberg.referenced_files(iceberg_table)
        location = iceberg_table.location().rstrip("/")
        for sub in ("data", "metadata"):
            for info in _files(storage.fs, storage.path(f"{location}/{sub}")):
                uri = f"{scheme}{info.path}"
                if uri not in referenced and info.mtime is not None and info.mtime.timestamp() < cutoff:
                    storage.fs.delete_file(info.path)
                    report.orphans_removed.append(uri)
    staging = storage.tables.arrow_path("_staging")
    for info in storage.fs.get_file_info(pafs.FileSelector(staging, allow_not_found=True)):
        newest = max((f.mtime.timestamp() for f in _files(storage.fs, info.path) if f.mtime), default=0.0)
        if newest < cutoff:
            storage.fs.delete_dir_contents(info.path, missing_dir_ok=True)
            if isinstance(storage.fs, pafs.LocalFileSystem):
                storage.fs.delete_dir(info.path)
            report.staging_removed.append(info.path)
    log.info(
        "tables_maintained",
        snapshots_expired=report.snapshots_expired,
        orphans_removed=len(report.orphans_removed),
        staging_removed=len(report.staging_removed),
    )
    return report


def _files(fs: pafs.FileSystem, directory: str) -> list[pafs.FileInfo]:
    infos = fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True, recursive=True))
    return [i for i in infos if i.type == pafs.FileType.File and not i.path.endswith("/")]
