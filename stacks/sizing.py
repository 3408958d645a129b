"""How a model fits on a GPU instance: memory, tensor parallelism, context length, replicas per node.

vLLM pre-allocates `gpu_memory_utilization` x each GPU's memory. Out of that budget come the weights
(split across the tensor-parallel GPUs), a runtime overhead per GPU (CUDA context, activation peak of the
profiling run, CUDA graphs) and the KV cache, which takes what is left. A replica can serve a request of
`max_model_len` tokens only if the KV cache holds at least that many tokens (vLLM refuses to start
otherwise), so that is the fit test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stacks.catalogs.instances import GIB, GPU_INSTANCES, GpuInstance
from stacks.catalogs.models import ModelSpec

# Measured vLLM non-KV overhead per GPU is about 1-2 GiB for 7B-70B models (CUDA context ~0.5 GiB,
# activation peak and CUDA graphs the rest); 2 GiB keeps the estimate on the safe side.
OVERHEAD_BYTES_PER_GPU = 2 * GIB
# KV cache entries are stored at the model's dtype (fp16/bf16) unless --kv-cache-dtype says otherwise.
KV_DTYPE_BYTES = 2
# vLLM allocates the KV cache in blocks of 16 tokens; a capped context is rounded down to a block.
BLOCK_TOKENS = 16
# Below this a capped context is no longer useful for chat; the model counts as not fitting.
MIN_USEFUL_CONTEXT = 4096


class SizingError(ValueError):
    """The model cannot be served as configured; the message says what would work."""


@dataclass(frozen=True)
class ServingPlan:
    model_id: str
    instance_type: str
    fits: bool
    tensor_parallel_size: int
    max_model_len: int
    context_capped: bool
    kv_cache_tokens: int
    kv_bytes_per_token: int
    weights_gib: float
    overhead_gib_per_gpu: float
    gpu_memory_gib_required: float
    gpu_memory_gib_available: float
    rule_of_thumb_gb: float
    replicas: int
    replicas_per_node: int
    nodes: int
    gpus_total: int
    gpu_limit: int
    concurrent_sequences: int
    notes: tuple[str, ...]


def weights_bytes(model: ModelSpec) -> float:
    return model.parameters_b * 1e9 * model.dtype_bytes


def kv_bytes_per_token(model: ModelSpec) -> int:
    """Key and value vectors for every layer: 2 x layers x KV heads x head dim x bytes."""
    return 2 * model.layers * model.kv_heads * model.head_dim * KV_DTYPE_BYTES


def rule_of_thumb_gb(model: ModelSpec) -> float:
    """The common estimate: parameters in billions x 2 bytes x 1.2 (20% for everything else), in GB."""
    return model.parameters_b * 2 * 1.2


def kv_cache_tokens(model: ModelSpec, instance: GpuInstance, utilization: float, tp: int) -> int:
    """Tokens the KV cache of one replica spread over `tp` GPUs holds (0 when the weights do not fit)."""
    budget = instance.gpu_memory_bytes * utilization * tp
    free = budget - weights_bytes(model) - OVERHEAD_BYTES_PER_GPU * tp
    return max(0, int(free // kv_bytes_per_token(model)))


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
) -> ServingPlan:
    """Pick the tensor-parallel size and context length; raise SizingError when nothing works."""
    candidates = tensor_parallel_candidates(model, instance)
    wanted = max_model_len or model.context_length
    notes: list[str] = []
    chosen = next(
        (tp for tp in candidates if kv_cache_tokens(model, instance, utilization, tp) >= wanted), None
    )
    if chosen is not None:
        tp, context = chosen, wanted
    else:
        tp = candidates[-1]
        held = kv_cache_tokens(model, instance, utilization, tp) // BLOCK_TOKENS * BLOCK_TOKENS
        if max_model_len is not None:
            raise SizingError(
                f"llm:maxModelLen: {max_model_len} tokens do not fit {model.id} on {instance.name}: "
                f"with all {tp} usable GPU(s) the KV cache holds {held} tokens; set llm:maxModelLen to at "
                f"most {held} or use one of: {', '.join(cheapest_fitting(model, utilization, wanted))}"
            )
        if held < min(MIN_USEFUL_CONTEXT, model.context_length):
            raise SizingError(
                f"llm:instanceType: {instance.name!r} cannot hold {model.id} "
                f"({weights_bytes(model) / GIB:.1f} GiB of weights, {tp} x "
                f"{instance.gpu_memory_mib} MiB GPU at utilization {utilization}); instance types that "
                f"would, cheapest first: {', '.join(cheapest_fitting(model, utilization, MIN_USEFUL_CONTEXT))}"
            )
        context = held
        notes.append(
            f"{model.id} on {instance.name}: the KV cache of {tp} GPU(s) holds {held} tokens, less than the "
            f"model's {model.context_length}; max_model_len is capped to {held}"
        )

    kv_tokens = kv_cache_tokens(model, instance, utilization, tp)
    per_node = instance.gpu_count // tp
    nodes = math.ceil(replicas / per_node)
    notes += idle_gpu_notes(instance, tp, replicas, nodes)
    required = (weights_bytes(model) + OVERHEAD_BYTES_PER_GPU * tp + kv_bytes_per_token(model) * context) / tp
    return ServingPlan(
        model_id=model.id,
        instance_type=instance.name,
        fits=True,
        tensor_parallel_size=tp,
        max_model_len=context,
        context_capped=chosen is None,
        kv_cache_tokens=kv_tokens,
        kv_bytes_per_token=kv_bytes_per_token(model),
        weights_gib=round(weights_bytes(model) / GIB, 2),
        overhead_gib_per_gpu=OVERHEAD_BYTES_PER_GPU / GIB,
        gpu_memory_gib_required=round(required / GIB, 2),
        gpu_memory_gib_available=round(instance.gpu_memory_bytes * utilization / GIB, 2),
        rule_of_thumb_gb=round(rule_of_thumb_gb(model), 2),
        replicas=replicas,
        replicas_per_node=per_node,
        nodes=nodes,
        gpus_total=nodes * instance.gpu_count,
        # One spare node's GPUs, so Karpenter can launch a replacement before it drains a node.
        gpu_limit=(nodes + 1) * instance.gpu_count if replicas else 0,
        concurrent_sequences=kv_tokens // context,
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


def cheapest_fitting(model: ModelSpec, utilization: float, context: int, count: int = 3) -> list[str]:
    """Catalog instance types that hold `context` tokens of the model, cheapest first."""
    fitting = [
        instance
        for instance in GPU_INSTANCES.values()
        if any(
            kv_cache_tokens(model, instance, utilization, tp) >= context
            for tp in tensor_parallel_candidates(model, instance)
        )
    ]
    fitting.sort(key=lambda instance: instance.usd_per_hour)
    return [f"{i.name} (${i.usd_per_hour:.2f}/h)" for i in fitting[:count]] or ["none in the catalog"]
