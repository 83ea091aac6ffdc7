"""``tweet-streamer run|check-config --config FILE``."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from streamer.credentials import Credentials, CredentialsError, load_credentials
from tweetlake import build_version, logs
from tweetlake.config import Config, ConfigError, load_streamer_config

EXIT_CONFIG = 2  # the configuration (or the state dir another daemon holds) must change
EXIT_RUNTIME = 1  # start-up failed for a reason outside the config (port in use, disk)
EPILOG = """credentials come from the environment (X_BEARER_TOKEN, or X_CONSUMER_KEY/SECRET and
X_ACCESS_TOKEN/SECRET) or systemd's $CREDENTIALS_DIRECTORY, never from the TOML file.

examples:
  tweet-streamer check-config --config /etc/tweetlake/tweetlake.toml --online
  tweet-streamer run --config /etc/tweetlake/tweetlake.toml
  TWEETLAKE_COLLECT__MODE=poll tweet-streamer run --config tweetlake.toml --log-format console

exit codes: 0 stopped cleanly (or the config is fine); 1 start-up failed for a cause outside the
config (a port in use, a disk), or --online found a problem; 2 a bad config file, missing
credentials, or a state dir another daemon holds."""


def check_mode(config: Config, credentials: Credentials) -> None:
    """The filtered stream takes only the app's bearer token (OAuth 1.0a user context is refused)."""
    if config.collect.mode == "stream" and credentials.bearer_token is None:
        raise ConfigError(
            [
                "collect.mode: stream mode needs an app-only bearer token (X_BEARER_TOKEN); "
                "OAuth 1.0a user credentials cannot open the filtered stream"
            ]
        )


async def _check_online(config: Config, credentials: Credentials) -> int:
    from streamer.online import check_online, render

    logs.configure("WARNING", json_output=False, stream=sys.stderr)  # retries show as they happen
    findings, profiles = await check_online(config, credentials)
    print("\n".join(render(config, findings, profiles)))
    return EXIT_RUNTIME if any(f.status == "FAIL" for f in findings) else 0


def _stop_before_start(signum: int, frame: object) -> None:
    raise SystemExit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tweet-streamer",
        description="Follow X accounts (timeline polls or the filtered stream) and land every post once.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {build_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", help="one of:")
    for name, summary in (
        ("run", "collect in the foreground until SIGTERM (SIGHUP reloads the config file)"),
        ("check-config", "validate the config file and credentials, then exit"),
    ):
        cmd = sub.add_parser(name, help=summary, description=summary)
        cmd.add_argument("--config", required=True, metavar="FILE", help="the tweetlake TOML file")
        cmd.add_argument(
            "--log-format",
            choices=("auto", "json", "console"),
            default="auto",
            help="auto: JSON unless stdout is a terminal (default: auto)",
        )
        if name == "check-config":
            cmd.add_argument(
                "--online",
                action="store_true",
                help="also check the token, the accounts and the landing zone's write permission, and estimate "
                "what collecting costs (one user read per account); exit 1 on a problem found",
            )
    return parser


def main(argv: list[str] | None = None) -> int:
    # a stop asked for before the service can flush anything has nothing to flush: exit 0 at once
    signal.signal(signal.SIGTERM, _stop_before_start)
    args = build_parser().parse_args(argv)
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
        for line in config.overrides:
            print(f"tweet-streamer: note: {line}", file=sys.stderr)
        print(
            f"config ok: {len(config.collect.users)} accounts -> {config.landing.uri} "
            f"(state {config.state.dir}, {'user' if credentials.user_context else 'app'} auth)"
        )
        return asyncio.run(_check_online(config, credentials)) if args.online else 0
    logs.configure(config.service.log_level, None if args.log_format == "auto" else args.log_format == "json")
    log = logs.get_logger("streamer.cli")
    for line in config.deprecations:
        log.warning("config_deprecated", detail=line)
    for line in config.overrides:
        log.info("config_override", detail=line)
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
