"""One TOML file, every key overridable from the environment, validated up front.

The streamer and the compactor read the same file; each section is a frozen dataclass so a
typo'd key or a wrong type is reported as one line naming the key, before anything starts.
"""

from __future__ import annotations

import dataclasses
import json
import os
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
    poll_interval_s: float = 60.0
    writer_id: str = field(default_factory=lambda: _safe_name(socket.gethostname()))
    max_history_pages: int = 32
    shard: str = "0/1"  # "k/n": this host follows the accounts whose hash mod n is k

    def my_users(self) -> tuple[str, ...]:
        """The configured accounts this shard follows (a stable hash of the lower-cased name)."""
        index, count = (int(part) for part in self.shard.split("/"))
        return tuple(u for u in self.users if zlib.crc32(u.lower().encode()) % count == index)


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
    workers: int = 0  # parallel readers; 0 = one per CPU
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
    landing: LandingConfig = field(default_factory=LandingConfig)
    batch: BatchConfig = field(default_factory=BatchConfig)
    state: StateConfig = field(default_factory=StateConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    tables: TablesConfig = field(default_factory=TablesConfig)


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
    return {name: hints[name] for name in hints}


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
    config = Config(**built)
    _validate(config, problems)
    if problems:
        raise ConfigError(problems)
    return config


def _validate(config: Config, problems: list[str]) -> None:
    def positive(name: str, value: float) -> None:
        if value <= 0:
            problems.append(f"{name}: must be greater than 0 (got {value})")

    if not config.x_api.base_url.startswith(("http://", "https://")):
        problems.append(f"x_api.base_url: must start with http:// or https:// (got {config.x_api.base_url!r})")
    positive("x_api.timeout_s", config.x_api.timeout_s)
    if config.collect.mode != "poll":
        problems.append(f"collect.mode: must be 'poll' (got {config.collect.mode!r}; 'stream' is not built yet)")
    for user in config.collect.users:
        if not user or not all(c.isalnum() or c == "_" for c in user) or len(user) > 15:
            problems.append(f"collect.users: {user!r} is not a valid X username")
    positive("collect.poll_interval_s", config.collect.poll_interval_s)
    if not valid_writer(config.collect.writer_id) or len(config.collect.writer_id) > 64:
        problems.append(
            f"collect.writer_id: 1 to 64 ASCII letters, digits, '-' and '_' (got {config.collect.writer_id!r})"
        )
    positive("collect.max_history_pages", config.collect.max_history_pages)
    index, _, count = config.collect.shard.partition("/")
    if not (index.isdigit() and count.isdigit() and 0 <= int(index) < int(count)):
        problems.append(f"collect.shard: must be 'k/n' with 0 <= k < n (got {config.collect.shard!r})")
    for name, uri in (("landing.uri", config.landing.uri), ("tables.uri", config.tables.uri)):
        if uri and not uri.startswith(("s3://", "file://")):
            problems.append(f"{name}: must start with s3:// or file:// (got {uri!r})")
        if uri.startswith("s3://") and not uri[5:].split("/", 1)[0]:
            problems.append(f"{name}: missing bucket name")
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
        problems.append("tables.workers: must be 0 (one per CPU) or more")
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
