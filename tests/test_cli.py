"""What every command line promises an operator: help for every option, --version, one-line errors."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys

import pytest

from compactor.cli import build_parser as compactor_parser
from simulator.cli import build_parser as simulator_parser
from streamer.cli import build_parser as streamer_parser
from tests.helpers import REPO
from tweetlake import build_version

CLIS = {"tweet-streamer": "streamer", "tweet-compactor": "compactor", "x-simulator": "simulator"}


def _run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, timeout=30)


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return [parser, *(p for sub in subs for p in sub.choices.values())]


@pytest.mark.parametrize("build", [streamer_parser, compactor_parser, simulator_parser])
def test_every_option_says_what_it_does(build):
    undocumented = [
        f"{parser.prog} {action.option_strings or action.dest}"
        for parser in _parsers(build())
        for action in parser._actions
        if not action.help
    ]
    assert undocumented == []


@pytest.mark.parametrize("prog", CLIS)
def test_version_names_the_program_and_the_installed_version(prog):
    result = _run(CLIS[prog], "--version")
    assert (result.returncode, result.stdout) == (0, f"{prog} {build_version()}\n")


@pytest.mark.parametrize("prog", CLIS)
def test_help_shows_examples_and_exit_codes(prog):
    result = _run(CLIS[prog], "--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout and "exit codes:" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--faults", "500"], "'500': give a probability from 0 to 1, e.g. 500:0.05"),
        (["--faults", "bogus:0.5"], "unknown fault 'bogus'"),
        (["--faults", "500:1.5"], "'500:1.5': give a probability from 0 to 1"),
        (["--rate-limit", "abc"], "'abc' is not REQUESTS/WINDOW_SECONDS"),
        (["--rate-limit", "10/0"], "'10/0' is not REQUESTS/WINDOW_SECONDS"),
        (["--port", "-3"], "'-3' is not a number >= 0"),
    ],
)
def test_a_bad_simulator_argument_is_one_error_line_and_exit_2(args, message):
    result = _run("simulator", *args)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("x-simulator: error:")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in result.stderr


def test_a_simulator_port_in_use_is_one_line_and_exit_1():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _run("simulator", "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"x-simulator: cannot listen on 127.0.0.1:{port}: error while attempting to bind on address "
        f"('127.0.0.1', {port}): address already in use"
    ]
