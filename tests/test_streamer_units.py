"""Each daemon component alone, with in-process fakes where the real thing is tested elsewhere."""

from __future__ import annotations

import asyncio
import errno
import gzip
import io
import json
import socket
from datetime import UTC, datetime, timedelta

import pytest

from streamer.batcher import Batcher
from streamer.items import FLUSH, Batch, Item
from streamer.ledger import Ledger
from streamer.metrics import Metrics
from streamer.sdnotify import Notifier
from streamer.spool import Spool
from streamer.spooler import SpoolWriter
from streamer.xclient import RateLimiter, endpoint_of
from tweetlake import logs
from tweetlake.landing import Hour

T0 = datetime(2026, 11, 25, 10, 59, 58, tzinfo=UTC)


def _item(n: int, at: datetime = T0, account: str = "a") -> Item:
    line = json.dumps({"tweet": {"id": str(n)}, "account": {"id": account}}).encode() + b"\n"
    return Item("tweets", line, at, account, n)


def _run_batcher(items, **limits):
    async def go():
        inq, outq = asyncio.Queue(), asyncio.Queue()
        batcher = Batcher(
            inq,
            outq,
            max_records=limits.get("max_records", 100),
            max_bytes=limits.get("max_bytes", 10**9),
            max_age_s=limits.get("max_age_s", 3600),
        )
        for item in items:
            inq.put_nowait(item)
        inq.put_nowait(FLUSH)
        await batcher.run()
        out = []
        while not outq.empty():
            out.append(outq.get_nowait())
        return out

    return asyncio.run(go())


def test_batches_close_on_count_bytes_and_hour():
    out = _run_batcher([_item(i) for i in range(5)], max_records=2)
    assert [len(b.lines) for b in out[:-1]] == [2, 2, 1] and out[-1] is FLUSH
    big = _run_batcher([_item(i) for i in range(4)], max_bytes=90)
    assert all(b.nbytes <= 90 for b in big[:-1]) and sum(len(b.lines) for b in big[:-1]) == 4
    across = _run_batcher([_item(1), _item(2, T0 + timedelta(seconds=5))])
    assert [str(b.hour) for b in across[:-1]] == ["2026-11-25T10", "2026-11-25T11"]


def test_an_error_read_before_a_tweet_is_never_made_durable_after_that_tweets_batch():
    error = Item("errors", b'{"error": {"reason": "tweet.id is not a numeric id string"}}\n', T0, "a")
    out = _run_batcher([_item(1), error, _item(2)], max_records=2)
    assert [(b.stream, len(b.lines)) for b in out[:-1]] == [("errors", 1), ("tweets", 2)]


def test_batches_close_on_age():
    async def go():
        inq, outq = asyncio.Queue(), asyncio.Queue()
        batcher = Batcher(inq, outq, max_records=100, max_bytes=10**9, max_age_s=0.05)
        task = asyncio.create_task(batcher.run())
        inq.put_nowait(_item(1))
        batch = await asyncio.wait_for(outq.get(), 2)
        task.cancel()
        return batch

    assert len(asyncio.run(go()).lines) == 1


def test_full_disk_is_retried_counted_and_loses_nothing(tmp_path, monkeypatch):
    import streamer.spool as spool_module

    metrics = Metrics()
    spool = Spool(tmp_path / "spool", 10**9, metrics)
    ledger = Ledger(tmp_path / "state.json")
    real_write = spool_module.write_atomic
    failures = {"left": 2}

    def flaky(path, data):
        if failures["left"]:
            failures["left"] -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(spool_module, "write_atomic", flaky)

    async def go():
        batches, uploads = asyncio.Queue(), asyncio.Queue()
        writer = SpoolWriter(
            batches, uploads, spool, ledger, metrics, writer_id="host", backoff_base=0.01, backoff_cap=0.02
        )
        batch = Batch("tweets", Hour.of(T0), 0.0)
        batch.add(_item(77))
        batches.put_nowait(batch)
        batches.put_nowait(FLUSH)
        await writer.run()
        return uploads.get_nowait()

    spooled = asyncio.run(go())
    assert metrics.registry.get_sample_value("tweetlake_spool_write_failures_total") == 2
    assert spooled.writer == f"host-{ledger.instance}" and ledger.checkpoints == {"a": 77}
    assert gzip.decompress(spooled.path.read_bytes()).count(b"\n") == 1
    assert [p.name for p in spool.files()] == [spooled.path.name]


def test_a_failed_ledger_save_is_retried_without_spooling_the_batch_twice(tmp_path, monkeypatch):
    metrics = Metrics()
    spool = Spool(tmp_path / "spool", 10**9, metrics)
    ledger = Ledger(tmp_path / "state.json")
    real_write = Ledger.write
    failures = {"left": 2}

    def flaky(self, encoded):
        if failures["left"]:
            failures["left"] -= 1
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(self, encoded)

    monkeypatch.setattr(Ledger, "write", flaky)

    async def go():
        batches, uploads = asyncio.Queue(), asyncio.Queue()
        writer = SpoolWriter(
            batches, uploads, spool, ledger, metrics, writer_id="host", backoff_base=0.01, backoff_cap=0.02
        )
        batch = Batch("tweets", Hour.of(T0), 0.0)
        batch.add(_item(78))
        batches.put_nowait(batch)
        batches.put_nowait(FLUSH)
        await writer.run()

    asyncio.run(go())
    assert len(spool.files()) == 1 and failures["left"] == 0
    assert Ledger.load(tmp_path / "state.json").checkpoints == {"a": 78}


def test_rate_limiter_spreads_requests_over_the_window():
    now = [1000.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert limiter.reserve("/2/users/:id/tweets") == 0
    limiter.observe("/2/users/:id/tweets", {"x-rate-limit-remaining": "10", "x-rate-limit-reset": "1100"})
    assert limiter.reserve("/2/users/:id/tweets") == pytest.approx(10.0)
    limiter.observe("/2/users/:id/tweets", {"x-rate-limit-remaining": "0", "x-rate-limit-reset": "1100"})
    assert limiter.reserve("/2/users/:id/tweets") == pytest.approx(100.5)
    now[0] = 1101
    assert limiter.reserve("/2/users/:id/tweets") == 0


def test_requests_reserved_together_are_spread_over_the_window():
    limiter = RateLimiter(clock=lambda: 1000.0)
    limiter.reserve("/2/users/:id/tweets")
    limiter.observe("/2/users/:id/tweets", {"x-rate-limit-remaining": "4", "x-rate-limit-reset": "1040"})
    waits = [limiter.reserve("/2/users/:id/tweets") for _ in range(3)]
    assert waits == pytest.approx([10.0, 10 + 40 / 3, 10 + 40 / 3 + 20.0])
    assert endpoint_of("/2/users/12345/tweets") == "/2/users/:id/tweets"


def test_sd_notify_speaks_the_datagram_protocol(tmp_path):
    path = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(path)
        notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "10000000"})
        assert notifier.watchdog_interval_s == 5.0
        notifier.ready("collecting 2 accounts")
        notifier.watchdog()
        assert server.recv(4096) == b"READY=1\nSTATUS=collecting 2 accounts"
        assert server.recv(4096) == b"WATCHDOG=1"
    assert not Notifier({}).enabled


def test_logs_redact_secrets_even_from_library_debug_output():
    import logging

    stream = io.StringIO()
    stream.isatty = lambda: False  # type: ignore[method-assign]
    logs.configure("debug", json_output=True, stream=stream)
    logs.register_secret("sup3r-s3cret-value")
    logs.get_logger("t").info("event_one", detail="token sup3r-s3cret-value here", header="Bearer abc.def")
    logging.getLogger("tweepy.client").warning("Headers: {'Authorization': 'Bearer sup3r-s3cret-value'}")
    logging.getLogger("tweepy.client").debug("never shown")
    text = stream.getvalue()
    assert "sup3r-s3cret-value" not in text and "abc.def" not in text
    assert "event_one" in text and "[REDACTED]" in text and "never shown" not in text
    assert all(json.loads(line) for line in text.splitlines())


def test_logs_are_readable_columns_on_a_tty_and_json_otherwise():
    tty = io.StringIO()
    tty.isatty = lambda: True  # type: ignore[method-assign]
    logs.configure("info", stream=tty)
    logs.get_logger("t").info("batch_uploaded", key="s3://b/k", records=3)
    line = tty.getvalue().strip()
    assert "batch_uploaded" in line and "records=3" in line and not line.startswith("{")
    pipe = io.StringIO()
    pipe.isatty = lambda: False  # type: ignore[method-assign]
    logs.configure("info", stream=pipe)
    logs.get_logger("t").info("batch_uploaded", records=3)
    event = json.loads(pipe.getvalue())
    assert event["event"] == "batch_uploaded" and event["records"] == 3 and event["level"] == "info" and "ts" in event
