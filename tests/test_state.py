"""The state dir at start: locked, read back through the landing reader, damage quarantined, reconciled."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streamer.items import Batch, Item
from streamer.ledger import Ledger
from streamer.metrics import Metrics
from streamer.spool import Spool, spool_name
from streamer.state import OpenedState, StateLocked, open_state
from tweetlake.landing import Hour, encode_line

T0 = datetime(2026, 11, 25, 10, 15, tzinfo=UTC)
HOUR = Hour.of(T0)


def _line(tweet_id: int, account: str = "42") -> bytes:
    return encode_line({"v": 1, "tweet": {"id": str(tweet_id), "text": "t"}, "account": {"id": account}})


def _batch(*ids: int, account: str = "42") -> Batch:
    batch = Batch("tweets", HOUR, 0.0)
    for tweet_id in ids:
        batch.add(Item("tweets", _line(tweet_id, account), T0, account, tweet_id))
    return batch


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def opened(tmp_path, metrics):
    """Open the state dir like the daemon does; every state opened is released after the test."""
    held: list[OpenedState] = []

    def open_it() -> OpenedState:
        state = open_state(tmp_path / "state", writer_id="host", max_spool_bytes=10**9, metrics=metrics)
        held.append(state)
        return state

    yield open_it
    for state in held:
        state.lock.release()


def _spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "state" / "spool"


def test_a_batch_spooled_before_the_ledger_was_saved_moves_the_checkpoint_on(opened, tmp_path, metrics):
    first = opened()
    writer = first.ledger.writer("host")
    first.spool.write(_batch(5, 9, 7), writer, first.ledger.allocate())  # crash here: ledger not saved
    first.lock.release()
    again = opened()
    assert [(b.writer, b.seq, b.ids) for b in again.pending] == [(writer, 0, {"42": [5, 9, 7]})]
    assert again.ledger.checkpoints == {"42": 9} and again.ledger.next_seq == 1
    assert again.ledger.writer("host") == writer


def test_half_written_temp_files_are_removed(opened, tmp_path):
    opened().lock.release()
    (_spool_dir(tmp_path) / ".tmp-tweets.x").write_bytes(b"half")
    state = opened()
    assert state.pending == [] and not list(_spool_dir(tmp_path).iterdir())


def test_a_truncated_spool_file_is_quarantined_and_its_readable_lines_spooled_again(opened, tmp_path, metrics):
    first = opened()
    writer = first.ledger.writer("host")
    spooled = first.spool.write(_batch(*range(100, 400)), writer, first.ledger.allocate())
    intact = first.spool.write(_batch(500), writer, first.ledger.allocate())
    data = spooled.path.read_bytes()
    spooled.path.write_bytes(data[: len(data) // 2])
    first.lock.release()
    state = opened()
    quarantined = list((tmp_path / "state" / "quarantine").iterdir())
    assert [p.name.split("-", 1)[1] for p in quarantined] == [spooled.path.name]
    salvaged = [b for b in state.pending if b.path.name not in (spooled.path.name, intact.path.name)]
    assert [b.path.name for b in state.pending if b.path == intact.path] == [intact.path.name]
    [again] = salvaged
    lines = gzip.decompress(again.path.read_bytes()).splitlines()
    ids = [int(json.loads(line)["tweet"]["id"]) for line in lines]
    assert 0 < len(ids) < 300 and ids == list(range(100, 100 + len(ids)))
    assert again.writer == writer and again.seq == 2
    assert metrics.registry.get_sample_value("tweetlake_quarantined_files_total", {"what": "spool"}) == 1


def test_a_spool_file_that_is_not_landing_records_is_quarantined(opened, tmp_path):
    opened().lock.release()
    bad = _spool_dir(tmp_path) / spool_name("tweets", HOUR, "host-x", 3)
    bad.write_bytes(gzip.compress(b'{"v": 1, "tweet": {"id": "\xc2\xb2"}, "account": {"id": "1"}}\n'))
    stranger = _spool_dir(tmp_path) / "notes.txt"
    stranger.write_text("hello")
    state = opened()
    assert state.pending == []
    names = sorted(p.name.split("-", 1)[1] for p in (tmp_path / "state" / "quarantine").iterdir())
    assert names == sorted([bad.name, stranger.name])


@pytest.mark.parametrize("content", [b"", b"{not json", b"[]", b'{"version": 2, "instance": "../x", "next_seq": 0}'])
def test_a_damaged_ledger_is_quarantined_and_rebuilt_from_the_spool_as_a_new_instance(
    opened, tmp_path, metrics, content
):
    first = opened()
    old_writer = first.ledger.writer("host")
    spooled = first.spool.write(_batch(77), old_writer, first.ledger.allocate())
    first.lock.release()
    (tmp_path / "state" / "state.json").write_bytes(content)
    state = opened()
    assert state.ledger.writer("host") != old_writer  # new keys can never collide with landed ones
    assert [b.key for b in state.pending] == [spooled.key]  # the spooled batch keeps its own key
    assert state.ledger.checkpoints == {"42": 77}
    assert metrics.registry.get_sample_value("tweetlake_quarantined_files_total", {"what": "state"}) == 1
    assert Ledger.load(tmp_path / "state" / "state.json").instance == state.ledger.instance


def test_a_version_1_state_dir_keeps_the_keys_of_its_spooled_batches(tmp_path, opened):
    spool = Spool(_spool_dir(tmp_path), 10**9, Metrics())
    legacy = spool.dir / f"{7:012d}.tweets.{HOUR}.ndjson.gz"
    legacy.write_bytes(gzip.compress(_line(3)))
    (tmp_path / "state" / "state.json").write_text(
        json.dumps({"version": 1, "checkpoints": {"42": "2"}, "next_seq": 8, "accounts": {"nasa": "42"}})
    )
    state = opened()
    [batch] = state.pending
    assert batch.key == f"tweets/{HOUR.partition}/host-000000000007.ndjson.gz"  # as version 1 named it
    assert state.ledger.accounts == {"nasa": "42"} and state.ledger.checkpoints == {"42": 3}
    assert state.ledger.writer("host").startswith("host-") and state.ledger.next_seq == 0


def test_a_second_daemon_on_the_same_state_dir_is_refused_with_the_holders_pid(opened, tmp_path):
    import os

    opened()
    with pytest.raises(StateLocked) as refused:
        open_state(tmp_path / "state", writer_id="host", max_spool_bytes=10**9, metrics=Metrics())
    assert refused.value.holder == str(os.getpid())
    assert str(tmp_path / "state") in str(refused.value)
