"""DAG file parse time: what the dag-processor pays for tweetlake's DAG files (target < 0.2 s).

    .venv/bin/python bench/dag_parse.py [--runs 7]

Each parse runs in a fresh interpreter that has already imported ``airflow.sdk`` (as the
dag-processor has), so it counts only what the DAG file itself brings in. Baseline: a minimal
TaskFlow DAG file with one task, parsed the same way in the same run. Median of ``--runs``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASELINE = """
from datetime import datetime
from airflow.sdk import dag, task

@dag(schedule="@hourly", start_date=datetime(2026, 1, 1), catchup=False)
def baseline():
    @task
    def one() -> None:
        return None

    one()

baseline()
"""
PROBE = """
import time, runpy, sys
import airflow.sdk
started = time.perf_counter()
runpy.run_path(sys.argv[1])
print(time.perf_counter() - started)
"""


def parse_seconds(path: Path, runs: int) -> float:
    times = [
        float(
            subprocess.run(
                [sys.executable, "-c", PROBE, str(path)], cwd=REPO, capture_output=True, text=True, check=True
            ).stdout.split()[-1]
        )
        for _ in range(runs)
    ]
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        baseline = Path(tmp) / "baseline_dag.py"
        baseline.write_text(BASELINE)
        base = parse_seconds(baseline, args.runs)
    print(f"\nDAG file parse time, median of {args.runs} fresh interpreters (airflow.sdk already imported)\n")
    print("| DAG file | seconds | vs minimal DAG |")
    print("| --- | --- | --- |")
    print(f"| minimal TaskFlow DAG (baseline) | {base:.3f} | x1.00 |")
    for dag_file in sorted((REPO / "dags").glob("*.py")):
        seconds = parse_seconds(dag_file, args.runs)
        print(f"| dags/{dag_file.name} | {seconds:.3f} | x{seconds / base:.2f} |")


if __name__ == "__main__":
    main()
