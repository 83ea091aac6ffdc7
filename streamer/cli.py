"""``tweet-streamer run|check-config --config FILE``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from streamer.credentials import CredentialsError, load_credentials
from tweetlake import logs
from tweetlake.config import Config, ConfigError, load_config, require

EXIT_CONFIG = 2  # the configuration (or the state dir another daemon holds) must change
EXIT_RUNTIME = 1  # start-up failed for a reason outside the config (port in use, disk)


def _load(path: str) -> Config:
    config = load_config(path)
    require(config, "landing.uri", "collect.users")
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tweet-streamer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("run", "run in the foreground until SIGTERM"),
        ("check-config", "validate the config and credentials, then exit"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--config", required=True, help="TOML config file")
        cmd.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")
    args = parser.parse_args(argv)
    try:
        config = _load(args.config)
        credentials = load_credentials()
    except (ConfigError, CredentialsError) as exc:
        for line in str(exc).splitlines():
            print(f"tweet-streamer: config error: {line}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        print(
            f"config ok: {len(config.collect.users)} accounts -> {config.landing.uri} "
            f"(state {config.state.dir}, {'user' if credentials.user_context else 'app'} auth)"
        )
        return 0
    logs.configure(config.service.log_level, None if args.log_format == "auto" else args.log_format == "json")
    from streamer.service import Service, StartupError  # imported late: check-config stays fast
    from streamer.state import StateLocked

    async def _run() -> int:
        return await Service(config, credentials).run()

    try:
        return asyncio.run(_run())
    except StateLocked as exc:
        print(f"tweet-streamer: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except StartupError as exc:
        print(f"tweet-streamer: cannot start: {exc}", file=sys.stderr)
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
