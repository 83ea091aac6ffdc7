"""Per hour, a record of its last published compaction: what it read, counted and committed.

Written last, after the commits and the CSV export: its presence says the hour is complete. The
late-file check compares its inputs with what the landing prefix holds now.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from compactor.filesystems import Storage, open_output
from compactor.tables import manifest_file
from tweetlake.landing import Hour


def write_manifest(storage: Storage, report: dict[str, Any]) -> str:
    path = storage.tables.arrow_path(manifest_file(Hour.parse(report["hour"])))
    body = {**report, "manifest_written_at": datetime.now(UTC).isoformat()}
    with open_output(storage.fs, path) as out:
        out.write(json.dumps(body, indent=1).encode())
    return path


def read_manifest(storage: Storage, hour: Hour) -> dict[str, Any] | None:
    """The hour's manifest, or None when the hour was never published (or its manifest is unreadable)."""
    try:
        with storage.fs.open_input_stream(storage.tables.arrow_path(manifest_file(hour))) as handle:
            body = json.loads(handle.read())
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) else None
