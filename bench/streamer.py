"""Streamer write path: items -> batcher -> fsynced spool -> uploader -> S3 (moto server process),
vs. a baseline of bare aiobotocore PUTs of the same gzip batches, same run, same endpoint.

    .venv/bin/python bench/streamer.py [--tweets 50000] [--batch 5000]

The ratio says what durability (gzip + write + fsync + rename + ledger save before each upload,
delete after) costs over just sending the bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")


def items(n: int):
    from simulator.world import World
    from streamer.items import Item
    from tweetlake.landing import encode_line, tweet_record

    world = World([f"a{i}" for i in range(10)], seed=5)
    world.generate(n)
    at = datetime.now(UTC).replace(minute=5)
    out = []
    for account in world.accounts.values():
        for tweet in account.tweets:
            clean = {k: v for k, v in tweet.items() if not k.startswith("_")}
            line = encode_line(
                tweet_record(
                    clean,
                    {},
                    collected_at=at,
                    collected_via="poll:users_tweets",
                    account={"id": account.id, "username": account.username},
                )
            )
            out.append(Item("tweets", line, at, account.id, int(tweet["id"])))
    return out


async def pipeline(all_items, endpoint: str, bucket: str, state: Path, batch: int) -> float:
    from streamer.batcher import Batcher
    from streamer.health import Health
    from streamer.items import FLUSH
    from streamer.ledger import Ledger
    from streamer.metrics import Metrics
    from streamer.sinks import sink_for
    from streamer.spool import Spool
    from streamer.spooler import SpoolWriter
    from streamer.uploader import Uploader

    metrics = Metrics()
    spool = Spool(state / "spool", 10**12, metrics)
    ledger = Ledger(state / "state.json")
    q_items, q_batches, q_uploads = asyncio.Queue(1000), asyncio.Queue(2), asyncio.Queue()
    sink = sink_for(f"s3://{bucket}/p/landing", endpoint_url=endpoint)
    tasks = [
        asyncio.create_task(Batcher(q_items, q_batches, max_records=batch, max_bytes=10**9, max_age_s=3600).run()),
        asyncio.create_task(SpoolWriter(q_batches, q_uploads, spool, ledger, metrics, writer_id="bench").run()),
        asyncio.create_task(Uploader(q_uploads, sink, spool, ledger, metrics, Health(600), writer_id="bench").run()),
    ]
    started = time.perf_counter()
    for item in all_items:
        await q_items.put(item)
    await q_items.put(FLUSH)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    await sink.close()
    return elapsed


async def baseline(all_items, endpoint: str, bucket: str, batch: int) -> float:
    from aiobotocore.session import get_session

    started = time.perf_counter()
    async with get_session().create_client("s3", endpoint_url=endpoint, region_name="us-east-1") as s3:
        sem = asyncio.Semaphore(4)

        async def put(i: int, body: bytes) -> None:
            async with sem:
                await s3.put_object(Bucket=bucket, Key=f"base/{i:08d}.ndjson.gz", Body=body)

        await asyncio.gather(
            *(
                put(i, gzip.compress(b"".join(x.line for x in all_items[s : s + batch]), 6))
                for i, s in enumerate(range(0, len(all_items), batch))
            )
        )
    return time.perf_counter() - started


def main() -> None:
    import boto3

    parser = argparse.ArgumentParser()
    parser.add_argument("--tweets", type=int, default=50000)
    parser.add_argument("--batch", type=int, default=5000)
    args = parser.parse_args()
    from tweetlake import logs

    logs.configure("warning", json_output=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [Path(sys.executable).with_name("moto_server"), "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    state = Path(tempfile.mkdtemp(prefix="tl-bench-streamer-"))
    try:
        for _ in range(100):
            try:
                boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench")
                break
            except Exception:
                time.sleep(0.1)
        data = items(args.tweets)
        mb = sum(len(i.line) for i in data) / 1e6
        print(f"input: {len(data)} tweets, {mb:.1f} MB NDJSON, batches of {args.batch}")
        base = asyncio.run(baseline(data, endpoint, "bench", args.batch))
        ours = asyncio.run(pipeline(data, endpoint, "bench", state, args.batch))
        for name, secs in (("baseline bare PUTs", base), ("tweetlake durable path", ours)):
            print(f"{name:<24} {secs:6.2f} s  {len(data) / secs:9.0f} tweets/s  {mb / secs:6.1f} MB/s")
        print(f"ratio (tweetlake / baseline): throughput x{base / ours:.2f}")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(state)


if __name__ == "__main__":
    main()
