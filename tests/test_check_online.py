"""``tweet-streamer check-config --online``: the real CLI against the simulator and moto's S3."""

from __future__ import annotations

import boto3

from tests.helpers import SECRET, check_online, write_config


def _config(tmp_path, sim, landing_uri, endpoint="", **kw):
    return write_config(
        tmp_path / "c.toml",
        base_url=sim.url,
        landing_uri=landing_uri,
        endpoint_url=endpoint,
        state_dir=tmp_path / "state",
        **kw,
    )


def _findings(stdout: str) -> dict[str, str]:
    """``what -> status`` of the report's finding lines."""
    lines = stdout.split("online:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    return {line.split(maxsplit=1)[1].split(":")[0]: line.split()[0] for line in lines}


def test_a_sound_setup_passes_and_the_probe_object_is_gone(tmp_path, sim, s3_endpoint, bucket):
    result = check_online(_config(tmp_path, sim, f"s3://{bucket}/lake/landing", s3_endpoint))
    assert result.returncode == 0, result.stdout + result.stderr
    assert _findings(result.stdout) == {"credentials": "ok", "landing": "ok"}
    assert f"wrote and deleted s3://{bucket}/lake/landing/_probe/test-writer-" in result.stdout
    listed = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=bucket)
    assert listed.get("KeyCount") == 0
    assert SECRET not in result.stdout + result.stderr


def test_a_token_x_refuses_fails_with_exit_1(tmp_path, sim, s3_endpoint, bucket):
    sim.simulator.bearer_token = "the-real-token"
    result = check_online(_config(tmp_path, sim, f"s3://{bucket}/lake/landing", s3_endpoint))
    assert result.returncode == 1
    assert _findings(result.stdout) == {"credentials": "FAIL", "landing": "ok"}
    assert SECRET not in result.stdout + result.stderr


def test_unknown_and_suspended_accounts_are_named_and_fail(tmp_path, sim, s3_endpoint, bucket):
    sim.simulator.world.by_username["nasa"].suspended = True
    config = _config(
        tmp_path, sim, f"s3://{bucket}/lake/landing", s3_endpoint, users=("XDevelopers", "NASA", "nobody_here")
    )
    result = check_online(config)
    assert result.returncode == 1
    assert _findings(result.stdout) == {
        "credentials": "ok",
        "account NASA": "FAIL",
        "account nobody_here": "FAIL",
        "landing": "ok",
    }
    assert "1 of 3 accounts found" in result.stdout


def test_a_protected_account_fails_with_an_app_only_token(tmp_path, sim, s3_endpoint, bucket):
    sim.simulator.world.by_username["nasa"].protected = True
    result = check_online(_config(tmp_path, sim, f"s3://{bucket}/lake/landing", s3_endpoint))
    assert result.returncode == 1
    assert _findings(result.stdout)["account NASA"] == "FAIL"
    assert "protected" in result.stdout


def test_a_dead_api_host_names_the_base_url(tmp_path, sim, s3_endpoint, bucket):
    config = _config(tmp_path, sim, f"s3://{bucket}/lake/landing", s3_endpoint)
    config.write_text(config.read_text().replace(sim.url, "http://127.0.0.1:9"))
    result = check_online(config)
    assert result.returncode == 1
    assert _findings(result.stdout) == {"x_api.base_url": "FAIL", "landing": "ok"}
    assert "127.0.0.1:9" in result.stdout


def test_a_landing_zone_this_host_cannot_write_fails(tmp_path, sim, s3_endpoint):
    result = check_online(_config(tmp_path, sim, "s3://no-such-bucket-here/lake/landing", s3_endpoint))
    assert result.returncode == 1
    assert _findings(result.stdout) == {"credentials": "ok", "landing": "FAIL"}
    assert "NoSuchBucket" in result.stdout


def test_stream_mode_also_reads_the_rules(tmp_path, sim, s3_endpoint, bucket):
    config = _config(tmp_path, sim, f"s3://{bucket}/lake/landing", s3_endpoint, mode="stream")
    result = check_online(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _findings(result.stdout) == {"credentials": "ok", "stream": "ok", "landing": "ok"}


def test_more_accounts_than_one_lookup_takes_are_asked_in_several(tmp_path, sim, s3_endpoint, bucket):
    unknown = tuple(f"nobody_{n}" for n in range(150))
    config = _config(tmp_path, sim, f"s3://{bucket}/lake/landing", s3_endpoint, users=("XDevelopers", *unknown))
    result = check_online(config)
    assert "1 of 151 accounts found" in result.stdout, result.stdout + result.stderr
    assert _findings(result.stdout)["account nobody_149"] == "FAIL"
