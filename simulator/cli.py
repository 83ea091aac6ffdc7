"""``x-simulator``: serve a simulated X API v2 on localhost until interrupted."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from simulator.server import Faults, Simulator, SimulatorThread
from simulator.world import World


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="x-simulator", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on start)")
    parser.add_argument("--users", default="XDevelopers,NASA,tweetlake_demo")
    parser.add_argument("--initial", type=int, default=60, help="tweets per account before start")
    parser.add_argument("--tweets-per-s", type=float, default=2.0)
    parser.add_argument("--timeline-cap", type=int, default=3200)
    parser.add_argument("--rate-limit", default="900/900", help="requests/window_seconds per endpoint")
    parser.add_argument("--faults", default="", help="e.g. 500:0.05,429:0.02,malformed:0.01")
    parser.add_argument("--keepalive-s", type=float, default=20.0, help="stream keep-alive interval")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    usernames = [u for u in args.users.split(",") if u]
    world = World(usernames, seed=args.seed, timeline_cap=args.timeline_cap)
    for username in usernames:
        world.generate(args.initial, username)
    limit, _, window = args.rate_limit.partition("/")
    faults = Faults(probabilities={k: float(v) for k, _, v in (f.partition(":") for f in args.faults.split(",") if f)})
    sim = SimulatorThread(
        Simulator(
            world, rate_limit=int(limit), window_s=float(window or 900), faults=faults, keepalive_s=args.keepalive_s
        ),
        args.host,
        args.port,
        tweets_per_s=args.tweets_per_s,
    ).start()
    print(json.dumps({"event": "simulator_started", "url": sim.url, "accounts": usernames}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
