"""The Prometheus metrics a vLLM server exposes on /metrics, by the names PromQL must use.

Sources:
- vLLM engine metrics: vllm/v1/metrics/loggers.py (PrometheusStatLogger) at v0.33.0, the release of the
  pinned image (stacks/config/schema.py VLLM_IMAGE).
  prometheus_client exposes a Counter named `vllm:x` as `vllm:x_total`, a Histogram as `vllm:x_bucket`,
  `vllm:x_sum` and `vllm:x_count`. Every engine metric carries the labels `model_name`
  (the --served-model-name) and `engine` (the engine core index, "0" without data parallelism).
- `vllm:gpu_cache_usage_perc` was renamed `vllm:kv_cache_usage_perc` in 0.9 and is hidden since; the old
  `vllm:time_per_output_token_seconds` is deprecated for `vllm:inter_token_latency_seconds`.
- `finished_reason` values: FINISH_REASON_STRINGS in vllm/v1/engine/__init__.py (stop, length, abort,
  error, repetition). "error" is a request-level internal error that the server always answers with HTTP
  500; "abort" is a request the client abandoned.
- HTTP metrics: the OpenAI server instruments FastAPI with prometheus-fastapi-instrumentator
  (vllm/entrypoints/serve/instrumentator/metrics.py; default metrics: `http_requests_total` with labels
  handler, method and status, status codes grouped as "2xx", "4xx", "5xx"), excluding /metrics, /health,
  /load, /ping, /version and /server_info.
"""

from __future__ import annotations

# Gauges
NUM_REQUESTS_RUNNING = "vllm:num_requests_running"
NUM_REQUESTS_WAITING = "vllm:num_requests_waiting"
KV_CACHE_USAGE = "vllm:kv_cache_usage_perc"  # 0..1

# Counters, as exposed (with the _total suffix)
PROMPT_TOKENS = "vllm:prompt_tokens_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"
REQUEST_SUCCESS = "vllm:request_success_total"  # label finished_reason
NUM_PREEMPTIONS = "vllm:num_preemptions_total"
PREFIX_CACHE_QUERIES = "vllm:prefix_cache_queries_total"  # in tokens
PREFIX_CACHE_HITS = "vllm:prefix_cache_hits_total"  # in tokens

# Histograms (base names; PromQL reads NAME_bucket / NAME_sum / NAME_count)
TIME_TO_FIRST_TOKEN = "vllm:time_to_first_token_seconds"
INTER_TOKEN_LATENCY = "vllm:inter_token_latency_seconds"
E2E_REQUEST_LATENCY = "vllm:e2e_request_latency_seconds"
REQUEST_QUEUE_TIME = "vllm:request_queue_time_seconds"

FINISHED_REASON_ERROR = "error"

# prometheus-fastapi-instrumentator, as configured by vLLM's OpenAI server
HTTP_REQUESTS = "http_requests_total"
HTTP_STATUS_SERVER_ERROR = "5xx"


def bucket(histogram: str) -> str:
    return f"{histogram}_bucket"
