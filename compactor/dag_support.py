"""What the tweetlake DAGs need from their surroundings: the config file, the hour, the S3 settings.

Imported by the DAG files at parse time, so it imports nothing heavy itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

DEFAULT_CONFIG = "/etc/tweetlake/tweetlake.toml"


def config_path(params: dict[str, Any]) -> str:
    if params.get("config_path"):
        return str(params["config_path"])
    from airflow.sdk import Variable

    return str(Variable.get("tweetlake_config", default=DEFAULT_CONFIG))


def collection_hour(params: dict[str, Any], data_interval_start: datetime) -> str:
    """The hour a run compacts: the ``hour`` param of a manual run, else its data interval's start."""
    from compactor.cli import parse_hour
    from tweetlake.landing import Hour

    return str(parse_hour(params["hour"]) if params.get("hour") else Hour.of(data_interval_start))


def s3_settings(path: str) -> Any:
    """S3 settings from the aws_default connection, only when the tables live on S3."""
    from compactor.filesystems import S3Settings
    from compactor.runner import load

    if not load(path).tables.uri.startswith("s3://"):
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
