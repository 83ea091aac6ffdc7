"""The pandas baseline, the way the seed did it: json.loads per line, pandas.json_normalize, to_csv.

    python bench/pandas_baseline.py LANDING_TWEETS_HOUR_DIR OUT_DIR

One untyped, flattened frame per landing file (the whole hour at once would not fit in memory at
a million tweets), duplicates dropped by id across the hour, written as one CSV and one Parquet
part per landing file. No users table, no validation, no rejections.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
import time
from pathlib import Path

import pandas as pd


def main(source: str, out: str) -> dict[str, float]:
    shutil.rmtree(out, ignore_errors=True)
    Path(out).mkdir(parents=True)
    started = time.perf_counter()
    seen: set[str] = set()
    rows = 0
    for number, path in enumerate(sorted(Path(source).glob("*.gz"))):
        records = [json.loads(line) for line in gzip.decompress(path.read_bytes()).splitlines()]
        frame = pd.json_normalize(records)
        frame = frame[~frame["tweet.id"].isin(seen)].drop_duplicates("tweet.id")
        seen.update(frame["tweet.id"])
        frame.to_csv(f"{out}/part-{number:05d}.csv", index=False)
        frame.astype(str).to_parquet(f"{out}/part-{number:05d}.parquet", compression="zstd", index=False)
        rows += len(frame)
    return {"total": round(time.perf_counter() - started, 3), "rows": rows}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])))
