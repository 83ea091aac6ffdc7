"""Where a compaction reads and writes: the storage, the Iceberg catalog, and how tables are placed."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

from compactor.filesystems import S3Settings, Storage
from compactor.tables import Table
from tweetlake.config import Config, TablesConfig


@dataclass(frozen=True)
class Lake:
    storage: Storage
    tables_config: TablesConfig
    region: str

    @classmethod
    def from_config(cls, config: Config, s3: S3Settings | None = None) -> Lake:
        return cls(Storage.from_config(config, s3), config.tables, config.landing.region)

    @cached_property
    def catalog(self) -> Any:
        """The pyiceberg Catalog, opened at first use: importing pyiceberg takes about a second,
        which a compaction spends while its flattening workers already parse."""
        from compactor import iceberg

        return iceberg.open_catalog(self.tables_config, self.storage.s3, region=self.region)

    @property
    def namespace(self) -> str:
        return self.tables_config.namespace

    def table(self, table: Table) -> Any:
        """The Iceberg table, created or evolved to the schema as needed."""
        from compactor import iceberg

        # sql and glue: tables live under tables.uri; rest: the catalog decides
        location = self.storage.tables if self.tables_config.catalog != "rest" else None
        return iceberg.open_table(self.catalog, self.namespace, table, location)
