"""The README's run command, end to end: simulator -> streamer -> landing -> Airflow -> tables."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.helpers import REPO


@pytest.mark.parametrize(("lake", "mode"), [("file", "stream"), ("s3", "poll")])
def test_demo_runs_the_whole_chain_and_cleans_up(tmp_path, lake, mode, request):
    env = {**os.environ, "TWEETLAKE_DEMO_DIR": str(tmp_path / "demo"), "TWEETLAKE_DEMO_MODE": mode}
    if lake == "s3":
        env["TWEETLAKE_DEMO_S3_ENDPOINT"] = request.getfixturevalue("s3_endpoint")
        env["TWEETLAKE_DEMO_BUCKET"] = f"demo-{tmp_path.name[-12:].lower().replace('_', '-')}"
    for key in ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__UNIT_TEST_MODE"):
        env.pop(key, None)
    result = subprocess.run(
        [sys.executable, "-m", "demo"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    match = re.search(
        r"landed (\d+) unique tweets in (\d+) lines; simulator served (\d+) -> missing 0, "
        r"duplicated 0",
        out,
    )
    assert match, out[-3000:]
    landed, lines, served = map(int, match.groups())
    assert landed == lines == served > 0
    rows = int(re.search(r"tweets rows\s+(\d+)", out).group(1))
    assert rows == landed
    assert "tweetlake demo summary" in out and "query it" in out
    vias = dict(re.findall(r"^    (\S+:\S+)\s+(\d+) tweets\s+median", out, re.M))
    if mode == "stream":
        assert set(vias) == {"stream:filtered", "backfill:users_tweets"}, out[-3000:]
    else:
        assert set(vias) == {"poll:users_tweets"}, out[-3000:]
    assert sum(map(int, vias.values())) == landed
    scheme = "s3://" if lake == "s3" else "file://"
    assert f"landing zone   {scheme}" in out and f"tables         {scheme}" in out
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path / "demo")], capture_output=True, text=True)
    assert leftover.stdout.strip() == "", "the demo left processes running"
