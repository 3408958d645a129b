"""How a model fits on a GPU instance: memory, tensor parallelism, context length, replicas per node.

vLLM requests `gpu_memory_utilization` x each GPU's memory (as torch reports it). Out of that come the
weights (split across the tensor-parallel GPUs), the non-KV overhead per GPU (stacks/overhead.py: what it is,
by GPU class and batch limits, fitted to real start-up logs) and the KV cache, which takes what is left. A
replica serves requests of `max_model_len` tokens only if its KV cache holds that many (vLLM refuses to start
otherwise: "max seq len ... larger than the maximum number of tokens that can be stored in KV cache").

The overhead is known to a range, not a point. Every decision that would crash the server if wrong (does it
fit, which TP, how much context) takes the pessimistic end of the range; the report gives the central
estimate, and the range where it is wide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from stacks.catalogs.instances import GIB, GPU_INSTANCES, GpuInstance
from stacks.catalogs.models import ModelSpec
from stacks.overhead import (
    ENGINE_DEFAULTS,
    BatchFlags,
    EngineBatch,
    Overhead,
    engine_batch,
    kv_cache_bytes,
    overhead_per_gpu,
)

# KV cache entries are stored at the model's dtype (fp16/bf16) unless --kv-cache-dtype says otherwise.
KV_DTYPE_BYTES = 2
# vLLM allocates the KV cache in blocks of 16 tokens: token counts are whole blocks.
BLOCK_TOKENS = 16
# Below this a capped context is no longer useful for chat; the model counts as not fitting.
MIN_USEFUL_CONTEXT = 4096
# The report gives a range instead of a point when the KV estimate's range spans more than this share of it.
THIN_MARGIN = 0.15


class SizingError(ValueError):
    """The model cannot be served as configured; the message says what would work."""


@dataclass(frozen=True)
class KvEstimate:
    """One replica's KV cache in tokens (whole blocks) at the pessimistic, central and optimistic overhead."""

    tp: int
    overhead: Overhead
    batch: EngineBatch
    low: int
    central: int
    high: int


@dataclass(frozen=True)
class ServingPlan:
    model_id: str
    instance_type: str
    fits: bool
    tensor_parallel_size: int
    max_model_len: int
    context_capped: bool
    kv_cache_tokens: int
    kv_cache_tokens_range: tuple[int, int]
    margin_thin: bool
    kv_bytes_per_token: int
    weights_gib: float
    overhead_gib_per_gpu: float
    overhead_gib_per_gpu_range: tuple[float, float]
    overhead_terms_gib: dict[str, float]
    overhead_basis: str
    max_num_batched_tokens: int
    max_num_seqs: int
    gpu_memory_gib_required: float
    gpu_memory_gib_available: float
    rule_of_thumb_gb: float
    replicas: int
    replicas_per_node: int
    nodes: int
    gpus_total: int
    gpu_limit: int
    concurrent_sequences: int
    notes: tuple[str, ...] = field(default=())


def weights_bytes(model: ModelSpec) -> float:
    return model.parameters_b * 1e9 * model.dtype_bytes


def kv_bytes_per_token(model: ModelSpec) -> int:
    """Key and value vectors for every layer: 2 x layers x KV heads x head dim x bytes."""
    return 2 * model.layers * model.kv_heads * model.head_dim * KV_DTYPE_BYTES


def rule_of_thumb_gb(model: ModelSpec) -> float:
    """The common estimate: parameters in billions x 2 bytes x 1.2 (20% for everything else), in GB."""
    return model.parameters_b * 2 * 1.2


def tokens_in(free_bytes: float, model: ModelSpec) -> int:
    """Whole KV blocks' worth of tokens in `free_bytes` (0 when nothing is left)."""
    return max(0, int(free_bytes // kv_bytes_per_token(model)) // BLOCK_TOKENS * BLOCK_TOKENS)


def kv_estimate(
    model: ModelSpec, instance: GpuInstance, utilization: float, tp: int, flags: BatchFlags = ENGINE_DEFAULTS
) -> KvEstimate:
    """The KV cache of one replica spread over `tp` GPUs."""
    batch = engine_batch(instance, flags)
    overhead = overhead_per_gpu(model, instance, tp, batch)

    def tokens(overhead_gib: float) -> int:
        return tokens_in(kv_cache_bytes(weights_bytes(model), instance, utilization, tp, overhead_gib), model)

    return KvEstimate(
        tp=tp,
        overhead=overhead,
        batch=batch,
        low=tokens(overhead.high_gib),
        central=tokens(overhead.central_gib),
        high=tokens(overhead.low_gib),
    )


def tensor_parallel_candidates(model: ModelSpec, instance: GpuInstance) -> list[int]:
    """Powers of two that divide the attention and KV heads and fit on the instance's GPUs."""
    sizes = []
    tp = 1
    while tp <= instance.gpu_count:
        if model.attention_heads % tp == 0 and model.kv_heads % tp == 0:
            sizes.append(tp)
        tp *= 2
    return sizes


def plan_serving(
    model: ModelSpec,
    instance: GpuInstance,
    utilization: float,
    max_model_len: int | None,
    replicas: int,
    flags: BatchFlags = ENGINE_DEFAULTS,
) -> ServingPlan:
    """Pick the tensor-parallel size and context length; raise SizingError when nothing works."""
    estimates = [
        kv_estimate(model, instance, utilization, tp, flags)
        for tp in tensor_parallel_candidates(model, instance)
    ]
    wanted = max_model_len or model.context_length
    notes: list[str] = []
    chosen = next((estimate for estimate in estimates if estimate.low >= wanted), None)
    if chosen is not None:
        kv, context = chosen, wanted
    else:
        kv = estimates[-1]
        if max_model_len is not None:
            raise SizingError(
                f"llm:maxModelLen: {max_model_len} tokens do not fit {model.id} on {instance.name}: "
                f"with all {kv.tp} usable GPU(s) the KV cache holds {kv.low} tokens (at the safe end of the "
                f"estimate); set llm:maxModelLen to at most {kv.low} or use one of: "
                f"{', '.join(cheapest_fitting(model, utilization, wanted, flags))}"
            )
        if kv.low < min(MIN_USEFUL_CONTEXT, model.context_length):
            raise SizingError(
                f"llm:instanceType: {instance.name!r} cannot hold {model.id} "
                f"({weights_bytes(model) / GIB:.1f} GiB of weights, {kv.tp} x "
                f"{instance.torch_memory_mib} MiB GPU at utilization {utilization}); instance types that "
                f"would, cheapest first: {', '.join(cheapest_fitting(model, utilization, MIN_USEFUL_CONTEXT, flags))}"
            )
        context = kv.low
        notes.append(
            f"{model.id} on {instance.name}: the KV cache of {kv.tp} GPU(s) holds {kv.low} tokens at the safe "
            f"end of the estimate, less than the model's {model.context_length}; max_model_len is capped to "
            f"{kv.low}"
        )
    tp, overhead = kv.tp, kv.overhead
    if overhead.basis.endswith(f"no observation of {instance.gpu_model}"):
        notes.append(
            f"no vLLM start-up log of an {instance.gpu_model} calibrates the overhead: the plan assumes the "
            "widest error seen on other GPUs"
        )
    per_node = instance.gpu_count // tp
    nodes = math.ceil(replicas / per_node)
    notes += idle_gpu_notes(instance, tp, replicas, nodes)
    required = (
        weights_bytes(model) + overhead.high_gib * GIB * tp + kv_bytes_per_token(model) * context
    ) / tp
    return ServingPlan(
        model_id=model.id,
        instance_type=instance.name,
        fits=True,
        tensor_parallel_size=tp,
        max_model_len=context,
        context_capped=chosen is None,
        kv_cache_tokens=kv.central,
        kv_cache_tokens_range=(kv.low, kv.high),
        margin_thin=kv.high - kv.low > THIN_MARGIN * kv.central,
        kv_bytes_per_token=kv_bytes_per_token(model),
        weights_gib=round(weights_bytes(model) / GIB, 2),
        overhead_gib_per_gpu=round(overhead.central_gib, 2),
        overhead_gib_per_gpu_range=(round(overhead.low_gib, 2), round(overhead.high_gib, 2)),
        overhead_terms_gib={name: round(gib, 3) for name, gib in overhead.terms_gib.items()},
        overhead_basis=overhead.basis,
        max_num_batched_tokens=kv.batch.max_num_batched_tokens,
        max_num_seqs=kv.batch.max_num_seqs,
        gpu_memory_gib_required=round(required / GIB, 2),
        gpu_memory_gib_available=round(instance.torch_memory_bytes * utilization / GIB, 2),
        rule_of_thumb_gb=round(rule_of_thumb_gb(model), 2),
        replicas=replicas,
        replicas_per_node=per_node,
        nodes=nodes,
        gpus_total=nodes * instance.gpu_count,
        # One spare node's GPUs, so Karpenter can launch a replacement before it drains a node.
        gpu_limit=(nodes + 1) * instance.gpu_count if replicas else 0,
        # Full-length requests one replica holds at once: the scheduler also stops at max_num_seqs.
        concurrent_sequences=min(kv.central // context, kv.batch.max_num_seqs),
        notes=tuple(notes),
    )


def idle_gpu_notes(instance: GpuInstance, tp: int, replicas: int, nodes: int) -> list[str]:
    """A warning when the nodes the replicas need have GPUs no replica uses: paid for, idle."""
    idle = nodes * instance.gpu_count - replicas * tp
    if replicas == 0 or idle == 0:
        return []
    full = nodes * (instance.gpu_count // tp)
    smaller = sorted(
        (
            other
            for other in GPU_INSTANCES.values()
            if other.gpu_model == instance.gpu_model and tp <= other.gpu_count < instance.gpu_count
        ),
        key=lambda other: other.usd_per_hour,
    )
    instead = (
        f", or {smaller[0].name} (${smaller[0].usd_per_hour:.2f}/h), the same GPU in a smaller node"
        if smaller
        else ""
    )
    return [
        f"{idle} of the {nodes * instance.gpu_count} GPUs on {nodes} x {instance.name} are paid for and idle: "
        f"llm:replicas {full} would use them all{instead}"
    ]


def cheapest_fitting(
    model: ModelSpec, utilization: float, context: int, flags: BatchFlags = ENGINE_DEFAULTS, count: int = 3
) -> list[str]:
    """Catalog instance types that hold `context` tokens of the model (at the safe end), cheapest first."""
    fitting = [
        instance
        for instance in GPU_INSTANCES.values()
        if any(
            kv_estimate(model, instance, utilization, tp, flags).low >= context
            for tp in tensor_parallel_candidates(model, instance)
        )
    ]
    fitting.sort(key=lambda instance: instance.usd_per_hour)
    return [f"{i.name} (${i.usd_per_hour:.2f}/h)" for i in fitting[:count]] or ["none in the catalog"]
