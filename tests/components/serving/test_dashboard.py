"""The model-serving dashboard: every query parses with promtool and reads only metrics vLLM, kube-state-metrics
or KEDA export; vLLM's panels filter on the model variable; the panels an operator needs are there."""

from __future__ import annotations

from pathlib import Path

from components.serving.dashboard import vllm_dashboard
from tests.components.serving.test_alerts import KEDA_METRICS, KUBE_STATE_METRICS, VLLM_EXPORTED, dev_settings
from tests.components.serving.test_serving import SINGLE, settings_for
from tests.conformance.promql import dashboard_expressions, label_names, metric_names, promtool_check


def test_queries_parse_with_promtool(tmp_path: Path):
    result = promtool_check(dashboard_expressions(vllm_dashboard(dev_settings())), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_queries_read_only_exported_metrics():
    for expr in dashboard_expressions(vllm_dashboard(dev_settings())):
        names = metric_names(expr)
        assert names, expr
        assert names <= VLLM_EXPORTED | KUBE_STATE_METRICS | KEDA_METRICS, expr


def test_every_vllm_query_follows_the_model_variable():
    board = vllm_dashboard(dev_settings())
    (variable,) = board["templating"]["list"]
    assert variable["name"] == "model_name"
    assert metric_names(variable["query"].removeprefix("label_values(").split(",")[0]) <= VLLM_EXPORTED
    for expr in dashboard_expressions(board):
        if metric_names(expr) <= VLLM_EXPORTED:
            assert 'model_name=~"$model_name"' in expr, expr
            assert "model_name" in label_names(expr)
        else:
            # Replica panels: the model server's Deployment, or KEDA's value of its trigger.
            assert 'namespace="llm"' in expr, expr


def test_scaling_panels_follow_the_stack():
    titles = {panel["title"] for panel in vllm_dashboard(dev_settings())["panels"]}
    assert {"Replicas", "Scale events", "Requests at the interceptor"} <= titles
    # Without scale to zero no request is ever held.
    fixed = {panel["title"] for panel in vllm_dashboard(settings_for(SINGLE))["panels"]}
    assert {"Replicas", "Scale events"} <= fixed and "Requests at the interceptor" not in fixed


def test_operator_panels_are_there():
    board = vllm_dashboard(dev_settings())
    queries = "\n".join(dashboard_expressions(board))
    for metric in (
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prefix_cache_hits_total",
        "vllm:prefix_cache_queries_total",
        "vllm:num_preemptions_total",
        "vllm:request_success_total",
    ):
        assert metric in queries, metric
    for quantile in ("0.5", "0.95", "0.99"):
        assert (
            f"histogram_quantile({quantile}, sum by (model_name, le) (rate(vllm:time_to_first_token"
            in queries
        )
        assert (
            f"histogram_quantile({quantile}, sum by (model_name, le) (rate(vllm:inter_token_latency"
            in queries
        )
    assert len({panel["id"] for panel in board["panels"]}) == len(board["panels"])
