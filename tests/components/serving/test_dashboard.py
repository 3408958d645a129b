"""The model-serving dashboard: every query parses with promtool, reads only metrics vLLM exports, and
filters on the model variable; the panels an operator needs are there."""

from __future__ import annotations

from pathlib import Path

from components.serving.dashboard import vllm_dashboard
from tests.components.serving.test_alerts import VLLM_EXPORTED
from tests.conformance.promql import dashboard_expressions, label_names, metric_names, promtool_check


def test_queries_parse_with_promtool(tmp_path: Path):
    result = promtool_check(dashboard_expressions(vllm_dashboard()), tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_queries_read_only_metrics_vllm_exports():
    for expr in dashboard_expressions(vllm_dashboard()):
        names = metric_names(expr)
        assert names, expr
        assert names <= VLLM_EXPORTED, expr


def test_every_query_follows_the_model_variable():
    board = vllm_dashboard()
    (variable,) = board["templating"]["list"]
    assert variable["name"] == "model_name"
    assert metric_names(variable["query"].removeprefix("label_values(").split(",")[0]) <= VLLM_EXPORTED
    for expr in dashboard_expressions(board):
        assert 'model_name=~"$model_name"' in expr, expr
        assert "model_name" in label_names(expr)


def test_operator_panels_are_there():
    board = vllm_dashboard()
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
