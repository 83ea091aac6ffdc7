"""Config: one TOML file, env overrides, one readable line per problem, exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import REPO, SECRET
from tweetlake.config import ConfigError, build_config, load_config

GOOD = """
[x_api]
base_url = "https://api.x.com"
[collect]
mode = "poll"
users = ["XDevelopers", "NASA"]
poll_interval_s = 60
[landing]
uri = "s3://bucket/prefix/landing"
endpoint_url = ""
[batch]
max_records = 5000
max_bytes = 8000000
max_age_s = 60
[state]
dir = "/var/lib/tweetlake"
"""


def _write(tmp_path, text):
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def test_the_documented_example_loads(tmp_path):
    config = load_config(_write(tmp_path, GOOD), environ={})
    assert config.collect.users == ("XDevelopers", "NASA")
    assert config.batch.max_bytes == 8_000_000
    assert config.landing.uri == "s3://bucket/prefix/landing"


def test_environment_overrides_every_key(tmp_path):
    env = {
        "TWEETLAKE_BATCH__MAX_RECORDS": "10",
        "TWEETLAKE_COLLECT__USERS": "a_1,b_2",
        "TWEETLAKE_LANDING__URI": "file:///tmp/lake",
        "TWEETLAKE_COLLECT__POLL_INTERVAL_S": "2.5",
    }
    config = load_config(_write(tmp_path, GOOD), environ=env)
    assert config.batch.max_records == 10
    assert config.collect.users == ("a_1", "b_2")
    assert config.landing.uri == "file:///tmp/lake"
    assert config.collect.poll_interval_s == 2.5


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        (("max_records = 5000", 'max_records = "many"'), "batch.max_records: must be an integer"),
        (("max_records = 5000", "max_recs = 5"), "batch.max_recs: unknown key"),
        (('mode = "poll"', 'mode = "telepathy"'), "collect.mode"),
        (('uri = "s3://bucket/prefix/landing"', 'uri = "ftp://x"'), "landing.uri: must start with s3://"),
        (("max_age_s = 60", "max_age_s = 0"), "batch.max_age_s: must be greater than 0"),
        (('users = ["XDevelopers", "NASA"]', 'users = ["not a name!"]'), "collect.users"),
        (("poll_interval_s = 60", 'poll_interval_s = 60\nwriter_id = "café"'), "collect.writer_id: 1 to 64 ASCII"),
        (("poll_interval_s = 60", "poll_interval_s = 60\nhistory_max_tweets = 3201"), "collect.history_max_tweets"),
        (('mode = "poll"', 'mode = "stream"\nshard = "0/2"'), "collect.shard: stream mode needs '0/1'"),
        (("[state]", "[stream]\nrule_max_length = 10\n[state]"), "stream.rule_max_length: 64 to 4096"),
        (("[state]", '[stream]\nrule_tag = ""\n[state]'), "stream.rule_tag"),
        (("[state]", '[tables]\nuri = "file:///srv/tables"\n[state]'), "tables.uri: must use the scheme of landing"),
    ],
)
def test_each_problem_is_one_line_naming_the_key(tmp_path, patch, needle):
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, GOOD.replace(*patch)), environ={})
    assert any(line.startswith(needle) for line in info.value.problems), info.value.problems


def test_history_max_tweets_defaults_to_a_modest_first_round(tmp_path):
    config = load_config(_write(tmp_path, GOOD), environ={})
    assert (config.collect.history_max_tweets, config.deprecations) == (100, ())


def test_deprecated_max_history_pages_still_sets_the_first_round_and_is_noted(tmp_path):
    config = load_config(
        _write(tmp_path, GOOD.replace("poll_interval_s = 60", "poll_interval_s = 60\nmax_history_pages = 3")),
        environ={},
    )
    assert config.collect.history_max_tweets == 300
    assert config.deprecations == (
        "collect.max_history_pages is deprecated: use collect.history_max_tweets (100 tweets per page)",
    )


def test_history_max_tweets_wins_over_its_deprecated_alias(tmp_path):
    text = GOOD.replace("poll_interval_s = 60", "poll_interval_s = 60\nmax_history_pages = 3\nhistory_max_tweets = 0")
    assert load_config(_write(tmp_path, text), environ={}).collect.history_max_tweets == 0


def test_stream_mode_lands_within_seconds_unless_max_age_is_configured(tmp_path):
    stream = GOOD.replace('mode = "poll"', 'mode = "stream"')
    assert load_config(_write(tmp_path, stream.replace("max_age_s = 60\n", "")), environ={}).batch.max_age_s == 2.0
    assert load_config(_write(tmp_path, stream), environ={}).batch.max_age_s == 60.0
    assert load_config(_write(tmp_path, GOOD.replace("max_age_s = 60\n", "")), environ={}).batch.max_age_s == 60.0


def test_bad_env_value_names_the_variable():
    with pytest.raises(ConfigError) as info:
        build_config({}, environ={"TWEETLAKE_BATCH__MAX_RECORDS": "lots"})
    assert "TWEETLAKE_BATCH__MAX_RECORDS" in str(info.value)


def _cli(*args, env=None):
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith(("X_", "TWEETLAKE_"))}
    return subprocess.run(
        [sys.executable, "-m", "streamer", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**base, **(env or {})},
        timeout=60,
    )


def test_cli_bad_config_exits_2_with_one_line(tmp_path):
    path = _write(tmp_path, GOOD.replace("max_age_s = 60", 'max_age_s = "soon"'))
    result = _cli("check-config", "--config", str(path), env={"X_BEARER_TOKEN": SECRET})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["tweet-streamer: config error: batch.max_age_s: must be a number"]


def test_cli_missing_credentials_exits_2_and_names_them(tmp_path):
    result = _cli("run", "--config", str(_write(tmp_path, GOOD)))
    assert result.returncode == 2
    assert "X_BEARER_TOKEN" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_check_config_ok_never_prints_the_secret(tmp_path):
    result = _cli("check-config", "--config", str(_write(tmp_path, GOOD)), env={"X_BEARER_TOKEN": SECRET})
    assert result.returncode == 0, result.stderr
    assert "config ok: 2 accounts" in result.stdout
    assert SECRET not in result.stdout + result.stderr


def test_cli_check_config_warns_about_a_deprecated_key(tmp_path):
    path = _write(tmp_path, GOOD.replace("poll_interval_s = 60", "poll_interval_s = 60\nmax_history_pages = 3"))
    result = _cli("check-config", "--config", str(path), env={"X_BEARER_TOKEN": SECRET})
    assert result.returncode == 0
    assert result.stderr.splitlines() == [
        "tweet-streamer: warning: collect.max_history_pages is deprecated: "
        "use collect.history_max_tweets (100 tweets per page)"
    ]


def test_cli_stream_mode_with_only_user_credentials_exits_2_naming_the_mode(tmp_path):
    path = _write(tmp_path, GOOD.replace('mode = "poll"', 'mode = "stream"'))
    oauth1 = {"X_CONSUMER_KEY": "ck", "X_CONSUMER_SECRET": "cs", "X_ACCESS_TOKEN": "at", "X_ACCESS_TOKEN_SECRET": "as"}
    result = _cli("check-config", "--config", str(path), env=oauth1)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "tweet-streamer: config error: collect.mode: stream mode needs an app-only bearer token (X_BEARER_TOKEN); "
        "OAuth 1.0a user credentials cannot open the filtered stream"
    ]


def test_systemd_credentials_directory_is_read(tmp_path):
    from streamer.credentials import load_credentials

    (tmp_path / "x_bearer_token").write_text(SECRET + "\n")
    creds = load_credentials({"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert creds.bearer_token is not None and creds.bearer_token.reveal() == SECRET
    assert SECRET not in repr(creds) and SECRET not in str(creds.bearer_token)


def test_shards_split_the_accounts_exactly():
    users = [f"user_{i}" for i in range(50)]
    shards = [
        build_config({"collect": {"users": users, "shard": f"{k}/3"}}, environ={}).collect.my_users() for k in range(3)
    ]
    assert sorted(u for shard in shards for u in shard) == sorted(users)
    assert all(shards)
    with pytest.raises(ConfigError, match=r"collect\.shard"):
        build_config({"collect": {"shard": "3/3"}}, environ={})


def test_an_environment_override_is_reported_with_its_effective_value_and_source(tmp_path):
    config = load_config(
        _write(tmp_path, GOOD), environ={"TWEETLAKE_STATE__DIR": "/srv/tl", "TWEETLAKE_BATCH__MAX_AGE_S": "7"}
    )
    assert config.state.dir == "/srv/tl"
    assert config.overrides == (
        "batch.max_age_s = 7.0 (from TWEETLAKE_BATCH__MAX_AGE_S)",
        "state.dir = '/srv/tl' (from TWEETLAKE_STATE__DIR)",
    )


def test_an_overridden_url_is_reported_without_its_password(tmp_path):
    url = "postgresql://tl:s3cret@db.internal/catalog"
    config = load_config(_write(tmp_path, GOOD), environ={"TWEETLAKE_TABLES__CATALOG_URI": url})
    assert config.overrides == (
        "tables.catalog_uri = 'postgresql://tl***@db.internal/catalog' (from TWEETLAKE_TABLES__CATALOG_URI)",
    )


def test_cli_check_config_names_each_environment_override(tmp_path):
    env = {"X_BEARER_TOKEN": SECRET, "TWEETLAKE_STATE__DIR": str(tmp_path / "elsewhere")}
    result = _cli("check-config", "--config", str(_write(tmp_path, GOOD)), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        f"tweet-streamer: note: state.dir = '{tmp_path / 'elsewhere'}' (from TWEETLAKE_STATE__DIR)"
    ]
