"""The steps the DAGs run, as plain functions over a config path and JSON-able values.

Nothing here imports Airflow: the DAG supplies the hour and the S3 settings of its connection, and
hands these functions' results between tasks through XCom.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from compactor.compact import Options, compact_hour
from compactor.filesystems import S3Settings
from compactor.lake import Lake
from compactor.late import late_hours
from tweetlake.config import Config, load_config, require
from tweetlake.landing import Hour


class HourNotPublished(Exception):
    """The hour failed its checks; the previous version stays visible. ``str()`` lists the problems."""


def load(config_path: str) -> Config:
    config = load_config(config_path)
    require(config, "landing.uri", "tables.uri")
    return config


def run_compact(config_path: str, hour: str, s3: S3Settings | None = None) -> dict[str, Any]:
    """Compact one collection hour; raises HourNotPublished when it fails its checks."""
    config = load(config_path)
    report = compact_hour(Lake.from_config(config, s3), Hour.parse(hour), Options.from_config(config))
    if not report.valid:
        raise HourNotPublished(f"hour {hour} not published: " + "; ".join(report.problems))
    return report.to_dict()


def run_late(config_path: str, before: str, s3: S3Settings | None = None) -> list[str]:
    """Compact again every hour before ``before`` (within lookback) with landing files it has not read."""
    config = load(config_path)
    lake = Lake.from_config(config, s3)
    done = []
    for hour in late_hours(lake.storage, Hour.parse(before), config.tables.lookback_hours):
        report = compact_hour(lake, hour, Options.from_config(config))
        if not report.valid:
            raise HourNotPublished(f"late hour {hour} not published: " + "; ".join(report.problems))
        done.append(str(hour))
    return done


def run_maintain(config_path: str, s3: S3Settings | None = None) -> dict[str, Any]:
    from compactor.maintenance import maintain  # pyiceberg: a compaction imports it only once its workers run

    config = load(config_path)
    report = maintain(
        Lake.from_config(config, s3),
        snapshot_retention=timedelta(hours=config.tables.snapshot_retention_hours),
        orphan_age=timedelta(hours=config.tables.orphan_age_hours),
    )
    return {
        "snapshots_expired": report.snapshots_expired,
        "orphans_removed": len(report.orphans_removed),
        "staging_removed": len(report.staging_removed),
    }
