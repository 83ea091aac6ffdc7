"""Hourly compaction of the tweetlake landing zone into Parquet and CSV tables.

Thin on purpose: the logic lives in ``compactor`` (testable without Airflow); this file wires
it to the data interval, retries, the ``aws_default`` connection and an Asset. Nothing heavy is
imported at module level, so parsing stays fast.

A run at logical date 10:00 covers collection hour 09:00-10:00. It first waits a grace period
for late landing files, then compact -> validate -> publish. ``max_active_runs=1`` keeps
catch-up and backfills in hour order, which the cross-hour dedupe (ids already published in
the previous ``tables.lookback_hours``) relies on.

Configuration: the TOML file named by the ``config_path`` param, else the Airflow Variable
``tweetlake_config``, else /etc/tweetlake/tweetlake.toml. S3 credentials and endpoint come from
the ``aws_default`` connection (Amazon provider), never from this file.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.standard.sensors.time_delta import TimeDeltaSensor
from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, task

DEFAULT_CONFIG = "/etc/tweetlake/tweetlake.toml"
GRACE = timedelta(minutes=int(os.environ.get("TWEETLAKE_GRACE_MINUTES", "10")))
TWEETS_TABLE = Asset(
    name="tweetlake_tweets",
    uri=os.environ.get("TWEETLAKE_TWEETS_ASSET_URI", "s3://tweetlake/tables/tweets"),
)


def _config_path(params: dict[str, Any]) -> str:
    if params.get("config_path"):
        return str(params["config_path"])
    from airflow.sdk import Variable

    return str(Variable.get("tweetlake_config", default=DEFAULT_CONFIG))


def _s3_settings(config_path: str) -> Any:
    """S3 settings from the aws_default connection, only when the tables live on S3."""
    from compactor.runner import load
    from compactor.storage import S3Settings

    if not load(config_path).tables.uri.startswith("s3://"):
        return None
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    hook = AwsBaseHook(aws_conn_id="aws_default", client_type="s3")
    credentials = hook.get_credentials()
    return S3Settings(
        endpoint_url=hook.conn_config.endpoint_url or "",
        region=hook.conn_region_name or "us-east-1",
        access_key=credentials.access_key,
        secret_key=credentials.secret_key,
        session_token=credentials.token,
    )


@dag(
    dag_id="tweetlake_compaction",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
    catchup=True,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    default_args={
        "retries": 3,
        "retry_delay": timedelta(minutes=1),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=30),
    },
    params={"config_path": Param(None, type=["null", "string"], description="tweetlake TOML config")},
    tags=["tweetlake"],
    doc_md=__doc__,
)
def tweetlake_compaction() -> None:
    wait = TimeDeltaSensor(task_id="wait_for_late_files", delta=GRACE, mode="reschedule", poke_interval=60)

    @task
    def compact(params: Any = None, data_interval_start: Any = None) -> dict[str, Any]:
        from compactor.runner import run_compact

        path = _config_path(params)
        return run_compact(path, data_interval_start, _s3_settings(path))

    @task
    def validate(report: dict[str, Any], params: Any = None) -> dict[str, Any]:
        from compactor.runner import run_validate

        path = _config_path(params)
        problems = run_validate(path, report, _s3_settings(path))
        if problems:
            raise ValueError("validation failed: " + "; ".join(problems))
        return report

    @task(outlets=[TWEETS_TABLE])
    def publish(report: dict[str, Any], params: Any = None, outlet_events: Any = None) -> str:
        from compactor.runner import run_publish

        path = _config_path(params)
        partition = run_publish(path, report, _s3_settings(path))
        outlet_events[TWEETS_TABLE].extra = {
            "hour": report["hour"],
            "partition": partition,
            "rows": report["rows_out"],
            "duplicates": report["duplicates_in_hour"] + report["duplicates_prior_hours"],
            "rejected": report["rejected"],
        }
        return partition

    report = compact()
    wait >> report
    publish(validate(report))


tweetlake_compaction()
