"""The CSV export read back: its values are exactly the Iceberg table's, typed by ``read_csv``."""

from __future__ import annotations

import gzip
import json

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from compactor.compact import Options, compact_hour
from compactor.csvfiles import read_csv
from compactor.filesystems import S3Settings
from compactor.lake import Lake
from compactor.tables import TABLES, TWEETS, USERS
from tests.helpers import HOUR, timeline_lines
from tweetlake.config import build_config
from tweetlake.landing import landing_key


def _rows(table: pa.Table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda row: row["id"])


def _frame_rows(frame: pd.DataFrame, schema: pa.Schema) -> list[dict]:
    return _rows(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))


@pytest.fixture
def compacted(lake, land, tmp_path):
    """One hour of the 100 recorded timeline tweets, compacted on local disk."""
    land(timeline_lines())
    assert compact_hour(lake, HOUR, Options()).valid
    return lake


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_read_csv_gives_exactly_the_table_values(compacted, tmp_path, table):
    frame = read_csv(str(tmp_path / "tables" / table.csv_dir), table.name)
    assert list(frame.columns) == table.schema.names
    assert _frame_rows(frame, table.schema) == _rows(compacted.table(table).scan().to_arrow())


def test_ids_stay_strings_and_missing_numbers_stay_missing(compacted, tmp_path):
    frame = read_csv(str(tmp_path / "tables" / TWEETS.csv_partition(HOUR)))
    retweets = frame[frame["retweeted_id"].notna()]
    assert len(retweets) > 0 and all(isinstance(v, str) for v in retweets["retweeted_id"])
    assert (
        frame["impression_count"].isna().sum()
        == compacted.table(TWEETS).scan().to_arrow().column("impression_count").null_count
    )


def test_plain_pandas_would_corrupt_what_read_csv_keeps(compacted, tmp_path):
    """Why the helper exists: pandas guesses int64/float64 for id columns."""
    path = tmp_path / "tables" / TWEETS.csv_partition(HOUR) / "part-00000.csv"
    guessed = pd.read_csv(path)
    assert guessed["id"].dtype == "int64" and guessed["retweeted_id"].dtype == "float64"


@pytest.mark.parametrize("table", TABLES, ids=lambda t: t.name)
def test_a_csvw_description_beside_each_csv_table_names_every_column_and_its_type(compacted, tmp_path, table):
    description = json.loads((tmp_path / "tables" / table.csv_description).read_text())
    columns = description["tableSchema"]["columns"]
    assert [c["name"] for c in columns] == table.schema.names
    assert [c["arrow:type"] for c in columns] == [str(f.type) for f in table.schema]
    assert description["tableSchema"]["primaryKey"] == "id"


def test_read_csv_reads_the_export_on_s3(s3, s3_endpoint, bucket, tmp_path):
    config = build_config(
        {
            "landing": {"uri": f"s3://{bucket}/landing", "endpoint_url": s3_endpoint},
            "tables": {"uri": f"s3://{bucket}/tables", "catalog_uri": f"sqlite:///{tmp_path}/catalog.db"},
        },
        environ={},
    )
    settings = S3Settings(endpoint_url=s3_endpoint, region="us-east-1", access_key="testing", secret_key="testing")
    lake = Lake.from_config(config, settings)
    key = f"landing/{landing_key('tweets', HOUR, 'a-1', 0)}"
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(b"".join(timeline_lines())))
    assert compact_hour(lake, HOUR, Options()).valid
    fs = pafs.S3FileSystem(
        endpoint_override=s3_endpoint, access_key="testing", secret_key="testing", region="us-east-1"
    )
    frame = read_csv(f"{bucket}/tables/{USERS.csv_dir}", "users", filesystem=fs)
    assert _frame_rows(frame, USERS.schema) == _rows(lake.table(USERS).scan().to_arrow())
