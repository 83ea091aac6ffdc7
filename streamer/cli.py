"""``tweet-streamer run|check-config --config FILE``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from streamer.credentials import Credentials, CredentialsError, load_credentials
from tweetlake import logs
from tweetlake.config import Config, ConfigError, load_streamer_config

EXIT_CONFIG = 2  # the configuration (or the state dir another daemon holds) must change
EXIT_RUNTIME = 1  # start-up failed for a reason outside the config (port in use, disk)


def check_mode(config: Config, credentials: Credentials) -> None:
    """The filtered stream takes only the app's bearer token (OAuth 1.0a user context is refused)."""
    if config.collect.mode == "stream" and credentials.bearer_token is None:
        raise ConfigError(
            [
                "collect.mode: stream mode needs an app-only bearer token (X_BEARER_TOKEN); "
                "OAuth 1.0a user credentials cannot open the filtered stream"
            ]
        )


async def _estimate_online(config: Config, credentials: Credentials) -> int:
    """Look the accounts up and print what their first read and a month of collecting cost."""
    from datetime import UTC, datetime

    from streamer.answers import BadShape, user_lookup
    from streamer.estimate import estimate, report
    from streamer.health import Health
    from streamer.metrics import Metrics
    from streamer.xclient import ApiError, XClient

    client = XClient(
        config.x_api.base_url, credentials, Metrics(), Health(60), timeout_s=config.x_api.timeout_s, max_retries=2
    )
    users = config.collect.my_users()
    profiles = []
    try:
        for start in range(0, len(users), 100):
            lookup = user_lookup(await client.lookup_users(list(users[start : start + 100])))
            profiles += lookup.users
            for error in lookup.errors:
                print(f"tweet-streamer: warning: {error.get('value')}: {error.get('detail')}", file=sys.stderr)
    except (ApiError, BadShape) as exc:
        print(f"tweet-streamer: cannot look the accounts up: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    finally:
        await client.close()
    now = datetime.now(UTC)
    collect = config.collect
    estimates = [
        estimate(p, config.cost, history_max_tweets=collect.history_max_tweets, expansions=collect.expansions, now=now)
        for p in profiles
    ]
    lookup_usd = len(profiles) * config.cost.user_read_usd
    print("\n".join(report(estimates, config.cost, lookup_usd=lookup_usd, expansions=collect.expansions)))
    return 0


def _stop_before_start(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    # a stop asked for before the service can flush anything has nothing to flush: exit 0 at once
    signal.signal(signal.SIGTERM, _stop_before_start)
    parser = argparse.ArgumentParser(prog="tweet-streamer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("run", "run in the foreground until SIGTERM"),
        ("check-config", "validate the config and credentials, then exit"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--config", required=True, help="TOML config file")
        cmd.add_argument("--log-format", choices=("auto", "json", "console"), default="auto")
        if name == "check-config":
            cmd.add_argument(
                "--online",
                action="store_true",
                help="also look the accounts up (one user read each) and estimate what collecting them costs",
            )
    args = parser.parse_args(argv)
    try:
        config = load_streamer_config(args.config)
        credentials = load_credentials()
        check_mode(config, credentials)
    except (ConfigError, CredentialsError) as exc:
        for line in str(exc).splitlines():
            print(f"tweet-streamer: config error: {line}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        for line in config.deprecations:
            print(f"tweet-streamer: warning: {line}", file=sys.stderr)
        print(
            f"config ok: {len(config.collect.users)} accounts -> {config.landing.uri} "
            f"(state {config.state.dir}, {'user' if credentials.user_context else 'app'} auth)"
        )
        return asyncio.run(_estimate_online(config, credentials)) if args.online else 0
    logs.configure(config.service.log_level, None if args.log_format == "auto" else args.log_format == "json")
    log = logs.get_logger("streamer.cli")
    for line in config.deprecations:
        log.warning("config_deprecated", detail=line)
    from streamer.service import Service, StartupError  # imported late: check-config stays fast
    from streamer.state import StateLocked

    async def _run() -> int:
        return await Service(config, credentials, config_path=args.config).run()

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
