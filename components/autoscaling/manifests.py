"""The model server's scaling objects, as plain manifests built from the stack's policy (pure).

- The ScaledObject (keda.sh/v1alpha1) scales the vLLM Deployment: on vLLM's own queue
  (`vllm:num_requests_waiting`) and KV-cache usage (`vllm:kv_cache_usage_perc`), both exported by vLLM 0.33
  with labels model_name and engine (vllm/v1/metrics/loggers.py) and read through Prometheus, and, with scale to
  zero, on the HTTP add-on's request count (`external-push`), the only trigger that sees a request while no
  replica runs (vLLM's series vanish with its pods, and a Prometheus trigger then reads 0).
- The InterceptorRoute (http.keda.sh/v1beta1; HTTPScaledObject is deprecated in 0.15) routes /v1 on any host
  to the model's Service through the interceptor, which counts and holds each request until a replica is ready,
  then streams the answer through (Go's reverse proxy flushes text/event-stream as it arrives). A request held
  longer than the route's readiness timeout goes to the route's fallback: a small responder that answers 503
  with an OpenAI-style error saying the model is starting. The docs ask for the ScaledObject after the route
  (before it, KEDA reads an empty metric spec and the HPA falls back to CPU): the component orders them so.
- NetworkPolicies: the interceptor admits clients (the named namespaces and Prometheus' namespace) on its proxy
  port and the add-on's scaler on its admin port; the responder admits the interceptor only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.autoscaling.values import (
    API_PATH,
    EXTERNAL_SCALER_ADDRESS,
    EXTERNAL_SCALER_LABELS,
    HEALTH_PATH,
    HTTP_TRIGGER,
    INTERCEPTOR_ADMIN_PORT,
    INTERCEPTOR_LABELS,
    INTERCEPTOR_PROXY_PORT,
    KV_CACHE_TRIGGER,
    NAMESPACE,
    RESPONSE_HEADER_TIMEOUT_SECONDS,
    WAITING_TRIGGER,
)
from components.ingress.manifests import READINESS_GATE_LABELS, admitted_peers
from components.karpenter.nodes import NODE_POOL_LABEL, SYSTEM_POOL
from components.monitoring.values import MONITORING_NAMESPACE, RELEASE_NAME
from components.security_checks import IMAGE_DIGEST_CHECK, skip_annotations
from components.serving.manifests import (
    APP_NAME,
    HTTP_PORT,
    ServingSettings,
    client_peers,
    load_balancer_targets,
    namespace_peer,
)
from stacks.autoscaling import SCALE_DOWN_PERIOD_SECONDS, SCALE_UP_PERIOD_SECONDS, ScalingPolicy

PROMETHEUS_URL = f"http://{RELEASE_NAME}-prometheus.{MONITORING_NAMESPACE}.svc.cluster.local:9090"
ROUTE_NAME = APP_NAME
STARTING_NAME = "vllm-starting"
STARTING_PORT = 8080
STARTING_SCRIPT = Path(__file__).with_name("starting.py")
# The responder's image: the Python standard library is all it needs (Docker's official image, mirrored on
# ECR Public like the busybox image kube-prometheus-stack's CRD job uses).
STARTING_IMAGE = "public.ecr.aws/docker/library/python:3.12.11-alpine3.22"
# nobody: the image runs as root unless told otherwise.
STARTING_USER_ID = 65534


def _labels(component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": component,
        "app.kubernetes.io/component": "autoscaling",
        "app.kubernetes.io/managed-by": "pulumi",
    }


def triggers(settings: ServingSettings, policy: ScalingPolicy) -> list[dict[str, Any]]:
    """Queue and KV-cache triggers on vLLM's metrics, and the add-on's request count with scale to zero.

    Prometheus triggers are AverageValue targets: the query returns the total and `threshold` is per replica
    (kedacore/keda pkg/scalers/prometheus_scaler.go); each query returns one series (a `sum`), as KEDA requires.
    Their activation thresholds keep a replica from being held up by a cache that is merely warm.
    """
    selector = f'namespace="{settings.namespace}"'
    prometheus = [
        {
            "type": "prometheus",
            "name": WAITING_TRIGGER,
            "metadata": {
                "serverAddress": PROMETHEUS_URL,
                "query": f"sum(vllm:num_requests_waiting{{{selector}}})",
                "threshold": f"{policy.target_waiting_per_replica:g}",
                "activationThreshold": "0",
            },
        },
        {
            "type": "prometheus",
            "name": KV_CACHE_TRIGGER,
            "metadata": {
                "serverAddress": PROMETHEUS_URL,
                "query": f"sum(vllm:kv_cache_usage_perc{{{selector}}})",
                "threshold": f"{policy.kv_cache_target:g}",
                "activationThreshold": f"{policy.kv_cache_target:g}",
            },
        },
    ]
    if not policy.scale_to_zero:
        return prometheus
    http = {
        "type": "external-push",
        "name": HTTP_TRIGGER,
        "metadata": {"scalerAddress": EXTERNAL_SCALER_ADDRESS, "interceptorRoute": ROUTE_NAME},
    }
    return [http, *prometheus]


def scaled_object(settings: ServingSettings, policy: ScalingPolicy) -> dict[str, Any]:
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": APP_NAME, "namespace": settings.namespace, "labels": _labels(APP_NAME)},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": APP_NAME},
            "pollingInterval": policy.polling_seconds,
            "cooldownPeriod": policy.idle_seconds,
            "initialCooldownPeriod": policy.initial_cooldown_seconds,
            "minReplicaCount": policy.min_replicas,
            "maxReplicaCount": policy.max_replicas,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleUp": {
                            "stabilizationWindowSeconds": policy.scale_up_window_seconds,
                            "policies": [
                                {"type": "Pods", "value": 1, "periodSeconds": SCALE_UP_PERIOD_SECONDS}
                            ],
                        },
                        "scaleDown": {
                            "stabilizationWindowSeconds": policy.scale_down_window_seconds,
                            "policies": [
                                {"type": "Pods", "value": 1, "periodSeconds": SCALE_DOWN_PERIOD_SECONDS}
                            ],
                        },
                    }
                }
            },
            "triggers": triggers(settings, policy),
        },
    }


def interceptor_route(settings: ServingSettings, policy: ScalingPolicy) -> dict[str, Any]:
    return {
        "apiVersion": "http.keda.sh/v1beta1",
        "kind": "InterceptorRoute",
        "metadata": {"name": ROUTE_NAME, "namespace": settings.namespace, "labels": _labels(ROUTE_NAME)},
        "spec": {
            "target": {"service": APP_NAME, "port": HTTP_PORT},
            # No hosts: the route takes every host name, so clients need not send a particular Host header.
            "rules": [{"paths": [{"value": API_PATH}, {"value": HEALTH_PATH}]}],
            "scalingMetric": {"concurrency": {"targetValue": policy.concurrency_per_replica}},
            "timeouts": {
                "readiness": f"{policy.hold_seconds}s",
                "responseHeader": f"{RESPONSE_HEADER_TIMEOUT_SECONDS}s",
            },
            "coldStart": {"fallback": {"service": {"name": STARTING_NAME, "port": STARTING_PORT}}},
        },
    }


def starting_message(policy: ScalingPolicy) -> str:
    return (
        "The model is starting: no replica was ready after "
        f"{policy.hold_seconds} s (a replica starts from zero when the endpoint has been idle). Retry in a minute."
    )


def starting_responder(settings: ServingSettings, policy: ScalingPolicy) -> list[dict[str, Any]]:
    """The fallback the route sends a request to once it has waited its readiness timeout: a ConfigMap with
    the responder's program, its Deployment on the system pool and its Service."""
    labels = _labels(STARTING_NAME)
    metadata = {"name": STARTING_NAME, "namespace": settings.namespace, "labels": labels}
    selector = {"app.kubernetes.io/name": STARTING_NAME}
    container = {
        "name": "responder",
        "image": STARTING_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python3", "/opt/selfhost/starting.py"],
        "env": [
            {"name": "PORT", "value": str(STARTING_PORT)},
            {"name": "MESSAGE", "value": starting_message(policy)},
            {"name": "RETRY_AFTER_SECONDS", "value": "60"},
        ],
        "ports": [{"name": "http", "containerPort": STARTING_PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 20},
        "resources": {
            "requests": {"cpu": "10m", "memory": "32Mi"},
            "limits": {"cpu": "100m", "memory": "64Mi"},
        },
        "volumeMounts": [{"name": "program", "mountPath": "/opt/selfhost", "readOnly": True}],
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": metadata,
            "data": {"starting.py": STARTING_SCRIPT.read_text()},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {**metadata, "annotations": starting_check_exceptions()},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "nodeSelector": {NODE_POOL_LABEL: SYSTEM_POOL},
                        "securityContext": {
                            "runAsNonRoot": True,
                            "runAsUser": STARTING_USER_ID,
                            "runAsGroup": STARTING_USER_ID,
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "containers": [container],
                        "volumes": [{"name": "program", "configMap": {"name": STARTING_NAME}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata,
            "spec": {
                "selector": selector,
                "ports": [{"name": "http", "port": STARTING_PORT, "targetPort": "http", "protocol": "TCP"}],
            },
        },
    ]


def starting_check_exceptions() -> dict[str, str]:
    """checkov's checks the responder skips, with the reason (see the model server's)."""
    return skip_annotations(
        {
            IMAGE_DIGEST_CHECK: "a pinned tag of Docker's official Python image; pin a digest in a fork that "
            "mirrors it",
            "CKV_K8S_15": "imagePullPolicy IfNotPresent: the tag is pinned; Always would ask the registry on every "
            "start",
        }
    )


def namespace_manifest(settings: ServingSettings) -> dict[str, Any]:
    """KEDA's namespace; when the NLB targets the interceptors, their pods turn Ready only once it finds them
    healthy (components/ingress)."""
    metadata: dict[str, Any] = {"name": NAMESPACE}
    if load_balancer_targets(settings, NAMESPACE):
        metadata["labels"] = READINESS_GATE_LABELS
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata}


def interceptor_network_policy(settings: ServingSettings) -> dict[str, Any]:
    """Who may reach the interceptors: clients (the model server's client namespaces, Prometheus' for its probes
    and, with a load balancer, its client ranges and its own subnets: it targets the interceptors) on the proxy
    port, and the add-on's scaler on the admin port where it reads request counts."""
    clients = client_peers(settings)
    if settings.load_balancer is not None and load_balancer_targets(settings, NAMESPACE):
        clients += admitted_peers(settings.load_balancer)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "interceptor", "namespace": NAMESPACE, "labels": _labels("interceptor")},
        "spec": {
            "podSelector": {"matchLabels": INTERCEPTOR_LABELS},
            "policyTypes": ["Ingress"],
            "ingress": [
                {"from": clients, "ports": [{"protocol": "TCP", "port": INTERCEPTOR_PROXY_PORT}]},
                {
                    "from": [namespace_peer(NAMESPACE, EXTERNAL_SCALER_LABELS)],
                    "ports": [{"protocol": "TCP", "port": INTERCEPTOR_ADMIN_PORT}],
                },
            ],
        },
    }


def starting_network_policy(settings: ServingSettings) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {
            "name": STARTING_NAME,
            "namespace": settings.namespace,
            "labels": _labels(STARTING_NAME),
        },
        "spec": {
            "podSelector": {"matchLabels": {"app.kubernetes.io/name": STARTING_NAME}},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [namespace_peer(NAMESPACE, INTERCEPTOR_LABELS)],
                    "ports": [{"protocol": "TCP", "port": STARTING_PORT}],
                }
            ],
        },
    }
