"""The plan's report: sizing, cost per hour by item, resource counts, as JSON and as Markdown."""

from __future__ import annotations

import subprocess
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from components.serving.budget import SPOT_NOTICE_SECONDS, termination_grace_seconds
from selfhost.plan.runner import PROJECT_DIR, PlanResult
from stacks.cost import (
    HOURS_PER_MONTH,
    PRICE_REGION,
    cost_items,
    idle_usd_per_hour,
    nat_usd_avoided_per_cold_start,
    total_usd_per_hour,
)
from stacks.platform import endpoint_load_balancer
from stacks.quota import check_command, quota_needs


def price_region_warning(region: str) -> list[str]:
    if region == PRICE_REGION:
        return []
    return [f"costs are {PRICE_REGION} list prices; prices in {region} may differ"]


def source_commit(project_dir: Path) -> str | None:
    """The git commit the plan was made from (what a plan diff names its base by), or None outside git."""
    try:
        result = subprocess.run(
            ["git", "-C", str(project_dir), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def build_report(result: PlanResult, project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    config = result.config
    items = cost_items(config)
    total = total_usd_per_hour(items)
    counts = Counter(resource.type for resource in result.resources)
    return {
        "stack": result.stack,
        "commit": source_commit(project_dir),
        "region": config.region,
        "model": config.model.id,
        "instance_type": config.instance.name,
        "sizing": asdict(config.serving),
        "scaling": asdict(config.scaling) if config.scaling is not None else None,
        "startup": {
            "phases": {name: asdict(phase) for name, phase in config.startup.phases.items()},
            "total_seconds": config.startup.total_seconds,
            "target_seconds": config.startup.target_seconds,
            "meets_target": config.startup.meets_target,
            "bound": config.startup.bound,
            "image_source": "ecr-pull-through-cache" if config.llm.image_cached else "docker-hub",
        },
        "cost": {
            "total_usd_per_hour": round(total, 4),
            "total_usd_per_month": round(total * HOURS_PER_MONTH, 2),
            "nat_usd_avoided_per_cold_start": round(nat_usd_avoided_per_cold_start(config), 2),
            "idle_usd_per_hour": round(idle_usd_per_hour(config), 4),
            # The items are the stack at its most replicas (stacks/cost.py peak_usd_per_hour).
            "peak_usd_per_hour": round(total, 4),
            "items": [
                {"name": item.name, "usd_per_hour": round(item.usd_per_hour, 4), "detail": item.detail}
                for item in items
            ],
        },
        "endpoint": endpoint_report(result),
        "quota": [
            {**asdict(need), "check": check_command(need, config.region)}
            for need in quota_needs(
                config.instance,
                config.llm.capacity_types,
                config.serving.gpu_limit,
                config.llm.instance_family_fallback,
            )
        ],
        "spot": "spot" in config.llm.capacity_types,
        "resources": {"total": len(result.resources), "by_type": dict(sorted(counts.items()))},
        "warnings": [*config.warnings, *price_region_warning(config.region)],
    }


def endpoint_report(result: PlanResult) -> dict[str, Any]:
    """Where clients call the model, and the load balancer in front of it, if any."""
    balancer = endpoint_load_balancer(result.config)
    return {
        "url": result.outputs["endpoint_url"],
        "load_balancer": None
        if balancer is None
        else {
            "scheme": balancer.scheme,
            "tls": balancer.tls,
            "port": balancer.port,
            "hostname": balancer.hostname,
            "client_ranges": list(balancer.client_cidrs),
        },
    }


def endpoint_line(endpoint: dict[str, Any]) -> str:
    balancer = endpoint["load_balancer"]
    if balancer is None:
        return f"{endpoint['url']} (inside the cluster; from outside, kubectl port-forward)"
    listener = "TLS on 443" if balancer["tls"] else "plain TCP on 80"
    return f"{endpoint['url']} through an {balancer['scheme']} NLB, {listener}, admitting " + ", ".join(
        balancer["client_ranges"]
    )


def spot_note() -> str:
    """What a spot reclaim does to the model server, from its drain budget (components/serving/budget.py)."""
    grace = termination_grace_seconds()
    return (
        f"GPU nodes may run on spot. EC2 reclaims a spot node {SPOT_NOTICE_SECONDS} s after its interruption "
        f"notice, but a replica drains for up to {grace} s: answers still streaming {SPOT_NOTICE_SECONDS} s "
        "after the notice are cut, and a single replica is down until its replacement serves. Rollouts, "
        "consolidation, drift and scheduled maintenance events get the whole drain."
    )


def placement(sizing: dict[str, Any], instance_type: str, scaling: dict[str, Any] | None = None) -> str:
    """Replicas, nodes and replicas per node, said apart: 4 replicas of one 4-GPU node are one node. With
    autoscaling, the range and the nodes at its top."""
    nodes = sizing["nodes"]
    per_node = f"room for {sizing['replicas_per_node']} replica(s) per node"
    if scaling is None:
        return f"{sizing['replicas']} replica(s) on {nodes} x {instance_type} node(s), {per_node}"
    idle = (
        f", to zero after {scaling['idle_seconds'] // 60} idle minutes"
        if scaling["min_replicas"] == 0
        else ""
    )
    return (
        f"{scaling['min_replicas']} to {scaling['max_replicas']} replica(s) on the load{idle}, on up to "
        f"{nodes} x {instance_type} node(s), {per_node}"
    )


def cost_line(cost: dict[str, Any], scaling: dict[str, Any] | None) -> str:
    if scaling is None:
        return f"${cost['total_usd_per_hour']:.2f}/h (about ${cost['total_usd_per_month']:,.0f}/month)"
    return (
        f"${cost['idle_usd_per_hour']:.2f}/h at {scaling['min_replicas']} replica(s), up to "
        f"${cost['peak_usd_per_hour']:.2f}/h at {scaling['max_replicas']}"
    )


def scaling_cost_lines(report: dict[str, Any]) -> list[str]:
    """With autoscaling: the table above is the peak; the idle floor and the settings in effect."""
    scaling, cost = report["scaling"], report["cost"]
    if scaling is None:
        return []
    return [
        "",
        f"The items above are the peak, at {scaling['max_replicas']} replica(s). At "
        f"{scaling['min_replicas']} replica(s) (idle) the stack costs ${cost['idle_usd_per_hour']:.4f}/h. "
        f"Scaling: KEDA adds a replica when more than {scaling['target_waiting_per_replica']:g} request(s) per "
        f"replica wait in vLLM's queue or KV-cache use passes {scaling['kv_cache_target']:.0%}"
        + (
            f"; after {scaling['idle_seconds'] // 60} idle minutes the last replica goes, and a request then waits "
            f"up to {scaling['hold_seconds']} s for one to start (`selfhost simulate` prices a day of traffic)."
            if scaling["min_replicas"] == 0
            else "."
        ),
    ]


STARTUP_PHASE_NAMES = {
    "node_launch": "Node launch",
    "image_pull": "Image pull",
    "weight_load": "Weight load",
    "engine_start": "Engine start",
}


def startup_markdown(startup: dict[str, Any]) -> list[str]:
    """The startup budget as a table, and whether it meets its target or what bounds it."""
    verdict = (
        f"within the {startup['target_seconds']} s target"
        if startup["meets_target"]
        else f"over the {startup['target_seconds']} s target: the "
        f"{STARTUP_PHASE_NAMES[startup['bound']].lower()} bounds it "
        f"({startup['phases'][startup['bound']]['seconds']} s)"
    )
    return [
        "## Startup budget",
        "",
        "A new replica on a new GPU node, from the pod's creation to serving:",
        "",
        "| Phase | Seconds | Assumption | Source |",
        "|---|---:|---|---|",
        *(
            f"| {STARTUP_PHASE_NAMES[name]} | {phase['seconds']} | {phase['assumption']} | {phase['source']} |"
            for name, phase in startup["phases"].items()
        ),
        f"| **Total** | **{startup['total_seconds']}** | {verdict} | |",
        "",
    ]


def kv_cache_text(sizing: dict[str, Any]) -> str:
    """The KV cache in tokens: one figure, or the range with the estimate when the range is wide."""
    low, high = sizing["kv_cache_tokens_range"]
    if sizing["margin_thin"]:
        return f"{low:,} to {high:,} tokens (estimate {sizing['kv_cache_tokens']:,})"
    return f"{sizing['kv_cache_tokens']:,} tokens"


# A chat turn's prompt and answer, tokens: the request length the report's second concurrency figure is for.
TYPICAL_REQUEST_TOKENS = 2_000


def concurrency_text(sizing: dict[str, Any]) -> str:
    """Requests one replica serves at once: at full length, and at a typical chat length, where the KV cache
    holds more of them until vLLM's max_num_seqs stops the batch."""
    typical = min(sizing["kv_cache_tokens"] // TYPICAL_REQUEST_TOKENS, sizing["max_num_seqs"])
    return (
        f"{sizing['concurrent_sequences']} at the full {sizing['max_model_len']:,} tokens; "
        f"about {typical} of {TYPICAL_REQUEST_TOKENS:,} tokens (prompt + answer), at most "
        f"{sizing['max_num_seqs']} (max_num_seqs)"
    )


def overhead_text(sizing: dict[str, Any]) -> str:
    low, high = sizing["overhead_gib_per_gpu_range"]
    terms = ", ".join(
        f"{name.replace('_', ' ')} {gib}" for name, gib in sizing["overhead_terms_gib"].items() if gib
    )
    return f"{sizing['overhead_gib_per_gpu']} GiB ({low} to {high}): {terms}"


def _quota_name(need: dict[str, Any]) -> str:
    return f"{need['quota']} (`{need['code']}`)" if need["code"] else need["quota"]


def report_markdown(report: dict[str, Any]) -> str:
    sizing = report["sizing"]
    cost = report["cost"]
    lines = [
        f"# Plan for stack `{report['stack']}`",
        "",
        f"{report['model']}: {placement(sizing, report['instance_type'], report['scaling'])}, in {report['region']}.",
        "",
        f"Endpoint: {endpoint_line(report['endpoint'])}.",
        "",
        "## Sizing",
        "",
        "| | |",
        "|---|---|",
        f"| Fits | {'yes' if sizing['fits'] else 'no'} |",
        f"| Rule of thumb (params x 2 x 1.2) | {sizing['rule_of_thumb_gb']} GB |",
        f"| Weights | {sizing['weights_gib']} GiB |",
        f"| GPU memory needed per GPU | {sizing['gpu_memory_gib_required']} GiB |",
        f"| GPU memory vLLM may use per GPU | {sizing['gpu_memory_gib_available']} GiB |",
        f"| Tensor-parallel size | {sizing['tensor_parallel_size']} |",
        f"| max_model_len | {sizing['max_model_len']}{' (capped)' if sizing['context_capped'] else ''} |",
        f"| KV cache | {kv_cache_text(sizing)} |",
        f"| Requests at once per replica | {concurrency_text(sizing)} |",
        f"| Non-KV overhead per GPU | {overhead_text(sizing)} |",
        f"| Overhead basis | {sizing['overhead_basis']} |",
        f"| Replicas per node / nodes | {sizing['replicas_per_node']} / {sizing['nodes']} |",
        f"| GPU limit of the GPU node pool | {sizing['gpu_limit']} |",
        "",
        *startup_markdown(report["startup"]),
        "## EC2 quota a rollout needs",
        "",
        "vCPUs each quota must allow in the region (the GPU pool's limit includes one spare node for rollouts):",
        "",
        "| Quota | Capacity | vCPUs | For |",
        "|---|---|---:|---|",
        *(
            f"| {_quota_name(need)} | {need['capacity_type']} | {need['vcpus']} | {need['why']} |"
            for need in report["quota"]
        ),
        "",
        f"Check one: `{report['quota'][0]['check']}`",
        "",
        "## Cost per hour",
        "",
        "| Item | $/h | Detail |",
        "|---|---:|---|",
        *(f"| {i['name']} | {i['usd_per_hour']:.4f} | {i['detail']} |" for i in cost["items"]),
        f"| **Total** | **{cost['total_usd_per_hour']:.4f}** | about ${cost['total_usd_per_month']:,.0f} a month |",
        *scaling_cost_lines(report),
        "",
        f"Each new replica reads its weights{' and image' if report['startup']['image_source'] != 'docker-hub' else ''} "
        f"in-region instead of through the NAT gateway: ${cost['nat_usd_avoided_per_cold_start']:.2f} of NAT data "
        "charges avoided per cold start.",
        "",
        "## Resources",
        "",
        "| Type | Count |",
        "|---|---:|",
        *(f"| `{t}` | {n} |" for t, n in report["resources"]["by_type"].items()),
        f"| **Total** | **{report['resources']['total']}** |",
    ]
    if report["spot"]:
        lines += ["", "## Spot", "", spot_note()]
    if report["warnings"]:
        lines += ["", "## Warnings", "", *(f"- {warning}" for warning in report["warnings"])]
    return "\n".join(lines) + "\n"
