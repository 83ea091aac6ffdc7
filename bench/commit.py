"""Iceberg commit latency: what publishing an hour costs, on the SQLite catalog and on Glue.

    .venv/bin/python bench/commit.py --tweets 100000 [--runs 3] [--work DIR]

One real-shaped hour (bench/data.py) is compacted by ``tweet-compactor run`` ``--runs`` times per
catalog: the first run creates the hour, each later one replaces it (the delete and the add of
one transaction, what a re-run does). The CLI's report carries each table's commit time
(``commit_seconds``); this prints the median commit per table, the median wall time of the run
and the commit's share of it. SQLite: a local lake with the default catalog file beside it.
Glue: landing and tables on moto's S3 with moto's Glue as the catalog, over HTTP (moto keeps
metadata in memory, so its latency is the client's and pyiceberg's share, not AWS's round trips).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.data import HOUR, write_hour  # noqa: E402


def compact(config: Path, env: dict[str, str]) -> tuple[float, dict[str, float]]:
    """One run of the CLI: wall seconds and the report's commit seconds per table."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "compactor", "run", "--config", str(config), "--hour", str(HOUR)],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    seconds = time.perf_counter() - started
    report = json.loads(done.stdout)
    assert report["valid"], report["problems"]
    return seconds, report["commit_seconds"]


def measure(name: str, config: Path, runs: int, env: dict[str, str]) -> str:
    results = [compact(config, env) for _ in range(runs)]
    first, replaced = results[0], results[1:] or results
    wall = statistics.median(r[0] for r in replaced)
    commits = {t: statistics.median(r[1][t] for r in replaced) for t in replaced[0][1]}
    total = sum(commits.values())
    print(f"# {name}: {[(round(r[0], 2), r[1]) for r in results]}", file=sys.stderr)
    return (
        f"| {name} | {first[1]['tweets']:.3f} / {first[1]['users']:.3f} | {commits['tweets']:.3f} / "
        f"{commits['users']:.3f} | {wall:.2f} | {100 * total / wall:.1f} % |"
    )


def glue_setup(work: Path) -> tuple[Path, dict[str, str], object]:
    """moto in server mode holding the landing files; a config whose tables use its Glue."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    env = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1"}
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="bench", aws_secret_access_key="bench"
    )
    s3.create_bucket(Bucket="bench")
    landing = work / "landing"
    for path in sorted(landing.rglob("*.gz")):
        s3.upload_file(str(path), "bench", f"landing/{path.relative_to(landing)}")
    config = work / "glue.toml"
    config.write_text(
        f'[landing]\nuri = "s3://bench/landing"\nendpoint_url = "{endpoint}"\n'
        '[tables]\nuri = "s3://bench/tables"\ncatalog = "glue"\nnamespace = "bench"\n'
        '[service]\nlog_level = "warning"\n'
    )
    return config, env, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tweets", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3, help="runs per catalog (the first creates the hour)")
    parser.add_argument("--work", type=Path, default=None, help="reuse the input here (bench/compaction.py --work)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="tweetlake-commit-"))
    if not (work / "landing").exists():
        write_hour(work, args.tweets)
    shutil.rmtree(work / "commit-tables", ignore_errors=True)  # the first run must create the hour
    local = work / "commit-sqlite.toml"
    local.write_text(
        f'[landing]\nuri = "file://{work}/landing"\n[tables]\nuri = "file://{work}/commit-tables"\n'
        '[service]\nlog_level = "warning"\n'
    )
    rows = [measure("SQLite (local lake)", local, args.runs + 1, {})]
    glue, env, server = glue_setup(work)
    try:
        rows.append(measure("Glue (moto, lake on moto S3)", glue, args.runs + 1, env))
    finally:
        server.stop()  # type: ignore[attr-defined]
    print(f"\n{args.tweets:,} tweets in one hour; commit seconds tweets / users; median of {args.runs} re-runs\n")
    print("| catalog | first commit | re-run commit | run wall s | commits / run |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
