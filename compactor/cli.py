"""tweet-compactor: compact collection hours of the landing zone into the tweetlake tables."""

from __future__ import annotations

import argparse
import gc
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from tweetlake import build_version, logs
from tweetlake.config import Config, ConfigError, load_config, require
from tweetlake.landing import Hour

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
_HOUR = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}(:00(:00)?)?(Z|[+-]\d{2}:\d{2})?")
EPILOG = """examples:
  tweet-compactor run --config /etc/tweetlake/tweetlake.toml --hour 2026-11-25T10
  tweet-compactor late --config /etc/tweetlake/tweetlake.toml --compact
  tweet-compactor maintain --config /etc/tweetlake/tweetlake.toml
  tweet-compactor migrate --config /etc/tweetlake/tweetlake.toml

exit codes: 0 done; 1 the work failed (an hour that failed its checks, held by another run, storage
errors); 2 a bad config file or argument."""


class UsageError(Exception):
    """A bad argument: one line naming it (exit 2)."""


def parse_hour(text: str, now: datetime | None = None) -> Hour:
    """A collection hour as ``YYYY-MM-DDTHH`` (UTC unless an offset is given); not in the future."""
    if not _HOUR.fullmatch(text.strip()):
        raise UsageError(f"--hour: {text!r} is not an hour like 2026-11-25T10 (a date alone is ambiguous)")
    hour = Hour.parse(text)
    current = Hour.of(now or datetime.now(UTC))
    if hour > current:
        raise UsageError(f"--hour: {hour} has not begun yet (it is {current} UTC now)")
    return hour


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tweet-compactor",
        description="Compact collection hours of the tweetlake landing zone into Iceberg tables and a CSV export.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {build_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of:")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=summary, description=summary)
        cmd.add_argument(
            "--config", required=True, metavar="FILE", help="the tweetlake TOML file ([landing], [tables])"
        )
        return cmd

    run = command("run", "compact one collection hour: stage, check, commit to the tables, export CSV")
    run.add_argument("--hour", required=True, metavar="HOUR", help="the UTC collection hour, e.g. 2026-11-25T10")
    late = command("late", "list hours whose landing files changed since they were compacted (late files)")
    late.add_argument(
        "--before", metavar="HOUR", help="look at the tables.lookback_hours before this hour (default: now)"
    )
    late.add_argument("--compact", action="store_true", help="compact every late hour found, oldest first")
    command("maintain", "expire old snapshots, remove orphan files and abandoned staging")
    command("migrate", "adopt hours of a lake written before the Iceberg tables (Hive-partitioned Parquet)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        require(config, "landing.uri", "tables.uri")
        if args.command == "run":
            args.hour = parse_hour(args.hour)
        elif args.command == "late" and args.before:
            args.before = parse_hour(args.before)
    except (ConfigError, UsageError) as exc:
        for line in str(exc).splitlines():
            print(f"tweet-compactor: {line}", file=sys.stderr)
        return EXIT_CONFIG
    logs.configure(config.service.log_level, json_output=True, stream=sys.stderr)
    try:
        result, code = _execute(args, config)
    except Exception as exc:  # one line; the traceback only at debug level
        logs.get_logger("compactor.cli").debug("command_failed", exc_info=exc)
        print(f"tweet-compactor: {args.command} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(result, indent=1, default=str))
    # Spare the interpreter's exit a collection over the whole heap (pyiceberg, pyarrow, duckdb:
    # ~0.4 s of a 12 s run); memory goes back to the OS at exit either way.
    gc.freeze()
    return code


def _execute(args: argparse.Namespace, config: Config) -> tuple[Any, int]:
    from compactor.compact import Options, compact_hour
    from compactor.lake import Lake

    lake = Lake.from_config(config)
    options = Options.from_config(config)
    if args.command == "run":
        report = compact_hour(lake, args.hour, options)
        return report.to_dict(), EXIT_OK if report.valid else EXIT_FAILED
    if args.command == "late":
        from compactor.late import late_hours

        hours = late_hours(lake.storage, args.before or Hour.of(datetime.now(UTC)), config.tables.lookback_hours)
        if not args.compact:
            return {"late_hours": [str(h) for h in hours]}, EXIT_OK
        reports = [compact_hour(lake, hour, options).to_dict() for hour in hours]
        return {"compacted": reports}, EXIT_OK if all(r["valid"] for r in reports) else EXIT_FAILED
    if args.command == "maintain":
        from compactor.maintenance import maintain

        report = maintain(
            lake,
            snapshot_retention=timedelta(hours=config.tables.snapshot_retention_hours),
            orphan_age=timedelta(hours=config.tables.orphan_age_hours),
        )
        return vars(report), EXIT_OK
    from compactor.migrate import legacy_hours, migrate_hour

    return {str(h): migrate_hour(lake, h, lease_s=options.lease_s) for h in legacy_hours(lake)}, EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
