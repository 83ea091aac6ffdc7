"""Every table and location under ``tables.uri``, described once.

{tables.uri}/tweets/, users/               Iceberg tables {namespace}.tweets / .users (data + metadata)
{tables.uri}/csv/tweets/dt=…/hour=…/       CSV export, one partition per collection hour
{tables.uri}/csv/tweets/_schema.json       its columns as a CSVW description (csv/users/ too)
{tables.uri}/csv/users/dt=…/hour=…/
{tables.uri}/_rejected/dt=…/hour=…/        rejected landing lines with their reasons
{tables.uri}/_manifests/dt=…/hour=…/       what one hour's last compaction read and wrote
{tables.uri}/_leases/                      one object per hour being compacted
{tables.uri}/_staging/{hour}-{run}/        a run's files before they are published
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from compactor import schema
from tweetlake.landing import Hour

PARTITION_COLUMN = "collected_at"  # Iceberg partition: hour(collected_at)


@dataclass(frozen=True)
class Table:
    name: str
    schema: pa.Schema
    csv_dir: str

    def csv_partition(self, hour: Hour) -> str:
        return f"{self.csv_dir}/{hour.partition}"

    @property
    def csv_description(self) -> str:
        """The CSVW file describing the CSV table's columns (``compactor.csvfiles.describe``)."""
        return f"{self.csv_dir}/_schema.json"


TWEETS = Table("tweets", schema.TWEETS, "csv/tweets")
USERS = Table("users", schema.USERS, "csv/users")
TABLES = (TWEETS, USERS)


def rejected_file(hour: Hour) -> str:
    return f"_rejected/{hour.partition}/rejected.ndjson"


def manifest_file(hour: Hour) -> str:
    return f"_manifests/{hour.partition}/manifest.json"


def lease_file(hour: Hour) -> str:
    return f"_leases/{hour}.json"


def staging_dir(hour: Hour, run_id: str) -> str:
    return f"_staging/{hour}-{run_id}"
