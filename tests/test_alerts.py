"""The shipped Prometheus alert rules, evaluated against what a real daemon's /metrics says."""

from __future__ import annotations

import json
import operator
import re
import time

import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import (
    REPO,
    Daemon,
    all_generated,
    free_port,
    sim_config,
    sim_post,
    wait_landed_s3,
    wait_until,
)

RULES = yaml.safe_load((REPO / "deploy" / "prometheus-alerts.yml").read_text())["groups"][0]["rules"]
OPS = {"==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt, ">=": operator.ge}
CONDITION = re.compile(
    r"(?P<time>time\(\) - )?(?P<increase>increase\()?(?P<name>[a-z_]+)(?:\{(?P<labels>[^}]*)\})?"
    r"(?:\[\d+[smh]\]\))? (?P<op>==|!=|>=|>|<) (?P<number>[\d.]+)"
)
Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(daemon: Daemon) -> Series:
    status, text = daemon.get("/metrics")
    assert status == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def settled(daemon: Daemon, timeout: float = 30.0) -> Series:
    """A scrape taken once everything read is landed (the spool empty in that same scrape)."""
    deadline = time.time() + timeout
    while (series := scrape(daemon))[("tweetlake_spool_files", frozenset())] != 0:
        assert time.time() < deadline, "what was read never landed"
        time.sleep(0.2)
    return series


def _select(series: Series, name: str, labels: str | None) -> dict[frozenset[tuple[str, str]], float]:
    wanted = set(re.findall(r'(\w+)="([^"]*)"', labels or ""))
    return {key: value for (n, key), value in series.items() if n == name and wanted <= key}


def fires(expr: str, now: Series, at: float, before: Series | None = None) -> bool:
    """Whether ``expr`` holds at time ``at`` for the scrape ``now``: the subset the rule file uses,
    conditions joined by ``and``, each ``[time() - ]SELECTOR OP N`` or ``increase(SELECTOR[d]) OP N``
    (``before``: the scrape the window starts with)."""
    for condition in expr.split(" and "):
        m = CONDITION.fullmatch(condition.strip())
        if m is None:
            raise ValueError(f"not in the evaluated subset: {condition!r}")
        values = _select(now, m["name"], m["labels"])
        if m["increase"]:
            start = _select(before or {}, m["name"], m["labels"])
            values = {key: value - start.get(key, 0.0) for key, value in values.items()}
        if m["time"]:
            values = {key: at - value for key, value in values.items()}
        if not any(OPS[m["op"]](value, float(m["number"])) for value in values.values()):
            return False
    return True


def firing(now: Series, at: float, before: Series | None = None) -> set[str]:
    return {rule["alert"] for rule in RULES if fires(rule["expr"], now, at, before)}


def test_every_rule_is_complete_and_in_the_evaluated_subset():
    for rule in RULES:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"} and rule["annotations"]["summary"]
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "0s"))
        fires(rule["expr"], {}, 0.0)  # raises for an expression this test cannot judge


def test_the_rules_name_only_metrics_the_daemon_exports(tmp_path, sim, s3_endpoint, bucket):
    config = sim_config(tmp_path, sim, bucket, s3_endpoint)
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    daemon.wait_event("poll_done")  # the accounts are resolved: their series exist
    exported = {name for name, _ in scrape(daemon)}
    daemon.terminate()
    used = {m["name"] for rule in RULES for c in rule["expr"].split(" and ") if (m := CONDITION.fullmatch(c.strip()))}
    assert used - exported == set()


def test_a_daemon_restarted_during_an_s3_outage_fires_unhealthy_and_uploads_stalled(tmp_path, sim, bucket):
    # nothing listens at the S3 endpoint: no upload ever succeeds
    config = sim_config(
        tmp_path,
        sim,
        bucket,
        f"http://127.0.0.1:{free_port()}",
        extra="[health]\nstale_after_s = 2\n",
        shutdown_timeout_s=1,
    )
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    wait_until(lambda: daemon.get("/healthz")[0] == 503, timeout=30, message="unhealthy while uploads fail")
    series, now = scrape(daemon), time.time()
    daemon.terminate()
    assert firing(series, now) == {"TweetlakeUnhealthy"}
    assert firing(series, now + 901) == {"TweetlakeUnhealthy", "TweetlakeUploadsStalled"}


def test_a_healthy_daemon_fires_nothing_even_when_quiet_for_long(tmp_path, sim, s3_endpoint, bucket):
    config = sim_config(tmp_path, sim, bucket, s3_endpoint)
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    daemon.metrics_port()  # serving
    before = scrape(daemon)
    wait_landed_s3(s3_endpoint, bucket, "lake/landing", all_generated(sim.url))
    series, now = scrape(daemon), time.time()
    daemon.terminate()
    assert firing(series, now + 3600, before) == set()


def test_a_spent_budget_fires_paused_and_not_unhealthy(tmp_path, sim, s3_endpoint, bucket):
    config = sim_config(tmp_path, sim, bucket, s3_endpoint, extra="[cost]\nmonthly_budget_usd = 0.3\n")
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    daemon.wait_event("collection_paused")
    wait_until(lambda: json.loads(daemon.get("/healthz")[1])["status"] == "paused", timeout=10, message="paused")
    series = settled(daemon)
    now = time.time()
    daemon.terminate()
    assert firing(series, now + 3600) == {"TweetlakePaused"}


def test_a_timeline_gap_fires_timeline_gaps(tmp_path, sim, s3_endpoint, bucket):
    config = sim_config(tmp_path, sim, bucket, s3_endpoint, users=("NASA",))
    daemon = Daemon(config, tmp_path / "daemon.log").start()
    daemon.wait_event("poll_done")
    assert daemon.terminate() == 0
    # more than a timeline serves (3,200) posted while nothing polls
    sim_post(sim.url, "/_sim/generate", {"count": 3300, "username": "NASA"})
    daemon = Daemon(config, tmp_path / "restarted.log").start()
    daemon.wait_event("timeline_gap")
    series, now = scrape(daemon), time.time()
    daemon.terminate()
    assert firing(series, now, before=None) == {"TweetlakeTimelineGaps"}  # the counter began at 0 at start
