"""The config schema: one pydantic model per namespace, each field a key with its type, default, bounds and
meaning.

A field is named as its key is, in snake case (`instance_type` for `llm:instanceType`); unknown keys are
refused, settings are frozen. Rules that need one value are field validators; rules across a namespace's
keys are model validators that report every broken rule at its key. What needs the catalogs and the sizing
arithmetic is checked when the config is loaded (stacks/config/__init__.py). `config_schema()` is the JSON
Schema of a stack file's `config:` block, from which Pulumi.yaml and docs/configuration.md are generated.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, ClassVar, Literal, get_args

from pulumi_aws import Region
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.fields import FieldInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

from stacks.catalogs.eks_versions import EKS_VERSIONS, support_status
from stacks.catalogs.instances import GPU_INSTANCES
from stacks.overhead import BatchFlags

VLLM_IMAGE = "vllm/vllm-openai:v0.33.0"
DEFAULT_MODEL = "mistralai/Mistral-7B-Instruct-v0.2"
DEFAULT_KUBERNETES_VERSION = "1.35"
# `vllm serve` flags the platform sets from the sizing plan, the credentials Secret, the pod's grace period and
# the weights' S3 stream: overriding them in llm:extraEngineArgs would ask the engine for other GPUs than the pod
# gets, put a secret in the pod spec, cut streams short on shutdown or load the weights from elsewhere.
# `--device-memory-utilization` is vLLM 0.33's alias of `--gpu-memory-utilization`, and `--config` could set any
# of them from a file (vllm/engine/arg_utils.py).
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
    "--load-format",
    "--model-loader-extra-config",
    "--config",
)
PROMETHEUS_DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
IMAGE_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
AMI_ALIAS = re.compile(r"^al2023@(latest|v\d{8})$")
ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+$")
# ECR reads pull-through cache credentials only from Secrets Manager secrets whose name starts with
# `ecr-pullthroughcache/` (AWS ECR user guide, "Creating a pull through cache rule").
PULL_THROUGH_SECRET_ARN = re.compile(
    r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:ecr-pullthroughcache/[\w/+=.@-]+$"
)
# A Hugging Face revision: a branch, a tag or a commit hash (no "..", which S3 keys and URLs would resolve).
MODEL_REVISION = re.compile(r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._/-]{0,99}$")
COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")
# An ACM certificate's ARN; its region is where a load balancer may use it (ACM certificates are regional).
CERTIFICATE_ARN = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}$")
# A fully qualified DNS name: lower-case labels of letters, digits and '-', at least two, 253 characters at most.
HOSTNAME = re.compile(r"(?=.{1,253}$)([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
# Every region AWS has, as pulumi-aws lists it (pulumi_aws.Region, generated from the provider's schema).
AWS_REGIONS = tuple(region.value for region in Region)
# The one stack that may leave endpoints open to the internet without saying so: a developer's own.
DEV_STACK = "dev"
ANYWHERE = "0.0.0.0/0"
# An API key is the only thing between the internet (or the VPC) and the GPUs; 32 letters and digits are
# about 190 bits, beyond guessing. Generated keys have 48.
MIN_API_KEY_LENGTH = 32


# The llm: fields that shape a load balancer, so mean nothing without one.
LOAD_BALANCER_FIELDS = (
    "load_balancer_scheme",
    "load_balancer_certificate_arn",
    "endpoint_hostname",
    "load_balancer_source_ranges",
    "load_balancer_open_to_internet",
)


# The llm:model* keys that size a model outside the catalog, and the ModelSpec field each gives.
MODEL_SIZE_FIELDS = {
    "model_parameters": "parameters_b",
    "model_layers": "layers",
    "model_attention_heads": "attention_heads",
    "model_kv_heads": "kv_heads",
    "model_head_dim": "head_dim",
    "model_context_length": "context_length",
    "model_hidden_size": "hidden_size",
    "model_intermediate_size": "intermediate_size",
    "model_vocab_size": "vocab_size",
}


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


# Engine flags the sizing reads (stacks/overhead.py): the batch limits of the profiling pass, and eager mode
# (no CUDA graphs).
BATCH_FLAGS = ("--max-num-batched-tokens", "--max-num-seqs")
EAGER_FLAG = "--enforce-eager"


def read_batch_flags(args: Iterable[str]) -> tuple[BatchFlags, list[str]]:
    """The batch flags in engine arguments, and what is wrong with how they are written (each flag spelled in
    full, as `--flag N` or `--flag=N`, N a positive whole number)."""
    values: dict[str, int] = {}
    problems: list[str] = []
    eager = False
    items = list(args)
    for index, arg in enumerate(items):
        name, equals, value = arg.partition("=")
        if not name.startswith("--"):
            continue
        name = "--" + name[2:].replace("_", "-")
        if name == EAGER_FLAG:
            eager = True
            continue
        abbreviated = [flag for flag in BATCH_FLAGS if flag != name and flag.startswith(name)]
        if abbreviated and len(name) > len("--max-num-"):
            problems.append(f"write {abbreviated[0]} in full (not {arg!r}): the sizing reads it")
            continue
        if name not in BATCH_FLAGS:
            continue
        text = value if equals else (items[index + 1] if index + 1 < len(items) else "")
        if not text.isdigit() or int(text) < 1:
            problems.append(f"{name} needs a positive whole number, not {text!r}")
            continue
        values[name] = int(text)
    flags = BatchFlags(
        max_num_batched_tokens=values.get("--max-num-batched-tokens"),
        max_num_seqs=values.get("--max-num-seqs"),
        enforce_eager=eager,
    )
    return flags, problems


def _json_list(value: Any) -> Any:
    """Pulumi passes a list value as its JSON text; anything else reaches the type check as it is."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


# A list key: JSON text from Pulumi, a tuple once parsed (settings are frozen).
StringList = Annotated[tuple[str, ...], BeforeValidator(_json_list)]


def _ipv4_networks(cidrs: tuple[str, ...]) -> tuple[str, ...]:
    bad = []
    for cidr in cidrs:
        try:
            ipaddress.IPv4Network(cidr)
        except ValueError:
            bad.append(cidr)
    if bad:
        raise ValueError(f"expected IPv4 networks in CIDR form such as 203.0.113.0/24, not {', '.join(bad)}")
    return cidrs


# A list of IPv4 CIDRs (host bits zero), such as the clients allowed to reach an endpoint.
CidrList = Annotated[StringList, AfterValidator(_ipv4_networks)]


def _problems(model: str, problems: Iterable[tuple[str, str, Any]]) -> None:
    """Raise every (field alias, message, value) found by a model's cross-field check, each at its key."""
    details = [
        InitErrorDetails(
            type=PydanticCustomError("config", "{message}", {"message": message}), loc=(alias,), input=value
        )
        for alias, message, value in problems
    ]
    if details:
        raise ValidationError.from_exception_data(model, details)


def key_name(field_name: str) -> str:
    """The config key's name of a field: camelCase, with sizes in GiB spelt so (`nodeRootVolumeGiB`)."""
    return to_camel(field_name).replace("Gib", "GiB")


class Namespace(BaseModel):
    """A config namespace: fields named as the keys are (camelCase), unknown keys refused, frozen."""

    model_config = ConfigDict(
        alias_generator=key_name,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        protected_namespaces=(),
    )
    namespace: ClassVar[str]


class AwsSettings(Namespace):
    """pulumi-aws's own keys that the platform reads; the provider's other `aws:` keys are its business."""

    model_config = ConfigDict(extra="ignore")
    namespace: ClassVar[str] = "aws"

    region: str = Field("us-west-2", description="AWS region for every resource.")
    profile: str | None = Field(
        None,
        description="AWS CLI profile for Pulumi and the cluster's kubeconfig; unset: the default credential chain.",
    )

    @field_validator("region")
    @classmethod
    def _known_region(cls, region: str) -> str:
        if region not in AWS_REGIONS:
            close = difflib.get_close_matches(region, AWS_REGIONS, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ValueError(f"expected an AWS region code such as us-west-2{hint}")
        return region


class LlmSettings(Namespace):
    """The model, the GPUs it runs on and how vLLM serves it."""

    namespace: ClassVar[str] = "llm"

    model: str = Field(DEFAULT_MODEL, description="Hugging Face model id served by vLLM.")
    instance_type: str = Field("g6.xlarge", description="EC2 GPU instance type for model nodes.")
    instance_family_fallback: bool = Field(
        False,
        description="Also allow the other sizes of the instance's family (e.g. g6.2xlarge for g6.xlarge) when "
        "the chosen type has no capacity.",
    )
    replicas: int = Field(1, ge=0, description="vLLM replicas (0 parks the model and lets GPU nodes go).")
    max_model_len: int | None = Field(
        None,
        ge=1,
        description="Context length in tokens; unset: the model's full context, capped to what the GPU memory "
        "holds.",
    )
    gpu_memory_utilization: float = Field(
        0.9, gt=0, lt=1, description="Share of each GPU's memory vLLM may use, in (0, 1)."
    )
    capacity_types: Annotated[tuple[Literal["spot", "on-demand"], ...], BeforeValidator(_json_list)] = Field(
        ("spot", "on-demand"),
        examples=[["spot", "on-demand"]],
        min_length=1,
        description="EC2 capacity types for GPU nodes: spot and/or on-demand.",
    )
    hf_token: SecretStr | None = Field(None, description="Hugging Face token; required for gated models.")
    api_key: SecretStr | None = Field(None, description="API key clients must send; unset: one is generated.")
    model_revision: str = Field(
        "main",
        description="Hugging Face revision of the model (a commit hash or tag) staged into the stack's S3 bucket and "
        "served; pin a commit so the cache holds exactly what is served.",
    )
    keep_weights_bucket: bool = Field(
        False,
        description="Keep the S3 bucket of staged weights on `pulumi destroy`; unset, destroy empties and deletes it.",
    )
    docker_hub_credentials_arn: str | None = Field(
        None,
        description="Secrets Manager secret (name prefix ecr-pullthroughcache/) with Docker Hub credentials: the vLLM "
        "image is then pulled through an ECR pull-through cache in the stack's region.",
    )
    vllm_image: str = Field(
        VLLM_IMAGE,
        description="vLLM OpenAI server image, pinned by tag or, better, by digest (repo:tag@sha256:...).",
    )
    extra_engine_args: StringList = Field(
        (),
        examples=[["--enforce-eager"]],
        description='Extra vLLM engine arguments, e.g. ["--enforce-eager"].',
    )
    max_gpus: int | None = Field(
        None,
        ge=1,
        description="Hard ceiling on GPUs the GPU node pool may hold (cost guardrail); unset: what the plan needs "
        "(its nodes plus one spare node, times the instance's GPUs).",
    )
    service_type: Literal["ClusterIP", "LoadBalancer"] = Field(
        "ClusterIP", description="How the endpoint is exposed: ClusterIP (port-forward) or LoadBalancer."
    )
    load_balancer_scheme: Literal["internal", "internet-facing"] = Field(
        "internal", description="With serviceType LoadBalancer: internal (VPC only) or internet-facing."
    )
    load_balancer_certificate_arn: str | None = Field(
        None,
        description="ACM certificate (in the stack's region) for llm:endpointHostname: the load balancer then "
        "terminates TLS on 443. Required for internet-facing.",
    )
    endpoint_hostname: str | None = Field(
        None,
        description="DNS name clients use (a CNAME to the load_balancer_hostname output), covered by the "
        "certificate; endpoint_url is https://<it>/v1.",
    )
    load_balancer_source_ranges: CidrList = Field(
        (),
        examples=[["203.0.113.0/24"]],
        description="Client CIDRs the load balancer admits (its security group and the NetworkPolicy); unset: "
        "the VPC's CIDR for internal, required for internet-facing.",
    )
    load_balancer_open_to_internet: bool = Field(
        False,
        description="Let an internet-facing endpoint admit 0.0.0.0/0, on purpose (the API key and TLS still "
        "guard it).",
    )
    client_namespaces: StringList = Field(
        (),
        examples=[["apps"]],
        description="Namespaces whose pods may call the endpoint inside the cluster; the model server's "
        "NetworkPolicy admits them (and Prometheus) only.",
    )
    model_parameters: float | None = Field(
        None, gt=0, description="Parameters in billions, for a model outside the catalog."
    )
    model_layers: int | None = Field(
        None, ge=1, description="Hidden layers (num_hidden_layers), for a model outside the catalog."
    )
    model_attention_heads: int | None = Field(
        None, ge=1, description="Attention heads (num_attention_heads), for a model outside the catalog."
    )
    model_kv_heads: int | None = Field(
        None, ge=1, description="Key/value heads (num_key_value_heads), for a model outside the catalog."
    )
    model_head_dim: int | None = Field(
        None, ge=1, description="Head dimension (head_dim), for a model outside the catalog."
    )
    model_context_length: int | None = Field(
        None, ge=1, description="Context length (max_position_embeddings), for a model outside the catalog."
    )
    model_hidden_size: int | None = Field(
        None, ge=1, description="Hidden size (hidden_size), for a model outside the catalog."
    )
    model_intermediate_size: int | None = Field(
        None,
        ge=1,
        description="MLP intermediate size (intermediate_size; times num_experts_per_tok for a mixture of "
        "experts), for a model outside the catalog.",
    )
    model_vocab_size: int | None = Field(
        None, ge=1, description="Vocabulary size (vocab_size), for a model outside the catalog."
    )
    model_gated: bool = Field(
        False, description="Whether a model outside the catalog needs a Hugging Face token."
    )

    @field_validator("instance_type")
    @classmethod
    def _catalog_instance(cls, name: str) -> str:
        if name not in GPU_INSTANCES:
            raise ValueError("expected a GPU instance type from the catalog: " + ", ".join(GPU_INSTANCES))
        return name

    @field_validator("model_revision")
    @classmethod
    def _revision(cls, revision: str) -> str:
        if not MODEL_REVISION.match(revision):
            raise ValueError(
                "expected a Hugging Face branch, tag or commit hash (letters, digits, '.', '_', '-', '/'), e.g. main "
                "or a 40-character commit"
            )
        return revision

    @field_validator("docker_hub_credentials_arn")
    @classmethod
    def _pull_through_secret(cls, arn: str | None) -> str | None:
        if arn is not None and not PULL_THROUGH_SECRET_ARN.match(arn):
            raise ValueError(
                "expected the ARN of a Secrets Manager secret whose name starts with ecr-pullthroughcache/ (ECR reads "
                "pull-through credentials from no other), e.g. "
                "arn:aws:secretsmanager:us-west-2:123456789012:secret:ecr-pullthroughcache/docker-hub-AbCdEf"
            )
        return arn

    @property
    def image_cached(self) -> bool:
        """Whether the vLLM image comes through the stack's ECR pull-through cache."""
        return self.docker_hub_credentials_arn is not None

    @field_validator("vllm_image")
    @classmethod
    def _pinned_image(cls, image: str) -> str:
        name, _, digest = image.partition("@")
        tag = name.rsplit("/", 1)[-1].partition(":")[2]
        if digest and not IMAGE_DIGEST.fullmatch(digest):
            raise ValueError(
                f"expected a digest of the form sha256:<64 hex digits> after '@', e.g. {VLLM_IMAGE}@sha256:..."
            )
        if not digest and (not tag or tag in ("latest", "nightly")):
            raise ValueError(
                f"expected an image pinned by tag, e.g. {VLLM_IMAGE}, or by digest: {VLLM_IMAGE}@sha256:<digest>"
            )
        return image

    @field_validator("extra_engine_args")
    @classmethod
    def _unmanaged_flags(cls, args: tuple[str, ...]) -> tuple[str, ...]:
        managed = [arg for arg in args if is_managed_engine_flag(arg)]
        if managed:
            raise ValueError(
                f"{managed!r} set what the platform sets; expected flags other than "
                + ", ".join(MANAGED_ENGINE_FLAGS)
                + " (set by llm:model, llm:maxModelLen, llm:gpuMemoryUtilization, llm:instanceType and llm:apiKey)"
            )
        problems = read_batch_flags(args)[1]
        if problems:
            raise ValueError("; ".join(problems))
        return args

    @field_validator("load_balancer_certificate_arn")
    @classmethod
    def _certificate(cls, arn: str | None) -> str | None:
        if arn is not None and not CERTIFICATE_ARN.match(arn):
            raise ValueError(
                "expected the ARN of an ACM certificate, e.g. "
                "arn:aws:acm:us-west-2:123456789012:certificate/0a1b2c3d-4e5f-6789-abcd-ef0123456789"
            )
        return arn

    @field_validator("endpoint_hostname")
    @classmethod
    def _hostname(cls, name: str | None) -> str | None:
        if name is not None and not HOSTNAME.fullmatch(name):
            raise ValueError(
                "expected a fully qualified DNS name in lower case, e.g. llm.example.com (no scheme, port or "
                "wildcard)"
            )
        return name

    @model_validator(mode="after")
    def _exposure(self) -> LlmSettings:
        """A load balancer's keys agree: TLS and named clients on the internet, keys only where they apply."""
        problems: list[tuple[str, str, Any]] = []
        if self.service_type != "LoadBalancer":
            for name in LOAD_BALANCER_FIELDS:
                value = getattr(self, name)
                if value != LlmSettings.model_fields[name].default:
                    problems.append(
                        (
                            key_name(name),
                            "applies only with llm:serviceType LoadBalancer; set that or drop it",
                            value,
                        )
                    )
            _problems("LlmSettings", problems)
            return self
        internet = self.load_balancer_scheme == "internet-facing"
        if internet and self.load_balancer_certificate_arn is None:
            problems.append(
                (
                    "loadBalancerCertificateArn",
                    "an internet-facing endpoint serves only TLS, so it needs an ACM certificate in the stack's "
                    "region for the name clients use. Request one with `aws acm request-certificate "
                    "--domain-name llm.example.com --validation-method DNS --region <aws:region>`, add the CNAME "
                    "record ACM asks for, then set llm:loadBalancerCertificateArn and llm:endpointHostname "
                    "(or use llm:loadBalancerScheme internal)",
                    None,
                )
            )
        if self.load_balancer_certificate_arn is not None and self.endpoint_hostname is None:
            problems.append(
                (
                    "endpointHostname",
                    "expected the DNS name the certificate covers (e.g. llm.example.com): clients verify the "
                    "certificate against it",
                    None,
                )
            )
        if self.endpoint_hostname is not None and self.load_balancer_certificate_arn is None:
            problems.append(
                (
                    "endpointHostname",
                    "applies only with llm:loadBalancerCertificateArn (the TLS listener serves that name)",
                    self.endpoint_hostname,
                )
            )
        anywhere = not self.load_balancer_source_ranges or ANYWHERE in self.load_balancer_source_ranges
        if internet and anywhere and not self.load_balancer_open_to_internet:
            problems.append(
                (
                    "loadBalancerSourceRanges",
                    'expected the client ranges that may call the endpoint (e.g. ["203.0.113.0/24"] for an '
                    "office or VPN): an internet-facing endpoint admits only the ranges named. Set "
                    "llm:loadBalancerOpenToInternet: true to admit 0.0.0.0/0 on purpose",
                    list(self.load_balancer_source_ranges),
                )
            )
        _problems("LlmSettings", problems)
        return self

    @field_validator("client_namespaces")
    @classmethod
    def _namespace_names(cls, namespaces: tuple[str, ...]) -> tuple[str, ...]:
        bad = [namespace for namespace in namespaces if not DNS_LABEL.fullmatch(namespace)]
        if bad:
            raise ValueError(
                f"expected Kubernetes namespace names (lower-case letters, digits and '-', at most 63), not {', '.join(bad)}"
            )
        return namespaces

    @field_validator("api_key")
    @classmethod
    def _strong_key(cls, key: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if (
            key is not None
            and _context(info).secrets_readable
            and len(key.get_secret_value()) < MIN_API_KEY_LENGTH
        ):
            raise ValueError(
                f"expected at least {MIN_API_KEY_LENGTH} characters (e.g. `openssl rand -hex 24`), or leave it "
                "unset and a 48-character key is generated"
            )
        return key

    @property
    def model_size(self) -> dict[str, Any]:
        """The size keys of a model outside the catalog, by ModelSpec field."""
        return {spec_field: getattr(self, name) for name, spec_field in MODEL_SIZE_FIELDS.items()}

    @property
    def batch_flags(self) -> BatchFlags:
        """The batch limits and eager mode llm:extraEngineArgs sets for the sizing."""
        return read_batch_flags(self.extra_engine_args)[0]


MODEL_SIZE_KEYS = tuple(f"llm:{key_name(name)}" for name in MODEL_SIZE_FIELDS)


class NetworkSettings(Namespace):
    """The VPC."""

    namespace: ClassVar[str] = "network"

    cidr: str = Field("10.0.0.0/16", description="VPC IPv4 CIDR block (/16 to /20).")
    az_count: int = Field(
        3, ge=2, le=6, description="Availability zones to spread subnets over (at least 2)."
    )
    nat_gateways: Literal["single", "perAz"] = Field(
        "single", description="NAT gateways: single (cheaper) or perAz (zone-resilient)."
    )

    @field_validator("cidr")
    @classmethod
    def _private_block(cls, cidr: str) -> str:
        try:
            network = ipaddress.IPv4Network(cidr)
        except ValueError:
            raise ValueError(
                "expected an IPv4 network in CIDR form with host bits zero, e.g. 10.0.0.0/16"
            ) from None
        # AWS allows /16 to /28 VPCs; from /21 on, the subnet layout (components/network/layout.py) leaves too
        # few addresses for pods (one VPC address each) and for load balancers in the public subnets.
        if not 16 <= network.prefixlen <= 20:
            raise ValueError("expected a prefix length from /16 to /20, room for pods and load balancers")
        if not network.is_private:
            raise ValueError("expected a private range (RFC 1918), e.g. 10.0.0.0/16")
        return cidr


class ClusterSettings(Namespace):
    """The EKS cluster and the nodes Karpenter launches into it."""

    namespace: ClassVar[str] = "cluster"

    version: str = Field(DEFAULT_KUBERNETES_VERSION, description="EKS Kubernetes version.")
    support_type: Literal["STANDARD", "EXTENDED"] = Field(
        "STANDARD",
        description="EKS support policy: STANDARD, or EXTENDED to keep a version past standard support ($0.60/h).",
    )
    public_access_cidrs: CidrList = Field(
        ("0.0.0.0/0",),
        examples=[["203.0.113.0/24"]],
        description="CIDRs allowed to reach the public API endpoint; [] makes the endpoint private only.",
    )
    public_access_open_to_internet: bool = Field(
        False,
        description="Keep the public API endpoint open to 0.0.0.0/0 in a stack other than dev, on purpose (IAM "
        "still authenticates every call).",
    )
    admin_role_arns: StringList = Field(
        (),
        examples=[["arn:aws:iam::123456789012:role/admin"]],
        description="IAM role ARNs given cluster-admin through EKS access entries.",
    )
    preview_role_arns: StringList = Field(
        (),
        examples=[["arn:aws:iam::123456789012:role/selfhost-preview"]],
        description="IAM role ARNs of read-only previews (CI on pull requests): view access, plus the Helm release "
        "Secrets of the platform's namespaces.",
    )
    node_ami_alias: str = Field(
        "al2023@latest",
        description="Karpenter AMI alias for nodes; pin a version (al2023@v20260728) for production.",
    )
    node_root_volume_gib: int = Field(
        50,
        ge=20,
        le=16384,
        description="Encrypted gp3 root volume per node, GiB (OS only).",
    )

    @field_validator("admin_role_arns", "preview_role_arns")
    @classmethod
    def _role_arns(cls, arns: tuple[str, ...]) -> tuple[str, ...]:
        bad = [arn for arn in arns if not ROLE_ARN.match(arn)]
        if bad:
            raise ValueError(
                f"{bad!r} are not IAM role ARNs; expected e.g. arn:aws:iam::123456789012:role/admin"
            )
        return arns

    @field_validator("node_ami_alias")
    @classmethod
    def _ami_alias(cls, alias: str) -> str:
        if not AMI_ALIAS.match(alias):
            raise ValueError("expected al2023@latest or a pinned al2023@vYYYYMMDD")
        return alias

    @field_validator("version")
    @classmethod
    def _known_version(cls, version: str, info: ValidationInfo) -> str:
        today = _context(info).today
        if support_status(version, today) in ("unknown", "ended"):
            supported = ", ".join(v for v in EKS_VERSIONS if support_status(v, today) != "ended")
            # YAML reads an unquoted 1.30 as the number 1.3, which Pulumi passes on as "1.3".
            hint = ""
            if version + "0" in EKS_VERSIONS:
                hint = f" (YAML reads {version}0 as the number {version}: quote it, '{version}0')"
            raise ValueError(f"expected a version EKS supports on {today.isoformat()}: {supported}{hint}")
        return version

    @model_validator(mode="after")
    def _across_keys(self, info: ValidationInfo) -> ClusterSettings:
        context = _context(info)
        problems = []
        if support_status(self.version, context.today) == "extended" and self.support_type != "EXTENDED":
            standard = ", ".join(v for v in EKS_VERSIONS if support_status(v, context.today) == "standard")
            problems.append(
                (
                    "version",
                    f"expected a version in standard support ({standard}), or set cluster:supportType "
                    "EXTENDED and pay $0.60/h instead of $0.10/h",
                    self.version,
                )
            )
        if (
            ANYWHERE in self.public_access_cidrs
            and context.stack != DEV_STACK
            and not self.public_access_open_to_internet
        ):
            problems.append(
                (
                    "publicAccessCidrs",
                    f'expected your office, VPN or CI egress ranges (e.g. ["203.0.113.0/24"]), or [] for a private '
                    f"endpoint: stack {context.stack} would open its Kubernetes API to the whole internet. Set "
                    "cluster:publicAccessOpenToInternet: true to keep it open on purpose",
                    list(self.public_access_cidrs),
                )
            )
        _problems("ClusterSettings", problems)
        return self


class MonitoringSettings(Namespace):
    """Prometheus and Grafana."""

    namespace: ClassVar[str] = "monitoring"

    retention: str = Field("15d", description="Prometheus retention (a Prometheus duration).")
    persistence: bool = Field(
        False, description="Keep Prometheus data on an EBS volume (true) or in emptyDir (false)."
    )
    storage_gib: int = Field(
        50,
        ge=1,
        le=16384,
        description="Prometheus EBS volume size, GiB, when persistence is on.",
    )

    @field_validator("retention")
    @classmethod
    def _duration(cls, retention: str) -> str:
        if not PROMETHEUS_DURATION.match(retention):
            raise ValueError("expected a Prometheus duration such as 15d or 12h")
        return retention


class AutoscalingSettings(Namespace):
    """Replicas that follow the load (KEDA), down to zero when the endpoint is idle."""

    namespace: ClassVar[str] = "autoscaling"

    enabled: bool = Field(
        False,
        description="Scale the model server on its load with KEDA; off: llm:replicas replicas run always.",
    )
    min_replicas: int = Field(
        0, ge=0, le=64, description="Fewest replicas; 0 scales to zero and holds requests while one starts."
    )
    max_replicas: int = Field(
        2, ge=1, le=64, description="Most replicas; the GPU pool, quota and peak cost follow it."
    )
    idle_minutes: int = Field(
        30,
        ge=1,
        le=1440,
        description="Minutes without a request before the last replica goes (minReplicas 0).",
    )
    target_waiting_per_replica: float = Field(
        2.0,
        gt=0,
        le=1000,
        description="Requests waiting in vLLM's queue per replica before another is added.",
    )
    kv_cache_target: float = Field(
        0.8,
        gt=0,
        le=1,
        description="KV-cache usage per replica (0-1) before another is added (second signal).",
    )
    hold_seconds: int | None = Field(
        None,
        ge=30,
        le=3600,
        description="How long a request waits for a replica to start from zero before it is answered 503; unset: "
        "the startup budget and a half.",
    )

    @model_validator(mode="after")
    def _range(self) -> AutoscalingSettings:
        if self.min_replicas > self.max_replicas:
            _problems(
                "AutoscalingSettings",
                [
                    (
                        "minReplicas",
                        f"expected at most autoscaling:maxReplicas ({self.max_replicas})",
                        self.min_replicas,
                    )
                ],
            )
        return self

    @property
    def scale_to_zero(self) -> bool:
        return self.enabled and self.min_replicas == 0


NAMESPACES: tuple[type[Namespace], ...] = (
    AwsSettings,
    LlmSettings,
    NetworkSettings,
    ClusterSettings,
    MonitoringSettings,
    AutoscalingSettings,
)
# The namespaces this project owns: every key in them must be one the schema knows.
OWNED_NAMESPACES = frozenset(model.namespace for model in NAMESPACES) - {"aws"}


@dataclass(frozen=True)
class ValidationContext:
    """What validation needs beyond the values: the stack (dev may be more open than the others), the day (for
    EKS support windows) and whether secret values are readable (the offline plan never decrypts them, so
    their contents cannot be checked there)."""

    stack: str
    today: date
    secrets_readable: bool


def _context(info: ValidationInfo) -> ValidationContext:
    """The context load_config gives; settings built directly (in tests) are checked as of today."""
    context = info.context
    return (
        context
        if isinstance(context, ValidationContext)
        else ValidationContext(stack=DEV_STACK, today=date.today(), secrets_readable=True)
    )


def fields_by_key(model: type[Namespace]) -> dict[str, FieldInfo]:
    """A namespace's fields by the names its keys use."""
    return {field.alias or key_name(name): field for name, field in model.model_fields.items()}


def is_secret(field: FieldInfo | None) -> bool:
    return field is not None and SecretStr in (field.annotation, *get_args(field.annotation))


@dataclass(frozen=True)
class ConfigKey:
    """One key as the JSON Schema documents it, for Pulumi.yaml and the configuration reference."""

    name: str
    kind: str
    default: Any
    description: str
    secret: bool

    @property
    def has_default(self) -> bool:
        return self.default is not None


def config_schema() -> dict[str, Any]:
    """The JSON Schema of a stack file's `config:` block: every key of every namespace, fully qualified."""
    properties: dict[str, Any] = {}
    for model in NAMESPACES:
        for alias, prop in model.model_json_schema(by_alias=True)["properties"].items():
            properties[f"{model.namespace}:{alias}"] = prop
    return {
        "title": "self-hosted-llm stack config",
        "type": "object",
        "properties": properties,
        # Keys of namespaces the project does not own (pulumi-aws's aws:*, other providers') are theirs.
        "patternProperties": {f"^(?!({'|'.join(sorted(OWNED_NAMESPACES))}):)": {}},
        "additionalProperties": False,
    }


def config_keys() -> list[ConfigKey]:
    """Every key, in schema order, as the JSON Schema describes it."""
    keys = []
    for name, prop in config_schema()["properties"].items():
        options = prop.get("anyOf", [prop])
        default = prop.get("default")
        keys.append(
            ConfigKey(
                name=name,
                kind=next(option["type"] for option in options if option.get("type") not in (None, "null")),
                default=list(default) if isinstance(default, tuple) else default,
                description=prop["description"],
                secret=any(option.get("format") == "password" for option in options),
            )
        )
    return keys
