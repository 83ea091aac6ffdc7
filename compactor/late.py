"""Hours that need compacting again: landing objects the hour's last published run did not read.

A batch uploaded after its hour was compacted (an S3 outage longer than the grace period, a spool
drained hours later) would otherwise never reach the tables. An hour counts as late when its
landing prefix holds an object (key and size) that its manifest's inputs do not list, or holds
objects and has no manifest (never published, or its last run failed its checks).
"""

from __future__ import annotations

from compactor.filesystems import Storage, list_files
from compactor.manifest import read_manifest
from tweetlake.landing import STREAM_TWEETS, Hour, hour_prefix


def landed_objects(storage: Storage, hour: Hour) -> set[tuple[str, int]]:
    """(key relative to landing.uri, size) of every object under the hour's tweets prefix."""
    root = storage.landing.arrow_path()
    infos = list_files(storage.fs, storage.landing.arrow_path(hour_prefix(STREAM_TWEETS, hour)))
    return {(info.path.removeprefix(root + "/"), info.size) for info in infos}


def is_late(storage: Storage, hour: Hour) -> bool:
    found = landed_objects(storage, hour)
    if not found:
        return False
    manifest = read_manifest(storage, hour)
    if manifest is None:
        return True
    read = {(entry.get("key"), entry.get("size")) for entry in manifest.get("inputs", []) if isinstance(entry, dict)}
    return bool(found - read)


def late_hours(storage: Storage, before: Hour, lookback_hours: int) -> list[Hour]:
    """The late hours among the ``lookback_hours`` before ``before``, oldest first."""
    return [hour for back in range(lookback_hours, 0, -1) if is_late(storage, hour := before.shift(-back))]
