"""Streamer ingest: tweets/s, CPU seconds per 10k tweets and peak RSS of each way in, same run.

    .venv/bin/python bench/streamer.py [--tweets 50000] [--batch 5000]

Every variant runs in a fresh child process; its CPU time and peak RSS come from wait4.

  disk baseline      gzip the batches, write and fsync each to a directory: the bytes alone
  tweetlake -> disk  items -> batcher -> fsynced spool + ledger -> uploader -> a file:// lake
  S3 baseline        bare aiobotocore PUTs (4 at a time) of the same gzip batches to moto's server
  tweetlake -> S3    the same pipeline into moto's server (conditional PUTs with Content-MD5)
  daemon over HTTP   the real daemon (``python -m streamer run``) reading the tweets from the
                     simulator over HTTP into a file:// lake, from process start to the last one
                     landed (interpreter start, account lookup and every timeline page included)

The in-process variants are fed items built from the simulator's generator (~2.2 KB each).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
ACCOUNTS = 25  # the daemon's first round reads at most history_max_tweets (3,200) per account
IN_PROCESS = ("disk baseline", "tweetlake -> disk", "S3 baseline", "tweetlake -> S3")


def items(n: int) -> list:
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


def batches(all_items: list, batch: int) -> list[bytes]:
    starts = range(0, len(all_items), batch)
    return [gzip.compress(b"".join(x.line for x in all_items[s : s + batch]), 6) for s in starts]


def disk_baseline(all_items: list, out: Path, batch: int) -> None:
    for i, body in enumerate(batches(all_items, batch)):
        with open(out / f"{i:08d}.ndjson.gz", "wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())


async def s3_baseline(all_items: list, endpoint: str, batch: int) -> None:
    from aiobotocore.session import get_session

    async with get_session().create_client("s3", endpoint_url=endpoint, region_name="us-east-1") as s3:
        sem = asyncio.Semaphore(4)

        async def put(i: int, body: bytes) -> None:
            async with sem:
                await s3.put_object(Bucket="bench", Key=f"base/{i:08d}.ndjson.gz", Body=body)

        await asyncio.gather(*(put(i, body) for i, body in enumerate(batches(all_items, batch))))


async def pipeline(all_items: list, landing_uri: str, endpoint: str, state: Path, batch: int) -> None:
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
    sink = sink_for(landing_uri, endpoint_url=endpoint)
    tasks = [
        asyncio.create_task(Batcher(q_items, q_batches, max_records=batch, max_bytes=10**9, max_age_s=3600).run()),
        asyncio.create_task(SpoolWriter(q_batches, q_uploads, spool, ledger, metrics, writer_id="bench").run()),
        asyncio.create_task(Uploader(q_uploads, sink, spool, ledger, metrics, Health(600), writer_id="bench").run()),
    ]
    for item in all_items:
        await q_items.put(item)
    await q_items.put(FLUSH)
    await asyncio.gather(*tasks)
    await sink.close()


def child(variant: str, tweets: int, batch: int, endpoint: str, work: Path) -> None:
    """Build the input, then time the variant alone: prints wall and CPU seconds of that part."""
    from tweetlake import logs

    logs.configure("warning", json_output=False)
    data = items(tweets)
    work.mkdir(parents=True, exist_ok=True)
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    if variant == "disk baseline":
        disk_baseline(data, work, batch)
    elif variant == "S3 baseline":
        asyncio.run(s3_baseline(data, endpoint, batch))
    elif variant == "tweetlake -> disk":
        asyncio.run(pipeline(data, f"file://{work}/lake", "", work / "state", batch))
    else:
        asyncio.run(pipeline(data, "s3://bench/p/landing", endpoint, work / "state", batch))
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    used = (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime)
    print(json.dumps({"tweets": len(data), "seconds": seconds, "cpu": used}))


def run_child(args: list[str]) -> tuple[dict, float]:
    """A child's JSON line and its peak RSS in MB."""
    process = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, args
    assert process.stdout is not None
    return json.loads(process.stdout.read().strip().splitlines()[-1]), usage.ru_maxrss / 1024


def landed_lines(lake: Path) -> int:
    """Tweets landed so far (the tweets stream only; the sink's temp files in _incoming/ skipped)."""
    count = 0
    for path in (lake / "tweets").rglob("*.ndjson.gz"):
        with contextlib.suppress(OSError, EOFError):  # being written
            count += gzip.decompress(path.read_bytes()).count(b"\n")
    return count


def daemon_over_http(tweets: int, batch: int, work: Path) -> tuple[dict, float]:
    """The real daemon against the simulator: wall from spawn to the last tweet landed."""
    from simulator.server import Simulator, SimulatorThread
    from simulator.world import World

    names = [f"acct{i:02d}" for i in range(ACCOUNTS)]
    world = World(names, seed=5)
    world.generate(tweets)
    sim = SimulatorThread(Simulator(world, rate_limit=1_000_000, window_s=900)).start()
    work.mkdir(parents=True)
    config = work / "daemon.toml"
    config.write_text(
        f'[x_api]\nbase_url = "{sim.url}"\n[collect]\nmode = "poll"\nusers = {json.dumps(names)}\n'
        f'poll_interval_s = 30\nhistory_max_tweets = 3200\nwriter_id = "bench"\n'
        f'[landing]\nuri = "file://{work}/lake"\n[batch]\nmax_records = {batch}\nmax_age_s = 1\n'
        f'[state]\ndir = "{work}/state"\n[metrics]\nport = 0\n[service]\nlog_level = "warning"\n'
    )
    env = {**os.environ, "X_BEARER_TOKEN": "bench-token"}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "streamer", "run", "--config", str(config), "--log-format", "json"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while landed_lines(work / "lake") < tweets:
        time.sleep(0.2)
    seconds = time.perf_counter() - started
    process.terminate()
    _, status, usage = os.wait4(process.pid, 0)
    sim.stop()
    assert os.waitstatus_to_exitcode(status) == 0, "the daemon did not stop cleanly"
    return {"tweets": tweets, "seconds": seconds, "cpu": usage.ru_utime + usage.ru_stime}, usage.ru_maxrss / 1024


def moto_server() -> tuple[subprocess.Popen, str]:
    import boto3

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [Path(sys.executable).with_name("moto_server"), "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket="bench")
            break
        except Exception:
            time.sleep(0.1)
    return server, endpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tweets", type=int, default=50000)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--child", choices=IN_PROCESS, help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", default="", help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.tweets, args.batch, args.endpoint, args.work)
        return
    server, endpoint = moto_server()
    work = Path(tempfile.mkdtemp(prefix="tl-bench-streamer-"))
    results: dict[str, tuple[dict, float]] = {}
    try:
        for n, variant in enumerate(IN_PROCESS):
            common = ["--tweets", str(args.tweets), "--batch", str(args.batch), "--endpoint", endpoint]
            results[variant] = run_child([*common, "--child", variant, "--work", str(work / str(n))])
        results["daemon over HTTP"] = daemon_over_http(args.tweets, args.batch, work / "daemon")
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n{args.tweets:,} tweets, batches of {args.batch:,}\n")
    print("| variant | tweets/s | CPU s per 10k tweets | peak RSS | vs its baseline |")
    print("| --- | --- | --- | --- | --- |")
    baseline = {
        "tweetlake -> disk": "disk baseline",
        "tweetlake -> S3": "S3 baseline",
        "daemon over HTTP": "disk baseline",
    }
    for variant, (figures, rss) in results.items():
        rate = figures["tweets"] / figures["seconds"]
        base = baseline.get(variant)
        ratio = f"x{rate / (results[base][0]['tweets'] / results[base][0]['seconds']):.2f}" if base else "x1.00"
        cpu = 10_000 * figures["cpu"] / figures["tweets"]
        print(f"| {variant} | {rate:,.0f} | {cpu:.2f} | {rss:.0f} MB | {ratio} |")


if __name__ == "__main__":
    main()
