"""One TOML file, every key overridable from the environment, validated up front.

The streamer and the compactor read the same file; each section is a frozen dataclass so a
typo'd key or a wrong type is reported as one line naming the key, before anything starts.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import tomllib
import typing
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tweetlake.landing import valid_writer
from tweetlake.location import Location

ENV_PREFIX = "TWEETLAKE_"


class ConfigError(Exception):
    """Raised with every problem found; each line of ``str()`` names one key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


@dataclass(frozen=True)
class XApiConfig:
    base_url: str = "https://api.x.com"
    timeout_s: float = 30.0
    max_retries: int = 8


@dataclass(frozen=True)
class CollectConfig:
    mode: str = "poll"
    users: tuple[str, ...] = ()
    poll_interval_s: float = 60.0  # uniform: each account's interval; adaptive: the average (the request budget)
    schedule: str = "adaptive"  # "adaptive": often where the tweets are (streamer.schedule); "uniform"
    poll_min_interval_s: float = 0.0  # adaptive bounds; 0: poll_interval_s / 4
    poll_max_interval_s: float = 0.0  # 0: poll_interval_s x 60
    poll_concurrency: int = 4  # requests in flight at once (the rate limiter still paces them)
    writer_id: str = field(default_factory=lambda: _safe_name(socket.gethostname()))
    history_max_tweets: int = 100  # how much of an account's past its first round reads (3200: all; 0: none)
    expansions: str = "full"  # "full": referenced tweets, mentions, media, places, polls; "lean": the author only
    max_history_pages: int = 0  # deprecated: history_max_tweets = 100 x this
    shard: str = "0/1"  # "k/n": this host follows the accounts whose hash mod n is k

    def interval_bounds(self) -> tuple[float, float]:
        """The adaptive schedule's shortest and longest interval."""
        return (
            self.poll_min_interval_s or self.poll_interval_s / 4,
            self.poll_max_interval_s or self.poll_interval_s * 60,
        )

    def my_users(self) -> tuple[str, ...]:
        """The configured accounts this shard follows (a stable hash of the lower-cased name)."""
        index, count = (int(part) for part in self.shard.split("/"))
        return tuple(u for u in self.users if zlib.crc32(u.lower().encode()) % count == index)


@dataclass(frozen=True)
class StreamConfig:
    """Stream mode only (``collect.mode = "stream"``)."""

    rule_tag: str = "tweetlake"  # the tag of tweetlake's own rules: no other rule is ever added or deleted
    rule_max_length: int = 512  # X's limit on one rule value for the app's tier
    stall_timeout_s: float = 25.0  # X sends a keep-alive every 20 s: this long without a byte is a stall


@dataclass(frozen=True)
class CostConfig:
    """X's pay-per-use rates (the developer console is the source of truth) and the monthly budget."""

    post_read_usd: float = 0.005
    user_read_usd: float = 0.010
    media_read_usd: float = 0.005
    monthly_budget_usd: float = 0.0  # 0: no budget
    on_budget: str = "pause"  # at 100 % of the budget: "pause" reading, or only "warn"
    monthly_post_cap: int = 2_000_000  # pay-per-use apps' post cap, until X's usage endpoint says otherwise
    usage_poll_s: float = 300.0  # how often X's own count (GET /2/usage/tweets) is read; 0: never
    usage_divergence_pct: float = 5.0  # ours and X's month-to-date post counts this far apart: warning


STREAM_MAX_AGE_S = 2.0  # batch.max_age_s in stream mode unless configured: tweets land in seconds


@dataclass(frozen=True)
class LandingConfig:
    uri: str = ""
    endpoint_url: str = ""
    region: str = "us-east-1"


@dataclass(frozen=True)
class BatchConfig:
    max_records: int = 5000
    max_bytes: int = 8_000_000
    max_age_s: float = 60.0


@dataclass(frozen=True)
class StateConfig:
    dir: str = "/var/lib/tweetlake"
    max_spool_bytes: int = 2_000_000_000


@dataclass(frozen=True)
class MetricsConfig:
    host: str = "127.0.0.1"
    port: int = 9464


@dataclass(frozen=True)
class HealthConfig:
    stale_after_s: float = 600.0  # failing (or stream down, or uploads failing) this long: unhealthy


@dataclass(frozen=True)
class ServiceConfig:
    shutdown_timeout_s: float = 30.0
    log_level: str = "info"


@dataclass(frozen=True)
class TablesConfig:
    uri: str = ""
    lookback_hours: int = 24  # cross-hour dedupe and late-file checks look this far around an hour
    max_rows_per_file: int = 1_000_000
    catalog: str = "sql"  # "sql" (embedded SQLite/Postgres) | "glue" (AWS Glue) | "rest" (e.g. S3 Tables)
    catalog_uri: str = ""  # sql: SQLAlchemy URL (default: see default_catalog_uri); rest: endpoint URL
    namespace: str = "tweetlake"
    warehouse: str = ""  # rest: the warehouse (the S3 table bucket ARN for S3 Tables)
    region: str = ""  # glue / rest signing region (default: landing.region)
    max_line_bytes: int = 4 * 1024 * 1024  # a landing line longer than this is rejected unread
    lease_s: float = 1800.0  # one run holds an hour this long at most (renewed while it works)
    workers: int = 0  # parallel readers; 0 = one per CPU, at most 4
    snapshot_retention_hours: int = 168  # maintenance expires older snapshots
    orphan_age_hours: int = 24  # maintenance deletes unreferenced files older than this

    def default_catalog_uri(self) -> str:
        """The SQL catalog when none is configured: beside a local lake, else on this host's disk."""
        if self.uri.startswith("file://"):
            return f"sqlite:///{Location.parse(self.uri).key('_catalog.db')}"
        return "sqlite:////var/lib/tweetlake-compactor/catalog.db"


@dataclass(frozen=True)
class Config:
    x_api: XApiConfig = field(default_factory=XApiConfig)
    collect: CollectConfig = field(default_factory=CollectConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    cost: CostConfig = field(default_factory=CostConfig)
    landing: LandingConfig = field(default_factory=LandingConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    state: StateConfig = field(default_factory=StateConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    tables: TablesConfig = field(default_factory=TablesConfig)
    # Not sections: one line per deprecated key the file used (the key still works; CLIs warn),
    # and one per key the environment set, with its effective value (CLIs report both).
    deprecations: tuple[str, ...] = ()
    overrides: tuple[str, ...] = ()


def _safe_name(value: str) -> str:
    """A host name made fit for landed file names (ASCII letters, digits, '-', '_')."""
    cleaned = "".join(c if (c.isascii() and c.isalnum()) or c in "-_" else "-" for c in value)
    return cleaned.strip("-") or "streamer"


def _coerce(key: str, raw: Any, hint: Any, from_env: bool) -> Any:
    """Convert one value to the field's type, raising ValueError with a readable reason."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if from_env and isinstance(raw, str):
            raw = (
                json.loads(raw)
                if raw.strip().startswith("[")
                else [part.strip() for part in raw.split(",") if part.strip()]
            )
        if not isinstance(raw, list | tuple) or not all(isinstance(v, str) for v in raw):
            raise ValueError("must be a list of strings")
        return tuple(raw)
    if hint is bool:
        if from_env and isinstance(raw, str):
            if raw.lower() in {"1", "true", "yes", "on"}:
                return True
            if raw.lower() in {"0", "false", "no", "off"}:
                return False
        if not isinstance(raw, bool):
            raise ValueError("must be true or false")
        return raw
    if hint is int:
        if from_env and isinstance(raw, str):
            raw = int(raw.replace("_", ""))
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError("must be an integer")
        return raw
    if hint is float:
        if from_env and isinstance(raw, str):
            raw = float(raw)
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ValueError("must be a number")
        return float(raw)
    if hint is str:
        if not isinstance(raw, str):
            raise ValueError("must be a string")
        return raw
    raise ValueError(f"unsupported type {hint!r}")  # pragma: no cover - programming error


def _section_types() -> dict[str, type]:
    hints = typing.get_type_hints(Config)
    return {name: hint for name, hint in hints.items() if dataclasses.is_dataclass(hint)}


def _env_overrides(environ: Mapping[str, str]) -> dict[tuple[str, str], str]:
    found: dict[tuple[str, str], str] = {}
    for name, value in environ.items():
        if name.startswith(ENV_PREFIX) and "__" in name:
            section, _, key = name[len(ENV_PREFIX) :].partition("__")
            found[(section.lower(), key.lower())] = value
    return found


def build_config(data: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> Config:
    """Build and validate a Config from parsed TOML plus ``TWEETLAKE_SECTION__KEY`` overrides."""
    environ = os.environ if environ is None else environ
    problems: list[str] = []
    sections = _section_types()
    for name in data:
        if name not in sections:
            problems.append(f"{name}: unknown section (known: {', '.join(sections)})")
    overrides = _env_overrides(environ)
    for section, key in overrides:
        if section not in sections:
            problems.append(f"{ENV_PREFIX}{section.upper()}__{key.upper()}: unknown section '{section}'")
    built: dict[str, Any] = {}
    for section, cls in sections.items():
        raw_section = data.get(section, {})
        if not isinstance(raw_section, Mapping):
            problems.append(f"{section}: must be a table")
            continue
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        for key in raw_section:
            if key not in hints:
                problems.append(f"{section}.{key}: unknown key (known: {', '.join(hints)})")
        for key, hint in hints.items():
            env_value = overrides.get((section, key))
            if env_value is not None:
                raw, from_env = env_value, True
            elif key in raw_section:
                raw, from_env = raw_section[key], False
            else:
                continue
            try:
                values[key] = _coerce(f"{section}.{key}", raw, hint, from_env)
            except (ValueError, json.JSONDecodeError) as exc:
                source = f" (from {ENV_PREFIX}{section.upper()}__{key.upper()})" if from_env else ""
                problems.append(f"{section}.{key}: {exc}{source}")
        for section_key in (k for (s, k) in overrides if s == section):
            if section_key not in hints:
                problems.append(
                    f"{ENV_PREFIX}{section.upper()}__{section_key.upper()}: unknown key '{section}.{section_key}'"
                )
        built[section] = cls(**values)
    if problems:
        raise ConfigError(problems)
    config = _with_implied(Config(**built), data, overrides)
    config = dataclasses.replace(
        config, overrides=tuple(_describe_override(config, s, k) for s, k in sorted(overrides))
    )
    _validate(config, problems)
    if problems:
        raise ConfigError(problems)
    return config


_USERINFO = re.compile(r"(://[^/@:\s]*):[^/@\s]*@")


def _describe_override(config: Config, section: str, key: str) -> str:
    """``state.dir = '/x' (from TWEETLAKE_STATE__DIR)``, a URL's password masked."""
    value = _USERINFO.sub(r"\1***@", repr(getattr(getattr(config, section), key)))
    return f"{section}.{key} = {value} (from {ENV_PREFIX}{section.upper()}__{key.upper()})"


DEPRECATED = {("collect", "max_history_pages"): "use collect.history_max_tweets (100 tweets per page)"}


def _with_implied(config: Config, data: Mapping[str, Any], overrides: Mapping[tuple[str, str], str]) -> Config:
    """Defaults that depend on other keys: a deprecated key sets its successor (and is noted), and
    stream mode lands within seconds unless ``batch.max_age_s`` says otherwise."""
    used = tuple(
        f"{section}.{key} is deprecated: {advice}"
        for (section, key), advice in DEPRECATED.items()
        if _given(data, overrides, section, key)
    )
    config = dataclasses.replace(config, deprecations=used)
    if config.collect.mode == "stream" and not _given(data, overrides, "batch", "max_age_s"):
        config = dataclasses.replace(config, batch=dataclasses.replace(config.batch, max_age_s=STREAM_MAX_AGE_S))
    if config.collect.max_history_pages and not _given(data, overrides, "collect", "history_max_tweets"):
        collect_config = dataclasses.replace(
            config.collect, history_max_tweets=min(3200, 100 * config.collect.max_history_pages)
        )
        return dataclasses.replace(config, collect=collect_config)
    return config


def _given(data: Mapping[str, Any], overrides: Mapping[tuple[str, str], str], section: str, key: str) -> bool:
    return key in data.get(section, {}) or (section, key) in overrides


def _validate(config: Config, problems: list[str]) -> None:
    def positive(name: str, value: float) -> None:
        if value <= 0:
            problems.append(f"{name}: must be greater than 0 (got {value})")

    if not config.x_api.base_url.startswith(("http://", "https://")):
        problems.append(f"x_api.base_url: must start with http:// or https:// (got {config.x_api.base_url!r})")
    positive("x_api.timeout_s", config.x_api.timeout_s)
    if config.collect.mode not in MODES:
        problems.append(f"collect.mode: must be 'poll' or 'stream' (got {config.collect.mode!r})")
    if config.collect.mode == "stream" and config.collect.shard != "0/1":
        problems.append(
            f"collect.shard: stream mode needs '0/1' (got {config.collect.shard!r}; X allows one stream per app)"
        )
    tag = config.stream.rule_tag
    if not (0 < len(tag) <= 64 and tag.isascii() and tag.isprintable()):
        problems.append(f"stream.rule_tag: 1 to 64 printable ASCII characters (got {tag!r})")
    if not 64 <= config.stream.rule_max_length <= 4096:
        problems.append(f"stream.rule_max_length: 64 to 4096 (got {config.stream.rule_max_length})")
    positive("stream.stall_timeout_s", config.stream.stall_timeout_s)
    if config.collect.schedule not in ("adaptive", "uniform"):
        problems.append(f"collect.schedule: must be 'adaptive' or 'uniform' (got {config.collect.schedule!r})")
    low, high = config.collect.interval_bounds()
    if not 0 < low <= config.collect.poll_interval_s <= high:
        problems.append(
            "collect.poll_min_interval_s / poll_max_interval_s: "
            f"need 0 < min <= poll_interval_s <= max (got {low}, {high})"
        )
    if not 1 <= config.collect.poll_concurrency <= 32:
        problems.append(f"collect.poll_concurrency: 1 to 32 (got {config.collect.poll_concurrency})")
    if config.collect.expansions not in EXPANSION_SETS:
        problems.append(f"collect.expansions: must be 'full' or 'lean' (got {config.collect.expansions!r})")
    cost = config.cost
    for key in ("post_read_usd", "user_read_usd", "media_read_usd", "monthly_budget_usd", "usage_poll_s"):
        if getattr(cost, key) < 0:
            problems.append(f"cost.{key}: must be 0 or more (got {getattr(cost, key)})")
    if cost.on_budget not in ("pause", "warn"):
        problems.append(f"cost.on_budget: must be 'pause' or 'warn' (got {cost.on_budget!r})")
    positive("cost.monthly_post_cap", cost.monthly_post_cap)
    positive("cost.usage_divergence_pct", cost.usage_divergence_pct)
    for user in config.collect.users:
        if not user or not all(c.isalnum() or c == "_" for c in user) or len(user) > 15:
            problems.append(f"collect.users: {user!r} is not a valid X username")
    positive("collect.poll_interval_s", config.collect.poll_interval_s)
    if not valid_writer(config.collect.writer_id) or len(config.collect.writer_id) > 64:
        problems.append(
            f"collect.writer_id: 1 to 64 ASCII letters, digits, '-' and '_' (got {config.collect.writer_id!r})"
        )
    if not 0 <= config.collect.history_max_tweets <= 3200:
        problems.append(f"collect.history_max_tweets: 0 to 3200 (got {config.collect.history_max_tweets})")
    if not 0 <= config.collect.max_history_pages <= 32:
        problems.append(f"collect.max_history_pages: 0 to 32 (got {config.collect.max_history_pages})")
    index, _, count = config.collect.shard.partition("/")
    if not (index.isdigit() and count.isdigit() and 0 <= int(index) < int(count)):
        problems.append(f"collect.shard: must be 'k/n' with 0 <= k < n (got {config.collect.shard!r})")
    for name, uri in (("landing.uri", config.landing.uri), ("tables.uri", config.tables.uri)):
        if uri and not uri.startswith(("s3://", "file://")):
            problems.append(f"{name}: must start with s3:// or file:// (got {uri!r})")
        if uri.startswith("s3://") and not uri[5:].split("/", 1)[0]:
            problems.append(f"{name}: missing bucket name")
    landing_scheme, tables_scheme = config.landing.uri.partition("://")[0], config.tables.uri.partition("://")[0]
    if config.landing.uri and config.tables.uri and landing_scheme != tables_scheme:
        problems.append(
            f"tables.uri: must use the scheme of landing.uri ({landing_scheme}://): "
            "the compactor reads and writes through one filesystem"
        )
    if config.landing.endpoint_url and not config.landing.endpoint_url.startswith(("http://", "https://")):
        problems.append("landing.endpoint_url: must start with http:// or https://")
    positive("batch.max_records", config.batch.max_records)
    positive("batch.max_bytes", config.batch.max_bytes)
    positive("batch.max_age_s", config.batch.max_age_s)
    if not config.state.dir:
        problems.append("state.dir: must not be empty")
    if config.state.max_spool_bytes < config.batch.max_bytes:
        problems.append("state.max_spool_bytes: must be at least batch.max_bytes")
    if not 0 <= config.metrics.port <= 65535:
        problems.append(f"metrics.port: must be 0..65535 (got {config.metrics.port})")
    positive("health.stale_after_s", config.health.stale_after_s)
    positive("service.shutdown_timeout_s", config.service.shutdown_timeout_s)
    if config.service.log_level.lower() not in {"debug", "info", "warning", "error"}:
        problems.append("service.log_level: must be debug, info, warning or error")
    if config.tables.lookback_hours < 0:
        problems.append("tables.lookback_hours: must be 0 or more")
    positive("tables.max_rows_per_file", config.tables.max_rows_per_file)
    _validate_tables(config.tables, problems)


MODES = ("poll", "stream")
EXPANSION_SETS = ("full", "lean")
CATALOGS = ("sql", "glue", "rest")


def _validate_tables(tables: TablesConfig, problems: list[str]) -> None:
    if tables.catalog not in CATALOGS:
        problems.append(f"tables.catalog: must be one of {', '.join(CATALOGS)} (got {tables.catalog!r})")
    if tables.catalog == "sql" and tables.catalog_uri and "://" not in tables.catalog_uri:
        problems.append(
            f"tables.catalog_uri: must be a SQLAlchemy URL such as sqlite:////path (got {tables.catalog_uri!r})"
        )
    if tables.catalog == "sql" and tables.uri.startswith("s3://") and tables.catalog_uri.startswith("s3"):
        problems.append("tables.catalog_uri: a SQLite catalog cannot live in S3; use a local path, Glue or REST")
    if tables.catalog == "rest":
        for key in ("catalog_uri", "warehouse"):
            if not getattr(tables, key):
                problems.append(f'tables.{key}: required with catalog = "rest"')
        if tables.catalog_uri and not tables.catalog_uri.startswith(("http://", "https://")):
            problems.append("tables.catalog_uri: a REST catalog URL starts with http:// or https://")
    if not tables.namespace or not all(c.isascii() and (c.isalnum() or c == "_") for c in tables.namespace):
        problems.append(f"tables.namespace: ASCII letters, digits and '_' (got {tables.namespace!r})")
    if tables.max_line_bytes < 1024:
        problems.append("tables.max_line_bytes: must be at least 1024")
    if tables.lease_s < 60:
        problems.append("tables.lease_s: must be at least 60")
    if tables.workers < 0:
        problems.append("tables.workers: must be 0 (one per CPU, at most 4) or more")
    if tables.snapshot_retention_hours < 1 or tables.orphan_age_hours < 1:
        problems.append("tables.snapshot_retention_hours and tables.orphan_age_hours: must be at least 1")


def require(config: Config, *keys: str) -> None:
    """Fail like validation does when a key needed by one command is empty."""
    problems = []
    for dotted in keys:
        section, key = dotted.split(".")
        if not getattr(getattr(config, section), key):
            problems.append(f"{dotted}: required")
    if problems:
        raise ConfigError(problems)


# what a SIGHUP may change in a running daemon; every other key needs a restart
RELOADABLE = (
    "collect.users",
    "collect.poll_interval_s",
    "collect.history_max_tweets",
    "collect.schedule",
    "collect.poll_min_interval_s",
    "collect.poll_max_interval_s",
    "collect.poll_concurrency",
    "cost.post_read_usd",
    "cost.user_read_usd",
    "cost.media_read_usd",
    "cost.monthly_budget_usd",
    "cost.on_budget",
    "cost.monthly_post_cap",
    "cost.usage_divergence_pct",
)


def changed_keys(old: Config, new: Config) -> list[str]:
    """Dotted names of the keys whose values differ."""
    changed = []
    for section in _section_types():
        before, after = getattr(old, section), getattr(new, section)
        changed += [
            f"{section}.{f.name}"
            for f in dataclasses.fields(before)
            if getattr(before, f.name) != getattr(after, f.name)
        ]
    return changed


def with_runtime_keys(running: Config, new: Config) -> Config:
    """The running config with the ``RELOADABLE`` keys taken from ``new``."""
    config = running
    for dotted in RELOADABLE:
        section, key = dotted.split(".")
        value = getattr(getattr(new, section), key)
        config = dataclasses.replace(config, **{section: dataclasses.replace(getattr(config, section), **{key: value})})
    return config


def load_config(path: str | Path, environ: Mapping[str, str] | None = None) -> Config:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError([f"config: file not found: {path}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"config: {path} is not valid TOML: {exc}"]) from None
    return build_config(data, environ)


def replace(config: Config, **sections: Any) -> Config:
    """Return a copy with whole sections swapped (tests and the demo use this)."""
    return dataclasses.replace(config, **sections)


def load_streamer_config(path: str | Path) -> Config:
    """The daemon's config: valid, and with the keys the daemon cannot run without."""
    config = load_config(path)
    require(config, "landing.uri", "collect.users")
    return config
