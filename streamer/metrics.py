"""Prometheus metrics of the daemon, on a registry of its own so tests can run many daemons.

Per-account series are labelled ``account`` = the username (``""`` for what belongs to no single
account), one label set everywhere so series join. Every series that an alert reads exists from
start: the last-success gauges start at the process start time.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector, ProcessCollector

from tweetlake import build_version

SUCCESS_KINDS = ("poll", "poll_round", "stream", "upload")


class Metrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        Gauge("tweetlake_build_info", "Always 1; the version in a label", ["version"], registry=r).labels(
            build_version()
        ).set(1)
        self.tweets_collected = Counter(
            "tweetlake_tweets_collected_total", "Tweets handed on by a source", ["account"], registry=r
        )
        self.tweets_landed = Counter(
            "tweetlake_tweets_landed_total", "Tweets confirmed in the landing zone", ["account"], registry=r
        )
        self.api_errors_landed = Counter(
            "tweetlake_api_partial_errors_total",
            "API 'errors' entries kept in the errors stream",
            ["account"],
            registry=r,
        )
        self.batches_spooled = Counter(
            "tweetlake_batches_spooled_total", "Batches fsynced to the spool", ["stream"], registry=r
        )
        self.batches_uploaded = Counter(
            "tweetlake_batches_uploaded_total", "Batches confirmed by the sink", ["stream"], registry=r
        )
        self.upload_failures = Counter(
            "tweetlake_upload_failures_total", "Failed upload attempts (retried)", registry=r
        )
        self.spool_failures = Counter(
            "tweetlake_spool_write_failures_total", "Failed spool writes (retried)", registry=r
        )
        self.upload_seconds = Histogram("tweetlake_upload_seconds", "Latency of one confirmed upload", registry=r)
        self.spool_bytes = Gauge("tweetlake_spool_bytes", "Bytes waiting in the local spool", registry=r)
        self.spool_files = Gauge("tweetlake_spool_files", "Files waiting in the local spool", registry=r)
        self.backpressure = Gauge("tweetlake_backpressure", "1 while collection is paused by a full spool", registry=r)
        self.api_requests = Counter(
            "tweetlake_api_requests_total", "X API requests by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.api_failures = Counter(
            "tweetlake_api_failures_total", "X API failures by kind (retried)", ["kind"], registry=r
        )
        self.rate_limited = Counter(
            "tweetlake_rate_limited_total", "429 answers from the X API", ["endpoint"], registry=r
        )
        self.rate_limit_wait = Counter(
            "tweetlake_rate_limit_wait_seconds_total", "Seconds spent waiting for rate limits", ["endpoint"], registry=r
        )
        self.account_errors = Counter(
            "tweetlake_account_errors_total",
            "Accounts skipped for a round (suspended, protected, not found)",
            ["account", "reason"],
            registry=r,
        )
        self.timeline_gaps = Counter(
            "tweetlake_timeline_gaps_total", "Timeline ranges the API could no longer serve", ["account"], registry=r
        )
        self.quarantined_files = Counter(
            "tweetlake_quarantined_files_total",
            "Damaged state or spool files moved to state.dir/quarantine",
            ["what"],
            registry=r,
        )
        self.landing_conflicts = Counter(
            "tweetlake_landing_conflicts_total",
            "Landing keys found holding other bytes (never overwritten; the batch was renamed)",
            registry=r,
        )
        self.stream_connected = Gauge(
            "tweetlake_stream_connected", "1 while the filtered stream is connected", registry=r
        )
        self.stream_idle = Gauge(
            "tweetlake_stream_idle_seconds", "Seconds since the stream sent data or a keep-alive", registry=r
        )
        self.stream_reconnects = Counter(
            "tweetlake_stream_reconnects_total", "Stream connections that ended, by reason", ["reason"], registry=r
        )
        self.stream_backoff = Gauge(
            "tweetlake_stream_backoff_seconds", "The wait before the next stream connect (0 when none)", registry=r
        )
        self.stream_lines = Counter(
            "tweetlake_stream_lines_total",
            "Stream lines by what they were (tweet, duplicate, not_followed, error, unreadable, bad_shape)",
            ["kind"],
            registry=r,
        )
        self.gap_recovered = Counter(
            "tweetlake_gap_tweets_recovered_total",
            "Tweets the stream missed, recovered from timelines after a (re)connect",
            ["account"],
            registry=r,
        )
        self.rule_changes = Counter(
            "tweetlake_stream_rule_changes_total", "Stream rules added, deleted or rejected", ["op"], registry=r
        )
        self.config_reloads = Counter(
            "tweetlake_config_reloads_total", "SIGHUP config reloads by result (ok, invalid)", ["result"], registry=r
        )
        self.spend = Counter(
            "tweetlake_x_api_spend_usd_total",
            "What X bills for what was read (see streamer.billing), by account and kind",
            ["account", "kind"],
            registry=r,
        )
        self.posts_read = Counter(
            "tweetlake_x_api_posts_read_total",
            "Posts billed (each id once per UTC day, as X counts them), by account",
            ["account"],
            registry=r,
        )
        self.budget_remaining = Gauge(
            "tweetlake_budget_remaining_usd", "cost.monthly_budget_usd minus this billing month's spend", registry=r
        )
        self.collection_paused = Gauge(
            "tweetlake_collection_paused",
            "1 while reading is paused, by reason (budget, x_usage_cap)",
            ["reason"],
            registry=r,
        )
        self.x_usage = Gauge("tweetlake_x_usage", "X's own usage figures (GET /2/usage/tweets)", ["field"], registry=r)
        self.health = Gauge(
            "tweetlake_health", "1 for the status /healthz answers now (ok, unhealthy, paused)", ["status"], registry=r
        )
        self.last_success = Gauge(
            "tweetlake_last_success_timestamp_seconds",
            "Unix time of the last success (the process start time until the first one)",
            ["what"],
            registry=r,
        )
        started = time.time()
        for what in SUCCESS_KINDS:
            self.last_success.labels(what).set(started)
        self._usernames: dict[str, str] = {}  # account id -> username, for labels

    def name_account(self, account_id: str, username: str) -> None:
        """Label the account's series by its username; the ones alerts read exist from here on (at 0),
        so an alert's ``increase()`` sees the first event too."""
        self._usernames[account_id] = username
        self.timeline_gaps.labels(username)

    def username(self, account_id: str) -> str:
        """The ``account`` label of an account id (the id itself until its name is known)."""
        return self._usernames.get(account_id, account_id)

    def mark_success(self, what: str) -> None:
        self.last_success.labels(what).set(time.time())
