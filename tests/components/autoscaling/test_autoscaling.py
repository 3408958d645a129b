"""Autoscaling as the dev and prod plans register it: KEDA and its HTTP add-on, the ScaledObject and its triggers,
the route that holds requests at zero replicas with its fallback, and the network path a held request takes."""

from __future__ import annotations

import http.client
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from components.autoscaling import starting
from components.autoscaling.values import (
    HTTP_ADD_ON_CHART,
    INTERCEPTOR_LABELS,
    INTERCEPTOR_PROXY_PORT,
    KEDA_CHART,
)
from selfhost.plan.command import write_plan
from selfhost.plan.runner import PlanResult
from tests.conformance.promql import metric_names, promtool_check

SCALED_OBJECT = "kubernetes:keda.sh/v1alpha1:ScaledObject"
ROUTE = "kubernetes:http.keda.sh/v1beta1:InterceptorRoute"
RELEASE = "kubernetes:helm.sh/v3:Release"
# vLLM 0.33's gauges the triggers read (vllm/v1/metrics/loggers.py, lines 538 and 620).
VLLM_GAUGES = {"vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"}


def spec(plan: PlanResult, type_: str) -> dict[str, Any]:
    [found] = plan.of_type(type_)
    return found.inputs["spec"]


def releases(plan: PlanResult) -> dict[str, dict[str, Any]]:
    return {r.inputs["name"]: r.inputs for r in plan.of_type(RELEASE)}


def test_dev_scales_between_zero_and_two_on_vllms_queue_and_wakes_on_a_request(dev_plan: PlanResult):
    scaler = spec(dev_plan, SCALED_OBJECT)
    assert (scaler["minReplicaCount"], scaler["maxReplicaCount"]) == (0, 2)
    # 30 idle minutes before the last replica goes; a fresh deploy keeps its first replica as long.
    assert scaler["cooldownPeriod"] == scaler["initialCooldownPeriod"] == 1800
    assert scaler["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm"}
    by_name = {trigger["name"]: trigger for trigger in scaler["triggers"]}
    assert by_name["http-requests"] == {
        "type": "external-push",
        "name": "http-requests",
        "metadata": {
            "scalerAddress": "keda-add-ons-http-external-scaler.keda:9090",
            "interceptorRoute": "vllm",
        },
    }
    waiting = by_name["vllm-waiting"]["metadata"]
    assert waiting["query"] == 'sum(vllm:num_requests_waiting{namespace="llm"})'
    assert waiting["threshold"] == "2"
    kv = by_name["vllm-kv-cache"]["metadata"]
    # A warm cache alone never holds a replica up: it is active only above the target.
    assert (kv["threshold"], kv["activationThreshold"]) == ("0.8", "0.8")
    assert waiting["serverAddress"] == (
        "http://kube-prometheus-stack-prometheus.monitoring.svc.cluster.local:9090"
    )
    behavior = scaler["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] == 60
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 600


def test_prod_never_scales_to_zero_and_needs_no_interceptor(prod_plan: PlanResult):
    scaler = spec(prod_plan, SCALED_OBJECT)
    assert (scaler["minReplicaCount"], scaler["maxReplicaCount"]) == (2, 4)
    assert {trigger["type"] for trigger in scaler["triggers"]} == {"prometheus"}
    assert not prod_plan.of_type(ROUTE)
    assert set(releases(prod_plan)) >= {"keda"} and "http-add-on" not in releases(prod_plan)


def test_without_autoscaling_there_is_no_keda(plan_with):
    plan = plan_with({"autoscaling:enabled": "false", "llm:replicas": "1"})
    assert not plan.of_type(SCALED_OBJECT) and not plan.of_type(ROUTE)
    assert "keda" not in releases(plan)
    assert plan.named("model-server-deployment").inputs["spec"]["replicas"] == 1


def test_keda_owns_the_replica_count(dev_plan: PlanResult):
    # A count in the Deployment would reset KEDA's on every `pulumi up`.
    assert "replicas" not in dev_plan.named("model-server-deployment").inputs["spec"]


def test_the_triggers_queries_parse_and_read_what_vllm_exports(dev_plan: PlanResult, tmp_path: Path):
    queries = [
        trigger["metadata"]["query"]
        for trigger in spec(dev_plan, SCALED_OBJECT)["triggers"]
        if trigger["type"] == "prometheus"
    ]
    result = promtool_check(queries, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert set().union(*(metric_names(query) for query in queries)) == VLLM_GAUGES
    # KEDA wants one series: every query is a sum.
    assert all(query.startswith("sum(") for query in queries)


def test_the_releases_are_pinned_and_keda_comes_first(dev_plan: PlanResult):
    found = releases(dev_plan)
    assert (found["keda"]["chart"], found["keda"]["version"]) == (KEDA_CHART.name, "2.20.2")
    assert (found["http-add-on"]["chart"], found["http-add-on"]["version"]) == (
        HTTP_ADD_ON_CHART.name,
        "0.15.0",
    )
    assert found["keda"]["namespace"] == found["http-add-on"]["namespace"] == "keda"
    # The add-on's chart ships a ScaledObject of its own: KEDA's CRDs first.
    assert "autoscaling-keda" in dev_plan.named("autoscaling-http-add-on").dependencies
    for name in ("keda", "http-add-on"):
        assert "nodeSelector" in json.dumps(found[name]["values"])


def test_a_held_request_waits_a_bounded_time_then_gets_a_clear_answer(dev_plan: PlanResult):
    route = spec(dev_plan, ROUTE)
    assert route["target"] == {"service": "vllm", "port": 8000}
    # Any host, the OpenAI API only: vLLM's /metrics, /health and unauthenticated /invocations stay inside.
    # The OpenAI API, and /health, which `selfhost smoke` and the chat page ask before anything else.
    assert route["rules"] == [{"paths": [{"value": "/v1"}, {"value": "/health"}]}]
    # dev's startup budget is 375 s; a request waits 1.5 x that, 562.5 -> 563 s, for a replica.
    assert route["timeouts"]["readiness"] == "563s"
    assert route["coldStart"] == {"fallback": {"service": {"name": "vllm-starting", "port": 8080}}}
    responder = dev_plan.named("model-server-starting").inputs
    [container] = responder["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item["value"] for item in container["env"]}
    assert "The model is starting" in env["MESSAGE"] and "563 s" in env["MESSAGE"]
    service = dev_plan.named("model-server-starting-service").inputs
    assert service["spec"]["ports"][0]["port"] == 8080
    # The ScaledObject comes after the route: before it KEDA reads no metric and the HPA falls back to CPU.
    assert "model-server-route" in dev_plan.named("model-server-scaled-object").dependencies


def test_the_route_and_the_policies_agree_on_the_path_a_request_takes(dev_plan: PlanResult):
    """Client -> interceptor (proxy port) -> the route's target Service port on the vLLM pods, or after the
    hold the fallback's port on the responder: every hop is admitted, by the policy of the pods it reaches."""
    route = spec(dev_plan, ROUTE)
    policies = {
        p.inputs["metadata"]["name"]: p.inputs["spec"]
        for p in dev_plan.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
    }
    interceptor_peer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}},
        "podSelector": {"matchLabels": INTERCEPTOR_LABELS},
    }
    vllm = policies["vllm"]
    [rule] = vllm["ingress"]
    assert interceptor_peer in rule["from"]
    assert {"protocol": "TCP", "port": route["target"]["port"]} in rule["ports"]
    fallback = route["coldStart"]["fallback"]["service"]
    [responder_rule] = policies[fallback["name"]]["ingress"]
    assert responder_rule["from"] == [interceptor_peer]
    assert responder_rule["ports"] == [{"protocol": "TCP", "port": fallback["port"]}]
    # The interceptor itself admits clients on its proxy port (Prometheus' namespace included) and the
    # add-on's scaler on its admin port, where the scaler reads the request counts KEDA scales on.
    proxy_rule, admin_rule = policies["interceptor"]["ingress"]
    assert proxy_rule["ports"] == [{"protocol": "TCP", "port": INTERCEPTOR_PROXY_PORT}]
    assert admin_rule["ports"] == [{"protocol": "TCP", "port": 9090}]
    # KEDA's queries reach Prometheus: nothing restricts the monitoring namespace.
    assert all(
        p.inputs["metadata"]["namespace"] != "monitoring"
        for p in dev_plan.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
    )


def test_clients_are_pointed_at_the_path_that_holds_requests(dev_plan: PlanResult, prod_plan: PlanResult):
    outputs = dev_plan.outputs
    assert outputs["endpoint_service"] == "keda/keda-add-ons-http-interceptor-proxy"
    assert outputs["endpoint_port"] == 8080
    assert (
        outputs["endpoint_url"] == "http://keda-add-ons-http-interceptor-proxy.keda.svc.cluster.local:8080/v1"
    )
    assert outputs["port_forward_command"] == (
        "kubectl -n keda port-forward svc/keda-add-ons-http-interceptor-proxy 8000:8080"
    )
    assert "http://localhost:8000/v1/chat/completions" in outputs["chat_completion_curl"]
    # prod never scales to zero: clients reach its Service directly.
    assert prod_plan.outputs["endpoint_service"] == "llm/vllm"


def test_the_report_prices_idle_and_peak(dev_plan: PlanResult, tmp_path: Path):
    report = write_plan(dev_plan, tmp_path)
    # tests/stacks/test_cost.py works these out by hand.
    assert report["cost"]["idle_usd_per_hour"] == pytest.approx(0.3671, abs=1e-4)
    assert report["cost"]["peak_usd_per_hour"] == pytest.approx(1.9877, abs=1e-4)
    assert report["scaling"]["min_replicas"] == 0 and report["scaling"]["hold_seconds"] == 563
    markdown = (tmp_path / "report.md").read_text()
    assert "At 0 replica(s) (idle) the stack costs $0.3671/h" in markdown


def test_the_responder_answers_503_with_an_openai_error():
    server = starting.serve(0, "The model is starting.", "60")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        connection = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=5)
        connection.request("POST", "/v1/chat/completions", body=b'{"model": "m"}')
        response = connection.getresponse()
        assert response.status == 503
        assert response.getheader("Retry-After") == "60"
        assert json.loads(response.read()) == {
            "error": {"message": "The model is starting.", "type": "model_starting", "code": "model_starting"}
        }
        connection.request("GET", "/healthz")
        assert connection.getresponse().status == 200
    finally:
        server.shutdown()
