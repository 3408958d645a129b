"""Sizing against hand calculations.

Shared figures (bytes): 1 MiB = 1,048,576; 1 GiB = 1,073,741,824; overhead per GPU = 2 GiB = 2,147,483,648.
L4 / A10G: 22,888 MiB = 23,999,807,488 B; x 0.9 = 21,599,826,739.2 B usable per GPU.
L40S: 45,776 MiB = 47,999,614,976 B; x 0.9 = 43,199,653,478.4 B.   A100 40GB: 40,960 MiB x 0.9 = 38,654,705,664 B.
"""

import pytest

from selfhost.plan.command import summary, write_plan
from stacks.catalogs.instances import GPU_INSTANCES
from stacks.catalogs.models import MODELS
from stacks.sizing import SizingError, plan_serving

MISTRAL = MODELS["mistralai/Mistral-7B-Instruct-v0.2"]
LLAMA_8B = MODELS["meta-llama/Llama-3.1-8B-Instruct"]
LLAMA_70B = MODELS["meta-llama/Llama-3.1-70B-Instruct"]


def test_mistral_7b_on_g6_xlarge_holds_its_full_context():
    plan = plan_serving(MISTRAL, GPU_INSTANCES["g6.xlarge"], 0.9, None, 1)
    # Weights: 7.24e9 x 2 B = 14,480,000,000 B = 13.49 GiB.
    # KV per token: 2 (K and V) x 32 layers x 8 KV heads x 128 dims x 2 B = 131,072 B.
    # KV cache: 21,599,826,739.2 - 14,480,000,000 - 2,147,483,648 = 4,972,343,091.2 B / 131,072 = 37,935 tokens,
    # more than the model's 32,768, so TP 1 serves the full context.
    assert plan.weights_gib == 13.49
    assert plan.kv_bytes_per_token == 131_072
    assert plan.kv_cache_tokens == 37_935
    assert plan.tensor_parallel_size == 1
    assert plan.max_model_len == 32_768
    assert not plan.context_capped
    # Needed per GPU: (14,480,000,000 + 2,147,483,648 + 131,072 x 32,768) / 1 = 20,922,466,304 B = 19.49 GiB,
    # within 21,599,826,739.2 B = 20.12 GiB.
    assert plan.gpu_memory_gib_required == 19.49
    assert plan.gpu_memory_gib_available == 20.12
    # Rule of thumb: 7.24 x 2 x 1.2 = 17.376 GB.
    assert plan.rule_of_thumb_gb == 17.38
    # 37,935 // 32,768 = 1 full-length sequence at a time.
    assert plan.concurrent_sequences == 1
    # One GPU per node, one replica -> one node; the pool limit keeps one spare node: (1 + 1) x 1 GPU.
    assert (plan.replicas_per_node, plan.nodes, plan.gpu_limit) == (1, 1, 2)


def test_llama_70b_fits_p4d_with_tensor_parallel_8():
    plan = plan_serving(LLAMA_70B, GPU_INSTANCES["p4d.24xlarge"], 0.9, None, 1)
    # Weights 70.6e9 x 2 = 141,200,000,000 B. KV per token: 2 x 80 x 8 x 128 x 2 = 327,680 B.
    # TP 4: 4 x 38,654,705,664 - 141.2e9 - 4 x 2 GiB = 4,828,888,064 B -> 14,736 tokens < 131,072: too small.
    # TP 8: 8 x 38,654,705,664 - 141.2e9 - 8 x 2 GiB = 150,857,776,128 B -> 460,381 tokens: holds 131,072.
    assert plan.tensor_parallel_size == 8
    assert plan.kv_cache_tokens == 460_381
    assert plan.max_model_len == 131_072
    assert plan.replicas_per_node == 1


def test_llama_70b_on_g6e_12xlarge_uses_all_gpus_and_caps_the_context():
    plan = plan_serving(LLAMA_70B, GPU_INSTANCES["g6e.12xlarge"], 0.9, None, 1)
    # TP 4 (all GPUs): 4 x 43,199,653,478.4 - 141.2e9 - 4 x 2 GiB = 23,008,679,321.6 B / 327,680 = 70,216 tokens,
    # less than 131,072, so the context is capped to whole 16-token blocks: 70,216 // 16 x 16 = 70,208.
    assert plan.tensor_parallel_size == 4
    assert plan.kv_cache_tokens == 70_216
    assert plan.max_model_len == 70_208
    assert plan.context_capped
    assert any("capped to 70208" in note for note in plan.notes)


def test_llama_70b_does_not_fit_g6_12xlarge_and_names_cheaper_fits():
    # 4 x 21,599,826,739.2 = 86.4e9 B of budget < 141.2e9 B of weights.
    with pytest.raises(SizingError) as error:
        plan_serving(LLAMA_70B, GPU_INSTANCES["g6.12xlarge"], 0.9, None, 1)
    message = str(error.value)
    assert "g6.12xlarge" in message
    # Cheapest first among types that hold a 4,096-token context: g6e.12xlarge $10.49, p4d $21.96, p5 $55.04.
    assert message.index("g6e.12xlarge") < message.index("p4d.24xlarge") < message.index("p5.48xlarge")


def test_a_7b_model_on_a_four_gpu_instance_runs_four_replicas_per_node():
    plan = plan_serving(MISTRAL, GPU_INSTANCES["g6.12xlarge"], 0.9, None, 4)
    # TP 1 already holds 32,768 tokens (37,935 as on g6.xlarge), so 4 GPUs / TP 1 = 4 replicas on one node.
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
    # 21,599,826,739.2 - 16,060,000,000 - 2,147,483,648 = 3,392,343,091.2 B / 131,072 = 25,881 tokens;
    # capped to 25,881 // 16 x 16 = 25,872.
    assert plan.kv_cache_tokens == 25_881
    assert plan.max_model_len == 25_872
    with pytest.raises(SizingError, match=r"llm:maxModelLen: 32768 tokens do not fit"):
        plan_serving(LLAMA_8B, GPU_INSTANCES["g6.xlarge"], 0.9, 32_768, 1)


def test_an_explicit_context_that_fits_is_kept():
    plan = plan_serving(LLAMA_8B, GPU_INSTANCES["g6.xlarge"], 0.9, 16_384, 1)
    assert plan.max_model_len == 16_384
    assert not plan.context_capped
    # 25,881 // 16,384 = 1 sequence of full length at a time.
    assert plan.concurrent_sequences == 1


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
        {"llm:instanceType": "g6.12xlarge", "llm:replicas": 4, "llm:capacityTypes": '["on-demand"]'}
    )
    report = write_plan(plan, tmp_path)
    line = summary(report, tmp_path).splitlines()
    [model_line] = [text for text in line if text.strip().startswith("Model")]
    # One node at $4.6016/h runs the four replicas; "4 x g6.12xlarge" would read as four nodes.
    assert model_line.endswith("4 replica(s) on 1 x g6.12xlarge node(s), 4 replica(s) per node")
    assert "4 replica(s) on 1 x g6.12xlarge node(s)" in (tmp_path / "report.md").read_text()
