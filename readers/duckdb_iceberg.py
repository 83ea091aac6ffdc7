"""Query a tweetlake Iceberg table from DuckDB, offline: ``python duckdb_iceberg.py METADATA_JSON SQL``.

Runs in the reader environment (``readers/duckdb-iceberg.txt``: DuckDB 1.5.5 and the PyPI packages
that carry its avro and iceberg extensions; ``make env`` builds it as ``.venv-reader``). In the
SQL, ``tweets`` names the table: ``SELECT author_username, count(*) FROM tweets GROUP BY 1``.
The table's current metadata file is ``Table.metadata_location`` in pyiceberg, or the newest
``metadata/*.metadata.json`` under the table location.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb


def connect() -> duckdb.DuckDBPyConnection:
    """DuckDB with ``iceberg_scan``, the extensions loaded from the installed packages (no download)."""
    import duckdb_extension_avro
    import duckdb_extension_iceberg

    connection = duckdb.connect(config={"allow_unsigned_extensions": "true"})
    connection.execute("set timezone = 'UTC'")
    for package, name in ((duckdb_extension_avro, "avro"), (duckdb_extension_iceberg, "iceberg")):
        [binary] = Path(package.__file__).parent.glob(f"extensions/*/{name}.duckdb_extension")
        connection.execute(f"load '{binary}'")
    return connection


def main(metadata: str, sql: str) -> int:
    connection = connect()
    connection.execute(f"create view tweets as select * from iceberg_scan('{metadata}')")
    result = connection.sql(sql)
    print(json.dumps({"columns": result.columns, "rows": result.fetchall()}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
