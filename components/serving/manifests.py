"""The Kubernetes objects that serve one model with vLLM, as plain manifests built from typed settings.

Facts these builders rely on (checked against upstream, not run here):
- The `vllm/vllm-openai` image's ENTRYPOINT is `["vllm", "serve"]` (docker/Dockerfile, target vllm-openai),
  so the container's args start with the model id. It runs as root by default, and its base stage creates
  the user `vllm` (UID 2000, GID 0) with a group-writable HOME /home/vllm for running without root
  (vllm-project/vllm#40275); a UID missing from /etc/passwd breaks torch's getpass.getuser() at import.
- `vllm serve` flags: --served-model-name, --port, --tensor-parallel-size, --max-model-len,
  --gpu-memory-utilization, --enable-prefix-caching, --shutdown-timeout (vllm/engine/arg_utils.py and
  vllm/entrypoints/common/cli_args.py at v0.33.0); the API key comes from VLLM_API_KEY (same as
  --api-key) and keeps it out of the pod spec. The key guards only paths under /v1, /v2, /inference and
  /cohere, so /health and /metrics answer probes and Prometheus without it (GUARDED_PREFIX in
  vllm/entrypoints/serve/middleware/authenticate.py at v0.33.0).
- The weights stream from the stack's S3 bucket with `--load-format runai_streamer` and an `s3://` model path
  (vllm/config/load.py; vllm/model_executor/model_loader/runai_streamer_loader.py takes `concurrency` and
  `memory_limit` in --model-loader-extra-config); vLLM pulls the config and tokenizer from the same path
  (vllm/config/model.py). The image carries the streamer: docker/Dockerfile's vllm-openai-base stage installs
  `runai-model-streamer[s3,gcs]` (read at vllm-project/vllm commit dead20ba; v0.33's `runai` extra pins
  runai-model-streamer>=0.15.7). It reads S3 with the standard AWS credential chain, here the pod's IRSA role.
- vLLM keeps its compile cache under VLLM_CACHE_ROOT and stops reporting usage statistics with
  VLLM_NO_USAGE_STATS=1 (vllm/envs.py). It reads its API key only from --api-key or VLLM_API_KEY (vllm/envs.py,
  entrypoints/common/cli_args.py), never a file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.autoscaling.values import (
    API_PATH,
    INTERCEPTOR_LABELS,
    INTERCEPTOR_PROXY_PORT,
    INTERCEPTOR_PROXY_SERVICE,
)
from components.autoscaling.values import NAMESPACE as AUTOSCALING_NAMESPACE
from components.ingress.manifests import READINESS_GATE_LABELS, Backend, LoadBalancerSettings, admitted_peers
from components.karpenter.nodes import GPU_POOL, GPU_RESOURCE, NODE_POOL_LABEL, gpu_taint_tolerations
from components.monitoring.values import MONITORING_NAMESPACE
from components.security_checks import skip_annotations, vllm_image_digest_reason
from components.serving.budget import (
    DRAIN_SECONDS,
    PRE_STOP_SLEEP_SECONDS,
    STARTUP_PROBE_PERIOD_SECONDS,
    ReplicaResources,
    replica_ready_seconds,
    replica_resources,
    startup_probe_failure_threshold,
    termination_grace_seconds,
)
from components.weights.layout import SERVER_SERVICE_ACCOUNT, model_prefix, streamer_config
from components.weights.staging import StagingSettings
from stacks.autoscaling import ScalingPolicy
from stacks.catalogs.instances import GpuInstance
from stacks.catalogs.models import ModelSpec
from stacks.config import LlmSettings
from stacks.sizing import ServingPlan, weights_bytes
from stacks.startup import StartupBudget

DEFAULT_NAMESPACE = "llm"
APP_NAME = "vllm"
CONTAINER_NAME = "vllm"
HTTP_PORT = 8000
PORT_NAME = "http"
CREDENTIALS_SECRET = "vllm-credentials"
API_KEY_ENTRY = "api-key"
HF_TOKEN_ENTRY = "hf-token"
MODEL_CACHE_PATH = "/models"
VLLM_USER_ID = 2000
VLLM_GROUP_ID = 0
# The API server sets it on every namespace, to the namespace's name (Kubernetes 1.22+ well-known labels).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class ServingSettings:
    """Everything the manifests of one served model depend on."""

    namespace: str
    model_id: str
    model_label: str
    gated: bool
    image: str
    tensor_parallel_size: int
    max_model_len: int
    gpu_memory_utilization: float
    replicas: int
    replicas_per_node: int
    nodes: int
    weights_bytes: float
    model_revision: str
    region: str
    startup: StartupBudget
    # KEDA's policy, or None: `replicas` replicas always.
    scaling: ScalingPolicy | None
    instance: GpuInstance
    extra_engine_args: tuple[str, ...]
    # The endpoint's NLB (llm:serviceType LoadBalancer), or None: reached inside the cluster only.
    load_balancer: LoadBalancerSettings | None
    # Namespaces whose pods may call the endpoint inside the cluster (besides monitoring's Prometheus).
    client_namespaces: tuple[str, ...]
    node_pool: str
    with_hf_token: bool


def serving_settings(
    llm: LlmSettings,
    model: ModelSpec,
    instance: GpuInstance,
    plan: ServingPlan,
    startup: StartupBudget,
    scaling: ScalingPolicy | None,
    load_balancer: LoadBalancerSettings | None,
    region: str,
    namespace: str = DEFAULT_NAMESPACE,
    node_pool: str = GPU_POOL,
) -> ServingSettings:
    return ServingSettings(
        namespace=namespace,
        model_id=model.id,
        model_label=model.short_name,
        gated=model.gated,
        image=llm.vllm_image,
        tensor_parallel_size=plan.tensor_parallel_size,
        max_model_len=plan.max_model_len,
        gpu_memory_utilization=llm.gpu_memory_utilization,
        replicas=plan.replicas,
        replicas_per_node=plan.replicas_per_node,
        nodes=plan.nodes,
        weights_bytes=weights_bytes(model),
        model_revision=llm.model_revision,
        region=region,
        startup=startup,
        scaling=scaling,
        instance=instance,
        extra_engine_args=llm.extra_engine_args,
        load_balancer=load_balancer,
        client_namespaces=llm.client_namespaces,
        node_pool=node_pool,
        with_hf_token=llm.hf_token is not None,
    )


@dataclass(frozen=True)
class ModelSource:
    """Where replicas get the weights and the image, known once the bucket (and the image cache) exist:
    plain strings in tests, Pulumi Outputs in the program."""

    uri: Any
    image: Any


def weights_prefix(settings: ServingSettings) -> str:
    return model_prefix(settings.model_id, settings.model_revision)


def staging_settings(settings: ServingSettings, image: Any) -> StagingSettings:
    """What the staging Job copies, with the token from the model server's credentials Secret."""
    return StagingSettings(
        namespace=settings.namespace,
        model_id=settings.model_id,
        revision=settings.model_revision,
        prefix=weights_prefix(settings),
        image=image,
        configured_image=settings.image,
        region=settings.region,
        weights_bytes=settings.weights_bytes,
        with_hf_token=settings.with_hf_token,
        credentials_secret=CREDENTIALS_SECRET,
        hf_token_entry=HF_TOKEN_ENTRY,
        labels={
            "app.kubernetes.io/name": "stage-weights",
            "app.kubernetes.io/instance": settings.namespace,
            "app.kubernetes.io/component": "weights-staging",
            "app.kubernetes.io/managed-by": "pulumi",
            "selfhost/model": settings.model_label,
        },
    )


def selector_labels(settings: ServingSettings) -> dict[str, str]:
    """Labels the Deployment, Service, PDB and ServiceMonitor select on: stable when the model changes, so a
    new model rolls out as an update instead of replacing the Deployment."""
    return {"app.kubernetes.io/name": APP_NAME, "app.kubernetes.io/instance": settings.namespace}


def labels(settings: ServingSettings) -> dict[str, str]:
    return {
        **selector_labels(settings),
        "app.kubernetes.io/component": "model-server",
        "app.kubernetes.io/managed-by": "pulumi",
        "selfhost/model": settings.model_label,
    }


def _metadata(settings: ServingSettings, name: str) -> dict[str, Any]:
    return {"name": name, "namespace": settings.namespace, "labels": labels(settings)}


def namespace_manifest(settings: ServingSettings) -> dict[str, Any]:
    # The pod meets the "restricted" Pod Security Standard; enforcing it keeps anything added later there too.
    labels = {
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/warn": "restricted",
    }
    if load_balancer_targets(settings, settings.namespace):
        # Each pod turns Ready once the NLB finds it healthy (components/ingress).
        labels |= READINESS_GATE_LABELS
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": settings.namespace, "labels": labels},
    }


def credentials_secret(settings: ServingSettings, api_key: Any, hf_token: Any | None) -> dict[str, Any]:
    """The API key clients must send and, when set, the Hugging Face token (values may be Pulumi secrets)."""
    entries = {API_KEY_ENTRY: api_key}
    if hf_token is not None:
        entries[HF_TOKEN_ENTRY] = hf_token
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(settings, CREDENTIALS_SECRET),
        "type": "Opaque",
        "stringData": entries,
    }


def engine_args(settings: ServingSettings, model_uri: Any, replica_memory_mib: int) -> list[Any]:
    """`vllm serve` arguments: the weights' S3 path, the sizing plan's engine settings, then the stack's extra
    args. Clients still name the model by its Hugging Face id (--served-model-name)."""
    return [
        model_uri,
        "--served-model-name",
        settings.model_id,
        "--load-format",
        "runai_streamer",
        "--model-loader-extra-config",
        json.dumps(streamer_config(settings.instance, replica_memory_mib), sort_keys=True),
        "--port",
        str(HTTP_PORT),
        "--tensor-parallel-size",
        str(settings.tensor_parallel_size),
        "--max-model-len",
        str(settings.max_model_len),
        "--gpu-memory-utilization",
        str(settings.gpu_memory_utilization),
        # On by default in vLLM's V1 engine; explicit so the dashboard's hit-rate panel always has data.
        "--enable-prefix-caching",
        # On SIGTERM (rollout, drain, consolidation) finish the answers in progress instead of cutting them.
        "--shutdown-timeout",
        str(DRAIN_SECONDS),
        *settings.extra_engine_args,
    ]


def _secret_env(name: str, entry: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": CREDENTIALS_SECRET, "key": entry}}}


def container_env(settings: ServingSettings) -> list[dict[str, Any]]:
    env = [
        {"name": "HF_HOME", "value": f"{MODEL_CACHE_PATH}/huggingface"},
        {"name": "VLLM_CACHE_ROOT", "value": f"{MODEL_CACHE_PATH}/vllm"},
        {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
        _secret_env("VLLM_API_KEY", API_KEY_ENTRY),
        # The Run:ai streamer's S3 client: the bucket is in the stack's region.
        {"name": "AWS_REGION", "value": settings.region},
    ]
    return env


def _health_probe(period: int, failure_threshold: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/health", "port": PORT_NAME},
        "periodSeconds": period,
        "timeoutSeconds": 5,
        "failureThreshold": failure_threshold,
    }


def _container(settings: ServingSettings, resources: ReplicaResources, source: ModelSource) -> dict[str, Any]:
    return {
        "name": CONTAINER_NAME,
        "image": source.image,
        # The image is pinned (by tag, or by digest: llm:vllmImage) and about 13 GB: a start on a node that
        # has it uses it, and no start asks the registry again (Docker Hub's anonymous limit counts manifest reads).
        "imagePullPolicy": "IfNotPresent",
        "args": engine_args(settings, source.uri, resources.memory_mib),
        "ports": [{"name": PORT_NAME, "containerPort": HTTP_PORT, "protocol": "TCP"}],
        "env": container_env(settings),
        "resources": {
            "requests": {
                "cpu": f"{resources.cpu_millicores}m",
                "memory": f"{resources.memory_mib}Mi",
                "ephemeral-storage": f"{resources.ephemeral_storage_gib}Gi",
                GPU_RESOURCE: str(resources.gpus),
            },
            # No CPU limit: throttling the tokenizer and scheduler threads only adds latency. Memory limit =
            # request so a replica never eats into its neighbours' or the DaemonSets' memory.
            "limits": {"memory": f"{resources.memory_mib}Mi", GPU_RESOURCE: str(resources.gpus)},
        },
        "volumeMounts": [
            {"name": "model-cache", "mountPath": MODEL_CACHE_PATH},
            {"name": "dshm", "mountPath": "/dev/shm"},
        ],
        # Until /health answers, only the startup probe runs; its window covers the weights' stream and the
        # engine's start.
        "startupProbe": _health_probe(
            STARTUP_PROBE_PERIOD_SECONDS, startup_probe_failure_threshold(settings.startup)
        ),
        "readinessProbe": _health_probe(5, 3),
        # A busy engine answers /health late; a minute of failures means it is stuck, not loaded.
        "livenessProbe": _health_probe(10, 6),
        # The endpoint leaves the Service (and kube-proxy's rules) while the hook sleeps, so no new request
        # arrives after vLLM receives SIGTERM.
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SLEEP_SECONDS}}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            # vLLM, Triton and FlashInfer write caches under HOME and /tmp; a read-only root would need every
            # such path found and mounted, and a miss only shows on a GPU node.
            "readOnlyRootFilesystem": False,
        },
    }


def topology_spread(settings: ServingSettings) -> list[dict[str, Any]]:
    """Spread replicas over zones and nodes when the plan uses more than one node.

    Replicas the plan packs onto one node (several GPUs per node) stay together: spreading them would buy
    more nodes. Zones are a preference (GPU capacity is often in some zones only); across nodes at most
    `replicas_per_node` per node, which the GPU requests imply anyway.
    """
    if settings.replicas <= 1 or settings.nodes <= 1:
        return []
    selector = {"matchLabels": selector_labels(settings)}
    # pod-template-hash: during a rollout, old and new pods are spread on their own.
    return [
        {
            "maxSkew": 1,
            "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": selector,
            "matchLabelKeys": ["pod-template-hash"],
        },
        {
            "maxSkew": settings.replicas_per_node,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": selector,
            "matchLabelKeys": ["pod-template-hash"],
        },
    ]


def deployment_manifest(settings: ServingSettings, source: ModelSource) -> dict[str, Any]:
    resources = replica_resources(
        settings.instance, settings.replicas_per_node, settings.tensor_parallel_size
    )
    pod_spec: dict[str, Any] = {
        # Its IRSA role reads the model's S3 prefix; the pod never talks to the Kubernetes API.
        "serviceAccountName": SERVER_SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,
        # Service links would set VLLM_PORT=tcp://IP:8000 from the Service named `vllm`; vLLM reads VLLM_PORT
        # as its internal port number and exits on a URI (get_vllm_port in vllm/envs.py at v0.33.0).
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": VLLM_USER_ID,
            "runAsGroup": VLLM_GROUP_ID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "nodeSelector": {NODE_POOL_LABEL: settings.node_pool},
        # GPU nodes carry the GPU pool's taint.
        "tolerations": gpu_taint_tolerations(),
        "terminationGracePeriodSeconds": termination_grace_seconds(),
        "containers": [_container(settings, resources, source)],
        "volumes": [
            # On the node's instance-store NVMe (Karpenter's RAID0 ephemeral storage): config, tokenizer and
            # compile caches; the weights themselves go from S3 to GPU memory.
            {"name": "model-cache", "emptyDir": {"sizeLimit": f"{resources.model_cache_gib}Gi"}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{resources.shm_gib}Gi"}},
        ],
    }
    spread = topology_spread(settings)
    if spread:
        pod_spec["topologySpreadConstraints"] = spread
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {**_metadata(settings, APP_NAME), "annotations": security_check_exceptions(settings)},
        "spec": {
            **replica_count(settings),
            "selector": {"matchLabels": selector_labels(settings)},
            # Surge, never drop: the new pod (on a node Karpenter buys if needed) must be serving before an
            # old one goes, so a model change or upgrade keeps the endpoint up.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            # The default 600 s would mark the rollout failed while a first pod still waits for its node and image.
            "progressDeadlineSeconds": replica_ready_seconds(settings.startup),
            "revisionHistoryLimit": 3,
            "template": {
                "metadata": {
                    "labels": labels(settings),
                    "annotations": {"kubectl.kubernetes.io/default-container": CONTAINER_NAME},
                },
                "spec": pod_spec,
            },
        },
    }


def replica_count(settings: ServingSettings) -> dict[str, int]:
    """The Deployment's replicas, unless KEDA's HPA owns the count: a value here would reset it on every
    `pulumi up` (a new Deployment starts with one replica, which KEDA keeps for its initial cooldown)."""
    return {} if settings.scaling is not None else {"replicas": settings.replicas}


def scales_to_zero(settings: ServingSettings) -> bool:
    return settings.scaling is not None and settings.scaling.scale_to_zero


def security_check_exceptions(settings: ServingSettings) -> dict[str, str]:
    """Kubernetes security checks (checkov) that do not fit an LLM server, each with the reason it stands.

    Every other check of the Deployment passes.
    """
    reasons = {
        "CKV_K8S_11": "no CPU limit: CFS throttling of the tokenizer and scheduler threads only adds latency; the "
        "GPU taint keeps other workloads off the node and the request reserves the replica's share",
        "CKV_K8S_15": "imagePullPolicy IfNotPresent: the image is pinned and 13 GB; Always would ask the registry on "
        "every start (Docker Hub counts that against its anonymous pull limit)",
        "CKV_K8S_22": "vLLM, Triton and FlashInfer write kernels and caches under HOME and /tmp at run time; a "
        "read-only root would need each such path found and mounted, and a miss shows only on a GPU node",
        "CKV_K8S_35": "vLLM reads its API key only from --api-key or VLLM_API_KEY; the Secret-backed variable keeps "
        "it out of the pod spec and the process arguments",
        "CKV_K8S_40": "UID 2000 is the image's own non-root user (vllm); a UID missing from /etc/passwd breaks "
        "torch's getpass.getuser() at import",
    }
    return skip_annotations({**reasons, **vllm_image_digest_reason(settings.image)})


def service_manifest(settings: ServingSettings) -> dict[str, Any]:
    """The model server's Service, inside the cluster only: clients outside reach it through the endpoint's
    NLB (components/ingress), which targets the pods themselves."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(settings, APP_NAME),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(settings),
            "ports": [{"name": PORT_NAME, "port": HTTP_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def load_balancer_backend(settings: ServingSettings) -> Backend:
    """What the NLB targets: the interceptors with scale to zero (so a request from outside is held while a
    replica starts, like any other), else the model server's pods."""
    if scales_to_zero(settings):
        return Backend(AUTOSCALING_NAMESPACE, INTERCEPTOR_LABELS, INTERCEPTOR_PROXY_PORT)
    return Backend(settings.namespace, selector_labels(settings), HTTP_PORT)


def load_balancer_targets(settings: ServingSettings, namespace: str) -> bool:
    """Whether the stack has an NLB and its targets are pods in `namespace`."""
    return settings.load_balancer is not None and load_balancer_backend(settings).namespace == namespace


def namespace_peer(namespace: str, pods: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A NetworkPolicy peer: the pods of `namespace` (those matching `pods`, or all)."""
    peer: dict[str, Any] = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}
    if pods is not None:
        peer["podSelector"] = {"matchLabels": dict(pods)}
    return peer


def client_peers(settings: ServingSettings) -> list[dict[str, Any]]:
    """Who calls the endpoint from inside the cluster: Prometheus' namespace (probes) and llm:clientNamespaces."""
    return [namespace_peer(namespace) for namespace in (MONITORING_NAMESPACE, *settings.client_namespaces)]


def pod_disruption_budget(settings: ServingSettings) -> dict[str, Any] | None:
    """One replica at a time may be evicted (node drains, Karpenter consolidation), only if there are more.

    With a single replica a budget would either block every drain (minAvailable 1) or allow the outage
    anyway, so there is none.
    """
    if settings.replicas <= 1:
        return None
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(settings, APP_NAME),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector_labels(settings)}},
    }


def network_policy(settings: ServingSettings) -> dict[str, Any]:
    """Who may open a connection to the model server: Prometheus (metrics), the namespaces named in
    llm:clientNamespaces, with scale to zero the HTTP add-on's interceptors (the path clients take) and, when the
    NLB targets these pods, its client ranges and its own subnets; nothing else in or outside the cluster.

    Enforced by the VPC CNI's network policy agent on EC2 nodes (EKS user guide, cni-network-policy; turned on
    in components/cluster). Traffic from the pod's own node (kubelet probes) and `kubectl port-forward`, which
    enters through the kubelet, are always allowed. Egress stays open: the model download and DNS need it.
    """
    sources = client_peers(settings)
    if scales_to_zero(settings):
        sources.append(namespace_peer(AUTOSCALING_NAMESPACE, INTERCEPTOR_LABELS))
    if settings.load_balancer is not None and load_balancer_targets(settings, settings.namespace):
        sources += admitted_peers(settings.load_balancer)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": _metadata(settings, APP_NAME),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(settings)},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": sources, "ports": [{"protocol": "TCP", "port": HTTP_PORT}]}],
        },
    }


def service_monitor(settings: ServingSettings) -> dict[str, Any]:
    """Prometheus scrapes every replica's /metrics through the Service's `http` port."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": _metadata(settings, APP_NAME),
        "spec": {
            "selector": {"matchLabels": selector_labels(settings)},
            "namespaceSelector": {"matchNames": [settings.namespace]},
            "endpoints": [{"port": PORT_NAME, "path": "/metrics", "interval": "15s", "scrapeTimeout": "10s"}],
        },
    }


@dataclass(frozen=True)
class Endpoint:
    """How clients reach the model: the Service, its in-cluster URL, and commands for a first request."""

    service: str
    port: int
    in_cluster_url: str
    port_forward_command: str
    curl_command: str


def endpoint(settings: ServingSettings) -> Endpoint:
    """The model's Service, or with scale to zero the interceptor's proxy, which holds a request while a
    replica starts (calling the model's Service directly at zero replicas would fail)."""
    if scales_to_zero(settings):
        namespace, service, port = AUTOSCALING_NAMESPACE, INTERCEPTOR_PROXY_SERVICE, INTERCEPTOR_PROXY_PORT
    else:
        namespace, service, port = settings.namespace, APP_NAME, HTTP_PORT
    url = f"http://{service}.{namespace}.svc.cluster.local:{port}{API_PATH}"
    body = (
        f'{{"model": "{settings.model_id}", '
        '"messages": [{"role": "user", "content": "Say hello in one sentence."}], "max_tokens": 64}'
    )
    curl = (
        f"curl -s http://localhost:{HTTP_PORT}/v1/chat/completions "
        '-H "Authorization: Bearer $(pulumi stack output --show-secrets api_key)" '
        f"-H 'Content-Type: application/json' -d '{body}'"
    )
    return Endpoint(
        service=f"{namespace}/{service}",
        port=port,
        in_cluster_url=url,
        port_forward_command=f"kubectl -n {namespace} port-forward svc/{service} {HTTP_PORT}:{port}",
        curl_command=curl,
    )


def missing_token_error(settings: ServingSettings) -> str | None:
    """Why the model cannot be downloaded as configured, or None when it can."""
    if not settings.gated or settings.with_hf_token:
        return None
    return (
        f"{settings.model_id} is gated on Hugging Face and llm:hfToken is not set, so the staging Job could not "
        "copy it into the stack's bucket. Accept the model's licence on its Hugging Face page, create a read token, then run "
        "`pulumi config set --secret llm:hfToken hf_...` and `pulumi up` again."
    )
