"""Sizing against hand calculations.

Shared figures (bytes): 1 MiB = 1,048,576; 1 GiB = 1,073,741,824.
GPU memory as torch reports it, x 0.9 (the utilization): L4 23,034 MiB -> 21,737,609,625.6 B per GPU;
L40S 45,373 MiB -> 42,819,334,963.2 B; A100 40GB 40,335 MiB -> 38,064,881,664 B.
Overhead per GPU (stacks/overhead.py), small tier (L4, L40S, A100: batches of 2048 tokens, 256 sequences):
  0.28 base + 256 x vocabulary x 2.3 B + 2048 x 6 x (intermediate / TP + hidden) B + 0.5 CUDA graphs
  (+ 0.6 TP buffers when TP > 1). Pessimistic end: + the class residual (0.1 GiB on the L4 and A100, 0.5 on the
  unobserved L40S) + 0.5 more CUDA graphs + 0.6 more TP buffers when TP > 1.
KV tokens are whole 16-token blocks.
"""

import pytest

from selfhost.plan.command import summary, write_plan
from stacks.catalogs.instances import GPU_INSTANCES
from stacks.catalogs.models import MODELS
from stacks.overhead import BatchFlags, engine_batch
from stacks.sizing import SizingError, plan_serving

MISTRAL = MODELS["mistralai/Mistral-7B-Instruct-v0.2"]
LLAMA_8B = MODELS["meta-llama/Llama-3.1-8B-Instruct"]
LLAMA_70B = MODELS["meta-llama/Llama-3.1-70B-Instruct"]


def test_mistral_7b_on_g6_xlarge_holds_its_full_context():
    plan = plan_serving(MISTRAL, GPU_INSTANCES["g6.xlarge"], 0.9, None, 1)
    # Weights: 7,241,732,096 parameters x 2 B = 14,483,464,192 B = 13.49 GiB.
    # KV per token: 2 (K and V) x 32 layers x 8 KV heads x 128 dims x 2 B = 131,072 B.
    # Overhead: 0.28 + 256 x 32,000 x 2.3 B (18,841,600 B = 0.01755 GiB) + 2048 x 6 x (14,336 + 4,096) B
    # (226,492,416 B = 0.21094 GiB) + 0.5 = 1.00849 GiB; range 1.00849 - 0.1 = 0.90849 to
    # 1.00849 + 0.1 + 0.5 = 1.60849 GiB.
    assert plan.weights_gib == 13.49
    assert plan.kv_bytes_per_token == 131_072
    assert plan.overhead_gib_per_gpu == 1.01
    assert plan.overhead_gib_per_gpu_range == (0.91, 1.61)
    assert (plan.max_num_batched_tokens, plan.max_num_seqs) == (2048, 256)
    # KV cache: 21,737,609,625.6 - 14,483,464,192 - 1.00849 GiB (1,082,852,638.7 B) = 6,171,292,794.9 B
    # / 131,072 = 47,083.2 -> 47,072 tokens in whole blocks. Pessimistic: 0.6 GiB (644,245,094.4 B) less,
    # 5,527,047,700.5 B -> 42,168.3 -> 42,160; optimistic: 0.1 GiB more, 6,278,666,977.3 B -> 47,888.
    assert plan.kv_cache_tokens == 47_072
    assert plan.kv_cache_tokens_range == (42_160, 47_888)
    # Even the pessimistic 42,160 holds the model's 32,768: TP 1, full context.
    assert plan.tensor_parallel_size == 1
    assert plan.max_model_len == 32_768
    assert not plan.context_capped
    # The range spans 47,888 - 42,160 = 5,728 tokens, under 15% of 47,072 (7,060.8): not thin.
    assert not plan.margin_thin
    # Needed per GPU at the pessimistic overhead: 14,483,464,192 + 1.60849 GiB (1,727,097,733.1 B)
    # + 131,072 x 32,768 (4,294,967,296 B) = 20,505,529,221.1 B = 19.10 GiB, within 21,737,609,625.6 B = 20.24 GiB.
    assert plan.gpu_memory_gib_required == 19.10
    assert plan.gpu_memory_gib_available == 20.24
    # Rule of thumb: 7.241732096 x 2 x 1.2 = 17.38 GB.
    assert plan.rule_of_thumb_gb == 17.38
    # 47,072 // 32,768 = 1 full-length sequence at a time.
    assert plan.concurrent_sequences == 1
    # One GPU per node, one replica -> one node; the pool limit keeps one spare node: (1 + 1) x 1 GPU.
    assert (plan.replicas_per_node, plan.nodes, plan.gpu_limit) == (1, 1, 2)


def test_the_stacks_batch_flags_and_eager_mode_change_the_overhead():
    l4 = GPU_INSTANCES["g6.xlarge"]
    # --max-num-batched-tokens 8192: activations 8192 x 110,592 B = 0.84375 GiB instead of 0.21094, 0.63281 GiB
    # (679,477,248 B) more overhead: 6,171,292,794.9 - 679,477,248 = 5,491,815,546.9 B -> 41,899.2 -> 41,888.
    bigger = plan_serving(MISTRAL, l4, 0.9, None, 1, BatchFlags(max_num_batched_tokens=8192))
    assert bigger.max_num_batched_tokens == 8192
    assert bigger.kv_cache_tokens == 41_888
    # --enforce-eager: no CUDA graphs, 0.5 GiB (536,870,912 B) less: 6,708,163,706.9 B -> 51,179.2 -> 51,168.
    eager = plan_serving(MISTRAL, l4, 0.9, None, 1, BatchFlags(enforce_eager=True))
    assert eager.kv_cache_tokens == 51_168
    assert eager.overhead_terms_gib["cuda_graphs"] == 0


def test_the_engine_picks_its_batch_limits_by_gpu():
    # vllm/engine/arg_utils.py: 8192 / 1024 from 70 GiB (H100: 81,080 MiB = 79.18 GiB), 2048 / 256 below
    # (L40S: 44.31 GiB; L4: 22.49 GiB).
    assert engine_batch(GPU_INSTANCES["p5.48xlarge"]).max_num_seqs == 1024
    assert engine_batch(GPU_INSTANCES["p5.48xlarge"]).max_num_batched_tokens == 8192
    for name in ("g6e.xlarge", "g6.xlarge", "g5.xlarge", "p4d.24xlarge"):
        batch = engine_batch(GPU_INSTANCES[name])
        assert (batch.max_num_batched_tokens, batch.max_num_seqs) == (2048, 256), name


def test_llama_70b_fits_p4d_with_tensor_parallel_8():
    plan = plan_serving(LLAMA_70B, GPU_INSTANCES["p4d.24xlarge"], 0.9, None, 1)
    # Weights 70,553,706,496 x 2 = 141,107,412,992 B. KV per token: 2 x 80 x 8 x 128 x 2 = 327,680 B.
    # Budget: 4 A100s 152,259,526,656 B, 8 A100s 304,519,053,312 B.
    # TP 4, pessimistic overhead: 0.28 + 256 x 128,256 x 2.3 B (0.07033) + 2048 x 6 x (28,672 / 4 + 8,192) B
    # (0.17578) + 0.6 + 0.5 = 1.62611, + 0.1 + 0.6 + 0.5 = 2.82611 GiB per GPU: 4 x 2.82611 GiB = 12,138,050,025 B,
    # more than the 11,152,113,664 B the weights leave, so no KV cache at all.
    # TP 8: activations 2048 x 6 x (3,584 + 8,192) B = 0.13477 GiB; pessimistic 2.78510 GiB per GPU;
    # 304,519,053,312 - 141,107,412,992 - 8 x 2.78510 GiB = 139,487,844,106 B / 327,680 = 425,683 -> 425,680
    # tokens: holds 131,072. Central (1.58510 GiB per GPU): 149,795,765,617 B -> 457,136.
    assert plan.tensor_parallel_size == 8
    assert plan.kv_cache_tokens == 457_136
    assert plan.kv_cache_tokens_range[0] == 425_680
    assert plan.max_model_len == 131_072
    assert plan.replicas_per_node == 1


def test_llama_70b_on_g6e_12xlarge_uses_all_gpus_and_caps_the_context():
    plan = plan_serving(LLAMA_70B, GPU_INSTANCES["g6e.12xlarge"], 0.9, None, 1)
    # TP 4 (all GPUs), L40S: no start-up log calibrates it, so the pessimistic end adds 0.5 GiB (not 0.1):
    # 1.62611 + 0.5 + 0.6 + 0.5 = 3.22611 GiB per GPU. 4 x 45,373 MiB x 0.9 = 171,277,339,852.8 B;
    # - 141,107,412,992 - 4 x 3.22611 GiB = 16,313,881,067.5 B / 327,680 = 49,786.0 -> 49,776 tokens,
    # less than 131,072: the context is capped there. Central: 23,185,828,741.1 B -> 70,752.
    assert plan.tensor_parallel_size == 4
    assert plan.kv_cache_tokens == 70_752
    assert plan.max_model_len == 49_776
    assert plan.context_capped
    assert any("capped to 49776" in note for note in plan.notes)
    assert any("no vLLM start-up log of an NVIDIA L40S" in note for note in plan.notes)
    # Range 49,776 to 77,296 (optimistic 0.5 GiB under the central 1.62611): 27,520 > 15% of 70,752.
    assert plan.margin_thin


def test_llama_70b_does_not_fit_g6_12xlarge_and_names_cheaper_fits():
    # 4 x 23,034 MiB x 0.9 = 86,950,438,502.4 B of budget < 141,107,412,992 B of weights.
    with pytest.raises(SizingError) as error:
        plan_serving(LLAMA_70B, GPU_INSTANCES["g6.12xlarge"], 0.9, None, 1)
    message = str(error.value)
    assert "g6.12xlarge" in message
    # Cheapest first among types that hold a 4,096-token context: g6e.12xlarge $10.49 (49,776 tokens, above),
    # p4d $21.96, p5 $55.04.
    assert message.index("g6e.12xlarge") < message.index("p4d.24xlarge") < message.index("p5.48xlarge")


def test_a_7b_model_on_a_four_gpu_instance_runs_four_replicas_per_node():
    plan = plan_serving(MISTRAL, GPU_INSTANCES["g6.12xlarge"], 0.9, None, 4)
    # TP 1 already holds 32,768 tokens at the pessimistic end (42,160 as on g6.xlarge), so 4 GPUs / TP 1 = 4
    # replicas on one node.
    assert plan.tensor_parallel_size == 1
    assert plan.replicas_per_node == 4
    assert plan.nodes == 1
    # (1 node + 1 spare) x 4 GPUs.
    assert plan.gpu_limit == 8


def test_five_replicas_of_four_per_node_need_two_nodes():
    plan = plan_serving(MISTRAL, GPU_INSTANCES["g6.12xlarge"], 0.9, None, 5)
    # ceil(5 / 4) = 2 nodes of 4 GPUs = 8 GPUs; limit (2 + 1) x 4 = 12.
    assert (plan.nodes, plan.gpus_total, plan.gpu_limit) == (2, 8, 12)


def test_llama_8b_on_one_l4_caps_its_context_unless_told_otherwise():
    plan = plan_serving(LLAMA_8B, GPU_INSTANCES["g6.xlarge"], 0.9, None, 1)
    # Weights 8,030,261,248 x 2 = 16,060,522,496 B. Overhead: 0.28 + 256 x 128,256 x 2.3 B (0.07033)
    # + 0.21094 + 0.5 = 1.06127 GiB, pessimistic 1.66127 GiB.
    # Pessimistic KV: 21,737,609,625.6 - 16,060,522,496 - 1.66127 GiB (1,783,775,080 B) = 3,893,313,863.7 B
    # / 131,072 = 29,703.6 -> 29,696 tokens: the context is capped there. Central: 4,537,558,958.1 B -> 34,608.
    assert plan.kv_cache_tokens == 34_608
    assert plan.max_model_len == 29_696
    with pytest.raises(SizingError, match=r"llm:maxModelLen: 32768 tokens do not fit"):
        plan_serving(LLAMA_8B, GPU_INSTANCES["g6.xlarge"], 0.9, 32_768, 1)


def test_an_explicit_context_that_fits_is_kept():
    plan = plan_serving(LLAMA_8B, GPU_INSTANCES["g6.xlarge"], 0.9, 16_384, 1)
    assert plan.max_model_len == 16_384
    assert not plan.context_capped
    # 34,608 // 16,384 = 2 full-length sequences at a time.
    assert plan.concurrent_sequences == 2


def test_no_catalog_pair_promises_more_context_than_the_safe_end_of_the_estimate():
    for model in MODELS.values():
        for instance in GPU_INSTANCES.values():
            try:
                plan = plan_serving(model, instance, 0.9, None, 1)
            except SizingError:
                continue
            assert plan.max_model_len <= plan.kv_cache_tokens_range[0], (model.id, instance.name)
            assert plan.kv_cache_tokens_range[0] <= plan.kv_cache_tokens <= plan.kv_cache_tokens_range[1]


def test_tensor_parallel_size_divides_the_heads():
    qwen = MODELS["Qwen/Qwen2.5-7B-Instruct"]
    # 28 attention heads and 4 KV heads: of 1, 2, 4, 8 only 1, 2 and 4 divide both, so a p4d (8 GPUs)
    # never gets TP 8 for Qwen; TP 1 holds its 32,768 tokens and 8 replicas share the node.
    plan = plan_serving(qwen, GPU_INSTANCES["p4d.24xlarge"], 0.9, None, 8)
    assert plan.tensor_parallel_size == 1
    assert plan.replicas_per_node == 8


def test_zero_replicas_park_the_model():
    plan = plan_serving(MISTRAL, GPU_INSTANCES["g6.xlarge"], 0.9, None, 0)
    assert (plan.nodes, plan.gpus_total, plan.gpu_limit) == (0, 0, 0)


def test_one_replica_on_a_four_gpu_node_says_three_gpus_are_idle():
    # g6.12xlarge: 4 L4s at $4.6016/h. Mistral-7B needs TP 1, so one replica leaves 3 GPUs paid for and idle;
    # 4 replicas would use them all; g6.xlarge ($0.8048/h) has the same L4 alone and is the cheapest smaller one.
    plan = plan_serving(MISTRAL, GPU_INSTANCES["g6.12xlarge"], 0.9, None, replicas=1)
    assert plan.nodes == 1 and plan.replicas_per_node == 4
    assert plan.notes == (
        "3 of the 4 GPUs on 1 x g6.12xlarge are paid for and idle: llm:replicas 4 would use them all, "
        "or g6.xlarge ($0.80/h), the same GPU in a smaller node",
    )
    # Four replicas fill the one node: nothing idle, nothing said.
    assert plan_serving(MISTRAL, GPU_INSTANCES["g6.12xlarge"], 0.9, None, replicas=4).notes == ()
    # Five need a second node, of which three GPUs are idle: 8 replicas would fill both.
    five = plan_serving(MISTRAL, GPU_INSTANCES["g6.12xlarge"], 0.9, None, replicas=5)
    assert five.nodes == 2
    assert five.notes[0].startswith(
        "3 of the 8 GPUs on 2 x g6.12xlarge are paid for and idle: llm:replicas 8"
    )


def test_the_summary_tells_nodes_from_replicas(plan_with, capsys, tmp_path):
    plan = plan_with(
        {
            "autoscaling:enabled": "false",
            "llm:instanceType": "g6.12xlarge",
            "llm:replicas": 4,
            "llm:capacityTypes": '["on-demand"]',
        }
    )
    report = write_plan(plan, tmp_path)
    line = summary(report, tmp_path).splitlines()
    [model_line] = [text for text in line if text.strip().startswith("Model")]
    # One node at $4.6016/h runs the four replicas; "4 x g6.12xlarge" would read as four nodes.
    assert model_line.endswith("4 replica(s) on 1 x g6.12xlarge node(s), room for 4 replica(s) per node")
    assert "4 replica(s) on 1 x g6.12xlarge node(s)" in (tmp_path / "report.md").read_text()


def test_the_summary_says_the_scaling_range_and_its_costs(dev_plan, tmp_path):
    report = write_plan(dev_plan, tmp_path)
    lines = summary(report, tmp_path).splitlines()
    [model_line] = [text for text in lines if text.strip().startswith("Model")]
    assert model_line.endswith(
        "0 to 2 replica(s) on the load, to zero after 30 idle minutes, on up to 2 x g6.xlarge node(s), "
        "room for 1 replica(s) per node"
    )
    [cost_line] = [text for text in lines if text.strip().startswith("Cost")]
    # tests/stacks/test_cost.py works both figures out: $0.36713/h idle, $1.98769/h with 2 replicas.
    assert cost_line.strip() == "Cost     $0.37/h at 0 replica(s), up to $1.99/h at 2"


def test_the_report_says_how_many_shorter_requests_a_replica_serves_at_once(dev_plan, tmp_path):
    write_plan(dev_plan, tmp_path)
    # Mistral-7B on an L4 (test_mistral_7b_on_g6_xlarge_holds_its_full_context): a 47,072-token KV cache holds one 32,768-token
    # request, or 47,072 // 2,000 = 23 requests of 2,000 tokens, under vLLM's max_num_seqs of 256 on an L4.
    assert (
        "| Requests at once per replica | 1 at the full 32,768 tokens; about 23 of 2,000 tokens "
        "(prompt + answer), at most 256 (max_num_seqs) |"
    ) in (tmp_path / "report.md").read_text()
