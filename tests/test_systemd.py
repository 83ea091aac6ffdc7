"""systemd units pass `systemd-analyze verify`; the streamer's sandbox rates OK or better."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import REPO

UNITS = sorted([*(REPO / "systemd").glob("*.service"), *(REPO / "systemd").glob("*.target")])


def _render(unit: Path, tmp_path: Path) -> Path:
    """Point /opt/tweetlake/.venv at this checkout's venv: verify insists ExecStart exists."""
    venv = Path(shutil.which("python", path=str(REPO / ".venv" / "bin")) or "").parent.parent
    text = unit.read_text().replace("/opt/tweetlake/.venv", str(venv))
    out = tmp_path / unit.name
    out.write_text(text)
    return out


def test_there_are_units_for_the_streamer_and_airflow():
    names = {u.name for u in UNITS}
    assert "tweet-streamer.service" in names
    assert {f"airflow-{s}.service" for s in ("api-server", "scheduler", "dag-processor", "triggerer")} <= names


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_verifies(unit, tmp_path):
    rendered = _render(unit, tmp_path)
    result = subprocess.run(["systemd-analyze", "verify", str(rendered)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    problems = [line for line in result.stderr.splitlines() if "Unknown key" in line or "Invalid" in line]
    assert not problems, problems


def test_streamer_sandbox_scores_ok_or_better(tmp_path):
    rendered = _render(REPO / "systemd" / "tweet-streamer.service", tmp_path)
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(rendered)], capture_output=True, text=True, timeout=60
    )
    match = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", result.stdout + result.stderr)
    assert match, result.stdout[-2000:]
    assert float(match.group(1)) <= 1.1 and match.group(2) in {"PERFECT", "SAFE", "OK"}


def test_streamer_unit_has_the_operational_contract():
    text = (REPO / "systemd" / "tweet-streamer.service").read_text()
    for key in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "StateDirectory=tweetlake",
        "LoadCredential=x:/etc/tweetlake/credentials",
        "PrivateMounts=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
    ):
        assert key in text, key


def test_the_token_reaches_the_daemon_as_a_credential_never_through_the_environment():
    """``LoadCredential=x:DIR`` names each file F of DIR ``x_F``: the names streamer.credentials reads."""
    from streamer.credentials import BEARER, USER_CONTEXT

    text = (REPO / "systemd" / "tweet-streamer.service").read_text()
    assert "EnvironmentFile=" not in text and "X_BEARER_TOKEN=" not in text
    (prefix,) = re.findall(r"^LoadCredential=(\w+):", text, re.M)
    files = ("bearer_token", "consumer_key", "consumer_secret", "access_token", "access_token_secret")
    assert {f"{prefix}_{f}" for f in files} == {name.lower() for name in (BEARER, *USER_CONTEXT)}


def test_grafana_dashboard_only_uses_metrics_the_daemon_exports():
    import json

    from streamer.metrics import Metrics

    exported = set()
    for collector in Metrics().registry.collect():
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(collector.type, ("",))
        exported.update(collector.name + suffix for suffix in suffixes)
    dashboard = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    used = {
        m
        for panel in dashboard["panels"]
        for t in panel["targets"]
        for m in re.findall(r"tweetlake_[a-z_]+", t["expr"])
    }
    assert used and used <= exported, used - exported


MDWE_WRAPPER = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit("PR_SET_MDWE failed: errno %d" % ctypes.get_errno())
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""
MDWE_PROBE = """
import ctypes, mmap
libc = ctypes.CDLL(None)
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC)
    print("wx-allowed", libc.prctl(66, 0, 0, 0, 0))
except PermissionError:
    print("wx-refused", libc.prctl(66, 0, 0, 0, 0))
"""


def test_daemon_runs_under_memory_deny_write_execute(tmp_path, sim):
    """The unit sets MemoryDenyWriteExecute=yes; the kernel's PR_SET_MDWE enforces the same W^X rule."""
    import json
    import os
    import signal
    import sys
    import time

    from tests.helpers import SECRET, landed_lines_local, write_config

    config = write_config(
        tmp_path / "c.toml", base_url=sim.url, landing_uri=f"file://{tmp_path}/lake", state_dir=tmp_path / "state"
    )
    log = open(tmp_path / "out.log", "wb")  # noqa: SIM115
    # the wrapper's W^X rule survives execve: a probe exec'd the same way is refused a W+X mapping
    probe = subprocess.run(
        [sys.executable, "-c", MDWE_WRAPPER, "-c", MDWE_PROBE], capture_output=True, text=True, timeout=30
    )
    assert probe.stdout.split() == ["wx-refused", "1"], probe.stdout + probe.stderr
    proc = subprocess.Popen(
        [sys.executable, "-c", MDWE_WRAPPER, "-m", "streamer", "run", "--config", str(config)],
        cwd=REPO,
        env={**os.environ, "X_BEARER_TOKEN": SECRET},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.time() + 30
        while time.time() < deadline and len(landed_lines_local(tmp_path / "lake")) < 120:
            assert proc.poll() is None, (tmp_path / "out.log").read_text()[-2000:]
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        log.close()
    events = [json.loads(line)["event"] for line in (tmp_path / "out.log").read_text().splitlines()]
    assert "batch_uploaded" in events and events[-1] == "stopped"
    assert len(landed_lines_local(tmp_path / "lake")) == 120
