"""Daily table maintenance: expire old Iceberg snapshots, remove orphan files and abandoned staging.

The same as ``tweet-compactor maintain``; the ages come from ``tables.snapshot_retention_hours``
and ``tables.orphan_age_hours``. Configuration as for tweetlake_compaction.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from compactor.dag_support import config_path, s3_settings


@dag(
    dag_id="tweetlake_maintenance",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=False,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=10)},
    params={"config_path": Param(None, type=["null", "string"], description="the tweetlake TOML file")},
    tags=["tweetlake"],
    doc_md=__doc__,
)
def tweetlake_maintenance() -> None:
    @task
    def maintain(params: Any = None) -> dict[str, Any]:
        from compactor.runner import run_maintain

        path = config_path(params)
        return run_maintain(path, s3_settings(path))

    maintain()


tweetlake_maintenance()
