"""Poll scheduling: adaptive (square-root rule) vs uniform, same request budget, skewed activity.

    .venv/bin/python bench/schedule.py [--seconds 90] [--busy 3] [--quiet 47] [--interval 5]

The simulator (over HTTP, through the real client) gets a skewed mix in compressed time: a few
busy accounts post every ``busy_every`` seconds on average (Poisson), many quiet ones every
``quiet_every``. Each schedule runs the real ``PollSource`` for ``--seconds`` with the same budget
(one request per account every ``--interval`` seconds on average); its tweets' delay from
``created_at`` to being handed on (collected) is measured. Prints the mean and p95 delay and the
request count of each, and the ratio of the adaptive mean to the uniform one.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import threading
import time
from pathlib import Path
from tempfile import TemporaryDirectory

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from simulator.server import Simulator, SimulatorThread  # noqa: E402
from simulator.world import World  # noqa: E402
from streamer.credentials import Credentials, Secret  # noqa: E402
from streamer.health import Health  # noqa: E402
from streamer.items import Item  # noqa: E402
from streamer.ledger import Ledger  # noqa: E402
from streamer.metrics import Metrics  # noqa: E402
from streamer.poller import PollSource  # noqa: E402
from streamer.xclient import XClient  # noqa: E402
from tweetlake import logs  # noqa: E402
from tweetlake.config import CollectConfig  # noqa: E402
from tweetlake.landing import decode_line, parse_time  # noqa: E402


def post_forever(world: World, rates: dict[str, float], stop: threading.Event, seed: int) -> None:
    """Each account posts as a Poisson process with its rate (tweets per second)."""
    rng = random.Random(seed)
    due = {name: rng.expovariate(rate) + time.time() for name, rate in rates.items()}
    while not stop.is_set():
        name, at = min(due.items(), key=lambda kv: kv[1])
        if stop.wait(max(0.0, at - time.time())):
            return
        world.generate(1, name)
        due[name] = time.time() + rng.expovariate(rates[name])


async def run(url: str, users: list[str], schedule: str, interval: float, seconds: float) -> tuple[list[float], int]:
    metrics = Metrics()
    client = XClient(url, Credentials(bearer_token=Secret("bench")), metrics, Health(600), timeout_s=5)
    queue: asyncio.Queue = asyncio.Queue()
    with TemporaryDirectory() as state:
        collect = CollectConfig(users=tuple(users), poll_interval_s=interval, history_max_tweets=0, schedule=schedule)
        source = PollSource(client, Ledger(Path(state) / "state.json"), queue, metrics, Health(600), collect=collect)
        task = asyncio.create_task(source.run())
        delays: list[float] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                item = await asyncio.wait_for(queue.get(), max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
            if isinstance(item, Item) and item.stream == "tweets":
                record = decode_line(item.line)
                delays.append((item.collected_at - parse_time(record["tweet"]["created_at"])).total_seconds())
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await client.close()
    requests = sum(
        s.value
        for m in metrics.api_requests.collect()
        for s in m.samples
        if s.name.endswith("_total") and s.labels["endpoint"] == "/2/users/:id/tweets"
    )
    return delays, int(requests)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=90.0, help="how long each schedule runs")
    parser.add_argument("--busy", type=int, default=3, help="accounts posting often")
    parser.add_argument("--quiet", type=int, default=47, help="accounts posting rarely")
    parser.add_argument("--busy-every", type=float, default=3.0, help="a busy account's mean seconds between posts")
    parser.add_argument("--quiet-every", type=float, default=600.0, help="a quiet account's mean seconds between posts")
    parser.add_argument("--interval", type=float, default=5.0, help="the uniform interval (sets the request budget)")
    args = parser.parse_args()
    logs.configure("warning", json_output=False, stream=sys.stderr)
    users = [f"busy_{i}" for i in range(args.busy)] + [f"quiet_{i}" for i in range(args.quiet)]
    rates = {u: 1 / (args.busy_every if u.startswith("busy") else args.quiet_every) for u in users}
    results = {}
    for schedule in ("uniform", "adaptive"):
        world = World(users, seed=3)
        sim = SimulatorThread(Simulator(world, rate_limit=100_000, window_s=900)).start()
        stop = threading.Event()
        poster = threading.Thread(target=post_forever, args=(world, rates, stop, 11), daemon=True)
        poster.start()
        try:
            results[schedule] = asyncio.run(run(sim.url, users, schedule, args.interval, args.seconds))
        finally:
            stop.set()
            sim.stop()
    busy, quiet = f"every {args.busy_every:g} s", f"every {args.quiet_every:g} s"
    print(f"{args.busy} busy accounts ({busy}), {args.quiet} quiet ({quiet}),")
    print(f"budget: one request per account every {args.interval:g} s on average; {args.seconds:g} s per schedule")
    print()
    print("| schedule | tweets | requests | mean delay (s) | p95 delay (s) |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for schedule, (delays, requests) in results.items():
        p95 = statistics.quantiles(delays, n=20)[-1] if len(delays) > 1 else float("nan")
        print(f"| {schedule} | {len(delays)} | {requests} | {statistics.mean(delays):.2f} | {p95:.2f} |")
    uniform, adaptive = (statistics.mean(results[s][0]) for s in ("uniform", "adaptive"))
    print(f"\nadaptive mean delay / uniform mean delay = {adaptive / uniform:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
