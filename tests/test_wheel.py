"""The wheel ``make dist`` builds installs and runs: the install path docs/operations.md documents."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.helpers import HOUR, REPO, SECRET, timeline_lines
from tweetlake import build_version
from tweetlake.landing import landing_key

UV = REPO / ".bootstrap" / "bin" / "uv"


def _run(*args: object, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding only the wheel; its dependencies are seen from the test environment
    (the lock file already pins and tests them; what this checks is the wheel itself)."""
    root = tmp_path_factory.mktemp("wheel")
    built = _run(UV, "build", "--wheel", "--offline", "--out-dir", root / "dist", REPO)
    assert built.returncode == 0, built.stderr
    (wheel,) = (root / "dist").glob("tweetlake-*.whl")
    venv = root / "venv"
    assert _run(sys.executable, "-m", "venv", "--without-pip", venv).returncode == 0
    python = venv / "bin" / "python"
    installed = _run(UV, "pip", "install", "--offline", "--no-deps", "--python", python, wheel)
    assert installed.returncode == 0, installed.stderr
    site = _run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    (Path(site) / "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def test_the_installed_code_is_the_wheels_not_the_source_tree(installed):
    where = _run(installed / "bin" / "python", "-c", "import streamer; print(streamer.__file__)", cwd="/")
    assert where.stdout.startswith(str(installed)), where.stdout + where.stderr


@pytest.mark.parametrize("prog", ["tweet-streamer", "tweet-compactor", "x-simulator"])
def test_each_command_is_installed_and_knows_its_version(installed, prog):
    result = _run(installed / "bin" / prog, "--version", cwd="/")
    assert (result.returncode, result.stdout) == (0, f"{prog} {build_version()}\n")


def test_the_systemd_units_the_dags_and_the_deploy_files_ship_with_it(installed):
    share = installed / "share" / "tweetlake"
    assert (share / "systemd" / "tweet-streamer.service").is_file()
    assert (share / "dags" / "tweetlake_compaction.py").is_file()
    assert (share / "deploy" / "setup-host.sh").is_file()
    assert (share / "deploy" / "tweetlake.example.toml").is_file()


def test_the_installed_commands_check_a_config_and_compact_an_hour(installed, tmp_path):
    config = tmp_path / "tweetlake.toml"
    config.write_text(
        f'[collect]\nusers = ["NASA"]\n[landing]\nuri = "file://{tmp_path}/landing"\n'
        f'[tables]\nuri = "file://{tmp_path}/tables"\n[state]\ndir = "{tmp_path}/state"\n'
    )
    env = {"PATH": "/usr/bin:/bin", "X_BEARER_TOKEN": SECRET}
    checked = _run(installed / "bin" / "tweet-streamer", "check-config", "--config", config, env=env, cwd="/")
    assert checked.returncode == 0, checked.stderr
    landed = tmp_path / "landing" / landing_key("tweets", HOUR, "a-1", 0)
    landed.parent.mkdir(parents=True)
    landed.write_bytes(gzip.compress(b"".join(timeline_lines())))
    run = _run(installed / "bin" / "tweet-compactor", "run", "--config", config, "--hour", str(HOUR), env=env, cwd="/")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["rows_out"] == 100
