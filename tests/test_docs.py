"""The documentation says what the code does: every logged event is documented, the example config
names every key and loads."""

from __future__ import annotations

import ast
import dataclasses
import re
import tomllib

from streamer.health import BUDGET_80PCT, X_CAP_80PCT
from tests.helpers import REPO
from tweetlake.config import DEPRECATED, Config, load_config

LEVELS = {"debug", "info", "warning", "error", "exception", "critical"}
# logged with a computed name (streamer/spending.py's threshold warnings)
COMPUTED = {BUDGET_80PCT, X_CAP_80PCT, "budget_exceeded"}


def logged_events() -> set[str]:
    """``log.<level>("event", ...)`` calls in the packages that log."""
    found = set()
    for package in ("streamer", "compactor", "tweetlake", "dags"):
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in LEVELS
                    and isinstance(node.func.value, ast.Name)
                    and node.func.value.id == "log"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    found.add(node.args[0].value)
    return found


def documented_events() -> set[str]:
    text = (REPO / "docs" / "operations.md").read_text()
    table = text[text.index("| event | meaning |") :].split("\n\n", 1)[0]
    return {name for row in table.splitlines()[2:] for name in re.findall(r"`([a-z0-9_]+)`", row.split("|")[1])}


def test_every_logged_event_is_in_the_operations_table():
    assert logged_events() - documented_events() == set()


def test_the_operations_table_documents_only_events_the_code_logs():
    assert documented_events() - logged_events() - COMPUTED == set()


def test_the_example_config_names_every_key_and_loads():
    path = REPO / "deploy" / "tweetlake.example.toml"
    data = tomllib.loads(path.read_text())
    config = Config()
    expected = {
        (section.name, key.name)
        for section in dataclasses.fields(config)
        if section.name not in ("deprecations", "overrides")
        for key in dataclasses.fields(getattr(config, section.name))
    } - set(DEPRECATED)
    given = {(section, key) for section, keys in data.items() for key in keys}
    assert given == expected
    loaded = load_config(path, environ={})
    assert (loaded.collect.mode, loaded.deprecations) == ("stream", ())
