import json
from datetime import date

import pytest

from selfhost.plan.runner import run_program, stack_config
from stacks.config import KEYS, MAX_STACK_NAME_LENGTH, ConfigError, load_config

TODAY = date(2026, 11, 26)


def load(raw: dict[str, str], stack: str = "dev"):
    return load_config(raw, stack, today=TODAY)


def errors_of(raw: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as error:
        load(raw)
    return error.value.errors


def test_defaults_serve_mistral_on_one_l4():
    config = load({})
    assert config.llm.model.id == "mistralai/Mistral-7B-Instruct-v0.2"
    assert config.llm.instance.name == "g6.xlarge"
    assert config.llm.replicas == 1
    assert config.region == "us-west-2"
    assert config.serving.tensor_parallel_size == 1
    assert config.name == "llm-dev"


def test_dev_and_prod_stack_files():
    dev = load(stack_config("dev")[0], "dev")
    prod = load(stack_config("prod")[0], "prod")
    assert dev.llm.capacity_types == ("spot", "on-demand")
    assert dev.network.nat_gateways == "single"
    assert dev.llm.replicas == 1
    assert prod.llm.capacity_types == ("on-demand",)
    assert prod.network.nat_gateways == "perAz"
    assert prod.llm.replicas == 2
    assert prod.monitoring.persistence
    assert not prod.cluster.node_ami_alias.endswith("@latest")


def test_every_error_is_reported_at_once_naming_key_value_and_what_is_valid():
    errors = errors_of(
        {
            "llm:instanceType": "m5.large",
            "llm:replicas": "-1",
            "llm:gpuMemoryUtilization": "1.5",
            "llm:capacityTypes": '["spot", "reserved"]',
            "network:azCount": "1",
            "network:cidr": "10.0.0.0/33",
            "network:natGateways": "double",
            "cluster:version": "1.29",
            "cluster:publicAccessCidrs": '["my-office"]',
            "monitoring:retention": "two weeks",
        }
    )
    expected = {
        "llm:instanceType: 'm5.large'": "g6.xlarge",
        "llm:replicas: -1": "≥ 0",
        "llm:gpuMemoryUtilization: 1.5": "between 0 and 1",
        "llm:capacityTypes: ['spot', 'reserved']": '"spot" and/or "on-demand"',
        "network:azCount: 1": "from 2 to 6",
        "network:cidr: '10.0.0.0/33'": "CIDR",
        "network:natGateways: 'double'": "single, perAz",
        "cluster:version: '1.29'": "1.32",
        "cluster:publicAccessCidrs: 'my-office'": "CIDR",
        "monitoring:retention: 'two weeks'": "15d",
    }
    assert len(errors) == len(expected), errors
    for prefix, valid in expected.items():
        match = [e for e in errors if e.startswith(prefix)]
        assert match, f"no error starting {prefix!r} in {errors}"
        assert valid in match[0]


def test_non_numbers_are_reported_as_type_errors():
    errors = errors_of({"llm:replicas": "two", "llm:gpuMemoryUtilization": "lots"})
    assert "llm:replicas: 'two' is not valid; expected a whole number" in errors[0]
    assert errors[1].startswith("llm:gpuMemoryUtilization: 'lots'")


def test_context_beyond_the_model_or_not_positive():
    assert errors_of({"llm:maxModelLen": "65536"}) == [
        "llm:maxModelLen: 65536 is not valid; expected at most 32768, the context length of "
        "mistralai/Mistral-7B-Instruct-v0.2"
    ]
    assert errors_of({"llm:maxModelLen": "0"})[0].startswith("llm:maxModelLen: 0 is not valid")


def test_a_model_that_does_not_fit_names_instances_that_would():
    errors = errors_of({"llm:model": "meta-llama/Llama-3.1-70B-Instruct", "llm:instanceType": "g6.12xlarge"})
    assert len(errors) == 1
    assert errors[0].startswith(
        "llm:instanceType: 'g6.12xlarge' cannot hold meta-llama/Llama-3.1-70B-Instruct"
    )
    assert "g6e.12xlarge" in errors[0]


def test_unknown_model_needs_its_size():
    errors = errors_of({"llm:model": "acme/Private-13B"})
    assert len(errors) == 1
    for key in ("llm:modelParameters", "llm:modelLayers", "llm:modelKvHeads", "llm:modelContextLength"):
        assert key in errors[0]


def test_unknown_model_with_its_size_is_planned():
    config = load(
        {
            "llm:model": "acme/Private-13B",
            "llm:modelParameters": "13",
            "llm:modelLayers": "40",
            "llm:modelAttentionHeads": "40",
            "llm:modelKvHeads": "40",
            "llm:modelHeadDim": "128",
            "llm:modelContextLength": "4096",
            "llm:instanceType": "g6e.xlarge",
        }
    )
    # 13e9 x 2 = 26e9 B of weights; L40S budget 43,199,653,478.4 - 26e9 - 2 GiB = 15,052,169,830.4 B;
    # KV per token 2 x 40 x 40 x 128 x 2 = 819,200 B -> 18,374 tokens, enough for 4,096.
    assert config.serving.kv_cache_tokens == 18_374
    assert config.serving.max_model_len == 4096
    assert not config.llm.model.gated


def test_gpu_ceiling_guards_cost():
    errors = errors_of({"llm:model": "meta-llama/Llama-3.1-70B-Instruct", "llm:instanceType": "p4d.24xlarge"})
    # One p4d replica: 1 node x 8 GPUs, plus one spare node in the pool limit = 16 > the default ceiling 8.
    assert errors == [
        "llm:maxGpus: 8 is not valid; expected at least 16, the GPU node pool limit for 1 replica(s) of "
        "meta-llama/Llama-3.1-70B-Instruct on p4d.24xlarge; or lower llm:replicas"
    ]


def test_unknown_keys_in_our_namespaces_are_errors():
    errors = errors_of({"llm:replica": "2", "network:cidrs": "10.0.0.0/16"})
    assert errors[0].startswith("llm:replica: unknown key")
    assert "llm:replicas" in errors[0]
    assert errors[1].startswith("network:cidrs: unknown key")


def test_kubernetes_version_support_windows():
    # 1.33 left standard support on 2026-07-29: allowed only with extended support, with a cost warning.
    assert "cluster:supportType EXTENDED" in errors_of({"cluster:version": "1.33"})[0]
    config = load({"cluster:version": "1.33", "cluster:supportType": "EXTENDED"})
    assert any("extended support" in warning for warning in config.warnings)
    # 1.31's extended support ends 2026-11-26: gone on that day.
    assert errors_of({"cluster:version": "1.31", "cluster:supportType": "EXTENDED"})[0].startswith(
        "cluster:version: '1.31'"
    )
    assert load({"cluster:version": "1.34"}).cluster.version == "1.34"


def test_gated_model_without_token_warns():
    assert any("llm:hfToken" in warning for warning in load({}).warnings)
    qwen = load({"llm:model": "Qwen/Qwen2.5-7B-Instruct"})
    assert not any("llm:hfToken" in warning for warning in qwen.warnings)


def test_image_must_be_pinned():
    assert errors_of({"llm:vllmImage": "vllm/vllm-openai:latest"})[0].startswith("llm:vllmImage")
    assert errors_of({"llm:vllmImage": "vllm/vllm-openai"})[0].startswith("llm:vllmImage")


def test_secret_keys_are_declared_secret():
    secret = {key.name for key in KEYS if key.secret}
    assert secret == {"llm:hfToken", "llm:apiKey"}


def test_region_must_be_a_region_code():
    assert errors_of({"aws:region": "Oregon"}) == [
        "aws:region: 'Oregon' is not valid; expected an AWS region code such as us-west-2"
    ]
    assert load({"aws:region": "eu-central-1"}).region == "eu-central-1"


def test_stack_names_that_do_not_fit_aws_names_are_rejected():
    for stack in ("s" * 27, "team.dev", "dev stack"):
        with pytest.raises(ConfigError) as error:
            load({}, stack)
        assert error.value.errors[0].startswith(f"stack name {stack!r} is not valid")
    assert load({}, "s" * 26).name == "llm-" + "s" * 26
    assert load({}, "Team_dev-2").name == "llm-Team_dev-2"


# pulumi-aws auto-names these from the resource name plus "-" and 7 random characters, and refuses a name over
# the AWS limit (provider/resources.go: tfbridge.AutoName("name", 64, "-") for aws_iam_role and
# aws_cloudwatch_event_rule).
AUTO_NAMED_LIMITS = {"aws:iam/role:Role": 64, "aws:cloudwatch/eventRule:EventRule": 64}


def test_the_longest_accepted_stack_name_fits_every_auto_named_aws_name():
    config, secret_keys = stack_config("dev")
    plan = run_program("s" * MAX_STACK_NAME_LENGTH, config, secret_keys)
    auto_named = [r for r in plan.resources if r.type in AUTO_NAMED_LIMITS and "name" not in r.inputs]
    assert len(auto_named) >= 7, "the Karpenter roles and the five interruption rules"
    room = {r.name: AUTO_NAMED_LIMITS[r.type] - (len(r.name) + 8) for r in auto_named}
    assert all(left >= 0 for left in room.values()), room
    # The limit is the tightest one: a longer stack name would overflow the longest of these names.
    assert min(room.values()) == 0


@pytest.mark.parametrize(
    "arg",
    [
        "--max_model_len=8192",
        "--max-model-l",
        "--device-memory-utilization=0.95",
        "--hf_token",
        "-tp",
        "--config",
    ],
)
def test_engine_args_cannot_override_what_the_platform_sets(arg):
    # vLLM reads underscores as dashes and argparse takes unambiguous prefixes: each spelling is the same flag.
    errors = errors_of({"llm:extraEngineArgs": json.dumps([arg])})
    assert len(errors) == 1 and errors[0].startswith(f"llm:extraEngineArgs: [{arg!r}]")


def test_other_engine_args_pass():
    config = load(
        {"llm:extraEngineArgs": '["--enforce-eager", "--max-num-seqs=64", "--kv-cache-dtype", "fp8"]'}
    )
    assert config.llm.extra_engine_args == ("--enforce-eager", "--max-num-seqs=64", "--kv-cache-dtype", "fp8")
