"""Helm values of KEDA and its HTTP add-on (pure).

Chart facts (keda 2.20.2 and keda-add-ons-http 0.15.0, values.yaml and templates read in ../shared/charts):
- keda: `nodeSelector` is the fallback for the operator, metrics apiserver and admission webhooks; resources
  are `resources.operator`, `resources.metricServer` (no "s") and `resources.webhooks`, each with a default CPU
  limit Helm's deep merge keeps unless set to null. CRDs are templates (`crds.install`), so upgrades update them.
  `prometheus.operator.serviceMonitor` scrapes the operator, which exports `keda_scaler_metrics_value`
  (kedacore/keda v2.20.2 pkg/metricscollector/prommetrics.go).
- keda-add-ons-http: no global scheduling keys; `operator`, `scaler` and `interceptor` each take their own
  `nodeSelector`. Object names come from the chart's name, not the release's: the proxy Service is
  `keda-add-ons-http-interceptor-proxy` (port 8080), the external scaler `keda-add-ons-http-external-scaler`
  (gRPC 9090). Its own ScaledObject (for the interceptor) needs KEDA's CRDs: KEDA installs first.
- Interceptor timeouts (http-add-on v0.15.0 interceptor/config/timeouts.go): `readinessTimeout` bounds the wait
  for a ready replica (off by default: a held request would wait forever), `responseHeaderTimeout` (300 s by
  default) cuts a non-streamed completion that takes longer, `drainTimeout` (30 s) cuts streams on an
  interceptor pod that stops.
"""

from __future__ import annotations

from typing import Any

from components.helm_chart import HelmChart
from components.monitoring.values import SYSTEM_NODE_SELECTOR
from components.serving.budget import DRAIN_SECONDS

NAMESPACE = "keda"
KEDA_RELEASE = "keda"
HTTP_ADD_ON_RELEASE = "http-add-on"
KEDA_CHART = HelmChart(name="keda", repo="https://kedacore.github.io/charts", version="2.20.2")
HTTP_ADD_ON_CHART = HelmChart(
    name="keda-add-ons-http", repo="https://kedacore.github.io/charts", version="0.15.0"
)
INTERCEPTOR_PROXY_SERVICE = "keda-add-ons-http-interceptor-proxy"
INTERCEPTOR_PROXY_PORT = 8080
INTERCEPTOR_ADMIN_PORT = 9090
EXTERNAL_SCALER_ADDRESS = f"keda-add-ons-http-external-scaler.{NAMESPACE}:9090"
# Clients call the OpenAI API under /v1 through the interceptor, and /health, which the smoke check and the chat
# page ask first (it answers once the engine runs, so at zero replicas it waits for one like a completion). The
# model server's other paths (/metrics, vLLM's unauthenticated /invocations) stay inside the cluster.
API_PATH = "/v1"
HEALTH_PATH = "/health"
# Every trigger's name, so alerts and dashboards can tell them apart in keda_scaler_metrics_value.
HTTP_TRIGGER = "http-requests"
WAITING_TRIGGER = "vllm-waiting"
KV_CACHE_TRIGGER = "vllm-kv-cache"
# The interceptor pods' labels (keda-add-ons-http templates/interceptor/deployment.yaml).
INTERCEPTOR_LABELS = {"app.kubernetes.io/component": "interceptor", "app.kubernetes.io/name": "http-add-on"}
EXTERNAL_SCALER_LABELS = {"app.kubernetes.io/component": "scaler", "app.kubernetes.io/name": "http-add-on"}
# A completion that is not streamed sends its headers only when it is done; generation of a long answer may take
# minutes, so the interceptor waits longer than its 300 s default before answering 504.
RESPONSE_HEADER_TIMEOUT_SECONDS = 900
# Two interceptors (the chart's default minimum is 3) keep the path up through a node drain; more are added by
# the chart's own ScaledObject under load.
INTERCEPTOR_MIN_REPLICAS = 2
INTERCEPTOR_MAX_REPLICAS = 10
# Each open stream holds buffers in the interceptor: the chart's 64Mi limit is sized for short requests.
INTERCEPTOR_RESOURCES = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}
SMALL_RESOURCES = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}}


def keda_values() -> dict[str, Any]:
    """KEDA on the system pool, its operator scraped by Prometheus (the scaler metrics behind the alerts)."""
    no_cpu_limit = {
        "requests": {"cpu": "100m", "memory": "128Mi"},
        "limits": {"cpu": None, "memory": "512Mi"},
    }
    return {
        "nodeSelector": SYSTEM_NODE_SELECTOR,
        "resources": {
            "operator": no_cpu_limit,
            "metricServer": no_cpu_limit,
            "webhooks": {
                "requests": {"cpu": "50m", "memory": "64Mi"},
                "limits": {"cpu": None, "memory": "256Mi"},
            },
        },
        "prometheus": {"operator": {"enabled": True, "serviceMonitor": {"enabled": True}}},
    }


def http_add_on_values() -> dict[str, Any]:
    """The add-on on the system pool; streams get the model server's own drain time when an interceptor stops
    (how long a held request waits is the route's own timeout)."""
    return {
        "operator": {"nodeSelector": SYSTEM_NODE_SELECTOR, "resources": SMALL_RESOURCES},
        "scaler": {"nodeSelector": SYSTEM_NODE_SELECTOR, "resources": SMALL_RESOURCES},
        "interceptor": {
            "nodeSelector": SYSTEM_NODE_SELECTOR,
            "resources": INTERCEPTOR_RESOURCES,
            "replicas": {"min": INTERCEPTOR_MIN_REPLICAS, "max": INTERCEPTOR_MAX_REPLICAS},
            "responseHeaderTimeout": f"{RESPONSE_HEADER_TIMEOUT_SECONDS}s",
            "drainTimeout": f"{DRAIN_SECONDS}s",
            # At least the shutdown delay (5 s) plus the drain (the chart's own rule).
            "terminationGracePeriodSeconds": DRAIN_SECONDS + 15,
        },
    }
