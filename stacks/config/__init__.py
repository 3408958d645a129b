"""The stack's configuration: validated settings for every namespace, every error at once.

Pulumi hands a program its config as text (lists as JSON text) under fully qualified keys (`llm:replicas`).
`load_config` checks such a mapping in two steps and reports what both find in one `ConfigError`:
1. each namespace's pydantic model (stacks/config/schema.py) parses and checks its keys: types, ranges,
   choices, formats, unknown keys;
2. what needs the catalogs and the sizing arithmetic: the model's size, whether it fits the instance, and
   the GPU ceiling.
Every message names the fully qualified key, the bad value and what is valid (stacks/config/messages.py).
Secrets are pydantic `SecretStr`s, masked in every repr and never quoted in an error; they become Pulumi
secret Outputs where the platform registers resources. `config_from_pulumi` reads the running stack's config
as the Pulumi language host hands it over, every key included, so a misspelt key fails `pulumi up`, `preview`
and `selfhost plan` alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import pulumi
from pydantic import ValidationError

from stacks.autoscaling import (
    TLS_HOLD_LIMIT_SECONDS,
    TLS_LISTENER_IDLE_SECONDS,
    ScalingPolicy,
    scaling_policy,
)
from stacks.catalogs.eks_versions import support_status
from stacks.catalogs.instances import GPU_INSTANCES, GpuInstance
from stacks.catalogs.models import MODELS, ModelSpec
from stacks.config.messages import from_validation_error, invalid, plain_text_secrets, unknown_namespaces
from stacks.config.schema import (
    ANYWHERE,
    COMMIT_HASH,
    MODEL_SIZE_KEYS,
    NAMESPACES,
    OWNED_NAMESPACES,
    VLLM_IMAGE,
    AutoscalingSettings,
    AwsSettings,
    ClusterSettings,
    ConfigKey,
    LlmSettings,
    MonitoringSettings,
    NetworkSettings,
    ValidationContext,
    config_keys,
    config_schema,
)
from stacks.sizing import ServingPlan, SizingError, plan_serving, weights_bytes
from stacks.startup import StartupBudget, startup_budget

__all__ = [
    "OWNED_NAMESPACES",
    "VLLM_IMAGE",
    "AwsSettings",
    "ClusterSettings",
    "ConfigError",
    "ConfigKey",
    "LlmSettings",
    "MonitoringSettings",
    "NetworkSettings",
    "PlatformConfig",
    "config_from_pulumi",
    "config_keys",
    "config_schema",
    "load_config",
]

# The stack name is part of every AWS name (PlatformConfig.name). The longest auto-named one is the Karpenter
# controller's IAM role, "llm-<stack>-karpenter-controller-role" plus the "-" and 7 random characters Pulumi
# appends, and IAM role names hold 64 characters: 64 - 8 - 4 - 26 leaves 26 for the stack. Pulumi stack names
# may also contain ".", which neither an EKS cluster name nor an SQS queue name (the interruption queue is
# named after the cluster) accepts.
MAX_STACK_NAME_LENGTH = 26
STACK_NAME = re.compile(r"[A-Za-z0-9_-]+")


class ConfigError(pulumi.RunError):
    """Every problem found in a stack's config; each message names the key, the value and what is valid.

    A RunError, so `pulumi up` and `preview` print the messages without a Python stack trace.
    """

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {e}" for e in errors))


@dataclass(frozen=True)
class PlatformConfig:
    """A stack's validated settings, the catalog entries they name and the serving plan derived from them."""

    stack: str
    aws: AwsSettings
    llm: LlmSettings
    network: NetworkSettings
    cluster: ClusterSettings
    monitoring: MonitoringSettings
    autoscaling: AutoscalingSettings
    model: ModelSpec
    instance: GpuInstance
    serving: ServingPlan
    startup: StartupBudget
    # What KEDA scales on; None with autoscaling off.
    scaling: ScalingPolicy | None
    warnings: tuple[str, ...] = ()

    @property
    def region(self) -> str:
        return self.aws.region

    @property
    def name(self) -> str:
        """The prefix for every named AWS and Kubernetes object of this stack."""
        return f"llm-{self.stack}"


def load_config(
    raw: Mapping[str, str],
    stack: str,
    *,
    secret_keys: Collection[str] = (),
    secrets_readable: bool = True,
    today: date | None = None,
) -> PlatformConfig:
    """Validate a stack's config (fully qualified keys to text); raise ConfigError naming every bad key.

    `secret_keys` are the keys stored encrypted (`secure:`) in the stack file; `secrets_readable` is false when
    their values are only placeholders (the offline plan), so their contents are not checked.
    """
    context = ValidationContext(stack=stack, today=today or date.today(), secrets_readable=secrets_readable)
    errors: list[str] = []
    if not STACK_NAME.fullmatch(stack) or len(stack) > MAX_STACK_NAME_LENGTH:
        errors.append(
            f"stack name {stack!r} is not valid; expected at most {MAX_STACK_NAME_LENGTH} letters, digits, "
            f"'-' or '_' (AWS names such as the IAM role llm-{stack}-karpenter-controller-role contain it)"
        )
    errors += plain_text_secrets(raw, secret_keys)
    namespace_errors, namespace_warnings = unknown_namespaces(raw)
    errors += namespace_errors
    by_namespace: dict[str, dict[str, str]] = {model.namespace: {} for model in NAMESPACES}
    for key, value in raw.items():
        namespace, _, name = key.partition(":")
        if namespace in by_namespace:
            by_namespace[namespace][name] = value
    parsed: dict[str, Any] = {}
    for model in NAMESPACES:
        try:
            parsed[model.namespace] = model.model_validate(by_namespace[model.namespace], context=context)
        except ValidationError as error:
            errors += from_validation_error(model, error, by_namespace[model.namespace])
    llm = parsed.get("llm")
    autoscaling = parsed.get("autoscaling")
    # With autoscaling on, the plan (nodes, the GPU pool's limit, quota, peak cost) is sized for maxReplicas.
    scaled = autoscaling is not None and autoscaling.enabled
    replicas_key = "autoscaling:maxReplicas" if scaled else "llm:replicas"
    replicas = autoscaling.max_replicas if scaled and autoscaling is not None else llm.replicas if llm else 0
    resolved = _resolve_llm(llm, replicas, replicas_key, errors) if llm is not None else None
    if llm is not None and "aws" in parsed:
        errors += _region_mismatches(llm, parsed["aws"])
    if llm is not None and autoscaling is not None:
        errors += _hold_beyond_tls_limit(llm, autoscaling)
    if errors:
        raise ConfigError(errors)
    assert resolved is not None
    model, instance, serving, warnings = resolved
    startup = startup_budget(instance, weights_bytes(model), parsed["llm"].image_cached)
    behind_tls = _behind_tls(parsed["llm"], parsed["autoscaling"])
    scaling = scaling_policy(parsed["autoscaling"], serving, startup, behind_tls)
    return PlatformConfig(
        stack=stack,
        **parsed,
        model=model,
        instance=instance,
        serving=serving,
        startup=startup,
        scaling=scaling,
        warnings=(
            *namespace_warnings,
            *_cluster_warnings(parsed["cluster"], context.today),
            *warnings,
            *_artifact_warnings(parsed["llm"]),
            *_short_hold_warnings(scaling, startup, behind_tls),
        ),
    )


def _behind_tls(llm: LlmSettings, autoscaling: AutoscalingSettings) -> bool:
    """Requests held at zero replicas reach the interceptor through the load balancer's TLS listener."""
    return (
        autoscaling.scale_to_zero
        and llm.service_type == "LoadBalancer"
        and llm.load_balancer_certificate_arn is not None
    )


def _hold_beyond_tls_limit(llm: LlmSettings, autoscaling: AutoscalingSettings) -> list[str]:
    if not _behind_tls(llm, autoscaling) or (autoscaling.hold_seconds or 0) <= TLS_HOLD_LIMIT_SECONDS:
        return []
    return [
        invalid(
            "autoscaling",
            "holdSeconds",
            f"expected at most {TLS_HOLD_LIMIT_SECONDS} behind the load balancer's TLS listener, which closes a "
            f"connection after {TLS_LISTENER_IDLE_SECONDS} s without a byte (an AWS limit that cannot be raised): "
            "a longer hold would cut the held request without an answer",
            autoscaling.hold_seconds,
        )
    ]


def _short_hold_warnings(
    scaling: ScalingPolicy | None, startup: StartupBudget, behind_tls: bool
) -> list[str]:
    # behind_tls implies scale to zero (_behind_tls): requests are held at the interceptor.
    if scaling is None or not behind_tls or scaling.hold_seconds >= startup.total_seconds:
        return []
    hold = scaling.hold_seconds
    return [
        f"a request through the load balancer's TLS listener is held at most {hold} s for a replica (the NLB closes "
        f"TLS connections idle for {TLS_LISTENER_IDLE_SECONDS} s), less than the {startup.total_seconds} s a "
        "replica takes from zero: the first request after an idle spell is answered 503 model_starting, and a "
        "retry a minute later is served"
    ]


def _region_mismatches(llm: LlmSettings, aws: AwsSettings) -> list[str]:
    """ARNs that must be in the stack's region: an ECR pull-through rule reads its credentials from a secret in
    its own region, and a load balancer uses only certificates of its own (ACM certificates are regional)."""
    regional = (
        (
            "dockerHubCredentialsArn",
            llm.docker_hub_credentials_arn,
            f"expected a secret in the stack's region {aws.region} (the pull-through cache rule and its "
            "credentials live in one region); copy the secret there",
        ),
        (
            "loadBalancerCertificateArn",
            llm.load_balancer_certificate_arn,
            f"expected a certificate in the stack's region {aws.region}: ACM certificates cannot be used or "
            f"copied across regions; request or import one with --region {aws.region}",
        ),
    )
    return [
        invalid("llm", key, message, arn)
        for key, arn, message in regional
        if arn is not None and arn.split(":")[3] != aws.region
    ]


def _artifact_warnings(llm: LlmSettings) -> list[str]:
    warnings = []
    if not COMMIT_HASH.match(llm.model_revision):
        warnings.append(
            f"llm:modelRevision {llm.model_revision} is not a commit: the S3 cache holds it as staged the first "
            "time and a later change upstream is not fetched; pin the commit hash for a reproducible cache"
        )
    if not llm.image_cached:
        warnings.append(
            "llm:dockerHubCredentialsArn is unset: every new GPU node pulls the vLLM image from Docker Hub "
            "anonymously through the NAT gateway, where its pull limit counts per address "
            "(docs/operations.md#the-image-and-docker-hubs-limit)"
        )
    return warnings


def _resolve_llm(
    llm: LlmSettings, replicas: int, replicas_key: str, errors: list[str]
) -> tuple[ModelSpec, GpuInstance, ServingPlan, list[str]] | None:
    """The catalog model (or one sized by the llm:model* keys), its instance and its serving plan."""
    model = _model(llm, errors)
    if model is None:
        return None
    if llm.max_model_len is not None and llm.max_model_len > model.context_length:
        errors.append(
            invalid(
                "llm",
                "maxModelLen",
                f"expected at most {model.context_length}, the context length of {model.id}",
                llm.max_model_len,
            )
        )
        return None
    instance = GPU_INSTANCES[llm.instance_type]
    warnings = []
    if model.gated and llm.hf_token is None:
        warnings.append(
            f"{model.id} is gated: set llm:hfToken (pulumi config set --secret llm:hfToken hf_...) "
            "or the model download fails"
        )
    try:
        serving = plan_serving(
            model, instance, llm.gpu_memory_utilization, llm.max_model_len, replicas, llm.batch_flags
        )
    except SizingError as error:
        errors.append(str(error))
        return None
    if llm.max_gpus is not None and serving.gpu_limit > llm.max_gpus:
        errors.append(
            invalid(
                "llm",
                "maxGpus",
                f"expected at least {serving.gpu_limit}, the GPU node pool limit for {replicas} replica(s) of "
                f"{model.id} on {instance.name}; or lower {replicas_key}",
                llm.max_gpus,
            )
        )
        return None
    return model, instance, serving, [*warnings, *serving.notes]


def _model(llm: LlmSettings, errors: list[str]) -> ModelSpec | None:
    if llm.model in MODELS:
        return MODELS[llm.model]
    size = llm.model_size
    missing = [key for key, value in zip(MODEL_SIZE_KEYS, size.values(), strict=True) if value is None]
    if missing:
        errors.append(
            invalid(
                "llm",
                "model",
                f"expected a catalog model ({', '.join(MODELS)}) or a model whose size is given by setting "
                + ", ".join(missing),
                llm.model,
            )
        )
        return None
    if size["attention_heads"] % size["kv_heads"]:
        errors.append(
            invalid(
                "llm",
                "modelKvHeads",
                f"expected a divisor of llm:modelAttentionHeads ({size['attention_heads']})",
                size["kv_heads"],
            )
        )
        return None
    return ModelSpec(
        id=llm.model, license="unknown (not in catalog)", gated=llm.model_gated, source="stack config", **size
    )


def _cluster_warnings(cluster: ClusterSettings, today: date) -> list[str]:
    warnings = []
    if support_status(cluster.version, today) == "extended":
        warnings.append(
            f"cluster:version {cluster.version} is in EKS extended support: the control plane costs $0.60/h"
        )
    if ANYWHERE in cluster.public_access_cidrs:
        warnings.append(
            "cluster:publicAccessCidrs allows the whole internet to reach the API endpoint (IAM still "
            "authenticates); narrow it to your office or VPN range"
        )
    return warnings


def config_from_pulumi(secrets_readable: bool = True) -> PlatformConfig:
    """Read the running stack's config, every key of it, as the language host passes it to the program.

    The Pulumi CLI hands a program its whole config in the PULUMI_CONFIG environment variable and names the
    encrypted keys in PULUMI_CONFIG_SECRET_KEYS (pulumi-language-python); programs run in-process (the
    Automation API's inline programs, the SDK's mocks) get theirs through `pulumi.runtime.set_all_config`.
    """
    raw = {**pulumi.runtime.get_config_env(), **pulumi.runtime.config.CONFIG.get()}
    secret_keys = {
        *pulumi.runtime.get_config_secret_keys_env(),
        *(key for key in raw if pulumi.runtime.is_config_secret(key)),
    }
    text = {key: value if isinstance(value, str) else json.dumps(value) for key, value in raw.items()}
    return load_config(text, pulumi.get_stack(), secret_keys=secret_keys, secrets_readable=secrets_readable)
