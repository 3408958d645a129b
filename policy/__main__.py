"""The platform's policy pack: `pulumi preview --policy-pack policy` (see docs/policy.md).

The Pulumi policy runtime runs this directory as a script (`runpy.run_path(dir, run_name="__main__")`,
with the directory on sys.path), so `rules` is imported from beside this file. The checks themselves live
in rules.py as pure functions; here they are wrapped as policies. `PolicyPack(...)` starts the analyzer's
gRPC server and never returns, so it runs only when this file is the entry point: loading it under any
other name (the tests do) builds the policies and stops there.
"""

from __future__ import annotations

from collections.abc import Callable

import pulumi
import rules
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

PACK_NAME = "self-hosted-llm-guardrails"

ResourceRule = Callable[[str, rules.Props], list[str]]

DESCRIPTIONS = {
    "gpu-node-pool-taint-and-limit": (
        "Karpenter NodePools that can launch NVIDIA GPU instances carry the nvidia.com/gpu NoSchedule taint "
        "and an nvidia.com/gpu limit."
    ),
    "vllm-api-key-required": (
        "Every vLLM OpenAI server requires an API key read from a Kubernetes Secret (VLLM_API_KEY or --api-key)."
    ),
    "imdsv2-required": (
        "Karpenter EC2NodeClasses, EC2 launch templates and instances require IMDSv2 (httpTokens: required)."
    ),
    "eks-secrets-encrypted": "EKS clusters encrypt Kubernetes Secrets with a customer managed KMS key.",
    "images-pinned": (
        "Container images name a tag other than latest, or a digest; Helm charts are pinned to one version."
    ),
    "load-balancer-exposure": (
        "No Service of type LoadBalancer unless llm:serviceType is LoadBalancer; it is internal unless "
        "llm:loadBalancerScheme is internet-facing, and then it terminates TLS and admits named client ranges "
        "(0.0.0.0/0 only with llm:loadBalancerOpenToInternet)."
    ),
    "gpu-ceiling": "All NodePools of the stack together may hold at most maxGpus NVIDIA GPUs (cost guardrail).",
}

GPU_CEILING_CONFIG = PolicyConfigSchema(
    properties={
        "maxGpus": {
            "type": "integer",
            "minimum": 0,
            "default": rules.DEFAULT_MAX_GPUS,
            "description": "Most nvidia.com/gpu the stack's NodePool limits may add up to.",
        }
    }
)


def resource_policy(name: str, rule: ResourceRule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in rule(args.resource_type, args.props):
            report_violation(message, None)

    return ResourceValidationPolicy(name=name, description=DESCRIPTIONS[name], validate=validate)


def stack_exposure() -> rules.Exposure:
    """The stack's own config: the engine passes it to the pack in PULUMI_CONFIG, read by pulumi.Config."""
    llm = pulumi.Config("llm")
    return rules.Exposure.from_config(
        llm.get("serviceType"), llm.get("loadBalancerScheme"), llm.get_bool("loadBalancerOpenToInternet")
    )


def validate_service_exposure(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    for message in rules.service_exposure_violations(args.resource_type, args.props, stack_exposure()):
        report_violation(message, None)


def max_gpus(config: rules.Props) -> int:
    return int(config.get("maxGpus", rules.DEFAULT_MAX_GPUS))


def validate_gpu_ceiling(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    resources = [(resource.name, resource.resource_type, resource.props) for resource in args.resources]
    for message in rules.gpu_ceiling_violations(resources, max_gpus(args.get_config())):
        report_violation(message, None)


def build_policies() -> list[Policy]:
    return [
        *(resource_policy(name, rule) for name, rule in rules.RESOURCE_RULES.items()),
        ResourceValidationPolicy(
            name="load-balancer-exposure",
            description=DESCRIPTIONS["load-balancer-exposure"],
            validate=validate_service_exposure,
        ),
        StackValidationPolicy(
            name="gpu-ceiling",
            description=DESCRIPTIONS["gpu-ceiling"],
            validate=validate_gpu_ceiling,
            config_schema=GPU_CEILING_CONFIG,
        ),
    ]


POLICIES = build_policies()

if __name__ == "__main__":
    PolicyPack(name=PACK_NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=POLICIES)
