"""The three steps the DAG runs (compact, validate, publish), as plain functions over a config path.

Everything here passes JSON-able values, so Airflow can hand them between tasks through XCom,
and nothing here imports Airflow: the DAG supplies the hour and the S3 settings it got from
its connection.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from compactor.compact import HourReport, compact_hour, validate, write_manifest
from compactor.storage import S3Settings, Storage
from tweetlake.config import Config, load_config, require
from tweetlake.landing import Hour


def load(config_path: str) -> Config:
    config = load_config(config_path)
    require(config, "landing.uri", "tables.uri")
    return config


def run_compact(
    config_path: str, interval_start: datetime, s3: S3Settings | None = None, run_id: str | None = None
) -> dict[str, Any]:
    config = load(config_path)
    report = compact_hour(
        Storage.from_config(config, s3),
        Hour.of(interval_start),
        lookback_hours=config.tables.lookback_hours,
        max_rows_per_file=config.tables.max_rows_per_file,
        run_id=run_id,
    )
    return report.to_dict()


def run_validate(config_path: str, report: dict[str, Any], s3: S3Settings | None = None) -> list[str]:
    return validate(Storage.from_config(load(config_path), s3), HourReport(**report))


def run_publish(config_path: str, report: dict[str, Any], s3: S3Settings | None = None) -> str:
    storage = Storage.from_config(load(config_path), s3)
    write_manifest(storage, HourReport(**report), valid=True)
    return storage.tables.uri(f"tweets/{Hour.parse(report['hour']).partition}")
