"""``tweet-compactor run --config FILE --hour 2026-11-25T10``: compact, validate, publish one hour."""

from __future__ import annotations

import argparse
import json
import sys

from compactor.compact import compact_hour, validate, write_manifest
from compactor.storage import Storage
from tweetlake import logs
from tweetlake.config import ConfigError, load_config, require
from tweetlake.landing import Hour

EXIT_CONFIG = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tweet-compactor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="compact one collection hour")
    run.add_argument("--config", required=True)
    run.add_argument("--hour", required=True, help="UTC hour, e.g. 2026-11-25T10")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        require(config, "landing.uri", "tables.uri")
        hour = Hour.parse(args.hour)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            print(f"tweet-compactor: config error: {line}", file=sys.stderr)
        return EXIT_CONFIG
    except ValueError:
        print(f"tweet-compactor: config error: --hour: not an hour like 2026-11-25T10 ({args.hour!r})", file=sys.stderr)
        return EXIT_CONFIG
    logs.configure(config.service.log_level, json_output=True, stream=sys.stderr)
    storage = Storage.from_config(config)
    report = compact_hour(
        storage, hour, lookback_hours=config.tables.lookback_hours, max_rows_per_file=config.tables.max_rows_per_file
    )
    problems = validate(storage, report)
    write_manifest(storage, report, valid=not problems)
    print(json.dumps({**report.to_dict(), "problems": problems}, indent=1))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
