"""What vLLM keeps on each GPU besides the weights and the KV cache, and why.

vLLM 0.33 sizes the KV cache at start-up (vllm/v1/worker/gpu_worker.py, `determine_available_memory`): it
requests `gpu_memory_utilization` x the memory torch reports, loads the weights, runs one profiling pass at
the scheduler's batch limits, estimates the memory of the CUDA graphs it will capture, and gives the KV cache
what is left. So the non-KV overhead per GPU is:

    non-torch base + sampler(max_num_seqs x vocabulary) + activations(max_num_batched_tokens)
    + tensor-parallel buffers (TP > 1) + CUDA graphs

Every term below is fitted to, or checked against, real start-up logs (tests/stacks/data/
vllm-kv-observations.csv, each row with its source); the comment on each term names the rows it rests on.
`implied overhead` there is `(M x util x TP - weights - KV tokens x KV bytes per token) / TP`.

The batch limits come from the engine's own defaults, which vLLM picks by GPU
(vllm/engine/arg_utils.py, `EngineArgs.get_batch_defaults`, OPENAI_API_SERVER context): GPUs reporting at
least 70 GiB that are not A100 get max_num_batched_tokens 8192 and max_num_seqs 1024; all others (L4, A10G,
L40S, A100) 2048 and 256. `--max-num-batched-tokens` / `--max-num-seqs` in llm:extraEngineArgs replace them.
"""

from __future__ import annotations

from dataclasses import dataclass

from stacks.catalogs.instances import GIB, GpuInstance
from stacks.catalogs.models import ModelSpec

# vllm/engine/arg_utils.py get_batch_defaults (OPENAI_API_SERVER): the large tier is torch-reported memory of
# at least 70 GiB on a GPU whose name does not contain "a100".
LARGE_TIER_MIN_BYTES = 70 * GIB
LARGE_TIER_BATCH = (8192, 1024)
SMALL_TIER_BATCH = (2048, 256)

# Non-torch base (CUDA context workspaces, cuBLAS, allocator slack), GiB per GPU. Rows 1 and 3 (Llama-3.1-8B on
# an RTX 3090, v0.17, batch 2048/256) imply 0.55 and 0.57; less their activations (2048 x 110,592 B = 0.211
# GiB) and sampler (256 x 128,256 x 2.3 B = 0.070 GiB) that leaves 0.279.
BASE_GIB = 0.28
# Sampler warm-up, bytes per (sequence x vocabulary entry): the profiling pass samples max_num_seqs rows of
# logits. Small tier: Qwen2.5-7B (vocabulary 152,064, rows 2 and 4) sits 0.013 GiB above Llama-3.1-8B
# (128,256, rows 1 and 3) once activations are taken out: 0.013 GiB / (256 x 23,808) = 2.3 B. Large tier:
# row 18 (Qwen3-0.6B on an H100, v0.11, 8192/1024) implies 5.69 GiB; less the base and its activations
# (8192 x 24,576 B = 0.1875 GiB) that is 5.22 GiB over 1024 x 151,936 entries = 36 B. Whether the engine
# version (0.11 there, 0.17 on the 24 GB cards) or the GPU explains the gap, the rows cannot tell: each tier
# keeps its own figure, and the larger one errs toward fewer KV tokens.
SAMPLER_BYTES_PER_ENTRY = {"small": 2.3, "large": 36.0}
# Activations of the profiling pass, bytes per batched token: rows 7 and 8 (Llama-3.1-8B, RTX 3090, V0 profiling
# at 20,000 and 29,000 tokens) differ by 0.93 GiB over 9,000 tokens, 110,951 B per token. Llama-3.1-8B has
# intermediate size 14,336 and hidden size 4,096: 6 B x (14,336 + 4,096) = 110,592 B, as if three bf16 copies
# of the MLP's inner width (split across TP) and its outer width were live at the peak.
ACTIVATION_BYTES_PER_WIDTH = 6
# NCCL and all-reduce buffers once TP > 1, GiB per GPU: 0.4-1.2 in the logs (FACTS section 14); row 11 (Qwen3-32B,
# TP 2, H100) implies less than the other terms already give, row 16 (TP 2 on RTX 4090s over PCIe, medium
# confidence) about 1.2. L4 and A10G nodes also talk over PCIe, so the range keeps the top figure.
TP_BUFFERS_GIB = (0.6, 1.2)
# CUDA graphs: vLLM estimates their memory and takes it from the KV cache since v0.21
# (VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1). One clean estimate with the default capture sizes (51
# piecewise up to 512 tokens, 35 full up to 256): 0.52 GiB for Qwen3-8B (LMCache issue 3430's log). Up to twice
# that is kept as margin for larger models. Older engines captured them outside the budget, so the
# observations hold none of it.
CUDA_GRAPHS_GIB = (0.5, 1.0)
# How far the fitted model missed the observations of a GPU class (GiB per GPU): 24 GB cards within 0.04
# (rows 1-4; row 6 lies 0.3 below, on the safe side), H100 within 0.4 (rows 13-15, medium confidence).
# A class with no observation behind it gets the widest figure seen.
OBSERVED_CLASSES = {
    # GPU model in the instance catalog: (observed on, residual GiB)
    "NVIDIA L4": ("RTX 3090 / A10 (24 GB, vLLM 0.7-0.17)", 0.1),
    "NVIDIA A10G": ("RTX 3090 / A10 (24 GB, vLLM 0.7-0.17)", 0.1),
    "NVIDIA A100 40GB": ("A100 40GB (vLLM 0.15, medium confidence)", 0.1),
    "NVIDIA H100 80GB": ("H100 80GB (vLLM 0.10-0.11)", 0.4),
}
UNOBSERVED_RESIDUAL_GIB = 0.5


@dataclass(frozen=True)
class BatchFlags:
    """What llm:extraEngineArgs says about the batch limits and CUDA graphs (None / False: not given)."""

    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    enforce_eager: bool = False


# No batch flags in llm:extraEngineArgs: the engine's defaults apply.
ENGINE_DEFAULTS = BatchFlags()


@dataclass(frozen=True)
class EngineBatch:
    """The scheduler limits the profiling pass runs at, and where they come from."""

    max_num_batched_tokens: int
    max_num_seqs: int
    tier: str
    overridden: bool = False
    enforce_eager: bool = False


def engine_batch(instance: GpuInstance, flags: BatchFlags = ENGINE_DEFAULTS) -> EngineBatch:
    """vLLM 0.33's batch limits on this GPU, with the stack's own flags in their place where given."""
    large = instance.torch_memory_bytes >= LARGE_TIER_MIN_BYTES and "a100" not in instance.gpu_model.lower()
    tokens, seqs = LARGE_TIER_BATCH if large else SMALL_TIER_BATCH
    return EngineBatch(
        max_num_batched_tokens=flags.max_num_batched_tokens or tokens,
        max_num_seqs=flags.max_num_seqs or seqs,
        tier="large" if large else "small",
        overridden=flags.max_num_batched_tokens is not None or flags.max_num_seqs is not None,
        enforce_eager=flags.enforce_eager,
    )


@dataclass(frozen=True)
class Overhead:
    """Non-KV memory per GPU in GiB: the central estimate, the range around it, its terms and its basis."""

    central_gib: float
    low_gib: float
    high_gib: float
    terms_gib: dict[str, float]
    basis: str


def overhead_per_gpu(
    model: ModelSpec, instance: GpuInstance, tp: int, batch: EngineBatch, cuda_graphs_in_budget: bool = True
) -> Overhead:
    """The overhead model above for one GPU of a replica with tensor-parallel size `tp`.

    `cuda_graphs_in_budget` is True for the pinned engine; observations from engines before v0.21 (and runs
    with --enforce-eager) had no CUDA graph memory inside the budget."""
    activation_bytes = (
        ACTIVATION_BYTES_PER_WIDTH
        * (model.intermediate_size / tp + model.hidden_size)
        * batch.max_num_batched_tokens
    )
    sampler_bytes = SAMPLER_BYTES_PER_ENTRY[batch.tier] * batch.max_num_seqs * model.vocab_size
    graphs = CUDA_GRAPHS_GIB if cuda_graphs_in_budget and not batch.enforce_eager else (0.0, 0.0)
    buffers = TP_BUFFERS_GIB if tp > 1 else (0.0, 0.0)
    terms = {
        "base": BASE_GIB,
        "sampler": sampler_bytes / GIB,
        "activations": activation_bytes / GIB,
        "tensor_parallel": buffers[0],
        "cuda_graphs": graphs[0],
    }
    central = sum(terms.values())
    observed_on, residual = OBSERVED_CLASSES.get(
        instance.gpu_model, (f"no observation of {instance.gpu_model}", UNOBSERVED_RESIDUAL_GIB)
    )
    high = central + residual + (buffers[1] - buffers[0]) + (graphs[1] - graphs[0])
    low = max(central - residual, BASE_GIB)
    batch_source = (
        "llm:extraEngineArgs" if batch.overridden else f"vLLM 0.33's defaults for the {batch.tier} tier"
    )
    basis = (
        f"{instance.gpu_model} ({instance.torch_memory_mib} MiB as torch reports it); batches of "
        f"{batch.max_num_batched_tokens} tokens and {batch.max_num_seqs} sequences ({batch_source}); "
        f"calibrated on {observed_on}"
    )
    return Overhead(central_gib=central, low_gib=low, high_gib=high, terms_gib=terms, basis=basis)


def kv_cache_bytes(
    weights_bytes: float, instance: GpuInstance, utilization: float, tp: int, overhead_gib: float
) -> float:
    """What one replica's KV cache gets: the requested memory of `tp` GPUs less the weights and overheads."""
    return instance.torch_memory_bytes * utilization * tp - weights_bytes - overhead_gib * GIB * tp
