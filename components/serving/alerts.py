"""Alerts an operator of the model endpoint acts on, as a PrometheusRule for the Prometheus Operator.

Each alert is scoped to the model server's namespace: the ServiceMonitor's targets carry the Kubernetes
`namespace`, `service` and `pod` labels, and vLLM's own metrics add `model_name`. Replica availability
comes from kube-state-metrics (installed by kube-prometheus-stack): `kube_deployment_spec_replicas` and
`kube_deployment_status_replicas_available`, labelled `namespace` and `deployment`
(kube-state-metrics docs/metrics/workload/deployment-metrics.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from components.autoscaling.values import HTTP_TRIGGER
from components.serving import metrics as m
from components.serving.budget import replica_ready_seconds
from components.serving.manifests import APP_NAME, ServingSettings, labels

RULE_GROUP = "vllm-model-server"
# Time to first token (p95) a chat user notices; prompts near max_model_len legitimately take longer.
TTFT_P95_SECONDS = 2.0
KV_CACHE_FULL_RATIO = 0.9
ERROR_RATIO = 0.05
RATE_WINDOW = "5m"


@dataclass(frozen=True)
class Alert:
    name: str
    expr: str
    duration: str
    severity: str
    summary: str
    description: str


def _minutes(seconds: int) -> str:
    return f"{math.ceil(seconds / 60)}m"


# KEDA's operator exports each trigger's value as keda_scaler_metrics_value, labelled scaledObject and scaler (the
# trigger's name) and namespace (kedacore/keda v2.20.2 pkg/metricscollector/prommetrics.go); scraped through the
# chart's ServiceMonitor, whose target has a namespace of its own (keda), Prometheus keeps the metric's as
# exported_namespace.
KEDA_SCALER_VALUE = "keda_scaler_metrics_value"
# How long capacity may stay exhausted (every replica running, the queue still growing) before someone is told.
CAPACITY_WINDOW = "10m"


def scaling_alerts(settings: ServingSettings) -> list[Alert]:
    """With autoscaling: requests held at the interceptor with no replica for longer than the hold (the route then
    answers 503), and the queue growing while the most replicas run (capacity exhausted)."""
    policy = settings.scaling
    if policy is None:
        return []
    ns = f'namespace="{settings.namespace}"'
    deployment = f'{ns}, deployment="{APP_NAME}"'
    waiting = f"sum({m.NUM_REQUESTS_WAITING}{{{ns}}})"
    found = [
        Alert(
            "VllmCapacityExhausted",
            f"(sum(kube_deployment_spec_replicas{{{deployment}}}) >= {policy.max_replicas})"
            f" and on () ({waiting} > {policy.max_replicas * policy.target_waiting_per_replica:g})"
            f" and on () (deriv({waiting}[{CAPACITY_WINDOW}:1m]) > 0)",
            CAPACITY_WINDOW,
            "warning",
            f"{settings.namespace}: {policy.max_replicas} replicas run and the queue keeps growing",
            "Every replica autoscaling:maxReplicas allows is running and requests still pile up in vLLM's queue: "
            "raise autoscaling:maxReplicas (and check the GPU quota), or expect slower answers.",
        )
    ]
    if policy.scale_to_zero:
        held = (
            f'max({KEDA_SCALER_VALUE}{{exported_namespace="{settings.namespace}", scaledObject="{APP_NAME}", '
            f'scaler="{HTTP_TRIGGER}"}})'
        )
        found.append(
            Alert(
                "VllmRequestsHeldWithoutReplica",
                f"({held} > 0) and on () (sum(kube_deployment_status_replicas_available{{{deployment}}}) == 0)",
                _minutes(policy.hold_seconds),
                "warning",
                f"{settings.namespace}: requests have waited {_minutes(policy.hold_seconds)} for a replica",
                "Requests wait at the HTTP add-on's interceptor while no replica is ready, longer than a start from "
                "zero takes; they are answered 503 (the model is starting). Check "
                f"`kubectl -n {settings.namespace} get pods,events` (no GPU capacity, image pull, staging).",
            )
        )
    return found


def alerts(settings: ServingSettings) -> list[Alert]:
    ns = f'namespace="{settings.namespace}"'
    deployment = f'{ns}, deployment="{APP_NAME}"'
    per_model = "sum by (namespace, model_name)"
    return [
        Alert(
            "VllmNoReadyReplica",
            f"(kube_deployment_status_replicas_available{{{deployment}}} == 0)"
            f" and on (namespace, deployment) (kube_deployment_spec_replicas{{{deployment}}} > 0)",
            # A fresh replica may need a new node, the image and the weights before it is ready: alerting
            # earlier would fire on every first start and model change.
            _minutes(replica_ready_seconds(settings.startup)),
            "critical",
            "No vLLM replica of {{ $labels.namespace }} has been ready for longer than a fresh start takes",
            "The model endpoint answers nothing. Check `kubectl -n {{ $labels.namespace }} get pods,events` for "
            "Pending pods (no GPU capacity, llm:maxGpus too low), image pull or download errors "
            "(gated model without llm:hfToken) and crash loops (out of GPU memory).",
        ),
        Alert(
            "VllmTimeToFirstTokenHigh",
            f"histogram_quantile(0.95, sum by (namespace, model_name, le) "
            f"(rate({m.bucket(m.TIME_TO_FIRST_TOKEN)}{{{ns}}}[{RATE_WINDOW}]))) > {TTFT_P95_SECONDS}",
            "10m",
            "warning",
            "{{ $labels.model_name }}: p95 time to first token is {{ $value | humanizeDuration }}",
            f"95% of requests should see a first token within {TTFT_P95_SECONDS:g} s. Long queues, long "
            "prompts or preemptions slow prefill; add replicas (llm:replicas) or lower llm:maxModelLen.",
        ),
        Alert(
            "VllmRequestsQueueing",
            f"{per_model} ({m.NUM_REQUESTS_WAITING}{{{ns}}}) > 0",
            "5m",
            "warning",
            "{{ $labels.model_name }}: {{ $value }} requests have been waiting for 5 minutes",
            "Every running slot or the KV cache is taken, so new requests wait before prefill. Add replicas "
            "or GPUs, or lower llm:maxModelLen so more sequences fit.",
        ),
        Alert(
            "VllmKvCacheNearlyFull",
            f"max by (namespace, model_name, pod) ({m.KV_CACHE_USAGE}{{{ns}}}) > {KV_CACHE_FULL_RATIO}",
            "10m",
            "warning",
            "{{ $labels.pod }}: KV cache {{ $value | humanizePercentage }} full",
            "A nearly full KV cache makes vLLM queue and preempt requests. Add replicas or a larger GPU "
            "instance type, or lower llm:maxModelLen.",
        ),
        Alert(
            "VllmPreemptions",
            f"{per_model} (rate({m.NUM_PREEMPTIONS}{{{ns}}}[{RATE_WINDOW}])) > 0",
            "10m",
            "warning",
            "{{ $labels.model_name }}: requests are being preempted ({{ $value | humanize }}/s)",
            "vLLM evicts running sequences when the KV cache runs out and recomputes them later, which "
            "multiplies their latency. Add KV cache capacity (replicas, GPUs) or lower llm:maxModelLen.",
        ),
        Alert(
            "VllmRequestErrors",
            f'{per_model} (rate({m.REQUEST_SUCCESS}{{{ns}, finished_reason="{m.FINISHED_REASON_ERROR}"}}'
            f"[{RATE_WINDOW}]))"
            f" / {per_model} (rate({m.REQUEST_SUCCESS}{{{ns}}}[{RATE_WINDOW}])) > {ERROR_RATIO}",
            "5m",
            "critical",
            "{{ $labels.model_name }}: {{ $value | humanizePercentage }} of requests end in an engine error",
            'Requests finished with reason "error" (answered with HTTP 500). Read the vLLM logs: '
            f"`kubectl -n {{{{ $labels.namespace }}}} logs deploy/{APP_NAME}`.",
        ),
        *scaling_alerts(settings),
        Alert(
            "VllmHttpServerErrors",
            f'sum by (namespace) (rate({m.HTTP_REQUESTS}{{{ns}, status="{m.HTTP_STATUS_SERVER_ERROR}"}}'
            f"[{RATE_WINDOW}]))"
            f" / sum by (namespace) (rate({m.HTTP_REQUESTS}{{{ns}}}[{RATE_WINDOW}])) > {ERROR_RATIO}",
            "5m",
            "critical",
            "{{ $labels.namespace }}: {{ $value | humanizePercentage }} of API requests fail with 5xx",
            "The OpenAI-compatible server answers with server errors. Read the vLLM logs: "
            f"`kubectl -n {{{{ $labels.namespace }}}} logs deploy/{APP_NAME}`.",
        ),
    ]


def rule_groups(settings: ServingSettings) -> list[dict[str, Any]]:
    """The rule groups in Prometheus's rule-file format (what `promtool check rules` reads)."""
    return [
        {
            "name": RULE_GROUP,
            "rules": [
                {
                    "alert": alert.name,
                    "expr": alert.expr,
                    "for": alert.duration,
                    "labels": {"severity": alert.severity},
                    "annotations": {"summary": alert.summary, "description": alert.description},
                }
                for alert in alerts(settings)
            ],
        }
    ]


def prometheus_rule(settings: ServingSettings) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": APP_NAME, "namespace": settings.namespace, "labels": labels(settings)},
        "spec": {"groups": rule_groups(settings)},
    }
