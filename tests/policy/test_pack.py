"""The policy pack as Pulumi runs it: its policies built from __main__.py, called with the SDK's own argument
objects, and the whole pack served over the analyzer gRPC protocol the engine speaks."""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2, struct_pb2
from pulumi.runtime.proto import analyzer_pb2, analyzer_pb2_grpc
from pulumi_policy import (
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

from policy.rules import EKS_CLUSTER, NODE_POOL, SERVICE
from selfhost.plan.runner import PROJECT, PlanResult
from tests.policy.engine_view import engine_view
from tests.variants import PUBLIC_ENDPOINT

MANDATORY = analyzer_pb2.EnforcementLevel.Value("MANDATORY")
POLICY_DIR = Path(__file__).resolve().parents[2] / "policy"
POLICY_NAMES = {
    "gpu-node-pool-taint-and-limit",
    "vllm-api-key-required",
    "load-balancer-exposure",
    "imdsv2-required",
    "eks-secrets-encrypted",
    "images-pinned",
    "gpu-ceiling",
}


@pytest.fixture(scope="module")
def pack() -> dict[str, Any]:
    """__main__.py run the way the policy runtime runs it (runpy on the directory), under a name other than
    __main__ so that it builds its policies without starting the analyzer server."""
    return runpy.run_path(str(POLICY_DIR), run_name="policy_pack_under_test")


def policies(pack: dict[str, Any]) -> dict[str, Policy]:
    return {policy.name: policy for policy in pack["POLICIES"]}


def options() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def resource_args(resource_type: str, props: dict[str, Any], name: str = "r") -> ResourceValidationArgs:
    # The engine hands policies their properties through the SDK's unknown-checking proxy.
    urn = f"urn:pulumi:dev::{PROJECT}::{resource_type}::{name}"
    return ResourceValidationArgs(resource_type, unknown_checking_proxy(props), urn, name, options(), None)


def validate_resource(policy: Policy, args: ResourceValidationArgs) -> list[str]:
    reported: list[str] = []
    assert isinstance(policy, ResourceValidationPolicy)
    policy.validate(args, lambda message, urn=None: reported.append(message))
    return reported


def validate_stack(policy: Policy, args: StackValidationArgs) -> list[str]:
    reported: list[str] = []
    assert isinstance(policy, StackValidationPolicy)
    policy.validate(args, lambda message, urn=None: reported.append(message))
    return reported


def test_the_pack_builds_every_policy_without_an_engine(pack: dict[str, Any]) -> None:
    built = policies(pack)
    assert set(built) == POLICY_NAMES
    assert isinstance(built["gpu-ceiling"], StackValidationPolicy)
    assert all(isinstance(built[name], ResourceValidationPolicy) for name in POLICY_NAMES - {"gpu-ceiling"})
    schema = built["gpu-ceiling"].config_schema
    assert schema is not None
    assert schema.properties["maxGpus"] == {
        "type": "integer",
        "minimum": 0,
        "default": 8,
        "description": "Most nvidia.com/gpu the stack's NodePool limits may add up to.",
    }


def test_a_resource_policy_reports_what_its_rule_finds(pack: dict[str, Any]) -> None:
    cluster = resource_args(EKS_CLUSTER, {"version": "1.35"})
    [message] = validate_resource(policies(pack)["eks-secrets-encrypted"], cluster)
    assert message.startswith("EKS cluster has no encryptionConfig with resources ['secrets']")


def test_the_remote_eks_component_as_the_engine_shows_it_passes(pack: dict[str, Any]) -> None:
    # pulumi-eks's Node SDK registers its component with no properties: nothing to judge, nothing to fail.
    assert (
        validate_resource(policies(pack)["eks-secrets-encrypted"], resource_args("eks:index:Cluster", {}))
        == []
    )


def test_a_key_arn_that_is_unknown_during_preview_still_counts_as_set(pack: dict[str, Any]) -> None:
    encrypted = {"encryptionConfig": {"provider": {"keyArn": UNKNOWN_STRING_VALUE}, "resources": ["secrets"]}}
    assert (
        validate_resource(policies(pack)["eks-secrets-encrypted"], resource_args(EKS_CLUSTER, encrypted))
        == []
    )


def stack_args(pools: Mapping[str, int], config: dict[str, Any]) -> StackValidationArgs:
    resources = [
        PolicyResource(
            NODE_POOL,
            unknown_checking_proxy({"spec": {"limits": {"nvidia.com/gpu": gpus}}}),
            f"urn:pulumi:dev::{PROJECT}::{NODE_POOL}::{name}",
            name,
            options(),
            None,
            None,
            [],
            {},
        )
        for name, gpus in pools.items()
    ]
    return StackValidationArgs(resources, config)


def test_the_gpu_ceiling_reads_max_gpus_from_the_policy_config(pack: dict[str, Any]) -> None:
    ceiling = policies(pack)["gpu-ceiling"]
    # 4 + 6 = 10 GPUs: over the default of 8, within a configured 12.
    pools = {"gpu": 4, "gpu-large": 6}
    assert validate_stack(ceiling, stack_args(pools, {})) == [
        "NodePools may hold 10 GPUs in all, above this stack's ceiling of 8: lower their nvidia.com/gpu limits "
        "or raise the policy's maxGpus"
    ]
    assert validate_stack(ceiling, stack_args(pools, {"maxGpus": 12})) == []


# The pack served as the engine starts it: `python -m pulumi.policy <engine> <pack dir>`, the stack's config in
# PULUMI_CONFIG, the listening port printed on the first line of stdout.


def analyzer(stack_config: dict[str, str]) -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    env = {
        **os.environ,
        "PULUMI_CONFIG": json.dumps(stack_config),
        "PULUMI_PROJECT": PROJECT,
        "PULUMI_STACK": "dev",
        "PULUMI_DRY_RUN": "true",
    }
    process = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.policy", "127.0.0.1:0", str(POLICY_DIR)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        assert port.isdigit(), f"the pack did not start: {process.stderr.read() if process.stderr else ''}"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield analyzer_pb2_grpc.AnalyzerStub(channel)
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def served_pack() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    yield from analyzer({})


@pytest.fixture(scope="module")
def served_pack_allowing_load_balancers() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    yield from analyzer({"llm:serviceType": "LoadBalancer", "llm:loadBalancerScheme": "internal"})


@pytest.fixture(scope="module")
def served_pack_with_a_public_endpoint() -> Iterator[analyzer_pb2_grpc.AnalyzerStub]:
    yield from analyzer(PUBLIC_ENDPOINT)


def struct(props: Mapping[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(json.loads(json.dumps(props, default=str)))
    return message


def analyze_all(
    stub: analyzer_pb2_grpc.AnalyzerStub, resource_type: str, name: str, props: Mapping[str, Any]
) -> list[Any]:
    request = analyzer_pb2.AnalyzeRequest(
        type=resource_type,
        name=name,
        urn=f"urn:pulumi:dev::{PROJECT}::{resource_type}::{name}",
        properties=struct(props),
    )
    return list(stub.Analyze(request).diagnostics)


def analyze(
    stub: analyzer_pb2_grpc.AnalyzerStub, resource_type: str, name: str, props: Mapping[str, Any]
) -> list[str]:
    return [f"{d.policyName}: {d.message}" for d in analyze_all(stub, resource_type, name, props)]


def test_the_served_pack_describes_its_policies(served_pack: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = served_pack.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "self-hosted-llm-guardrails"
    assert {policy.name for policy in info.policies} == POLICY_NAMES
    mandatory = analyzer_pb2.EnforcementLevel.Value("MANDATORY")
    assert {policy.enforcementLevel for policy in info.policies} == {mandatory}


@pytest.mark.parametrize("first_preview", [False, True], ids=["existing-stack", "first-preview"])
def test_the_served_pack_passes_every_resource_of_the_dev_plan_as_the_engine_shows_it(
    served_pack: analyzer_pb2_grpc.AnalyzerStub, dev_plan: PlanResult, first_preview: bool
) -> None:
    seen = list(engine_view(dev_plan, first_preview))
    diagnostics = [
        diagnostic
        for resource_type, name, props in seen
        for diagnostic in analyze_all(served_pack, resource_type, name, props)
    ]
    mandatory = [d for d in diagnostics if d.enforcementLevel == MANDATORY]
    assert [f"{d.policyName}: {d.message}" for d in mandatory] == []
    if first_preview:
        # The cluster's encryptionConfig is unknown until the KMS key exists: the policy SDK says it cannot run
        # the rule yet (advisory), which neither passes nor stops the preview.
        [advisory] = diagnostics
        assert advisory.policyName == "eks-secrets-encrypted"
        assert "can't be known during preview" in advisory.message
    else:
        assert diagnostics == []
    stack = analyzer_pb2.AnalyzeStackRequest(
        resources=[
            analyzer_pb2.AnalyzerResource(
                type=resource_type,
                name=name,
                urn=f"urn:pulumi:dev::{PROJECT}::{resource_type}::{name}",
                properties=struct(props),
            )
            for resource_type, name, props in seen
        ]
    )
    assert list(served_pack.AnalyzeStack(stack).diagnostics) == []


def test_the_served_pack_stops_a_violation(served_pack: analyzer_pb2_grpc.AnalyzerStub) -> None:
    latest = {"spec": {"containers": [{"name": "app", "image": "busybox"}]}}
    assert analyze(served_pack, "kubernetes:core/v1:Pod", "app", latest) == [
        "images-pinned: Container images name a tag other than latest, or a digest; Helm charts are pinned to "
        "one version.\ncontainer 'app' image 'busybox' has no tag (it means latest): pin a version tag or a digest"
    ]


def test_the_served_pack_reads_the_stack_config_for_load_balancers(
    served_pack: analyzer_pb2_grpc.AnalyzerStub,
    served_pack_allowing_load_balancers: analyzer_pb2_grpc.AnalyzerStub,
) -> None:
    internal = {
        "metadata": {"annotations": {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}},
        "spec": {"type": "LoadBalancer"},
    }
    assert analyze(served_pack_allowing_load_balancers, SERVICE, "vllm", internal) == []
    [violation] = analyze(served_pack, SERVICE, "vllm", internal)
    assert violation.startswith("load-balancer-exposure: ")
    assert "the stack's llm:serviceType is ClusterIP" in violation


def test_the_served_pack_takes_max_gpus_from_policy_pack_config() -> None:
    mandatory = analyzer_pb2.EnforcementLevel.Value("MANDATORY")
    configured = analyzer_pb2.PolicyConfig(enforcementLevel=mandatory, properties=struct({"maxGpus": 1}))
    pools = [
        analyzer_pb2.AnalyzerResource(
            type=NODE_POOL,
            name="gpu",
            urn=f"urn:pulumi:dev::{PROJECT}::{NODE_POOL}::gpu",
            properties=struct({"spec": {"limits": {"nvidia.com/gpu": 2}}}),
        )
    ]
    for stub in analyzer({}):
        assert list(stub.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=pools)).diagnostics) == []
        stub.Configure(analyzer_pb2.ConfigureAnalyzerRequest(policyConfig={"gpu-ceiling": configured}))
        [diagnostic] = stub.AnalyzeStack(analyzer_pb2.AnalyzeStackRequest(resources=pools)).diagnostics
        assert diagnostic.policyName == "gpu-ceiling"
        assert diagnostic.enforcementLevel == mandatory
        assert "may hold 2 GPUs in all, above this stack's ceiling of 1" in diagnostic.message


def test_the_served_pack_passes_the_public_endpoint_as_a_first_preview_shows_it(
    served_pack_with_a_public_endpoint: analyzer_pb2_grpc.AnalyzerStub, public_endpoint_plan: PlanResult
) -> None:
    service = public_endpoint_plan.named("load-balancer-endpoint-service").inputs
    # The subnets' IDs are unknown until the subnets exist; every other annotation comes from config.
    annotations = {
        **service["metadata"]["annotations"],
        "service.beta.kubernetes.io/aws-load-balancer-subnets": UNKNOWN_STRING_VALUE,
    }
    first_preview = {**service, "metadata": {**service["metadata"], "annotations": annotations}}
    assert analyze(served_pack_with_a_public_endpoint, SERVICE, "endpoint", first_preview) == []
    without_tls = {
        **service,
        "metadata": {
            **service["metadata"],
            "annotations": {
                name: value for name, value in annotations.items() if not name.endswith("-ssl-cert")
            },
        },
    }
    [violation] = analyze(served_pack_with_a_public_endpoint, SERVICE, "endpoint", without_tls)
    assert violation.startswith("load-balancer-exposure: ")
    assert "has no TLS certificate" in violation
