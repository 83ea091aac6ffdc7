"""Where a compaction reads and writes: the storage, the Iceberg catalog, and how tables are placed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from compactor import iceberg
from compactor.filesystems import S3Settings, Storage
from compactor.tables import Table
from tweetlake.config import Config


@dataclass(frozen=True)
class Lake:
    storage: Storage
    catalog: Any  # a pyiceberg Catalog
    namespace: str
    locate_tables: bool  # sql and glue: tables live under tables.uri; rest: the catalog decides

    @classmethod
    def from_config(cls, config: Config, s3: S3Settings | None = None) -> Lake:
        storage = Storage.from_config(config, s3)
        catalog = iceberg.open_catalog(config.tables, storage.s3, region=config.landing.region)
        return cls(storage, catalog, config.tables.namespace, config.tables.catalog != "rest")

    def table(self, table: Table) -> Any:
        """The Iceberg table, created or evolved to the schema as needed."""
        location = self.storage.tables if self.locate_tables else None
        return iceberg.open_table(self.catalog, self.namespace, table, location)
