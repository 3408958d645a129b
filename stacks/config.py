"""The stack's configuration: every key declared once, parsed into frozen settings, all errors at once.

Pulumi hands a program its config as strings (arrays as JSON text), so parsing starts from a mapping of
fully qualified keys (`llm:model`) to strings. `load_config` never touches Pulumi; `config_from_pulumi`
reads the running stack's config into that mapping and hands secrets over as Pulumi secret Outputs.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

import pulumi

from stacks.catalogs.eks_versions import EKS_VERSIONS, support_status
from stacks.catalogs.instances import GPU_INSTANCES, GpuInstance
from stacks.catalogs.models import MODELS, ModelSpec
from stacks.sizing import ServingPlan, SizingError, plan_serving

Kind = Literal["string", "integer", "number", "boolean", "array"]


@dataclass(frozen=True)
class Key:
    """One config key: its fully qualified name, type, default (None: unset) and meaning."""

    name: str
    kind: Kind
    default: Any
    description: str
    secret: bool = False


VLLM_IMAGE = "vllm/vllm-openai:v0.33.0"
DEFAULT_MODEL = "mistralai/Mistral-7B-Instruct-v0.2"
DEFAULT_KUBERNETES_VERSION = "1.35"

KEYS: tuple[Key, ...] = (
    Key("aws:region", "string", "us-west-2", "AWS region for every resource."),
    Key(
        "aws:profile",
        "string",
        None,
        "AWS CLI profile for Pulumi and the cluster's kubeconfig; unset: the default credential chain.",
    ),
    Key("llm:model", "string", DEFAULT_MODEL, "Hugging Face model id served by vLLM."),
    Key("llm:instanceType", "string", "g6.xlarge", "EC2 GPU instance type for model nodes."),
    Key(
        "llm:instanceFamilyFallback",
        "boolean",
        False,
        "Also allow the other sizes of the instance's family (e.g. g6.2xlarge for g6.xlarge) when "
        "the chosen type has no capacity.",
    ),
    Key("llm:replicas", "integer", 1, "vLLM replicas (0 parks the model and lets GPU nodes go)."),
    Key(
        "llm:maxModelLen",
        "integer",
        None,
        "Context length in tokens; unset: the model's full context, capped to what the GPU memory holds.",
    ),
    Key(
        "llm:gpuMemoryUtilization",
        "number",
        0.9,
        "Share of each GPU's memory vLLM may use, in (0, 1).",
    ),
    Key(
        "llm:capacityTypes",
        "array",
        ["spot", "on-demand"],
        "EC2 capacity types for GPU nodes: spot and/or on-demand.",
    ),
    Key("llm:hfToken", "string", None, "Hugging Face token; required for gated models.", secret=True),
    Key("llm:apiKey", "string", None, "API key clients must send; unset: one is generated.", secret=True),
    Key("llm:vllmImage", "string", VLLM_IMAGE, "vLLM OpenAI server image, pinned by tag."),
    Key("llm:extraEngineArgs", "array", [], 'Extra vLLM engine arguments, e.g. ["--enforce-eager"].'),
    Key("llm:maxGpus", "integer", 8, "Ceiling on GPUs the GPU node pool may hold (cost guardrail)."),
    Key(
        "llm:serviceType",
        "string",
        "ClusterIP",
        "How the endpoint is exposed: ClusterIP (port-forward) or LoadBalancer.",
    ),
    Key(
        "llm:loadBalancerScheme",
        "string",
        "internal",
        "With serviceType LoadBalancer: internal (VPC only) or internet-facing.",
    ),
    Key("llm:modelParameters", "number", None, "Parameters in billions, for a model outside the catalog."),
    Key(
        "llm:modelLayers",
        "integer",
        None,
        "Hidden layers (num_hidden_layers), for a model outside the catalog.",
    ),
    Key(
        "llm:modelAttentionHeads",
        "integer",
        None,
        "Attention heads (num_attention_heads), for a model outside the catalog.",
    ),
    Key(
        "llm:modelKvHeads",
        "integer",
        None,
        "Key/value heads (num_key_value_heads), for a model outside the catalog.",
    ),
    Key("llm:modelHeadDim", "integer", None, "Head dimension (head_dim), for a model outside the catalog."),
    Key(
        "llm:modelContextLength",
        "integer",
        None,
        "Context length (max_position_embeddings), for a model outside the catalog.",
    ),
    Key(
        "llm:modelGated", "boolean", False, "Whether a model outside the catalog needs a Hugging Face token."
    ),
    Key("network:cidr", "string", "10.0.0.0/16", "VPC IPv4 CIDR block (/16 to /20)."),
    Key("network:azCount", "integer", 3, "Availability zones to spread subnets over (at least 2)."),
    Key(
        "network:natGateways", "string", "single", "NAT gateways: single (cheaper) or perAz (zone-resilient)."
    ),
    Key("cluster:version", "string", DEFAULT_KUBERNETES_VERSION, "EKS Kubernetes version."),
    Key(
        "cluster:supportType",
        "string",
        "STANDARD",
        "EKS support policy: STANDARD, or EXTENDED to keep a version past standard support ($0.60/h).",
    ),
    Key(
        "cluster:publicAccessCidrs",
        "array",
        ["0.0.0.0/0"],
        "CIDRs allowed to reach the public API endpoint; [] makes the endpoint private only.",
    ),
    Key(
        "cluster:adminRoleArns", "array", [], "IAM role ARNs given cluster-admin through EKS access entries."
    ),
    Key(
        "cluster:nodeAmiAlias",
        "string",
        "al2023@latest",
        "Karpenter AMI alias for nodes; pin a version (al2023@v20260728) for production.",
    ),
    Key("cluster:nodeRootVolumeGiB", "integer", 50, "Encrypted gp3 root volume per node, GiB (OS only)."),
    Key("monitoring:retention", "string", "15d", "Prometheus retention (a Prometheus duration)."),
    Key(
        "monitoring:persistence",
        "boolean",
        False,
        "Keep Prometheus data on an EBS volume (true) or in emptyDir (false).",
    ),
    Key("monitoring:storageGiB", "integer", 50, "Prometheus EBS volume size, GiB, when persistence is on."),
)

KEYS_BY_NAME: Mapping[str, Key] = {key.name: key for key in KEYS}
NAMESPACES = frozenset(key.name.split(":", 1)[0] for key in KEYS) - {"aws"}

MODEL_SIZE_KEYS = (
    "llm:modelParameters",
    "llm:modelLayers",
    "llm:modelAttentionHeads",
    "llm:modelKvHeads",
    "llm:modelHeadDim",
    "llm:modelContextLength",
)
KIND_NAMES: Mapping[Kind, str] = {
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "array": 'a list, e.g. ["a", "b"]',
}
CAPACITY_TYPES = ("spot", "on-demand")
NAT_MODES = ("single", "perAz")
SERVICE_TYPES = ("ClusterIP", "LoadBalancer")
# `vllm serve` flags the platform sets from the sizing plan, the credentials Secret and the pod's grace period:
# overriding them in llm:extraEngineArgs would ask the engine for other GPUs than the pod gets, put a secret in
# the pod spec, or cut streams short on shutdown. `--device-memory-utilization` is vLLM 0.33's alias of
# `--gpu-memory-utilization`, and `--config` could set any of them from a file (vllm/engine/arg_utils.py).
MANAGED_ENGINE_FLAGS = (
    "--model",
    "--served-model-name",
    "--port",
    "--tensor-parallel-size",
    "-tp",
    "--max-model-len",
    "--gpu-memory-utilization",
    "--device-memory-utilization",
    "--api-key",
    "--hf-token",
    "--shutdown-timeout",
    "--config",
)
LOAD_BALANCER_SCHEMES = ("internal", "internet-facing")
SUPPORT_TYPES = ("STANDARD", "EXTENDED")
PROMETHEUS_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
AMI_ALIAS = re.compile(r"^al2023@(latest|v\d{8})$")
AWS_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
# The stack name is part of every AWS name (PlatformConfig.name). The longest auto-named one is the Karpenter
# controller's IAM role, "llm-<stack>-karpenter-controller-role" plus the "-" and 7 random characters Pulumi
# appends, and IAM role names hold 64 characters: 64 - 8 - 4 - 26 leaves 26 for the stack. Pulumi stack names
# may also contain ".", which neither an EKS cluster name nor an SQS queue name (the interruption queue is
# named after the cluster) accepts.
MAX_STACK_NAME_LENGTH = 26
STACK_NAME = re.compile(r"[A-Za-z0-9_-]+")


def is_managed_engine_flag(arg: str) -> bool:
    """Whether an engine argument names a managed flag as vLLM's parser would read it: underscores count as
    dashes (vllm/utils/argparse_utils.py) and argparse accepts any unambiguous prefix of a long flag."""
    name = arg.split("=", 1)[0]
    if not name.startswith("--"):
        return name in MANAGED_ENGINE_FLAGS
    name = "--" + name[2:].replace("_", "-")
    return len(name) > 2 and any(
        flag.startswith(name) for flag in MANAGED_ENGINE_FLAGS if flag.startswith("--")
    )


class ConfigError(pulumi.RunError):
    """Every problem found in a stack's config; each message names the key, the value and what is valid.

    A RunError, so `pulumi up` and `preview` print the messages without a Python stack trace.
    """

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {e}" for e in errors))


@dataclass(frozen=True)
class LlmSettings:
    model: ModelSpec
    instance: GpuInstance
    instance_family_fallback: bool
    replicas: int
    max_model_len: int | None
    gpu_memory_utilization: float
    capacity_types: tuple[str, ...]
    vllm_image: str
    extra_engine_args: tuple[str, ...]
    max_gpus: int
    service_type: str
    load_balancer_scheme: str
    hf_token: pulumi.Output[str] | None = field(default=None, repr=False, compare=False)
    api_key: pulumi.Output[str] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class NetworkSettings:
    cidr: str
    az_count: int
    nat_gateways: str


@dataclass(frozen=True)
class ClusterSettings:
    version: str
    support_type: str
    public_access_cidrs: tuple[str, ...]
    admin_role_arns: tuple[str, ...]
    node_ami_alias: str
    node_root_volume_gib: int


@dataclass(frozen=True)
class MonitoringSettings:
    retention: str
    persistence: bool
    storage_gib: int


@dataclass(frozen=True)
class PlatformConfig:
    """Validated settings for one stack, plus the serving plan derived from them."""

    stack: str
    region: str
    aws_profile: str | None
    llm: LlmSettings
    network: NetworkSettings
    cluster: ClusterSettings
    monitoring: MonitoringSettings
    serving: ServingPlan
    warnings: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The prefix for every named AWS and Kubernetes object of this stack."""
        return f"llm-{self.stack}"


class _Reader:
    """Parses raw string values key by key, collecting errors instead of raising on the first."""

    def __init__(self, raw: Mapping[str, str]):
        self.raw = raw
        self.errors: list[str] = []

    def bad(self, key: str, value: object, valid: str) -> None:
        self.errors.append(f"{key}: {value!r} is not valid; expected {valid}")

    def value(self, name: str) -> Any:
        key = KEYS_BY_NAME[name]
        text = self.raw.get(name)
        if text is None:
            return key.default
        parsed = _parse(key.kind, text)
        if parsed is _INVALID:
            self.bad(name, text, KIND_NAMES[key.kind])
            return key.default
        return parsed

    def choice(self, name: str, allowed: tuple[str, ...]) -> str:
        value = self.value(name)
        if value not in allowed:
            self.bad(name, value, "one of " + ", ".join(allowed))
            return KEYS_BY_NAME[name].default
        return value

    def integer(self, name: str, minimum: int, maximum: int | None = None) -> int:
        value = self.optional_integer(name, minimum, maximum)
        return KEYS_BY_NAME[name].default if value is None else value

    def optional_integer(self, name: str, minimum: int, maximum: int | None = None) -> int | None:
        value = self.value(name)
        if value is None:
            return None
        upper = maximum if maximum is not None else math.inf
        if not minimum <= value <= upper:
            bound = f"from {minimum} to {maximum}" if maximum is not None else f"≥ {minimum}"
            self.bad(name, value, f"a whole number {bound}")
            return KEYS_BY_NAME[name].default
        return value

    def strings(self, name: str) -> tuple[str, ...]:
        value = self.value(name)
        if not all(isinstance(item, str) for item in value):
            self.bad(name, value, "a list of strings")
            return tuple(KEYS_BY_NAME[name].default)
        return tuple(value)


_INVALID = object()


def _parse(kind: Kind, text: str) -> Any:
    try:
        if kind == "string":
            return text
        if kind == "integer":
            return int(text.strip())
        if kind == "number":
            number = float(text.strip())
            return number if math.isfinite(number) else _INVALID
        if kind == "boolean":
            return {"true": True, "false": False}.get(text.strip().lower(), _INVALID)
        value = json.loads(text)
        return value if isinstance(value, list) else _INVALID
    except ValueError:
        return _INVALID


def load_config(
    raw: Mapping[str, str],
    stack: str,
    secrets: Mapping[str, pulumi.Output[str]] | None = None,
    today: date | None = None,
) -> PlatformConfig:
    """Validate a stack's raw config; raise ConfigError naming every bad key at once."""
    secrets = secrets or {}
    today = today or date.today()
    read = _Reader(raw)
    warnings: list[str] = []

    if not STACK_NAME.fullmatch(stack) or len(stack) > MAX_STACK_NAME_LENGTH:
        read.errors.append(
            f"stack name {stack!r} is not valid; expected at most {MAX_STACK_NAME_LENGTH} letters, digits, "
            f"'-' or '_' (AWS names such as the IAM role llm-{stack}-karpenter-controller-role contain it)"
        )
    for name in raw:
        namespace = name.split(":", 1)[0]
        if namespace in NAMESPACES and name not in KEYS_BY_NAME:
            read.errors.append(
                f"{name}: unknown key; valid keys in {namespace}: are "
                + ", ".join(key.name for key in KEYS if key.name.startswith(namespace + ":"))
            )

    region = read.value("aws:region")
    if not AWS_REGION.match(region):
        read.bad("aws:region", region, "an AWS region code such as us-west-2")
    model = _model(read)
    instance = _instance(read)
    replicas = read.integer("llm:replicas", 0)
    max_model_len = read.optional_integer("llm:maxModelLen", 1)
    if model is not None and max_model_len is not None and max_model_len > model.context_length:
        read.bad(
            "llm:maxModelLen",
            max_model_len,
            f"at most {model.context_length}, the context length of {model.id}",
        )
        max_model_len = None
    utilization = read.value("llm:gpuMemoryUtilization")
    if not 0 < utilization < 1:
        read.bad("llm:gpuMemoryUtilization", utilization, "a number strictly between 0 and 1, e.g. 0.9")
        utilization = KEYS_BY_NAME["llm:gpuMemoryUtilization"].default
    capacity_types = read.strings("llm:capacityTypes")
    if not capacity_types or any(c not in CAPACITY_TYPES for c in capacity_types):
        read.bad("llm:capacityTypes", list(capacity_types), 'a non-empty list of "spot" and/or "on-demand"')
    vllm_image = read.value("llm:vllmImage")
    if ":" not in vllm_image.rsplit("/", 1)[-1] or vllm_image.endswith((":latest", ":nightly")):
        read.bad("llm:vllmImage", vllm_image, "an image pinned by tag, e.g. " + VLLM_IMAGE)
    extra_args = read.strings("llm:extraEngineArgs")
    managed = [arg for arg in extra_args if is_managed_engine_flag(arg)]
    if managed:
        read.bad(
            "llm:extraEngineArgs",
            managed,
            "flags other than " + ", ".join(MANAGED_ENGINE_FLAGS) + " (set by llm:model, llm:maxModelLen, "
            "llm:gpuMemoryUtilization, llm:instanceType and llm:apiKey)",
        )
    max_gpus = read.integer("llm:maxGpus", 1)
    service_type = read.choice("llm:serviceType", SERVICE_TYPES)
    scheme = read.choice("llm:loadBalancerScheme", LOAD_BALANCER_SCHEMES)

    network = _network(read)
    cluster = _cluster(read, today, warnings)
    monitoring = _monitoring(read)

    serving = None
    if model is not None and instance is not None:
        if model.gated and "llm:hfToken" not in secrets and "llm:hfToken" not in raw:
            warnings.append(
                f"{model.id} is gated: set llm:hfToken (pulumi config set --secret llm:hfToken hf_...) "
                "or the model download fails"
            )
        try:
            serving = plan_serving(model, instance, utilization, max_model_len, replicas)
        except SizingError as error:
            read.errors.append(str(error))
        else:
            if serving.gpu_limit > max_gpus:
                read.bad(
                    "llm:maxGpus",
                    max_gpus,
                    f"at least {serving.gpu_limit}, the GPU node pool limit for {replicas} replica(s) of "
                    f"{model.id} on {instance.name}; or lower llm:replicas",
                )
            warnings.extend(serving.notes)

    if read.errors:
        raise ConfigError(read.errors)
    assert model is not None and instance is not None and serving is not None
    llm = LlmSettings(
        model=model,
        instance=instance,
        instance_family_fallback=read.value("llm:instanceFamilyFallback"),
        replicas=replicas,
        max_model_len=max_model_len,
        gpu_memory_utilization=utilization,
        capacity_types=capacity_types,
        vllm_image=vllm_image,
        extra_engine_args=extra_args,
        max_gpus=max_gpus,
        service_type=service_type,
        load_balancer_scheme=scheme,
        hf_token=secrets.get("llm:hfToken"),
        api_key=secrets.get("llm:apiKey"),
    )
    return PlatformConfig(
        stack=stack,
        region=region,
        aws_profile=read.value("aws:profile"),
        llm=llm,
        network=network,
        cluster=cluster,
        monitoring=monitoring,
        serving=serving,
        warnings=tuple(warnings),
    )


def _model(read: _Reader) -> ModelSpec | None:
    model_id = read.value("llm:model")
    if model_id in MODELS:
        return MODELS[model_id]
    missing = [key for key in MODEL_SIZE_KEYS if key not in read.raw]
    if missing:
        read.bad(
            "llm:model",
            model_id,
            "a catalog model ("
            + ", ".join(MODELS)
            + ") or a model whose size is given by setting "
            + ", ".join(missing),
        )
        return None
    sizes = {
        "parameters_b": read.value("llm:modelParameters"),
        "layers": read.optional_integer("llm:modelLayers", 1),
        "attention_heads": read.optional_integer("llm:modelAttentionHeads", 1),
        "kv_heads": read.optional_integer("llm:modelKvHeads", 1),
        "head_dim": read.optional_integer("llm:modelHeadDim", 1),
        "context_length": read.optional_integer("llm:modelContextLength", 1),
    }
    if sizes["parameters_b"] is None or sizes["parameters_b"] <= 0:
        read.bad("llm:modelParameters", sizes["parameters_b"], "a positive number of billions, e.g. 7.2")
    if any(value is None or value <= 0 for value in sizes.values()):
        return None
    if sizes["attention_heads"] % sizes["kv_heads"]:
        read.bad(
            "llm:modelKvHeads",
            sizes["kv_heads"],
            f"a divisor of llm:modelAttentionHeads ({sizes['attention_heads']})",
        )
        return None
    return ModelSpec(
        id=model_id,
        license="unknown (not in catalog)",
        gated=read.value("llm:modelGated"),
        source="stack config",
        **sizes,
    )


def _instance(read: _Reader) -> GpuInstance | None:
    name = read.value("llm:instanceType")
    if name not in GPU_INSTANCES:
        read.bad(
            "llm:instanceType", name, "a GPU instance type from the catalog: " + ", ".join(GPU_INSTANCES)
        )
        return None
    return GPU_INSTANCES[name]


def _network(read: _Reader) -> NetworkSettings:
    cidr = read.value("network:cidr")
    try:
        network = ipaddress.IPv4Network(cidr)
    except ValueError:
        read.bad("network:cidr", cidr, "an IPv4 network in CIDR form with host bits zero, e.g. 10.0.0.0/16")
    else:
        # AWS allows /16 to /28 VPCs; from /21 on, the subnet layout (components/network/component.py) leaves too
        # few addresses for pods (one VPC address each) and for load balancers in the public subnets.
        if not 16 <= network.prefixlen <= 20:
            read.bad(
                "network:cidr", cidr, "a prefix length from /16 to /20, room for pods and load balancers"
            )
        elif not network.is_private:
            read.bad("network:cidr", cidr, "a private range (RFC 1918), e.g. 10.0.0.0/16")
    return NetworkSettings(
        cidr=cidr,
        az_count=read.integer("network:azCount", 2, 6),
        nat_gateways=read.choice("network:natGateways", NAT_MODES),
    )


def _cluster(read: _Reader, today: date, warnings: list[str]) -> ClusterSettings:
    version = read.value("cluster:version")
    support_type = read.choice("cluster:supportType", SUPPORT_TYPES)
    status = support_status(version, today)
    supported = ", ".join(v for v in EKS_VERSIONS if support_status(v, today) != "ended")
    if status in ("unknown", "ended"):
        read.bad("cluster:version", version, f"a version EKS supports on {today.isoformat()}: {supported}")
    elif status == "extended" and support_type != "EXTENDED":
        read.bad(
            "cluster:version",
            version,
            f"a version in standard support ({', '.join(v for v in EKS_VERSIONS if support_status(v, today) == 'standard')}), "
            "or set cluster:supportType EXTENDED and pay $0.60/h instead of $0.10/h",
        )
    elif status == "extended":
        warnings.append(
            f"cluster:version {version} is in EKS extended support: the control plane costs $0.60/h"
        )

    cidrs = read.strings("cluster:publicAccessCidrs")
    for cidr in cidrs:
        try:
            ipaddress.IPv4Network(cidr)
        except ValueError:
            read.bad("cluster:publicAccessCidrs", cidr, "IPv4 networks in CIDR form, e.g. 203.0.113.0/24")
    if "0.0.0.0/0" in cidrs:
        warnings.append(
            "cluster:publicAccessCidrs allows the whole internet to reach the API endpoint (IAM still "
            "authenticates); narrow it to your office or VPN range"
        )
    arns = read.strings("cluster:adminRoleArns")
    for arn in arns:
        if not ROLE_ARN.match(arn):
            read.bad("cluster:adminRoleArns", arn, "IAM role ARNs, e.g. arn:aws:iam::123456789012:role/admin")
    alias = read.value("cluster:nodeAmiAlias")
    if not AMI_ALIAS.match(alias):
        read.bad("cluster:nodeAmiAlias", alias, "al2023@latest or a pinned al2023@vYYYYMMDD")
    return ClusterSettings(
        version=version,
        support_type=support_type,
        public_access_cidrs=cidrs,
        admin_role_arns=arns,
        node_ami_alias=alias,
        node_root_volume_gib=read.integer("cluster:nodeRootVolumeGiB", 20, 16384),
    )


def _monitoring(read: _Reader) -> MonitoringSettings:
    retention = read.value("monitoring:retention")
    if not PROMETHEUS_DURATION.match(retention):
        read.bad("monitoring:retention", retention, "a Prometheus duration such as 15d or 12h")
    return MonitoringSettings(
        retention=retention,
        persistence=read.value("monitoring:persistence"),
        storage_gib=read.integer("monitoring:storageGiB", 1, 16384),
    )


def config_from_pulumi() -> PlatformConfig:
    """Read the running stack's config (plain keys as text, secret keys as secret Outputs)."""
    raw: dict[str, str] = {}
    secrets: dict[str, pulumi.Output[str]] = {}
    for key in KEYS:
        namespace, name = key.name.split(":", 1)
        config = pulumi.Config(namespace)
        if key.secret:
            value = config.get_secret(name)
            if value is not None:
                secrets[key.name] = value
            continue
        text = config.get(name)
        if text is not None:
            raw[key.name] = text
    return load_config(raw, pulumi.get_stack(), secrets)
