"""The platform's guardrails as pure functions of a resource's type token and its properties.

Each rule returns the list of violation messages for one resource (empty when it complies), or for the
whole stack in the case of the GPU ceiling. The policy pack (`__main__.py`) runs them inside `pulumi
preview`/`pulumi up`; the test suite runs the same functions over the offline plan. Properties are
camelCase, as the engine serializes them. Inside the engine they arrive wrapped in read-only proxies that
are `collections.abc.Mapping`/`Sequence` but not `dict`/`list`, and that raise when a value is still
unknown during a preview; so rules test for the abstract types and, where a value may be an output of
another resource (an ARN), only check that the property is present.

Rules judge what the engine shows them. A remote component (pulumi-eks's `eks:index:Cluster`, Helm v4's
`Chart`) reaches the policy pack as its provider registers it inside Construct: pulumi-eks's bundled Node SDK
(@pulumi/pulumi 3.173, nodejs/eks/yarn.lock) sends it with no properties at all, and the program-side
registration with its inputs never passes the engine's step generator (pulumi/pulumi source_eval.go). So no
rule reads a remote component's inputs; they judge its children (`aws:eks/cluster:Cluster`, the rendered
Kubernetes objects) instead.

This module depends on the standard library only: it is loaded both as `policy.rules` (tests) and as
`rules` from the pack's own directory (the Pulumi policy runtime puts that directory on sys.path).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Props = Mapping[str, Any]

# Type tokens as the engine reports them: pulumi_kubernetes registers a CustomResource as
# `kubernetes:<apiVersion>:<kind>`, the typed classes with their `pulumi.type_token`.
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
EC2_NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
SERVICE = "kubernetes:core/v1:Service"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
EKS_CLUSTER = "aws:eks/cluster:Cluster"
# Remote components: the engine shows them without properties (see the module docstring).
REMOTE_COMPONENTS = frozenset({"eks:index:Cluster", "kubernetes:helm.sh/v4:Chart"})
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
EC2_INSTANCE = "aws:ec2/instance:Instance"

# Where each workload kind keeps its pod spec.
POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "kubernetes:core/v1:Pod": ("spec",),
    "kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
    "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:DaemonSet": ("spec", "template", "spec"),
    "kubernetes:apps/v1:ReplicaSet": ("spec", "template", "spec"),
    "kubernetes:batch/v1:Job": ("spec", "template", "spec"),
    "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")

GPU_RESOURCE = "nvidia.com/gpu"
DEFAULT_MAX_GPUS = 8

# Karpenter's well-known instance labels (karpenter.k8s.aws/v1 scheduling docs, v1.14).
_GPU_LABELS = (
    "karpenter.k8s.aws/instance-gpu-count",
    "karpenter.k8s.aws/instance-gpu-name",
    "karpenter.k8s.aws/instance-gpu-memory",
)
_GPU_MANUFACTURER_LABEL = "karpenter.k8s.aws/instance-gpu-manufacturer"
_INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
_INSTANCE_FAMILY_LABEL = "karpenter.k8s.aws/instance-family"
_INSTANCE_CATEGORY_LABEL = "karpenter.k8s.aws/instance-category"
# Every EC2 g, gr and p family carries NVIDIA GPUs except g4ad, whose GPUs are AMD Radeon Pro V520
# (EC2 "Accelerated computing" instance families: g4dn, g5, g5g, g6, g6e, g6f, gr6, p4d, p5, p6-b200...).
_NVIDIA_FAMILY = re.compile(r"^(?:gr?\d+[a-z]*|p\d+[a-z]*(?:-[a-z0-9]+)?)$")
_NON_NVIDIA_FAMILIES = frozenset({"g4ad"})
_GPU_CATEGORIES = frozenset({"g", "p"})

# Exposure of a Service of type LoadBalancer on EKS. The in-tree/cloud-provider-aws controller, which
# handles every LoadBalancer Service unless another controller claims it, reads only
# `aws-load-balancer-internal` and makes internet-facing load balancers otherwise. The AWS Load Balancer
# Controller reads `aws-load-balancer-scheme` (and the internal annotation, deprecated) for Services it
# claims through loadBalancerClass `service.k8s.aws/nlb` or `aws-load-balancer-type: external`.
# Sources: kubernetes/cloud-provider-aws ServiceAnnotationLoadBalancerInternal; AWS Load Balancer
# Controller docs, guide/service/annotations and guide/service/nlb.
INTERNAL_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-internal"
SCHEME_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-scheme"
_LB_TYPE_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-type"
_LB_CONTROLLER_CLASS = "service.k8s.aws/nlb"
# TLS at the load balancer (both controllers read it) and the client ranges (the spec field, or the annotation
# both controllers also accept). Sources: AWS Load Balancer Controller docs, guide/service/annotations
# (ssl-cert, load-balancer-source-ranges); Kubernetes ServiceSpec.loadBalancerSourceRanges.
SSL_CERT_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-ssl-cert"
_SOURCE_RANGES_ANNOTATION = "service.beta.kubernetes.io/load-balancer-source-ranges"
_SSL_PORTS_ANNOTATION = "service.beta.kubernetes.io/aws-load-balancer-ssl-ports"
_ANYWHERE = "0.0.0.0/0"

# vLLM enables bearer-token auth when `--api-key` is given or, failing that, VLLM_API_KEY is set
# (vllm/entrypoints/serve/middleware/register.py at v0.33.0: `args.api_key or [envs.VLLM_API_KEY]`).
VLLM_IMAGE_REPOSITORY = "vllm/vllm-openai"
VLLM_API_KEY_ENV = "VLLM_API_KEY"
_API_KEY_FLAG = "--api-key"
_ENV_REFERENCE = re.compile(r"^\$(?:\((\w+)\)|\{(\w+)\}|(\w+))$")

# Helm requires chart versions to be SemVer 2; anything else (`^1.2`, `~1`, `>=1`, `*`) is a range.
_EXACT_CHART_VERSION = re.compile(r"^v?\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$")


def _get(value: Any, *path: str) -> Any:
    """The value at a path of mapping keys, or None where the path does not exist."""
    for key in path:
        if not isinstance(value, Mapping) or key not in _keys(value):
            return None
        value = value[key]
    return value


def _keys(mapping: Mapping[str, Any]) -> list[str]:
    """A mapping's keys, read without touching its values (which may be unknown during a preview)."""
    return list(iter(mapping))


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, (str, bytes))


def _items(value: Any) -> list[Any]:
    return list(value) if _is_list(value) else []


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# 1. GPU node pools carry the GPU taint and a GPU limit.


def is_gpu_node_pool(props: Props) -> bool:
    """Whether a NodePool can launch NVIDIA GPU instances, judged from its requirements, labels and limits."""
    template = _mapping(_get(props, "spec", "template"))
    if GPU_RESOURCE in _keys(_mapping(_get(props, "spec", "limits"))):
        return True
    if "nvidia.com/gpu.present" in _keys(_mapping(_get(template, "metadata", "labels"))):
        return True
    return any(_selects_gpus(_mapping(term)) for term in _items(_get(template, "spec", "requirements")))


def _selects_gpus(requirement: Mapping[str, Any]) -> bool:
    key, operator = requirement.get("key"), requirement.get("operator")
    values = [str(value) for value in _items(requirement.get("values"))]
    if operator in ("NotIn", "DoesNotExist"):
        return False
    if key == _GPU_MANUFACTURER_LABEL:
        return operator == "Exists" or "nvidia" in values
    if key in _GPU_LABELS:
        return True
    if key == _INSTANCE_CATEGORY_LABEL:
        return bool(_GPU_CATEGORIES.intersection(values))
    if key == _INSTANCE_FAMILY_LABEL:
        return any(_is_nvidia_family(value) for value in values)
    if key == _INSTANCE_TYPE_LABEL:
        return any(_is_nvidia_family(value.split(".", 1)[0]) for value in values)
    return False


def _is_nvidia_family(family: str) -> bool:
    return family not in _NON_NVIDIA_FAMILIES and _NVIDIA_FAMILY.match(family) is not None


def gpu_limit(props: Props) -> int | None:
    """The NodePool's `nvidia.com/gpu` limit as a whole number, or None when unset or not a whole number."""
    limits = _mapping(_get(props, "spec", "limits"))
    if GPU_RESOURCE not in _keys(limits):
        return None
    value = limits[GPU_RESOURCE]
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def gpu_node_pool_violations(resource_type: str, props: Props) -> list[str]:
    if resource_type != NODE_POOL or not is_gpu_node_pool(props):
        return []
    violations = []
    taints = [_mapping(taint) for taint in _items(_get(props, "spec", "template", "spec", "taints"))]
    if not any(t.get("key") == GPU_RESOURCE and t.get("effect") == "NoSchedule" for t in taints):
        violations.append(
            "GPU NodePool has no `nvidia.com/gpu` NoSchedule taint in spec.template.spec.taints: "
            "pods that do not request GPUs could be scheduled onto (and keep alive) GPU nodes"
        )
    limit = gpu_limit(props)
    if limit is None or limit < 0:
        violations.append(
            "GPU NodePool sets no whole-number `nvidia.com/gpu` in spec.limits: "
            "Karpenter could buy GPU nodes without bound"
        )
    return violations


# 2. No vLLM endpoint without an API key.


def pod_spec(resource_type: str, props: Props) -> Mapping[str, Any] | None:
    path = POD_SPEC_PATHS.get(resource_type)
    if path is None:
        return None
    return _mapping(_get(props, *path))


def containers(resource_type: str, props: Props) -> Iterator[Mapping[str, Any]]:
    spec = pod_spec(resource_type, props)
    if spec is None:
        return
    for container_list in CONTAINER_LISTS:
        for container in _items(spec.get(container_list)):
            yield _mapping(container)


def image_repository(image: str) -> str:
    """The image reference without its tag or digest: `docker.io/vllm/vllm-openai:v1` -> `docker.io/vllm/vllm-openai`."""
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    last = last.split(":", 1)[0]
    return f"{head}/{last}" if head else last


def _is_vllm_image(image: str) -> bool:
    repository = image_repository(image)
    return repository == VLLM_IMAGE_REPOSITORY or repository.endswith("/" + VLLM_IMAGE_REPOSITORY)


def vllm_api_key_violations(resource_type: str, props: Props) -> list[str]:
    violations = []
    for container in containers(resource_type, props):
        image = container.get("image")
        if isinstance(image, str) and _is_vllm_image(image) and _serves_api(container):
            violations.extend(_vllm_container_violations(container))
    return violations


def _serves_api(container: Mapping[str, Any]) -> bool:
    """Whether a container of the vLLM image runs its API server: the image's entrypoint (`vllm serve`) when no
    command replaces it, or a command that starts `vllm serve` or the OpenAI api_server module. A program of
    its own in the image (a staging Job's script) opens no API."""
    command = [str(part) for part in _items(container.get("command"))]
    if not command:
        return True
    words = " ".join([*command, *(str(arg) for arg in _items(container.get("args")))])
    return re.search(r"\bvllm\s+serve\b|vllm\.entrypoints\.openai\.api_server", words) is not None


def _vllm_container_violations(container: Mapping[str, Any]) -> list[str]:
    name = container.get("name", "?")
    env = [_mapping(variable) for variable in _items(container.get("env"))]
    from_secret = {v.get("name") for v in env if isinstance(_get(v, "valueFrom", "secretKeyRef"), Mapping)}
    plain = {v.get("name") for v in env if "value" in _keys(v)}
    violations = []
    flag_values = list(_api_key_flag_values(container))
    for value in flag_values:
        reference = _ENV_REFERENCE.match(value)
        referenced = next((group for group in reference.groups() if group), None) if reference else None
        if referenced is None or referenced not in from_secret:
            violations.append(
                f"vLLM container {name!r} passes {_API_KEY_FLAG} a value that is not an environment "
                "variable read from a Secret (secretKeyRef): the key would sit in plain text in the pod spec"
            )
    if VLLM_API_KEY_ENV in plain:
        violations.append(
            f"vLLM container {name!r} sets {VLLM_API_KEY_ENV} as a plain value: read it from a Secret "
            "with valueFrom.secretKeyRef"
        )
    if not flag_values and VLLM_API_KEY_ENV not in from_secret and VLLM_API_KEY_ENV not in plain:
        violations.append(
            f"vLLM container {name!r} serves without an API key: set {VLLM_API_KEY_ENV} from a Secret "
            f"(valueFrom.secretKeyRef) or pass {_API_KEY_FLAG} $(VAR) with VAR read from a Secret"
        )
    return violations


def _api_key_flag_values(container: Mapping[str, Any]) -> Iterator[str]:
    """Every value given to --api-key in the container's command and args, shell strings included.

    vLLM's FlexibleArgumentParser takes underscores for dashes in option names (vllm/utils/argparse_utils.py
    at v0.33.0), so `--api_key` is the same flag.
    """
    words = [
        word
        for argument in [*_items(container.get("command")), *_items(container.get("args"))]
        if isinstance(argument, str)
        for word in argument.split()
    ]
    for index, word in enumerate(words):
        flag, has_value, value = word.partition("=")
        if not flag.startswith("--") or flag.replace("_", "-") != _API_KEY_FLAG:
            continue
        if has_value:
            yield value
        else:
            yield words[index + 1] if index + 1 < len(words) else ""


# 3. No LoadBalancer Service unless the stack's config asks for one; then internal unless it says otherwise, and
# an internet-facing one terminates TLS and admits named client ranges only (0.0.0.0/0 only on purpose).


@dataclass(frozen=True)
class Exposure:
    """How the stack's config (`llm:serviceType`, `llm:loadBalancerScheme`, `llm:loadBalancerOpenToInternet`)
    allows the endpoint to be exposed."""

    service_type: str = "ClusterIP"
    load_balancer_scheme: str = "internal"
    open_to_internet: bool = False

    @classmethod
    def from_config(
        cls, service_type: str | None, load_balancer_scheme: str | None, open_to_internet: bool | None = None
    ) -> Exposure:
        return cls(
            service_type or cls.service_type,
            load_balancer_scheme or cls.load_balancer_scheme,
            bool(open_to_internet),
        )


def is_internal_load_balancer(props: Props) -> bool:
    annotations = _mapping(_get(props, "metadata", "annotations"))
    if str(annotations.get(INTERNAL_ANNOTATION, "")).lower() == "true":
        return True
    claimed_by_lb_controller = (
        _get(props, "spec", "loadBalancerClass") == _LB_CONTROLLER_CLASS
        or annotations.get(_LB_TYPE_ANNOTATION) == "external"
    )
    return claimed_by_lb_controller and annotations.get(SCHEME_ANNOTATION) == "internal"


def _source_ranges(props: Props) -> list[str]:
    ranges = _items(_get(props, "spec", "loadBalancerSourceRanges"))
    if ranges:
        return [str(cidr).strip() for cidr in ranges]
    annotation = _mapping(_get(props, "metadata", "annotations")).get(_SOURCE_RANGES_ANNOTATION)
    return [cidr.strip() for cidr in str(annotation).split(",") if cidr.strip()] if annotation else []


def _port_text(port: Any) -> str:
    """A port number as written: the engine sends numbers as floats (protobuf Struct), 443.0 for 443."""
    return str(int(port)) if isinstance(port, float) and port.is_integer() else str(port)


def _plain_listeners(props: Props, annotations: Mapping[str, Any]) -> list[str]:
    """Ports left out of `aws-load-balancer-ssl-ports` become plain TCP listeners beside the TLS one (without the
    annotation every port is TLS). Source: the controller's annotation reference, ssl-ports."""
    listed = annotations.get(_SSL_PORTS_ANNOTATION)
    if not listed:
        return []
    tls = {entry.strip() for entry in str(listed).split(",")}
    plain = [
        _port_text(_get(port, "port"))
        for port in _items(_get(props, "spec", "ports"))
        if _port_text(_get(port, "port")) not in tls and str(_get(port, "name")) not in tls
    ]
    return [
        f"internet-facing Service would serve port {port} in clear text beside its TLS listener: list it in "
        f"{_SSL_PORTS_ANNOTATION} or remove it"
        for port in plain
    ]


def service_exposure_violations(
    resource_type: str, props: Props, exposure: Exposure | None = None
) -> list[str]:
    if resource_type != SERVICE or _get(props, "spec", "type") != "LoadBalancer":
        return []
    exposure = exposure or Exposure()
    if exposure.service_type != "LoadBalancer":
        return [
            f"Service is of type LoadBalancer but the stack's llm:serviceType is {exposure.service_type}: "
            "set llm:serviceType to LoadBalancer to expose the endpoint outside the cluster"
        ]
    if is_internal_load_balancer(props):
        return []
    if exposure.load_balancer_scheme != "internet-facing":
        return [
            "Service of type LoadBalancer is not marked internal while llm:loadBalancerScheme is "
            f'{exposure.load_balancer_scheme}: annotate it {INTERNAL_ANNOTATION}: "true" (or, for the AWS Load '
            f"Balancer Controller, {SCHEME_ANNOTATION}: internal), or set llm:loadBalancerScheme to internet-facing"
        ]
    violations = []
    annotations = _mapping(_get(props, "metadata", "annotations"))
    if not annotations.get(SSL_CERT_ANNOTATION):
        violations.append(
            f"internet-facing Service has no TLS certificate ({SSL_CERT_ANNOTATION}): requests and their API key "
            "would cross the internet in clear text; set llm:loadBalancerCertificateArn"
        )
    else:
        violations += _plain_listeners(props, annotations)
    ranges = _source_ranges(props)
    if not ranges:
        violations.append(
            "internet-facing Service names no client ranges (spec.loadBalancerSourceRanges), so it admits every "
            "address; set llm:loadBalancerSourceRanges"
        )
    elif _ANYWHERE in ranges and not exposure.open_to_internet:
        violations.append(
            f"internet-facing Service admits {_ANYWHERE} while llm:loadBalancerOpenToInternet is not true: name "
            "the client ranges in llm:loadBalancerSourceRanges, or set that key to open it on purpose"
        )
    return violations


# 4. IMDSv2 on every node: Karpenter node classes, launch templates, instances.


def imdsv2_violations(resource_type: str, props: Props) -> list[str]:
    if resource_type == EC2_NODE_CLASS:
        tokens = _get(props, "spec", "metadataOptions", "httpTokens")
        where = "spec.metadataOptions.httpTokens"
    elif resource_type in (LAUNCH_TEMPLATE, EC2_INSTANCE):
        tokens = _get(props, "metadataOptions", "httpTokens")
        where = "metadataOptions.httpTokens"
    else:
        return []
    if tokens == "required":
        return []
    shown = "unset" if tokens is None else repr(tokens)
    return [
        f"{where} is {shown}, not 'required': set it explicitly so that nodes accept only IMDSv2 "
        "(session tokens) and a pod cannot read the node role's credentials with a plain GET"
    ]


# 5. EKS secrets encrypted with a customer managed KMS key.


def eks_secrets_encryption_violations(resource_type: str, props: Props) -> list[str]:
    """The EKS cluster itself (pulumi-eks's `<name>-eksCluster` child, or one created directly): on the first
    preview its encryptionConfig is unknown until the KMS key exists, which the policy SDK reports as a
    policy it cannot run yet rather than as a violation."""
    if resource_type != EKS_CLUSTER:
        return []
    config = _mapping(_get(props, "encryptionConfig"))
    resources = [str(item) for item in _items(config.get("resources"))]
    provider = _mapping(config.get("provider"))
    if "secrets" in resources and "keyArn" in _keys(provider):
        return []
    return [
        "EKS cluster has no encryptionConfig with resources ['secrets'] and a provider.keyArn: give it a "
        "customer managed KMS key for Secrets envelope encryption, so that the key policy, rotation and "
        "CloudTrail record stay yours"
    ]


# 6. Images and charts pinned.


def image_pin_problem(image: str) -> str | None:
    """Why an image reference is not pinned, or None when it names a tag other than latest or a digest."""
    if "@" in image:
        return None if image.split("@", 1)[1].startswith("sha256:") else "has a malformed digest"
    last = image.rpartition("/")[2]
    if ":" not in last:
        return "has no tag (it means latest)"
    tag = last.split(":", 1)[1]
    if not tag:
        return "has an empty tag"
    if tag == "latest":
        return "uses the latest tag"
    return None


def pinned_image_violations(resource_type: str, props: Props) -> list[str]:
    if resource_type == HELM_RELEASE:
        return _chart_version_violations(props)
    violations = []
    for container in containers(resource_type, props):
        image = container.get("image")
        name = container.get("name", "?")
        if not isinstance(image, str) or not image:
            violations.append(f"container {name!r} names no image")
            continue
        problem = image_pin_problem(image)
        if problem:
            violations.append(f"container {name!r} image {image!r} {problem}: pin a version tag or a digest")
    return violations


def _chart_version_violations(props: Props) -> list[str]:
    version = props.get("version")
    chart = props.get("chart", "?")
    if not version:
        return [f"Helm chart {chart!r} has no version: pin one so that a preview shows every upgrade"]
    if not _EXACT_CHART_VERSION.match(str(version)):
        return [f"Helm chart {chart!r} version {version!r} is a range, not one exact version"]
    return []


# 7. A ceiling on the GPUs all NodePools of the stack may hold (a stack-level rule).


def gpu_ceiling_violations(resources: Iterable[tuple[str, str, Props]], max_gpus: int) -> list[str]:
    """Sum the `nvidia.com/gpu` limits of every NodePool in (name, type, props) and compare to max_gpus."""
    total = 0
    violations = []
    for name, resource_type, props in resources:
        if resource_type != NODE_POOL:
            continue
        limit = gpu_limit(props)
        if limit is not None:
            total += limit
        elif is_gpu_node_pool(props):
            violations.append(
                f"NodePool {name} can launch GPU instances with no whole-number nvidia.com/gpu limit, "
                f"so the stack's GPU count is unbounded (ceiling {max_gpus})"
            )
    if total > max_gpus:
        violations.append(
            f"NodePools may hold {total} GPUs in all, above this stack's ceiling of {max_gpus}: lower their "
            "nvidia.com/gpu limits or raise the policy's maxGpus"
        )
    return violations


RESOURCE_RULES = {
    "gpu-node-pool-taint-and-limit": gpu_node_pool_violations,
    "vllm-api-key-required": vllm_api_key_violations,
    "imdsv2-required": imdsv2_violations,
    "eks-secrets-encrypted": eks_secrets_encryption_violations,
    "images-pinned": pinned_image_violations,
}
"""The resource rules that need nothing but the resource; `service_exposure_violations` also needs the
stack's Exposure and `gpu_ceiling_violations` the whole stack."""
