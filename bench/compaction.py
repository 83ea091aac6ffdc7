"""Compaction: ``tweet-compactor run`` vs DuckDB vs the pandas way, on the same landing files.

    .venv/bin/python bench/compaction.py --tweets 100000 [--runs 3] [--pandas-runs 1] [--distinct-authors]

Input: one collection hour of real-shaped landing files (bench/data.py: ~5.6 KB of NDJSON per
tweet, gzip files of 5,000 lines). Each contender runs in a fresh child process on the same files;
its wall time, peak RSS (that child's, from wait4) and output bytes are measured, the median of
``--runs`` reported (the contenders take turns, run by run). tweetlake is the whole CLI run:
interpreter start, catalog, all tables, rejection checks, dedupe, validation of the staged files,
the Iceberg commits, the CSV export and the manifest. Prints a markdown table with the ratio of
each to DuckDB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.data import HOUR, write_hour  # noqa: E402


@dataclass
class Run:
    seconds: float
    peak_mb: float
    output_mb: float


def measure(args: list[str], out: Path, env: dict[str, str] | None = None) -> Run:
    """Run a child, return its wall time, peak RSS and the bytes it left under ``out``."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started = time.perf_counter()
    child = subprocess.Popen(args, cwd=REPO, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - started
    assert os.waitstatus_to_exitcode(status) == 0, f"{args[:4]} failed"
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and not p.name.endswith(".db"))
    return Run(seconds, usage.ru_maxrss / 1024, size / 2**20)


def tweetlake(work: Path) -> list[str]:
    config = work / "tweetlake.toml"
    config.write_text(
        f'[landing]\nuri = "file://{work}/landing"\n[tables]\nuri = "file://{work}/tables"\n'
        '[service]\nlog_level = "warning"\n'
    )
    return [sys.executable, "-m", "compactor", "run", "--config", str(config), "--hour", str(HOUR)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tweets", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--pandas-runs", type=int, default=1, help="the pandas way is slow: fewer runs")
    parser.add_argument("--work", type=Path, default=None, help="keep the input here (default: a temp dir)")
    parser.add_argument(
        "--distinct-authors", action="store_true", help="every tweet by an author of its own (a filtered stream's hour)"
    )
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="tweetlake-bench-"))
    hour_dir = work / "landing" / "tweets" / HOUR.partition
    if not hour_dir.exists():
        written = write_hour(work, args.tweets, distinct_authors=args.distinct_authors)
        (work / "written.json").write_text(json.dumps(written.__dict__))
    written = json.loads((work / "written.json").read_text())
    mb = written["ndjson_bytes"] / 2**20
    contenders = {
        "tweetlake": (lambda: tweetlake(work), work / "tables", args.runs),
        "duckdb": (
            lambda: [sys.executable, "bench/duckdb_baseline.py", str(hour_dir), str(work / "duckdb")],
            work / "duckdb",
            args.runs,
        ),
        "pandas way": (
            lambda: [sys.executable, "bench/pandas_baseline.py", str(hour_dir), str(work / "pandas")],
            work / "pandas",
            args.pandas_runs,
        ),
    }
    # Rounds, not one contender after another: this machine's speed drifts by 10-20 % within
    # minutes, and a drift between two contenders' blocks of runs would show up as their ratio.
    runs_of: dict[str, list[Run]] = {name: [] for name, (_, _, runs) in contenders.items() if runs > 0}
    for round_ in range(max(runs for _, _, runs in contenders.values())):
        for name, (command, out, runs) in contenders.items():
            if round_ < runs:
                runs_of[name].append(measure(command(), out))
    results: dict[str, Run] = {}
    for name, measured in runs_of.items():
        results[name] = Run(
            statistics.median(r.seconds for r in measured),
            statistics.median(r.peak_mb for r in measured),
            statistics.median(r.output_mb for r in measured),
        )
        print(f"# {name}: {[round(r.seconds, 2) for r in measured]} s", file=sys.stderr)
    base = results["duckdb"].seconds
    print(
        f"\n{args.tweets:,} tweets, {mb:.0f} MB NDJSON ({written['ndjson_bytes'] / written['tweets']:.0f} B/tweet),"
        f" {written['files']} gzip files ({written['gzip_bytes'] / 2**20:.0f} MB); median of runs\n"
    )
    print("| contender | seconds | MB/s NDJSON | tweets/s | peak RSS | output | speed vs DuckDB |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, run in results.items():
        print(
            f"| {name} | {run.seconds:.2f} | {mb / run.seconds:.0f} | {args.tweets / run.seconds:,.0f} |"
            f" {run.peak_mb:.0f} MB | {run.output_mb:.0f} MB | x{base / run.seconds:.2f} |"
        )
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
