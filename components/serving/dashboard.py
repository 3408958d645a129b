"""The model-serving dashboard: latency, throughput, load, KV cache and request outcomes per served model, and
the replicas with their scale events and the requests held while none runs.

The vLLM panels read metrics vLLM exports (components/serving/metrics.py) and filter on `model_name`, the served
model name, chosen with the dashboard's model variable. The replica panels read kube-state-metrics'
Deployment metrics, and the held requests KEDA's value of the HTTP add-on's trigger (components/serving/alerts.py).
"""

from __future__ import annotations

from typing import Any

from components.autoscaling.values import HTTP_TRIGGER
from components.monitoring.dashboards import Panel, Query, Variable, dashboard
from components.serving import metrics as m
from components.serving.alerts import KEDA_SCALER_VALUE
from components.serving.manifests import APP_NAME, ServingSettings, scales_to_zero

VLLM_DASHBOARD_UID = "selfhost-vllm"
VLLM_DASHBOARD_TITLE = "Model serving (vLLM)"

MODEL = '{model_name=~"$model_name"}'
# Grafana picks a range of at least four scrape intervals for rate(), so it never sees a single sample.
RATE_RANGE = "$__rate_interval"
QUANTILES = ((0.5, "p50"), (0.95, "p95"), (0.99, "p99"))


def _rate(metric: str, selector: str = MODEL) -> str:
    return f"rate({metric}{selector}[{RATE_RANGE}])"


def _quantiles(histogram: str) -> tuple[Query, ...]:
    return tuple(
        Query(
            f"histogram_quantile({q}, sum by (model_name, le) ({_rate(m.bucket(histogram))}))",
            f"{{{{model_name}}}} {label}",
        )
        for q, label in QUANTILES
    )


def replica_panels(settings: ServingSettings) -> tuple[Panel, ...]:
    """Replicas wanted and ready, how often the count changes and, with scale to zero, the requests held at
    the interceptor: what autoscaling did and what users waited for."""
    deployment = f'namespace="{settings.namespace}", deployment="{APP_NAME}"'
    panels = [
        Panel(
            "Replicas",
            "Replicas the Deployment asks for (KEDA's choice with autoscaling) and replicas ready to serve.",
            "short",
            (
                Query(f"sum(kube_deployment_spec_replicas{{{deployment}}})", "wanted"),
                Query(f"sum(kube_deployment_status_replicas_available{{{deployment}}})", "ready"),
            ),
            min=0,
        ),
        Panel(
            "Scale events",
            "Changes of the replica count in each interval: scale-ups, scale-downs, scale to zero and back.",
            "short",
            (Query(f"sum(changes(kube_deployment_spec_replicas{{{deployment}}}[{RATE_RANGE}]))", "changes"),),
            min=0,
        ),
    ]
    if scales_to_zero(settings):
        panels.append(
            Panel(
                "Requests at the interceptor",
                "Requests the HTTP add-on's interceptor holds or passes on: while no replica is ready, each of "
                "them waits for one to start.",
                "short",
                (
                    Query(
                        f'max({KEDA_SCALER_VALUE}{{exported_namespace="{settings.namespace}", '
                        f'scaledObject="{APP_NAME}", scaler="{HTTP_TRIGGER}"}})',
                        "in flight or held",
                    ),
                ),
                min=0,
            )
        )
    return tuple(panels)


def vllm_dashboard(settings: ServingSettings) -> dict[str, Any]:
    variables = (Variable("model_name", "Model", f"label_values({m.NUM_REQUESTS_RUNNING}, model_name)"),)
    panels = (
        Panel(
            "Time to first token",
            "From request arrival to the first generated token: queueing plus prefill.",
            "s",
            _quantiles(m.TIME_TO_FIRST_TOKEN),
            min=0,
        ),
        Panel(
            "Inter-token latency",
            "Time between two generated tokens of a request: the streaming speed a user sees.",
            "s",
            _quantiles(m.INTER_TOKEN_LATENCY),
            min=0,
        ),
        Panel(
            "End-to-end request latency",
            "From request arrival to the last token.",
            "s",
            _quantiles(m.E2E_REQUEST_LATENCY),
            min=0,
        ),
        Panel(
            "Queue time",
            "Time requests wait before the engine schedules them.",
            "s",
            _quantiles(m.REQUEST_QUEUE_TIME),
            min=0,
        ),
        Panel(
            "Tokens per second",
            "Prompt tokens processed (prefill) and tokens generated (decode), all replicas.",
            "short",
            (
                Query(f"sum by (model_name) ({_rate(m.PROMPT_TOKENS)})", "{{model_name}} prompt"),
                Query(f"sum by (model_name) ({_rate(m.GENERATION_TOKENS)})", "{{model_name}} generation"),
            ),
            min=0,
        ),
        Panel(
            "Requests running and waiting",
            "Requests in the running batch and requests queued for a slot or KV cache space.",
            "short",
            (
                Query(f"sum by (model_name) ({m.NUM_REQUESTS_RUNNING}{MODEL})", "{{model_name}} running"),
                Query(f"sum by (model_name) ({m.NUM_REQUESTS_WAITING}{MODEL})", "{{model_name}} waiting"),
            ),
            min=0,
        ),
        Panel(
            "KV cache usage",
            "Share of the KV cache blocks in use, per replica; near 100% requests queue and get preempted.",
            "percentunit",
            (Query(f"max by (model_name, pod) ({m.KV_CACHE_USAGE}{MODEL})", "{{pod}}"),),
            min=0,
            max=1,
        ),
        Panel(
            "Prefix cache hit rate",
            "Share of prompt tokens whose KV entries were reused from earlier requests.",
            "percentunit",
            (
                Query(
                    f"sum by (model_name) ({_rate(m.PREFIX_CACHE_HITS)})"
                    f" / sum by (model_name) ({_rate(m.PREFIX_CACHE_QUERIES)})",
                    "{{model_name}}",
                ),
            ),
            min=0,
            max=1,
        ),
        Panel(
            "Preemptions",
            "Running requests evicted for lack of KV cache and recomputed later.",
            "short",
            (Query(f"sum by (model_name) ({_rate(m.NUM_PREEMPTIONS)})", "{{model_name}}"),),
            min=0,
        ),
        Panel(
            "Request outcomes",
            "Finished requests per second by reason: stop (end of answer), length (max_tokens or context "
            "reached), abort (client gone), error (engine error, HTTP 500), repetition.",
            "reqps",
            (
                Query(
                    f"sum by (model_name, finished_reason) ({_rate(m.REQUEST_SUCCESS)})",
                    "{{model_name}} {{finished_reason}}",
                ),
            ),
            min=0,
        ),
    )
    return dashboard(
        VLLM_DASHBOARD_UID,
        VLLM_DASHBOARD_TITLE,
        ("llm", "vllm"),
        variables,
        (*panels, *replica_panels(settings)),
    )
