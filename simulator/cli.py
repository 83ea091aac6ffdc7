"""``x-simulator``: serve a simulated X API v2 on localhost until interrupted."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Callable

from simulator.server import FAULTS, Faults, Simulator, SimulatorThread
from simulator.world import World
from tweetlake import build_version

EPILOG = f"""faults (--faults NAME:PROBABILITY,...): {", ".join(f for f in FAULTS if f != "none")}

examples:
  x-simulator --port 8089
  x-simulator --users NASA,XDevelopers --faults 500:0.05,429:0.02 --rate-limit 300/900

exit codes: 0 stopped by SIGTERM or SIGINT; 1 the address cannot be listened on; 2 a bad argument."""


def rate_limit(text: str) -> tuple[int, float]:
    """``REQUESTS/WINDOW_SECONDS``, e.g. ``900/900``."""
    limit, slash, window = text.partition("/")
    try:
        parsed = int(limit), float(window) if slash else 900.0
    except ValueError:
        parsed = (0, 0.0)
    if parsed[0] <= 0 or parsed[1] <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not REQUESTS/WINDOW_SECONDS with both above 0, e.g. 900/900")
    return parsed


def fault_probabilities(text: str) -> dict[str, float]:
    """``NAME:PROBABILITY,...`` with known fault names and probabilities in [0, 1]."""
    found: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, colon, value = item.partition(":")
        if name not in FAULTS or name == "none":
            raise argparse.ArgumentTypeError(f"unknown fault {name!r} (known: see --help)")
        try:
            probability = float(value) if colon else -1.0
        except ValueError:
            probability = -1.0
        if not 0.0 <= probability <= 1.0:
            raise argparse.ArgumentTypeError(f"{item!r}: give a probability from 0 to 1, e.g. {name}:0.05")
        found[name] = probability
    return found


def _non_negative(kind: type[int] | type[float]) -> Callable[[str], float]:
    """An argparse type: a number of ``kind`` that is 0 or more."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = -1
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number >= 0")
        return value

    parse.__name__ = kind.__name__
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="x-simulator",
        description="Serve a simulated X API v2 (users, timelines, filtered stream, usage) until interrupted.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {build_version()}")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=_non_negative(int), default=0, help="0 picks a free port, printed on start")
    parser.add_argument(
        "--users", default="XDevelopers,NASA,tweetlake_demo", help="comma-separated accounts the world holds"
    )
    parser.add_argument("--initial", type=_non_negative(int), default=60, help="tweets per account before start")
    parser.add_argument(
        "--tweets-per-s", type=_non_negative(float), default=2.0, help="new tweets a second across all accounts"
    )
    parser.add_argument(
        "--timeline-cap", type=_non_negative(int), default=3200, help="tweets a timeline serves (X: 3200)"
    )
    parser.add_argument("--rate-limit", type=rate_limit, default="900/900", help="REQUESTS/WINDOW_SECONDS per endpoint")
    parser.add_argument(
        "--faults", type=fault_probabilities, default="", help="NAME:PROBABILITY,... e.g. 500:0.05,429:0.02"
    )
    parser.add_argument(
        "--keepalive-s", type=_non_negative(float), default=20.0, help="stream keep-alive interval (X: 20)"
    )
    parser.add_argument("--seed", type=int, default=7, help="the world's random seed")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    usernames = [u for u in args.users.split(",") if u]
    world = World(usernames, seed=args.seed, timeline_cap=args.timeline_cap)
    for username in usernames:
        world.generate(args.initial, username)
    limit, window = args.rate_limit
    simulator = Simulator(
        world, rate_limit=limit, window_s=window, faults=Faults(probabilities=args.faults), keepalive_s=args.keepalive_s
    )
    try:
        sim = SimulatorThread(simulator, args.host, args.port, tweets_per_s=args.tweets_per_s).start()
    except OSError as exc:
        print(f"x-simulator: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(json.dumps({"event": "simulator_started", "url": sim.url, "accounts": usernames}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
