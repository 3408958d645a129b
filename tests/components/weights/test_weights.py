"""The weights bucket, its roles and the staging Job: the pure builders, the staging program against stand-in
clients, and what the dev and prod plans register."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import kubernetes_validate
import pytest
from botocore.exceptions import ClientError

from components.iam import service_account_trust_policy
from components.weights import stage_weights
from components.weights.layout import model_prefix, reader_policy, s3_uri, streamer_config, writer_policy
from components.weights.staging import StagingSettings, job_name, staging_job, staging_seconds
from selfhost.plan.mocks import OIDC_ISSUER
from selfhost.plan.runner import PlanResult
from stacks.catalogs.instances import GPU_INSTANCES

BUCKET_ARN = "arn:aws:s3:::llm-dev-weights-x"
PREFIX = "models/mistralai/Mistral-7B-Instruct-v0.2/main"
SETTINGS = StagingSettings(
    namespace="llm",
    model_id="mistralai/Mistral-7B-Instruct-v0.2",
    revision="main",
    prefix=PREFIX,
    image="vllm/vllm-openai:v0.33.0",
    configured_image="vllm/vllm-openai:v0.33.0",
    region="us-west-2",
    weights_bytes=14_483_464_192,
    with_hf_token=True,
    credentials_secret="vllm-credentials",
    hf_token_entry="hf-token",
    labels={"app.kubernetes.io/name": "stage-weights"},
)


def test_one_prefix_per_model_and_revision():
    assert model_prefix("mistralai/Mistral-7B-Instruct-v0.2", "main") == PREFIX
    assert s3_uri("llm-dev-weights-x", PREFIX) == f"s3://llm-dev-weights-x/{PREFIX}/"


def test_the_model_server_reads_its_own_prefix_only():
    statements = reader_policy(BUCKET_ARN, PREFIX)["Statement"]
    assert statements == [
        {
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": BUCKET_ARN,
            "Condition": {"StringLike": {"s3:prefix": [f"{PREFIX}/*"]}},
        },
        {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{BUCKET_ARN}/{PREFIX}/*"},
    ]
    writer = writer_policy(BUCKET_ARN, PREFIX)["Statement"]
    assert writer[1]["Action"] == ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
    assert writer[1]["Resource"] == f"{BUCKET_ARN}/{PREFIX}/*"
    # Neither may delete, nor touch another model's files.
    for statement in [*statements, *writer]:
        assert "s3:DeleteObject" not in json.dumps(statement)
        assert statement["Resource"] in (BUCKET_ARN, f"{BUCKET_ARN}/{PREFIX}/*")


def test_the_stream_uses_one_reader_per_85_mb_of_bandwidth_within_16_to_64():
    # g6.12xlarge: 40,000 Mbit/s = 5e9 B/s / 85e6 = 58.8 -> 59 readers; a quarter of 44,477 MiB =
    # 44,477 x 1,048,576 / 4 = 11,659,378,688 B.
    assert streamer_config(GPU_INSTANCES["g6.12xlarge"], 44_477) == {
        "concurrency": 59,
        "memory_limit": 11_659_378_688,
    }
    # g5.xlarge: 2,500 Mbit/s = 312.5e6 B/s -> 3.7 -> 4, raised to the floor of 16.
    assert streamer_config(GPU_INSTANCES["g5.xlarge"], 13_138)["concurrency"] == 16


def test_the_staging_job_is_a_valid_restricted_job_on_the_system_pool():
    manifest = staging_job(SETTINGS, "llm-dev-weights-x")
    kubernetes_validate.validate(manifest, "1.33", strict=True)
    pod = manifest["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"karpenter.sh/nodepool": "system"}
    assert pod["serviceAccountName"] == "weights-stager"
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    [container] = pod["containers"]
    assert container["command"] == ["python3", "/opt/selfhost/stage_weights.py"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["BUCKET"] == "llm-dev-weights-x" and env["PREFIX"] == PREFIX
    assert env["HF_TOKEN_PATH"] == "/var/run/secrets/huggingface/token"
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert manifest["metadata"]["annotations"]["pulumi.com/replaceUnready"] == "true"
    # Weights 14,483,464,192 B at 25e6 B/s = 579.3 s, plus the image on a system node, 12.64e9 / 58e6 = 217.9 s:
    # 797.3 s, twice over: 1594.7 -> 1595 s.
    assert manifest["spec"]["activeDeadlineSeconds"] == staging_seconds(SETTINGS.weights_bytes) == 1595


def test_an_open_model_stages_without_the_token():
    open_model = dataclasses.replace(SETTINGS, with_hf_token=False)
    pod = staging_job(open_model, "b")["spec"]["template"]["spec"]
    assert "HF_TOKEN_PATH" not in {item["name"] for item in pod["containers"][0]["env"]}
    assert "hf-token" not in {volume["name"] for volume in pod["volumes"]}


def test_a_new_revision_or_image_makes_a_new_job_and_nothing_else_does():
    name = job_name(SETTINGS)
    assert name.startswith("stage-weights-") and len(name) <= 63
    assert job_name(dataclasses.replace(SETTINGS, revision="0" * 40)) != name
    assert job_name(dataclasses.replace(SETTINGS, configured_image="vllm/vllm-openai:v0.34.0")) != name
    assert job_name(dataclasses.replace(SETTINGS, labels={"other": "labels"})) == name


class FakeS3:
    """Records what the staging program does to the bucket; `staged` says whether the marker exists."""

    def __init__(self, staged: bool):
        self.staged = staged
        self.puts: list[str] = []

    def head_object(self, Bucket: str, Key: str) -> dict[str, Any]:
        if not self.staged:
            raise ClientError({"Error": {"Code": "404"}}, "HeadObject")
        return {}

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:
        self.puts.append(Key)
        self.marker = json.loads(Body)


class OpenFile:
    def __init__(self, name: str, opened: list[str]):
        opened.append(name)

    def __enter__(self) -> OpenFile:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


REPOSITORY = [
    "config.json",
    "generation_config.json",
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
    "model.safetensors.index.json",
    "pytorch_model-00001-of-00002.bin",
    "consolidated.safetensors",
    "original/params.json",
    "tokenizer.json",
    "tokenizer.model",
    "tokenizer_config.json",
    "README.md",
]


def run_stage(s3: FakeS3, files: list[str]) -> tuple[list[str], list[str]]:
    opened: list[str] = []
    uploaded: list[str] = []
    info = SimpleNamespace(sha="a" * 40, siblings=[SimpleNamespace(rfilename=name) for name in files])
    copied = stage_weights.stage(
        s3,
        lambda: info,
        lambda commit, name: OpenFile(name, opened),
        lambda stream, key: uploaded.append(key),
        "mistralai/Mistral-7B-Instruct-v0.2",
        "main",
        "bucket",
        PREFIX,
    )
    assert copied == opened
    return opened, uploaded


def test_staging_copies_what_vllm_loads_then_writes_its_marker():
    s3 = FakeS3(staged=False)
    opened, uploaded = run_stage(s3, REPOSITORY)
    # Safetensors, config and tokenizer files; not the .bin pickles, the consolidated copy or original/.
    assert opened == [
        "config.json",
        "generation_config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "tokenizer.model",
        "tokenizer_config.json",
    ]
    assert uploaded == [f"{PREFIX}/{name}" for name in opened]
    assert s3.puts == [f"{PREFIX}/.staged.json"]
    assert s3.marker["commit"] == "a" * 40 and s3.marker["files"] == opened


def test_a_staged_revision_is_not_copied_again():
    s3 = FakeS3(staged=True)
    assert run_stage(s3, REPOSITORY) == ([], [])
    assert s3.puts == []


def test_a_revision_without_safetensors_fails_with_a_sentence():
    with pytest.raises(stage_weights.StagingError, match=r"no \.safetensors files"):
        run_stage(FakeS3(staged=False), ["config.json", "pytorch_model.bin"])


def weights_roles(plan: PlanResult) -> dict[str, dict[str, Any]]:
    return {
        role.inputs["name"].rsplit("-", 1)[-1]: role.inputs
        for role in plan.of_type("aws:iam/role:Role")
        if "-weights-" in role.inputs.get("name", "")
    }


def test_the_plan_has_a_private_bucket_with_tls_only_and_no_stale_uploads(dev_plan: PlanResult):
    [bucket] = dev_plan.of_type("aws:s3/bucket:Bucket")
    assert bucket.inputs["bucketPrefix"] == "llm-dev-weights-"
    assert bucket.inputs["forceDestroy"] is True
    [block] = dev_plan.of_type("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert all(block.inputs[key] for key in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls"))
    assert block.inputs["restrictPublicBuckets"] is True
    [encryption] = dev_plan.of_type(
        "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
    )
    assert encryption.inputs["rules"][0]["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "AES256"
    [lifecycle] = dev_plan.of_type("aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    assert lifecycle.inputs["rules"][0]["abortIncompleteMultipartUpload"] == {"daysAfterInitiation": 1}
    [policy] = dev_plan.of_type("aws:s3/bucketPolicy:BucketPolicy")
    [deny] = json.loads(policy.inputs["policy"])["Statement"]
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_each_role_belongs_to_one_service_account_and_reads_the_served_revision(dev_plan: PlanResult):
    roles = weights_roles(dev_plan)
    assert set(roles) == {"reader", "writer"}
    oidc_arn = f"arn:aws:iam::123456789012:oidc-provider/{OIDC_ISSUER}"
    for kind, account in (("reader", "vllm"), ("writer", "weights-stager")):
        expected = service_account_trust_policy(oidc_arn, f"https://{OIDC_ISSUER}", "llm", account)
        assert json.loads(roles[kind]["assumeRolePolicy"]) == expected
    [reader] = [p for p in dev_plan.of_type("aws:iam/rolePolicy:RolePolicy") if "reader" in p.name]
    statements = json.loads(reader.inputs["policy"])["Statement"]
    assert statements[1]["Resource"].endswith(f"/{PREFIX}/*")


def test_the_model_server_loads_from_the_bucket_after_the_job(dev_plan: PlanResult):
    [job] = dev_plan.of_type("kubernetes:batch/v1:Job")
    deployment = dev_plan.named("model-server-deployment")
    assert job.name in deployment.dependencies
    [vllm] = deployment.inputs["spec"]["template"]["spec"]["containers"]
    bucket = dev_plan.of_type("aws:s3/bucket:Bucket")[0]
    assert vllm["args"][0] == f"s3://{bucket.inputs['bucketPrefix']}20261201000000000001/{PREFIX}/"
    assert vllm["args"][vllm["args"].index("--load-format") + 1] == "runai_streamer"
    assert dev_plan.outputs["model_uri"] == vllm["args"][0]


def test_a_kept_bucket_is_not_emptied_on_destroy(plan_with):
    plan = plan_with({"llm:keepWeightsBucket": "true"})
    [bucket] = plan.of_type("aws:s3/bucket:Bucket")
    assert bucket.inputs["forceDestroy"] is False


def test_the_staging_program_is_shipped_as_written(dev_plan: PlanResult):
    [configmap] = [c for c in dev_plan.of_type("kubernetes:core/v1:ConfigMap") if c.name.endswith("script")]
    assert configmap.inputs["data"] == {"stage_weights.py": Path(stage_weights.__file__).read_text()}
