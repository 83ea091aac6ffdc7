"""The CloudFormation template: cfn-lint clean, deployable (moto), least-privilege policies."""

from __future__ import annotations

import ast
import fnmatch
import json
import subprocess
import sys
import uuid
from pathlib import Path

import boto3
import pytest

from tests.helpers import REPO

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


@pytest.fixture
def stack(s3_endpoint):
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
        "StreamerSecurityGroup",
        "StreamerInstanceProfile",
        "CompactionInstanceProfile",
    } <= resources
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
    deny = template["Resources"]["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and deny["Action"] == "s3:*"
    assert deny["Condition"]["Bool"]["aws:SecureTransport"] == "false"


def _role_statements(stack, logical_id: str) -> list[dict]:
    iam = boto3.client("iam", **stack["kw"])
    role = next(
        r
        for r in stack["cfn"].describe_stack_resources(StackName=stack["name"])["StackResources"]
        if r.get("LogicalResourceId") == logical_id
    )["PhysicalResourceId"]
    statements = []
    for policy_name in iam.list_role_policies(RoleName=role)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role, PolicyName=policy_name)["PolicyDocument"]
        if isinstance(document, str):  # moto hands back CFN-created inline policies as a Python repr
            document = json.loads(document) if document.startswith('{"') else ast.literal_eval(document)
        statements.extend(document["Statement"])
    assert not iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
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


def test_instance_user_data_is_valid_bash_and_writes_a_valid_config(stack, tmp_path):
    import base64
    import re

    from tweetlake.config import build_config

    ec2 = boto3.client("ec2", **stack["kw"])
    instance = stack["outputs"]["StreamerInstanceId"]
    encoded = ec2.describe_instance_attribute(InstanceId=instance, Attribute="userData")["UserData"]["Value"]
    script = base64.b64decode(encoded).decode()
    path = tmp_path / "user-data.sh"
    path.write_text(script)
    syntax = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    assert "${" not in re.sub(r"\$\{?[a-z_]+\}?", "", script.split("'SH'", 1)[0]), "an unrendered ${...} remains"
    toml_text = re.search(r"<<'TOML'\n(.*?)\nTOML\n", script, re.S).group(1)
    import tomllib

    config = build_config(tomllib.loads(toml_text), environ={})
    assert config.collect.users == ("NASA", "XDevelopers")
    assert config.landing.uri == f"s3://{stack['bucket']}/tweetlake/landing"
    drop_in = re.search(r"<<'UNIT'\n(.*?)\nUNIT\n", script, re.S).group(1).splitlines()
    pre = [line for line in drop_in if line.startswith("ExecStartPre=")]
    assert pre[0] == "ExecStartPre=" and "fetch-x-credentials" in pre[1] and "check-config" in pre[2]
    assert "systemctl enable --now tweet-streamer" in script
