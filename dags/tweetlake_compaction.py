"""Hourly compaction of the tweetlake landing zone into the Iceberg tables and the CSV export.

Thin on purpose: the logic lives in ``compactor`` (testable without Airflow); this file wires it
to the data interval, retries, the ``aws_default`` connection and Assets. Nothing heavy is
imported at module level, so parsing stays fast.

* A scheduled run compacts its data interval ``[data_interval_start, data_interval_end)``: the run
  with logical date 10:00 covers collection hour 10 (interval 10:00-11:00, started after 11:00).
  A manual run names the collection hour in the ``hour`` param, as ``tweet-compactor run --hour``.
* ``wait_for_late_files`` waits ``grace_minutes`` after the hour ends for late uploads (an hour that
  ended long ago does not wait; 0: no wait at all, even for an hour still open: files landing
  later are picked up by ``recompact_late_hours`` of a later run). Then ``compact`` (stage, check, commit,
  export), ``recompact_late_hours`` (earlier hours that received landing files after their
  compaction) and ``announce`` (Asset events carrying the Iceberg snapshots).
* ``max_active_runs=1`` keeps hours in order; cross-hour dedupe does not depend on it.

Configuration: the TOML file named by the ``config_path`` param, else the Airflow Variable
``tweetlake_config``, else /etc/tweetlake/tweetlake.toml. S3 credentials and endpoint come from
the ``aws_default`` connection (Amazon provider), never from this file.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pendulum
from airflow.sdk import Asset, CronDataIntervalTimetable, Param, dag, task

from compactor.dag_support import collection_hour, config_path, s3_settings

GRACE_MINUTES = int(os.environ.get("TWEETLAKE_GRACE_MINUTES", "10"))
# Named, without a URI: a URI with a scheme makes Airflow load every provider's URI handlers at
# parse time (0.27 s here, bench/dag_parse.py). Downstream DAGs schedule on Asset(name=...).
TWEETS_TABLE = Asset(name="tweetlake_tweets")
USERS_TABLE = Asset(name="tweetlake_users")


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
    params={
        "config_path": Param(None, type=["null", "string"], description="the tweetlake TOML file"),
        "hour": Param(
            None, type=["null", "string"], description="manual runs: the collection hour, e.g. 2026-11-25T10"
        ),
        "grace_minutes": Param(
            GRACE_MINUTES, type="integer", minimum=0, description="wait this long after the hour for late uploads"
        ),
    },
    tags=["tweetlake"],
    doc_md=__doc__,
)
def tweetlake_compaction() -> None:
    @task.sensor(poke_interval=60, mode="reschedule", timeout=6 * 3600)
    def wait_for_late_files(params: Any = None, data_interval_start: Any = None) -> bool:
        from tweetlake.landing import Hour

        grace = int(params["grace_minutes"])
        hour = Hour.parse(collection_hour(params, data_interval_start))
        return grace == 0 or datetime.now(UTC) >= hour.shift(1).start + timedelta(minutes=grace)

    @task
    def compact(params: Any = None, data_interval_start: Any = None) -> dict[str, Any]:
        from compactor.runner import run_compact

        path, hour = config_path(params), collection_hour(params, data_interval_start)
        print(f"compacting collection hour {hour}")
        return run_compact(path, hour, s3_settings(path))

    @task
    def recompact_late_hours(report: dict[str, Any], params: Any = None) -> list[str]:
        from compactor.runner import run_late

        path = config_path(params)
        return run_late(path, report["hour"], s3_settings(path))

    @task(outlets=[TWEETS_TABLE, USERS_TABLE])
    def announce(report: dict[str, Any], late: list[str], outlet_events: Any = None) -> dict[str, Any]:
        extra = {
            "hour": report["hour"],
            "rows": report["rows_out"],
            "duplicates": report["duplicates_in_hour"] + report["duplicates_other_hours"],
            "rejected": report["rejected"],
            "recompacted_hours": late,
        }
        outlet_events[TWEETS_TABLE].extra = {**extra, "snapshot_id": report["snapshots"]["tweets"]}
        outlet_events[USERS_TABLE].extra = {
            "hour": report["hour"],
            "rows": report["users_out"],
            "snapshot_id": report["snapshots"]["users"],
        }
        return extra

    report = compact()
    wait_for_late_files() >> report
    announce(report, recompact_late_hours(report))


tweetlake_compaction()
