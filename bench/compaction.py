"""Compaction throughput: tweetlake's compactor vs. a json + pandas baseline, same input, same run.

    .venv/bin/python bench/compaction.py [--tweets 30000]

Input: realistic landing files made with the simulator's generator (includes, entities, media),
in 5,000-line gzip files. Baseline: json.loads + pandas.json_normalize + DataFrame.to_csv and
to_parquet on the same lines (the common "notebook" pipeline). Prints MB/s of uncompressed
NDJSON, rows/s, and peak RSS of each, measured in child processes so one does not skew the other.
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing as mp
import resource
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def make_input(root: Path, tweets: int) -> int:
    from simulator.server import Simulator
    from simulator.world import World
    from tweetlake.landing import Hour, encode_line, landing_key, tweet_record

    world = World([f"acct_{i}" for i in range(20)], seed=3)
    sim = Simulator(world)
    world.generate(tweets)
    at = datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
    hour = Hour.of(at)
    lines: list[bytes] = []
    for account in world.accounts.values():
        newest_first = list(reversed(account.tweets))
        for start in range(0, len(newest_first), 100):
            body = sim._page_body(account, newest_first[start : start + 100], more=False)
            for tweet in body["data"]:
                lines.append(
                    encode_line(
                        tweet_record(
                            tweet,
                            body["includes"],
                            collected_at=at,
                            collected_via="poll:users_tweets",
                            account={"id": account.id, "username": account.username},
                        )
                    )
                )
    raw = 0
    for seq, start in enumerate(range(0, len(lines), 5000)):
        path = root / "landing" / landing_key("tweets", hour, "bench", seq)
        path.parent.mkdir(parents=True, exist_ok=True)
        chunk = b"".join(lines[start : start + 5000])
        raw += len(chunk)
        path.write_bytes(gzip.compress(chunk, 6))
    return raw


def run_tweetlake(root: str, out: mp.Queue) -> None:
    from compactor.compact import compact_hour, validate
    from compactor.storage import Storage
    from tweetlake.config import build_config
    from tweetlake.landing import Hour

    config = build_config(
        {"landing": {"uri": f"file://{root}/landing"}, "tables": {"uri": f"file://{root}/tables"}}, environ={}
    )
    storage = Storage.from_config(config)
    started = time.perf_counter()
    report = compact_hour(storage, Hour.parse("2026-11-25T10"))
    elapsed = time.perf_counter() - started
    assert validate(storage, report) == []
    out.put((elapsed, report.rows_out, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def run_baseline(root: str, out: mp.Queue) -> None:
    import pandas as pd

    started = time.perf_counter()
    records = []
    for path in sorted(Path(root, "landing").rglob("*.ndjson.gz")):
        records.extend(json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines())
    frame = pd.json_normalize([r["tweet"] for r in records])
    frame = frame.drop_duplicates(subset="id")
    Path(root, "baseline").mkdir(exist_ok=True)
    frame.astype(str).to_parquet(Path(root, "baseline", "tweets.parquet"))
    frame.to_csv(Path(root, "baseline", "tweets.csv"), index=False)
    elapsed = time.perf_counter() - started
    out.put((elapsed, len(frame), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def measure(target, root: str) -> tuple[float, int, float]:
    queue: mp.Queue = mp.Queue()
    proc = mp.get_context("fork").Process(target=target, args=(root, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tweets", type=int, default=30000)
    args = parser.parse_args()
    from tweetlake import logs

    logs.configure("warning", json_output=False)
    root = Path(tempfile.mkdtemp(prefix="tl-bench-"))
    try:
        raw = make_input(root, args.tweets)
        mb = raw / 1e6
        print(
            f"input: {args.tweets} tweets, {mb:.1f} MB NDJSON ({mb / args.tweets * 1000:.1f} KB/tweet) in "
            f"{len(list(root.rglob('*.ndjson.gz')))} gzip files"
        )
        base = measure(run_baseline, str(root))
        ours = measure(run_tweetlake, str(root))
        for name, (secs, rows, rss) in (("baseline json+pandas", base), ("tweetlake compactor", ours)):
            print(f"{name:<22} {secs:6.2f} s  {mb / secs:6.1f} MB/s  {rows / secs:8.0f} rows/s  peak RSS {rss:6.0f} MB")
        print(f"ratio (tweetlake / baseline): speed x{base[0] / ours[0]:.2f}, peak memory x{ours[2] / base[2]:.2f}")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
