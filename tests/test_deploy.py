"""The CloudFormation template: cfn-lint clean, deployable (moto), least-privilege policies."""

from __future__ import annotations

import ast
import base64
import fnmatch
import json
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest

from tests.helpers import REPO
from tweetlake.config import build_config

TEMPLATE = REPO / "deploy" / "cloudformation.yaml"


def test_template_is_cfn_lint_clean():
    lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run([str(lint), str(TEMPLATE)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def _allowed(statements: list[dict], action: str, resource: str) -> bool:
    """Tiny IAM evaluation (Allow statements, wildcards; explicit Deny wins) for these policies."""

    def matches(patterns, value):
        patterns = [patterns] if isinstance(patterns, str) else patterns
        return any(fnmatch.fnmatchcase(value, p) for p in patterns)

    allowed = False
    for statement in statements:
        if matches(statement["Action"], action) and matches(statement["Resource"], resource):
            if statement["Effect"] == "Deny":
                return False
            allowed = True
    return allowed


def _deploy(s3_endpoint: str, airflow_host: str) -> dict:
    kw = {"endpoint_url": s3_endpoint, "region_name": "us-east-1"}
    ec2 = boto3.client("ec2", **kw)
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    bucket = f"tweetlake-{uuid.uuid4().hex[:10]}"
    name = f"tl{uuid.uuid4().hex[:8]}"
    cfn = boto3.client("cloudformation", **kw)
    cfn.create_stack(
        StackName=name,
        TemplateBody=TEMPLATE.read_text(),
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[
            {"ParameterKey": "BucketName", "ParameterValue": bucket},
            {"ParameterKey": "SubnetId", "ParameterValue": subnet},
            {"ParameterKey": "VpcId", "ParameterValue": vpc},
            {"ParameterKey": "Accounts", "ParameterValue": "NASA,XDevelopers"},
            {"ParameterKey": "ArtifactsBucket", "ParameterValue": "my-artifacts"},
            {"ParameterKey": "AirflowHost", "ParameterValue": airflow_host},
        ],
    )
    status = cfn.describe_stacks(StackName=name)["Stacks"][0]
    assert status["StackStatus"] == "CREATE_COMPLETE", status
    return {
        "name": name,
        "bucket": bucket,
        "kw": kw,
        "cfn": cfn,
        "outputs": {o["OutputKey"]: o["OutputValue"] for o in status.get("Outputs", [])},
    }


@pytest.fixture
def stack(s3_endpoint):
    """The default stack: a streamer host and a separate Airflow host."""
    return _deploy(s3_endpoint, "separate")


@pytest.fixture
def shared_stack(s3_endpoint):
    """A one-host trial: the streamer and Airflow on one instance."""
    return _deploy(s3_endpoint, "shared")


def test_stack_deploys_with_a_private_encrypted_bucket(stack):
    s3 = boto3.client("s3", **stack["kw"])
    bucket = stack["bucket"]
    resources = {
        r.get("LogicalResourceId")
        for r in stack["cfn"].describe_stack_resources(StackName=stack["name"])["StackResources"]
    }
    assert {
        "DataBucket",
        "StreamerRole",
        "CompactionRole",
        "StreamerInstance",
        "AirflowInstance",
        "HostSecurityGroup",
        "StreamerInstanceProfile",
        "CompactionInstanceProfile",
    } <= resources
    assert "SingleHostRole" not in resources
    assert stack["outputs"]["LandingUri"] == f"s3://{bucket}/tweetlake/landing"
    enc = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert enc["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    # moto's CloudFormation applies only encryption and tags to buckets, and no AWS::S3::BucketPolicy:
    # the rest is checked on the template as cfn-lint decodes it
    from cfnlint.decode import decode

    template, problems = decode(str(TEMPLATE))
    assert not problems
    props = template["Resources"]["DataBucket"]["Properties"]
    assert all(props["PublicAccessBlockConfiguration"].values())
    assert props["OwnershipControls"]["Rules"][0]["ObjectOwnership"] == "BucketOwnerEnforced"
    rules = {r["Id"]: r for r in props["LifecycleConfiguration"]["Rules"]}
    assert rules["landing-to-infrequent-access"]["Transitions"][0]["StorageClass"] == "STANDARD_IA"
    assert rules["expire-rejected-records"]["Prefix"] == {"Fn::Sub": "${Prefix}/tables/_rejected/"}
    denies = {
        statement["Sid"]: statement
        for statement in template["Resources"]["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    }
    assert all(d["Effect"] == "Deny" and d["Principal"] == "*" for d in denies.values())
    assert denies["DenyInsecureTransport"]["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert denies["DenyTlsBelow12"]["Condition"] == {"NumericLessThan": {"s3:TlsVersion": "1.2"}}
    sse_c = "s3:x-amz-server-side-encryption-customer-algorithm"
    assert denies["DenyCustomerProvidedKeys"]["Condition"] == {"Null": {sse_c: "false"}}
    kms = "s3:x-amz-server-side-encryption-aws-kms-key-id"
    assert denies["DenyNamedKmsKeys"]["Condition"] == {"Null": {kms: "false"}}


def _document(document) -> dict:
    if isinstance(document, str):  # moto hands back CFN-created policies as JSON or a Python repr
        return json.loads(document) if document.startswith('{"') else ast.literal_eval(document)
    return document


def _role_statements(stack, logical_id: str) -> list[dict]:
    """Every statement the role's policies grant (the managed ones the template attaches; no inline)."""
    iam = boto3.client("iam", **stack["kw"])
    role = next(
        r
        for r in stack["cfn"].describe_stack_resources(StackName=stack["name"])["StackResources"]
        if r.get("LogicalResourceId") == logical_id
    )["PhysicalResourceId"]
    assert not iam.list_role_policies(RoleName=role)["PolicyNames"]
    statements = []
    for attached in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]:
        policy = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]
        version = iam.get_policy_version(PolicyArn=policy["Arn"], VersionId=policy["DefaultVersionId"])
        statements.extend(_document(version["PolicyVersion"]["Document"])["Statement"])
    return statements


def test_streamer_role_can_only_write_landing_files(stack):
    arn = f"arn:aws:s3:::{stack['bucket']}"
    statements = _role_statements(stack, "StreamerRole")
    assert _allowed(statements, "s3:PutObject", f"{arn}/tweetlake/landing/tweets/dt=2026-11-25/hour=10/a.ndjson.gz")
    assert not _allowed(statements, "s3:PutObject", f"{arn}/tweetlake/tables/tweets/x.parquet")
    for action in ("s3:GetObject", "s3:DeleteObject", "s3:ListBucket", "s3:PutBucketPolicy"):
        assert not _allowed(statements, action, f"{arn}/tweetlake/landing/x")
        assert not _allowed(statements, action, arn)
    assert _allowed(statements, "s3:DeleteObject", f"{arn}/tweetlake/landing/_probe/host-1")  # check-config --online
    assert _allowed(
        statements, "ssm:GetParameter", "arn:aws:ssm:us-east-1:123456789012:parameter/tweetlake/x_bearer_token"
    )
    assert not _allowed(statements, "ssm:GetParameter", "arn:aws:ssm:us-east-1:123456789012:parameter/other")


def test_compaction_role_reads_landing_and_writes_tables_only(stack):
    arn = f"arn:aws:s3:::{stack['bucket']}"
    statements = _role_statements(stack, "CompactionRole")
    assert _allowed(statements, "s3:GetObject", f"{arn}/tweetlake/landing/tweets/x.ndjson.gz")
    assert not _allowed(statements, "s3:PutObject", f"{arn}/tweetlake/landing/tweets/x.ndjson.gz")
    assert not _allowed(statements, "s3:DeleteObject", f"{arn}/tweetlake/landing/tweets/x.ndjson.gz")
    for action in ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"):
        assert _allowed(statements, action, f"{arn}/tweetlake/tables/tweets/dt=2026-11-25/hour=10/part-00000.parquet")
    assert not _allowed(statements, "s3:PutObject", f"{arn}/other/x")
    assert not any("ssm:" in str(s["Action"]) for s in statements)


STUBS = ("dnf", "python3.11", "systemctl", "runuser", "useradd", "postgresql-setup", "chown", "chgrp")


@pytest.fixture
def host(tmp_path) -> Path:
    """A fake Amazon Linux host under tmp_path: system commands are stubs that log their arguments,
    ``aws s3 cp`` hands over this checkout's setup-host.sh, the venv answers where its data lives."""
    root = tmp_path / "host"
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name in STUBS:
        (stubs / name).write_text(f'#!/bin/bash\necho "{name} $*" >> {tmp_path}/calls.log\n')
    (stubs / "aws").write_text(
        f'#!/bin/bash\necho "aws $*" >> {tmp_path}/calls.log\ncp {REPO}/deploy/setup-host.sh "${{@: -1}}"\n'
    )
    venv = root / "opt/tweetlake/.venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin/pip").write_text(f'#!/bin/bash\necho "pip $*" >> {tmp_path}/calls.log\n')
    (venv / "bin/python").write_text(f"#!/bin/bash\necho {venv}\n")
    for stub in [*stubs.iterdir(), *(venv / "bin").iterdir()]:
        stub.chmod(0o755)
    (venv / "share/tweetlake").mkdir(parents=True)
    shutil.copytree(REPO / "systemd", venv / "share/tweetlake/systemd")
    (root / "var/lib/pgsql/data").mkdir(parents=True)
    (root / "var/lib/pgsql/data/pg_hba.conf").write_text("host    all   all   127.0.0.1/32   ident\n")
    return root


def _user_data(stack, output: str) -> str:
    ec2 = boto3.client("ec2", **stack["kw"])
    attribute = ec2.describe_instance_attribute(InstanceId=stack["outputs"][output], Attribute="userData")
    return base64.b64decode(attribute["UserData"]["Value"]).decode()


def _boot(host: Path, script: str) -> list[str]:
    """Run an instance's user-data on the fake host; the commands it ran, in order."""
    path = host.parent / "user-data.sh"
    path.write_text(script.replace("/opt/tweetlake/dist", f"{host}/dist"))
    syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    env = {"PATH": f"{host.parent}/bin:/usr/bin:/bin", "TL_ROOT": str(host)}
    run = subprocess.run(["bash", str(path)], capture_output=True, text=True, env=env, timeout=60)
    assert run.returncode == 0, run.stderr[-3000:]
    return (host.parent / "calls.log").read_text().splitlines()


def _enabled(calls: list[str]) -> list[str]:
    return [call.removeprefix("systemctl enable --now ") for call in calls if call.startswith("systemctl enable")]


def test_the_streamer_host_installs_the_pinned_build_and_enables_only_the_streamer(stack, host):
    calls = _boot(host, _user_data(stack, "StreamerInstanceId"))
    assert "aws s3 cp --recursive --region us-east-1 s3://my-artifacts/tweetlake/0.1.0/ " + f"{host}/dist/" in calls
    assert f"pip install --quiet --require-hashes -r {host}/dist/requirements.txt" in calls
    assert f"pip install --quiet --no-deps {host}/dist/tweetlake-0.1.0-py3-none-any.whl" in calls
    assert _enabled(calls) == ["tweet-streamer"]
    assert (host / "etc/systemd/system/tweet-streamer.service").is_file()


def test_the_hosts_config_is_valid_and_points_at_the_stacks_bucket_and_glue(stack, host):
    import tomllib

    _boot(host, _user_data(stack, "StreamerInstanceId"))
    config = build_config(tomllib.loads((host / "etc/tweetlake/tweetlake.toml").read_text()), environ={})
    assert config.collect.users == ("NASA", "XDevelopers")
    assert config.landing.uri == f"s3://{stack['bucket']}/tweetlake/landing"
    assert (config.tables.uri, config.tables.catalog, config.tables.namespace) == (
        f"s3://{stack['bucket']}/tweetlake/tables",
        "glue",
        "tweetlake",
    )


def test_the_streamers_token_is_fetched_into_the_credential_its_unit_loads_before_every_start(stack, host):
    _boot(host, _user_data(stack, "StreamerInstanceId"))
    fetch = (host / "opt/tweetlake/fetch-x-credentials").read_text()
    assert subprocess.run(["bash", "-n", "-c", fetch]).returncode == 0
    assert "--name '/tweetlake/x_bearer_token'" in fetch
    unit = (host / "etc/systemd/system/tweet-streamer.service").read_text()
    (directory,) = re.findall(r"^LoadCredential=x:(\S+)$", unit, re.M)
    assert fetch.rstrip().endswith(f"{directory}/bearer_token")
    drop_in = (host / "etc/systemd/system/tweet-streamer.service.d/ssm.conf").read_text()
    assert "Requires=tweetlake-x-credentials.service" in drop_in and "After=tweetlake-x-credentials.service" in drop_in
    oneshot = (host / "etc/systemd/system/tweetlake-x-credentials.service").read_text()
    assert "Type=oneshot" in oneshot and "ExecStart=/opt/tweetlake/fetch-x-credentials" in oneshot


def test_the_airflow_host_runs_airflow_with_postgres_the_dags_and_the_instance_role(stack, host):
    calls = _boot(host, _user_data(stack, "AirflowInstanceId"))
    assert f"pip install --quiet --require-hashes -r {host}/dist/requirements-airflow.txt" in calls
    assert _enabled(calls) == ["postgresql", "airflow.target"]
    assert any(c.startswith("runuser -u airflow -- bash -c") and c.endswith("airflow db migrate") for c in calls)
    env = dict(line.split("=", 1) for line in (host / "etc/tweetlake/airflow.env").read_text().splitlines() if line)
    assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/tweetlake/.venv/share/tweetlake/dags"
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:")
    assert env["AIRFLOW_VAR_TWEETLAKE_CONFIG"] == "/etc/tweetlake/tweetlake.toml"
    connection = json.loads(env["AIRFLOW_CONN_AWS_DEFAULT"].strip("'"))
    assert connection == {"conn_type": "aws", "extra": {"region_name": "us-east-1"}}  # keys: the instance role's
    assert (host / "etc/systemd/system/airflow.target").is_file()
    for unit in (host / "etc/systemd/system").glob("airflow-*.service"):
        assert "EnvironmentFile=/etc/tweetlake/airflow.env" in unit.read_text().splitlines(), unit.name


def test_every_airflow_setting_the_host_writes_is_one_airflow_knows(stack, host):
    import airflow
    import yaml

    _boot(host, _user_data(stack, "AirflowInstanceId"))
    known = yaml.safe_load((Path(airflow.__file__).parent / "config_templates/config.yml").read_text())
    for line in (host / "etc/tweetlake/airflow.env").read_text().splitlines():
        name = line.split("=", 1)[0]
        if name.startswith("AIRFLOW__"):
            section, key = name.removeprefix("AIRFLOW__").lower().split("__")
            assert key in known[section]["options"], name


def test_a_shared_host_runs_both_with_one_role_holding_both_policies(shared_stack, host):
    calls = _boot(host, _user_data(shared_stack, "StreamerInstanceId"))
    assert _enabled(calls) == ["tweet-streamer", "postgresql", "airflow.target"]
    assert "AirflowInstanceId" not in shared_stack["outputs"]
    statements = _role_statements(shared_stack, "SingleHostRole")
    arn = f"arn:aws:s3:::{shared_stack['bucket']}"
    assert _allowed(statements, "s3:PutObject", f"{arn}/tweetlake/landing/tweets/x.ndjson.gz")
    assert _allowed(statements, "s3:PutObject", f"{arn}/tweetlake/tables/tweets/x.parquet")
    assert not _allowed(statements, "s3:PutObject", f"{arn}/other/x")
