"""The model server's alerts, checked with promtool: the rule file is valid, and each alert fires on a
synthetic series of the trouble it names and stays quiet on a healthy one.

`promtool test rules` compares annotations too, so the unit tests run on the rules without them; the
annotations' templates are parsed by `promtool check rules` on the full file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from components.serving.alerts import prometheus_rule, rule_groups
from components.serving.manifests import ServingSettings
from selfhost.plan.runner import stack_config
from stacks.config import load_config
from stacks.platform import model_serving
from tests.conformance.promql import metric_names, run_promtool

# What the alerts may read. vLLM (vllm/v1/metrics/loggers.py; counters exposed with _total, histograms as
# _bucket/_sum/_count): the gauges, counters and histograms below. vLLM's OpenAI server, through
# prometheus-fastapi-instrumentator: http_requests_total{handler,method,status="2xx|4xx|5xx"}.
# kube-state-metrics (docs/metrics/workload/deployment-metrics.md): the Deployment's desired and available
# replicas.
VLLM_HISTOGRAMS = (
    "vllm:time_to_first_token_seconds",
    "vllm:inter_token_latency_seconds",
    "vllm:e2e_request_latency_seconds",
    "vllm:request_queue_time_seconds",
    "vllm:request_prefill_time_seconds",
    "vllm:request_decode_time_seconds",
    "vllm:request_inference_time_seconds",
    "vllm:request_prompt_tokens",
    "vllm:request_generation_tokens",
    "vllm:iteration_tokens_total",
)
VLLM_EXPORTED = {
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:prompt_tokens_total",
    "vllm:generation_tokens_total",
    "vllm:request_success_total",
    "vllm:num_preemptions_total",
    "vllm:prefix_cache_queries_total",
    "vllm:prefix_cache_hits_total",
    "http_requests_total",
    *(f"{name}{suffix}" for name in VLLM_HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")),
}
KUBE_STATE_METRICS = {"kube_deployment_spec_replicas", "kube_deployment_status_replicas_available"}
# KEDA's operator (kedacore/keda v2.20.2 pkg/metricscollector/prommetrics.go): each trigger's current value.
KEDA_METRICS = {"keda_scaler_metrics_value"}

NS = 'namespace="llm"'
MODEL = f'{NS}, model_name="m", engine="0"'
DEPLOYMENT = f'{NS}, deployment="vllm"'


def dev_settings() -> ServingSettings:
    raw, _ = stack_config("dev")
    config = load_config(raw, "dev")
    return model_serving(config)


def rules_without_annotations(settings: ServingSettings) -> list[dict[str, Any]]:
    groups = rule_groups(settings)
    for group in groups:
        for rule in group["rules"]:
            rule.pop("annotations")
    return groups


def ttft_buckets(per_minute_by_bucket: dict[str, int]) -> list[dict[str, str]]:
    """Cumulative TTFT histogram buckets growing by the given counts each minute, for 30 minutes."""
    return [
        {"series": f'vllm:time_to_first_token_seconds_bucket{{{MODEL}, le="{le}"}}', "values": f"0+{n}x30"}
        for le, n in per_minute_by_bucket.items()
    ]


def alert(name: str, eval_time: str, series: list[dict[str, str]], fires: dict[str, str] | None) -> dict:
    """A promtool test case: at eval_time the alert fires once with these labels, or (None) not at all."""
    expected = [] if fires is None else [{"exp_labels": fires}]
    return {
        "interval": "1m",
        "input_series": series,
        "alert_rule_test": [{"eval_time": eval_time, "alertname": name, "exp_alerts": expected}],
    }


def series(selector: str, values: str) -> dict[str, str]:
    return {"series": selector, "values": values}


MODEL_LABELS = {"namespace": "llm", "model_name": "m"}
HELD = (
    'keda_scaler_metrics_value{namespace="keda", exported_namespace="llm", scaledObject="vllm", '
    'scaler="http-requests", triggerIndex="0", type="scaledobject", metric="s0-http-requests"}'
)

# For each alert: the trouble it names fires, and healthy (or merely different) data stays quiet.
# Durations: "for" is 19m for VllmNoReadyReplica on the dev stack (its startup budget, 60 s node + 218 s image
# + 47 s weights + 50 s engine = 375 s, times 3 = 1125 s, rounded up to minutes), 10m or 5m for the others;
# series start at 0m.
CASES: dict[str, list[dict]] = {
    "VllmNoReadyReplica": [
        alert(
            "VllmNoReadyReplica",
            "45m",
            [
                series(f"kube_deployment_status_replicas_available{{{DEPLOYMENT}}}", "0x60"),
                series(f"kube_deployment_spec_replicas{{{DEPLOYMENT}}}", "1x60"),
            ],
            {"namespace": "llm", "deployment": "vllm", "severity": "critical"},
        ),
        # A first start (15 min without a ready replica) is not an outage yet.
        alert(
            "VllmNoReadyReplica",
            "15m",
            [
                series(f"kube_deployment_status_replicas_available{{{DEPLOYMENT}}}", "0x60"),
                series(f"kube_deployment_spec_replicas{{{DEPLOYMENT}}}", "1x60"),
            ],
            None,
        ),
        # Parked (llm:replicas 0): nothing should run.
        alert(
            "VllmNoReadyReplica",
            "45m",
            [
                series(f"kube_deployment_status_replicas_available{{{DEPLOYMENT}}}", "0x60"),
                series(f"kube_deployment_spec_replicas{{{DEPLOYMENT}}}", "0x60"),
            ],
            None,
        ),
        alert(
            "VllmNoReadyReplica",
            "45m",
            [
                series(f"kube_deployment_status_replicas_available{{{DEPLOYMENT}}}", "1x60"),
                series(f"kube_deployment_spec_replicas{{{DEPLOYMENT}}}", "1x60"),
            ],
            None,
        ),
    ],
    # dev may run 2 replicas and adds one per 2 waiting requests: capacity is exhausted when 2 run and more than
    # 2 x 2 = 4 requests wait, with the queue still growing, for 10 minutes.
    "VllmCapacityExhausted": [
        alert(
            "VllmCapacityExhausted",
            "30m",
            [
                series(f"kube_deployment_spec_replicas{{{DEPLOYMENT}}}", "2x60"),
                series(f'vllm:num_requests_waiting{{{MODEL}, pod="a"}}', "5+1x60"),
            ],
            {"severity": "warning"},
        ),
        # A long queue that no longer grows is busy, not exhausted.
        alert(
            "VllmCapacityExhausted",
            "30m",
            [
                series(f"kube_deployment_spec_replicas{{{DEPLOYMENT}}}", "2x60"),
                series(f'vllm:num_requests_waiting{{{MODEL}, pod="a"}}', "10x60"),
            ],
            None,
        ),
        # Below the maximum KEDA can still add a replica.
        alert(
            "VllmCapacityExhausted",
            "30m",
            [
                series(f"kube_deployment_spec_replicas{{{DEPLOYMENT}}}", "1x60"),
                series(f'vllm:num_requests_waiting{{{MODEL}, pod="a"}}', "5+1x60"),
            ],
            None,
        ),
    ],
    # dev holds a request 1.5 x its 375 s startup budget = 562.5 -> 563 s, so the alert waits 10 minutes of
    # held requests with no ready replica. KEDA's value is scraped from its operator in namespace keda.
    "VllmRequestsHeldWithoutReplica": [
        alert(
            "VllmRequestsHeldWithoutReplica",
            "20m",
            [
                series(f"{HELD}", "3x60"),
                series(f"kube_deployment_status_replicas_available{{{DEPLOYMENT}}}", "0x60"),
            ],
            {"severity": "warning"},
        ),
        # Requests pass through while a replica is ready.
        alert(
            "VllmRequestsHeldWithoutReplica",
            "20m",
            [
                series(f"{HELD}", "3x60"),
                series(f"kube_deployment_status_replicas_available{{{DEPLOYMENT}}}", "1x60"),
            ],
            None,
        ),
        # Scaled to zero with nobody asking: nothing is held.
        alert(
            "VllmRequestsHeldWithoutReplica",
            "20m",
            [
                series(f"{HELD}", "0x60"),
                series(f"kube_deployment_status_replicas_available{{{DEPLOYMENT}}}", "0x60"),
            ],
            None,
        ),
    ],
    # Every request between 1 s and 5 s: p95 = 1 + 0.95 x 4 = 4.8 s > 2 s. Healthy: all below 1 s.
    "VllmTimeToFirstTokenHigh": [
        alert(
            "VllmTimeToFirstTokenHigh",
            "20m",
            ttft_buckets({"1": 0, "5": 10, "+Inf": 10}),
            {**MODEL_LABELS, "severity": "warning"},
        ),
        alert("VllmTimeToFirstTokenHigh", "20m", ttft_buckets({"1": 10, "5": 10, "+Inf": 10}), None),
        # No traffic: no quantile at all.
        alert("VllmTimeToFirstTokenHigh", "20m", ttft_buckets({"1": 0, "5": 0, "+Inf": 0}), None),
    ],
    "VllmRequestsQueueing": [
        alert(
            "VllmRequestsQueueing",
            "10m",
            [series(f"vllm:num_requests_waiting{{{MODEL}}}", "3x20")],
            {**MODEL_LABELS, "severity": "warning"},
        ),
        # A one-minute burst of waiting requests is normal.
        alert(
            "VllmRequestsQueueing",
            "10m",
            [series(f"vllm:num_requests_waiting{{{MODEL}}}", "0 0 0 0 0 0 5 0 0 0 0 0 0 0")],
            None,
        ),
    ],
    "VllmKvCacheNearlyFull": [
        alert(
            "VllmKvCacheNearlyFull",
            "15m",
            [series(f'vllm:kv_cache_usage_perc{{{MODEL}, pod="vllm-0"}}', "0.95x30")],
            {**MODEL_LABELS, "pod": "vllm-0", "severity": "warning"},
        ),
        alert(
            "VllmKvCacheNearlyFull",
            "15m",
            [series(f'vllm:kv_cache_usage_perc{{{MODEL}, pod="vllm-0"}}', "0.5x30")],
            None,
        ),
    ],
    "VllmPreemptions": [
        alert(
            "VllmPreemptions",
            "15m",
            [series(f"vllm:num_preemptions_total{{{MODEL}}}", "0+5x30")],
            {**MODEL_LABELS, "severity": "warning"},
        ),
        # Preemptions long ago, none since: the counter stays flat.
        alert("VllmPreemptions", "15m", [series(f"vllm:num_preemptions_total{{{MODEL}}}", "7x30")], None),
    ],
    # 10 of 100 requests a minute end in an engine error: 10% > 5%. Healthy: 1%. Aborts (clients that left)
    # are not server errors.
    "VllmRequestErrors": [
        alert(
            "VllmRequestErrors",
            "10m",
            [
                series(f'vllm:request_success_total{{{MODEL}, finished_reason="error"}}', "0+10x30"),
                series(f'vllm:request_success_total{{{MODEL}, finished_reason="stop"}}', "0+90x30"),
            ],
            {**MODEL_LABELS, "severity": "critical"},
        ),
        alert(
            "VllmRequestErrors",
            "10m",
            [
                series(f'vllm:request_success_total{{{MODEL}, finished_reason="error"}}', "0+1x30"),
                series(f'vllm:request_success_total{{{MODEL}, finished_reason="stop"}}', "0+99x30"),
            ],
            None,
        ),
        alert(
            "VllmRequestErrors",
            "10m",
            [
                series(f'vllm:request_success_total{{{MODEL}, finished_reason="abort"}}', "0+50x30"),
                series(f'vllm:request_success_total{{{MODEL}, finished_reason="stop"}}', "0+50x30"),
            ],
            None,
        ),
    ],
    # 10% of API calls answered 5xx. Healthy: client errors (4xx) are the callers' problem.
    "VllmHttpServerErrors": [
        alert(
            "VllmHttpServerErrors",
            "10m",
            [
                series(
                    f'http_requests_total{{{NS}, handler="/v1/chat/completions", status="5xx"}}', "0+10x30"
                ),
                series(
                    f'http_requests_total{{{NS}, handler="/v1/chat/completions", status="2xx"}}', "0+90x30"
                ),
            ],
            {"namespace": "llm", "severity": "critical"},
        ),
        alert(
            "VllmHttpServerErrors",
            "10m",
            [
                series(
                    f'http_requests_total{{{NS}, handler="/v1/chat/completions", status="4xx"}}', "0+50x30"
                ),
                series(
                    f'http_requests_total{{{NS}, handler="/v1/chat/completions", status="2xx"}}', "0+50x30"
                ),
            ],
            None,
        ),
    ],
}


def write_rules(directory: Path, groups: list[dict[str, Any]]) -> Path:
    path = directory / "vllm.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def write_tests(directory: Path, rules: Path, tests: list[dict]) -> Path:
    path = directory / "vllm.tests.yaml"
    path.write_text(
        yaml.safe_dump(
            {"rule_files": [rules.name], "evaluation_interval": "1m", "tests": tests}, sort_keys=False
        )
    )
    return path


def test_rule_file_passes_promtool_check(tmp_path: Path):
    result = run_promtool("check", "rules", str(write_rules(tmp_path, rule_groups(dev_settings()))))
    assert result.returncode == 0, result.stdout + result.stderr
    # Seven for every stack, and two more for dev's autoscaling with scale to zero.
    assert "SUCCESS: 9 rules found" in result.stdout


def test_prometheus_rule_carries_the_same_groups():
    settings = dev_settings()
    assert prometheus_rule(settings)["spec"]["groups"] == rule_groups(settings)


def test_every_alert_has_a_firing_and_a_quiet_case():
    names = {rule["alert"] for group in rule_groups(dev_settings()) for rule in group["rules"]}
    assert names == set(CASES)
    for name, tests in CASES.items():
        outcomes = [bool(t["alert_rule_test"][0]["exp_alerts"]) for t in tests]
        assert True in outcomes and False in outcomes, name


@pytest.mark.parametrize("name", CASES)
def test_alert_fires_on_trouble_and_stays_quiet_when_healthy(name: str, tmp_path: Path):
    rules = write_rules(tmp_path, rules_without_annotations(dev_settings()))
    result = run_promtool("test", "rules", str(write_tests(tmp_path, rules, CASES[name])))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_test_catches_a_wrong_expectation(tmp_path: Path):
    rules = write_rules(tmp_path, rules_without_annotations(dev_settings()))
    quiet_data_expected_to_fire = alert(
        "VllmRequestErrors",
        "10m",
        [series(f'vllm:request_success_total{{{MODEL}, finished_reason="stop"}}', "0+99x30")],
        {**MODEL_LABELS, "severity": "critical"},
    )
    result = run_promtool("test", "rules", str(write_tests(tmp_path, rules, [quiet_data_expected_to_fire])))
    assert result.returncode != 0


def test_alerts_read_only_exported_metrics():
    for group in rule_groups(dev_settings()):
        for rule in group["rules"]:
            assert metric_names(rule["expr"]) <= VLLM_EXPORTED | KUBE_STATE_METRICS | KEDA_METRICS, rule[
                "alert"
            ]
            # Removed names that match nothing today.
            assert "gpu_cache_usage_perc" not in rule["expr"]


def test_no_ready_replica_waits_as_long_as_a_fresh_start():
    # Llama-3.1-70B on g6e.12xlarge: its startup budget is 60 s node + 218 s image + 12 s weights (141.1 GB at
    # 12.5 GB/s) + 50 s engine = 340 s; three times that is 1020 s = 17 minutes.
    raw, _ = stack_config("dev")
    raw.update({"llm:model": "meta-llama/Llama-3.1-70B-Instruct", "llm:instanceType": "g6e.12xlarge"})
    config = load_config(raw, "dev")
    (rule,) = [
        r
        for group in rule_groups(model_serving(config))
        for r in group["rules"]
        if r["alert"] == "VllmNoReadyReplica"
    ]
    assert rule["for"] == "17m"
