"""Sinks never replace a landed file: same bytes are a re-upload, other bytes a loud conflict."""

from __future__ import annotations

import asyncio
import gzip
from datetime import UTC, datetime

import pytest

from streamer.health import Health
from streamer.items import Batch, Item
from streamer.ledger import Ledger
from streamer.metrics import Metrics
from streamer.sinks import LandingConflict, sink_for
from streamer.spool import Spool
from streamer.uploader import Uploader
from tweetlake.landing import Hour

KEY = "tweets/dt=2026-11-25/hour=10/host-abc-000000000001.ndjson.gz"
T0 = datetime(2026, 11, 25, 10, 15, tzinfo=UTC)


@pytest.fixture(params=["file", "s3"])
def sink(request, tmp_path, s3_endpoint, bucket):
    """The local-directory sink and the S3 sink against moto's server (one event loop per test)."""
    if request.param == "file":
        return sink_for(f"file://{tmp_path}/landing")
    return sink_for(f"s3://{bucket}/landing", endpoint_url=s3_endpoint)


def _run(sink, *steps):
    """Await each step (a coroutine function of no arguments) in one loop, then close the sink."""

    async def go():
        try:
            return [await step() for step in steps]
        finally:
            await sink.close()

    return asyncio.run(go())


def _read(sink, key: str, s3) -> bytes:
    if sink.location.scheme == "file":
        with open(sink.location.key(key), "rb") as handle:
            return handle.read()
    return s3.get_object(Bucket=sink.location.bucket, Key=sink.location.key(key))["Body"].read()


def test_a_new_key_is_stored(sink, s3):
    assert _run(sink, lambda: sink.put(KEY, b"first")) == [True]
    assert _read(sink, KEY, s3) == b"first"


def test_the_same_bytes_again_are_a_harmless_re_upload(sink, s3):
    assert _run(sink, lambda: sink.put(KEY, b"first"), lambda: sink.put(KEY, b"first")) == [True, False]
    assert _read(sink, KEY, s3) == b"first"


def test_other_bytes_under_a_landed_key_are_refused_and_the_file_is_left_alone(sink, s3):
    with pytest.raises(LandingConflict) as conflict:
        _run(sink, lambda: sink.put(KEY, b"first"), lambda: sink.put(KEY, b"second"))
    assert conflict.value.uri == sink.location.uri(KEY)
    assert _read(sink, KEY, s3) == b"first"


def test_the_uploader_lands_a_conflicting_batch_under_a_new_writer_instance(tmp_path, sink, s3):
    """A cloned state dir: this instance's key is already taken by another host's batch."""
    metrics = Metrics()
    spool = Spool(tmp_path / "spool", 10**9, metrics)
    ledger = Ledger(tmp_path / "state.json")
    writer = ledger.writer("host")
    batch = Batch("tweets", Hour.of(T0), 0.0)
    batch.add(Item("tweets", b'{"v":1}\n', T0, "42", 1))
    spooled = spool.write(batch, writer, ledger.allocate())
    uploader = Uploader(asyncio.Queue(), sink, spool, ledger, metrics, Health(600), writer_id="host")
    _run(sink, lambda: sink.put(spooled.key, b"the other host's batch"), lambda: uploader.upload(spooled))

    assert _read(sink, spooled.key, s3) == b"the other host's batch"
    assert ledger.writer("host") != writer
    renamed = spooled.key.replace(f"{writer}-000000000000", f"{ledger.writer('host')}-000000000000")
    assert gzip.decompress(_read(sink, renamed, s3)) == b'{"v":1}\n'
    assert metrics.registry.get_sample_value("tweetlake_landing_conflicts_total") == 1
    assert spool.files() == [] and Ledger.load(tmp_path / "state.json").instance == ledger.instance
