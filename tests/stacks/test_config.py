import json
import shutil
from datetime import date

import jsonschema
import pytest

from selfhost.cli import main
from selfhost.plan.runner import PROJECT_DIR, run_program, stack_config
from stacks.config import MAX_STACK_NAME_LENGTH, ConfigError, config_keys, config_schema, load_config
from tests.variants import CERTIFICATE_ARN

TODAY = date(2026, 11, 26)


def load(raw: dict[str, str], stack: str = "dev", secret_keys: tuple[str, ...] = ()):
    return load_config(raw, stack, secret_keys=secret_keys, today=TODAY)


def errors_of(raw: dict[str, str]) -> list[str]:
    return errors_of_stack(raw, "dev")


def errors_of_stack(raw: dict[str, str], stack: str) -> list[str]:
    with pytest.raises(ConfigError) as error:
        load(raw, stack)
    return error.value.errors


def test_defaults_serve_mistral_on_one_l4():
    config = load({})
    assert config.model.id == "mistralai/Mistral-7B-Instruct-v0.2"
    assert config.instance.name == "g6.xlarge"
    assert config.llm.replicas == 1
    assert config.region == "us-west-2"
    assert config.serving.tensor_parallel_size == 1
    assert config.name == "llm-dev"


def test_dev_and_prod_stack_files():
    dev = load(stack_config("dev")[0], "dev")
    prod = load(stack_config("prod")[0], "prod")
    assert dev.llm.capacity_types == ("spot", "on-demand")
    assert dev.network.nat_gateways == "single"
    # dev scales between 0 and 2 replicas, to zero after 30 idle minutes; prod between 2 and 4.
    assert (dev.autoscaling.enabled, dev.autoscaling.min_replicas, dev.autoscaling.max_replicas) == (
        True,
        0,
        2,
    )
    assert dev.autoscaling.idle_minutes == 30
    assert prod.llm.capacity_types == ("on-demand",)
    assert prod.network.nat_gateways == "perAz"
    assert (prod.autoscaling.min_replicas, prod.autoscaling.max_replicas) == (2, 4)
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
        "llm:capacityTypes: ['spot', 'reserved']": "'spot' or 'on-demand'",
        "network:azCount: 1": "from 2 to 6",
        "network:cidr: '10.0.0.0/33'": "CIDR",
        "network:natGateways: 'double'": "'single' or 'perAz'",
        "cluster:version: 1.29": "1.32",
        "cluster:publicAccessCidrs: ['my-office']": "CIDR",
        "monitoring:retention: 'two weeks'": "15d",
    }
    assert len(errors) == len(expected), errors
    for prefix, valid in expected.items():
        match = [e for e in errors if e.startswith(prefix)]
        assert match, f"no error starting {prefix!r} in {errors}"
        assert valid in match[0]


def test_non_numbers_are_reported_as_type_errors():
    errors = errors_of({"llm:replicas": "two", "llm:gpuMemoryUtilization": "lots"})
    assert errors[0] == "llm:replicas: 'two' is not valid; expected a whole number ≥ 0"
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
    for key in (
        "llm:modelParameters",
        "llm:modelLayers",
        "llm:modelKvHeads",
        "llm:modelContextLength",
        "llm:modelVocabSize",
    ):
        assert key in errors[0]


@pytest.mark.parametrize(
    ("args", "tokens", "seqs"),
    [
        (["--max-num-batched-tokens", "4096"], 4096, None),
        (["--max_num_seqs=64"], None, 64),
        (["--enforce-eager", "--max-num-seqs", "128"], None, 128),
    ],
)
def test_batch_flags_in_engine_args_reach_the_sizing(args, tokens, seqs):
    config = load({"llm:extraEngineArgs": json.dumps(args)})
    assert config.llm.batch_flags.max_num_batched_tokens == tokens
    assert config.llm.batch_flags.max_num_seqs == seqs
    assert config.serving.max_num_seqs == (seqs or 256)


def test_batch_flags_the_sizing_cannot_read_are_refused():
    errors = errors_of({"llm:extraEngineArgs": '["--max-num-seq", "64", "--max-num-batched-tokens=lots"]'})
    assert len(errors) == 1
    assert errors[0].startswith("llm:extraEngineArgs:")
    assert "write --max-num-seqs in full (not '--max-num-seq')" in errors[0]
    assert "--max-num-batched-tokens needs a positive whole number, not 'lots'" in errors[0]


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
            "llm:modelHiddenSize": "5120",
            "llm:modelIntermediateSize": "13824",
            "llm:modelVocabSize": "32000",
            "llm:instanceType": "g6e.xlarge",
        }
    )
    # 13e9 x 2 = 26e9 B of weights. Overhead: 0.28 + 256 x 32,000 x 2.3 B (0.01755) + 2048 x 6 x (13,824 + 5,120) B
    # (232,783,872 B = 0.21680) + 0.5 = 1.01434 GiB (1,089,144,095 B); pessimistic + 0.5 (the L40S has no
    # observation) + 0.5 = 2.01434 GiB (2,162,885,919 B).
    # L40S budget 42,819,334,963.2 B. Central KV: - 26e9 - 1,089,144,095 = 15,730,190,868.2 B; KV per token
    # 2 x 40 x 40 x 128 x 2 = 819,200 B -> 19,201.9 -> 19,200 tokens. Pessimistic: 14,656,449,044.2 B -> 17,888,
    # enough for 4,096.
    assert config.serving.kv_cache_tokens == 19_200
    assert config.serving.kv_cache_tokens_range[0] == 17_888
    assert config.serving.max_model_len == 4096
    assert not config.model.gated


def test_a_fitting_model_is_never_refused_by_a_default_ceiling():
    # Llama-3.1-70B fits one p4d.24xlarge (8 x A100 40GB). Its pool limit is 1 node x 8 GPUs plus one spare
    # node = 16 GPUs; with llm:maxGpus unset the ceiling is what the plan needs.
    config = load({"llm:model": "meta-llama/Llama-3.1-70B-Instruct", "llm:instanceType": "p4d.24xlarge"})
    assert config.serving.gpu_limit == 16
    assert config.llm.max_gpus is None


def test_an_explicit_gpu_ceiling_guards_cost():
    errors = errors_of(
        {
            "autoscaling:enabled": "false",
            "llm:replicas": "1",
            "llm:model": "meta-llama/Llama-3.1-70B-Instruct",
            "llm:instanceType": "p4d.24xlarge",
            "llm:maxGpus": "8",
        }
    )
    # One p4d replica: 1 node x 8 GPUs, plus one spare node in the pool limit = 16 > the ceiling 8.
    assert errors == [
        "llm:maxGpus: 8 is not valid; expected at least 16, the GPU node pool limit for 1 replica(s) of "
        "meta-llama/Llama-3.1-70B-Instruct on p4d.24xlarge; or lower llm:replicas"
    ]


def test_unknown_keys_in_our_namespaces_are_errors():
    errors = errors_of({"llm:replica": "2", "network:cidrs": "10.0.0.0/16"})
    assert errors[0].startswith("llm:replica: unknown key (did you mean llm:replicas?)")
    assert errors[1].startswith("network:cidrs: unknown key (did you mean network:cidr?)")
    assert "network:azCount" in errors[1]


def test_kubernetes_version_support_windows():
    # 1.33 left standard support on 2026-07-29: allowed only with extended support, with a cost warning.
    assert "cluster:supportType EXTENDED" in errors_of({"cluster:version": "1.33"})[0]
    config = load({"cluster:version": "1.33", "cluster:supportType": "EXTENDED"})
    assert any("extended support" in warning for warning in config.warnings)
    # 1.31's extended support ends 2026-11-26: gone on that day.
    assert errors_of({"cluster:version": "1.31", "cluster:supportType": "EXTENDED"})[0].startswith(
        "cluster:version: 1.31 is not valid"
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
    secret = {key.name for key in config_keys() if key.secret}
    assert secret == {"llm:hfToken", "llm:apiKey"}


def test_region_must_be_a_region_code():
    assert errors_of({"aws:region": "Oregon"}) == [
        "aws:region: 'Oregon' is not valid; expected an AWS region code such as us-west-2"
    ]
    assert load({"aws:region": "eu-central-1"}).region == "eu-central-1"


def test_a_misspelt_region_is_not_a_region():
    # The shape of a region code is not enough: AWS has no us-weest-2 (pulumi_aws.Region lists what it has).
    assert errors_of({"aws:region": "us-weest-2"}) == [
        "aws:region: 'us-weest-2' is not valid; expected an AWS region code such as us-west-2 "
        "(did you mean us-west-2?)"
    ]


def test_stack_names_that_do_not_fit_aws_names_are_rejected():
    for stack in ("s" * 27, "team.dev", "dev stack"):
        with pytest.raises(ConfigError) as error:
            load({}, stack)
        assert error.value.errors[0].startswith(f"stack name {stack!r} is not valid")
    narrow = {"cluster:publicAccessCidrs": '["198.51.100.0/24"]'}
    assert load(narrow, "s" * 26).name == "llm-" + "s" * 26
    assert load(narrow, "Team_dev-2").name == "llm-Team_dev-2"


# pulumi-aws auto-names these from the resource name plus "-" and 7 random characters, and refuses a name over
# the AWS limit (provider/resources.go: tfbridge.AutoName("name", 64, "-") for aws_iam_role and
# aws_cloudwatch_event_rule).
AUTO_NAMED_LIMITS = {"aws:iam/role:Role": 64, "aws:cloudwatch/eventRule:EventRule": 64}


def test_the_longest_accepted_stack_name_fits_every_auto_named_aws_name():
    config, secret_keys = stack_config("prod")
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


def test_a_misspelt_key_in_a_stack_file_fails_the_plan_naming_the_closest_key(tmp_path, capsys):
    # The keys reach the program exactly as the Pulumi CLI passes them (every key of the stack file), so a typo
    # is not silently replaced by the default.
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path)
    (tmp_path / "Pulumi.typo.yaml").write_text("config:\n  llm:instanceTyp: g6.12xlarge\n  llm:modle: x/y\n")
    assert main(["plan", "typo", "--project-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "llm:instanceTyp: unknown key (did you mean llm:instanceType?)" in err
    assert "llm:modle: unknown key (did you mean llm:model?)" in err


def test_a_misspelt_namespace_fails_the_plan_naming_the_namespace_meant(tmp_path, capsys):
    # `lm:` and `autoscalling:` are read by nothing: every setting under them would silently stay at its default.
    shutil.copy(PROJECT_DIR / "Pulumi.yaml", tmp_path)
    (tmp_path / "Pulumi.typo.yaml").write_text(
        "config:\n  aws:region: us-west-2\n  lm:replicas: 2\n  autoscalling:enabled: false\n"
        "  kubernetes:enableServerSideApply: true\n"
    )
    assert main(["plan", "typo", "--project-dir", str(tmp_path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "lm:replicas: nothing reads the namespace lm: (did you mean llm:replicas?)" in err
    assert (
        "autoscalling:enabled: nothing reads the namespace autoscalling: (did you mean autoscaling:enabled?)"
        in err
    )
    # A provider's own namespace is the provider's to read.
    assert "kubernetes:enableServerSideApply" not in err
    assert err.count("nothing reads") == 2


def test_a_key_for_other_programs_is_only_said():
    # An imported ESC environment may bring keys meant for other programs, unqualified ones in the project's
    # namespace among them: nothing here reads them, and they spell no namespace of ours.
    config = load({"self-hosted-llm:greeting": "hello", "github:owner": "acme"})
    assert [warning for warning in config.warnings if "nothing reads" in warning] == [
        f"{key} is ignored: nothing reads the namespace {key.split(':')[0]}:; the program's keys are under "
        "autoscaling:, cluster:, llm:, monitoring:, network:, its providers' under aws:, eks:, kubernetes:, "
        "random: and the engine's under pulumi:"
        for key in ("self-hosted-llm:greeting", "github:owner")
    ]


def test_the_language_hosts_config_environment_is_read_whole(monkeypatch):
    # `pulumi up` runs the program with PULUMI_CONFIG (every key, as JSON text) and PULUMI_CONFIG_SECRET_KEYS
    # (pulumi-language-python); nothing is passed through set_all_config there.
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"llm:replicas": "2", "llm:replica": "3"}))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", "[]")

    def program(config):
        raise AssertionError("the config must not load")

    with pytest.raises(ConfigError) as error:
        run_program("dev", {}, [], program)
    assert error.value.errors == [
        "llm:replica: unknown key (did you mean llm:replicas?); the keys of llm: are "
        + ", ".join(key.name for key in config_keys() if key.name.startswith("llm:"))
    ]


def test_secrets_in_plain_text_are_refused_with_the_command_that_encrypts_them():
    errors = errors_of({"llm:hfToken": "hf_plaintext_token_0123456789", "llm:apiKey": "k" * 40})
    assert errors == [
        "llm:hfToken is written in plain text in the stack file; remove it there and store it encrypted with "
        "`pulumi config set --secret llm:hfToken <value>`",
        "llm:apiKey is written in plain text in the stack file; remove it there and store it encrypted with "
        "`pulumi config set --secret llm:apiKey <value>`",
    ]
    assert not any("hf_plaintext" in error or "k" * 40 in error for error in errors)


def test_a_short_api_key_is_refused_without_showing_it():
    with pytest.raises(ConfigError) as error:
        load({"llm:apiKey": "sesame-31-characters-long-....."}, secret_keys=("llm:apiKey",))
    [message] = error.value.errors
    assert message.startswith("llm:apiKey: the value is not valid; expected at least 32 characters")
    assert "sesame" not in message
    assert load({"llm:apiKey": "a" * 32}, secret_keys=("llm:apiKey",)).llm.api_key is not None


def test_the_offline_plan_cannot_read_secrets_and_does_not_judge_them():
    # The plan replaces every secure value with a placeholder; its length says nothing about the real key's.
    config = load_config(
        {"llm:apiKey": "[secret]"}, "dev", secret_keys=("llm:apiKey",), secrets_readable=False, today=TODAY
    )
    assert config.llm.api_key is not None


def test_secrets_never_appear_in_a_settings_repr():
    config = load(
        {"llm:apiKey": "b" * 48, "llm:hfToken": "hf_abcdefghijklmnop"},
        secret_keys=("llm:apiKey", "llm:hfToken"),
    )
    shown = repr(config) + str(config.llm) + config.llm.model_dump_json()
    assert "b" * 48 not in shown and "hf_abcdefghijklmnop" not in shown


def test_the_json_schema_describes_every_key_and_marks_secrets_write_only():
    schema = config_schema()
    properties = schema["properties"]
    assert properties["llm:replicas"] == {
        "default": 1,
        "description": "vLLM replicas (0 parks the model and lets GPU nodes go).",
        "minimum": 0,
        "title": "Replicas",
        "type": "integer",
    }
    assert properties["network:natGateways"]["enum"] == ["single", "perAz"]
    for key in ("llm:hfToken", "llm:apiKey"):
        assert {"type": "string", "format": "password", "writeOnly": True}.items() <= properties[key][
            "anyOf"
        ][0].items()
    # The stack files validate against it by name: no key of ours that the schema does not know.
    assert schema["additionalProperties"] is False
    jsonschema.validate({"llm:replicas": 2, "aws:assumeRole": {}}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"llm:replica": 2}, schema)


def test_yaml_reads_an_unquoted_version_as_a_number_and_the_error_says_so():
    # `cluster:version: 1.30` in YAML is the float 1.3, which Pulumi passes on as "1.3".
    [message] = errors_of({"cluster:version": "1.3"})
    assert message.startswith("cluster:version: 1.3 is not valid")
    assert "quote it, '1.30'" in message


def test_only_dev_may_open_the_api_endpoint_to_the_internet_without_saying_so():
    anywhere = {"cluster:publicAccessCidrs": '["0.0.0.0/0"]'}
    assert load(anywhere, "dev").cluster.public_access_cidrs == ("0.0.0.0/0",)
    with pytest.raises(ConfigError) as error:
        load(anywhere, "prod")
    [message] = error.value.errors
    assert message.startswith("cluster:publicAccessCidrs: ['0.0.0.0/0'] is not valid")
    assert "cluster:publicAccessOpenToInternet: true" in message
    on_purpose = load({**anywhere, "cluster:publicAccessOpenToInternet": "true"}, "prod")
    assert any("whole internet" in warning for warning in on_purpose.warnings)
    assert load({"cluster:publicAccessCidrs": '["198.51.100.0/24"]'}, "staging").cluster.public_access_cidrs
    # The default is the whole internet, so a new stack other than dev has to choose.
    assert errors_of_stack({}, "staging")[0].startswith("cluster:publicAccessCidrs")


def test_the_prod_stack_file_narrows_the_api_endpoint():
    prod = load(stack_config("prod")[0], "prod")
    assert "0.0.0.0/0" not in prod.cluster.public_access_cidrs


def test_the_image_may_be_pinned_by_digest():
    digest = "sha256:" + "0123456789abcdef" * 4
    assert load({"llm:vllmImage": f"vllm/vllm-openai:v0.33.0@{digest}"}).llm.vllm_image.endswith(digest)
    # A digest pins even a moving tag; a malformed digest does not.
    assert load({"llm:vllmImage": f"vllm/vllm-openai:latest@{digest}"}).llm.vllm_image
    [message] = errors_of({"llm:vllmImage": "vllm/vllm-openai:v0.33.0@sha256:abc"})
    assert message.startswith(
        "llm:vllmImage: 'vllm/vllm-openai:v0.33.0@sha256:abc' is not valid; expected a digest"
    )
    # A registry port is not a tag.
    assert errors_of({"llm:vllmImage": "registry.example:5000/vllm-openai"})[0].startswith("llm:vllmImage")


def test_a_list_key_given_one_value_shows_the_keys_own_example():
    errors = errors_of(
        {
            "llm:capacityTypes": "spot",
            "llm:extraEngineArgs": "--enforce-eager",
            "cluster:publicAccessCidrs": "10.0.0.0/8",
        }
    )
    assert errors == [
        """llm:capacityTypes: 'spot' is not valid; expected a list, e.g. ["spot", "on-demand"]""",
        """llm:extraEngineArgs: '--enforce-eager' is not valid; expected a list, e.g. ["--enforce-eager"]""",
        """cluster:publicAccessCidrs: '10.0.0.0/8' is not valid; expected a list, e.g. ["203.0.113.0/24"]""",
    ]


@pytest.mark.parametrize(
    "revision", ["main", "v1.0", "0123456789abcdef0123456789abcdef01234567", "refs/pr/12"]
)
def test_a_model_revision_is_a_branch_tag_or_commit(revision):
    assert load({"llm:modelRevision": revision}).llm.model_revision == revision


@pytest.mark.parametrize("revision", ["../other-model", "main branch", "", "-rf"])
def test_a_revision_that_would_escape_its_prefix_is_refused(revision):
    [error] = errors_of({"llm:modelRevision": revision})
    assert error.startswith("llm:modelRevision:") and "commit hash" in error


def test_an_unpinned_revision_and_an_uncached_image_are_warned_about():
    warnings = load({}).warnings
    assert any(w.startswith("llm:modelRevision main is not a commit") for w in warnings)
    assert any(w.startswith("llm:dockerHubCredentialsArn is unset") for w in warnings)
    pinned = load(
        {
            "llm:modelRevision": "0123456789abcdef0123456789abcdef01234567",
            "llm:dockerHubCredentialsArn": "arn:aws:secretsmanager:us-west-2:123456789012:secret:"
            "ecr-pullthroughcache/docker-hub-AbCdEf",
        }
    ).warnings
    assert not any(w.startswith(("llm:modelRevision", "llm:dockerHubCredentialsArn")) for w in pinned)


@pytest.mark.parametrize("flag_text", ["--load-format", "--model-loader-extra-config"])
def test_the_weights_source_cannot_be_overridden(flag_text):
    [error] = errors_of({"llm:extraEngineArgs": json.dumps([flag_text, "auto"])})
    assert error.startswith("llm:extraEngineArgs:")


INTERNET_FACING = {"llm:serviceType": "LoadBalancer", "llm:loadBalancerScheme": "internet-facing"}
WITH_TLS = {"llm:loadBalancerCertificateArn": CERTIFICATE_ARN, "llm:endpointHostname": "llm.example.com"}


def test_an_internet_facing_endpoint_needs_a_certificate_and_client_ranges_and_says_how():
    errors = errors_of(INTERNET_FACING)
    assert len(errors) == 2
    assert errors[0].startswith(
        "llm:loadBalancerCertificateArn is unset; an internet-facing endpoint serves only TLS"
    )
    assert "aws acm request-certificate --domain-name llm.example.com --validation-method DNS" in errors[0]
    assert errors[1].startswith("llm:loadBalancerSourceRanges: [] is not valid; expected the client ranges")
    assert "llm:loadBalancerOpenToInternet: true" in errors[1]
    assert load({**INTERNET_FACING, **WITH_TLS, "llm:loadBalancerSourceRanges": '["203.0.113.0/24"]'})


def test_the_whole_internet_as_client_range_is_refused_unless_said_on_purpose():
    anywhere = {**INTERNET_FACING, **WITH_TLS, "llm:loadBalancerSourceRanges": '["0.0.0.0/0"]'}
    [error] = errors_of(anywhere)
    assert error.startswith("llm:loadBalancerSourceRanges: ['0.0.0.0/0'] is not valid")
    assert load({**anywhere, "llm:loadBalancerOpenToInternet": "true"})
    # Open on purpose with no list: everyone.
    assert load({**INTERNET_FACING, **WITH_TLS, "llm:loadBalancerOpenToInternet": "true"})


def test_the_certificate_must_be_in_the_stacks_region():
    elsewhere = CERTIFICATE_ARN.replace("us-west-2", "us-east-1")
    [error] = errors_of(
        {
            **INTERNET_FACING,
            **WITH_TLS,
            "llm:loadBalancerCertificateArn": elsewhere,
            "llm:loadBalancerSourceRanges": '["203.0.113.0/24"]',
        }
    )
    assert error.startswith(
        f"llm:loadBalancerCertificateArn: {elsewhere!r} is not valid; expected a certificate in the stack's region us-west-2"
    )


def test_a_certificate_needs_the_name_it_covers_and_a_name_needs_a_certificate():
    internal = {"llm:serviceType": "LoadBalancer"}
    [error] = errors_of({**internal, "llm:loadBalancerCertificateArn": CERTIFICATE_ARN})
    assert error.startswith("llm:endpointHostname is unset; expected the DNS name the certificate covers")
    [error] = errors_of({**internal, "llm:endpointHostname": "llm.example.com"})
    assert error.startswith("llm:endpointHostname: 'llm.example.com' is not valid; applies only with")
    # An internal load balancer needs neither; with both it terminates TLS as well.
    assert load(internal) and load({**internal, **WITH_TLS})


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            "llm:loadBalancerCertificateArn",
            "arn:aws:acm:us-west-2:123456789012:certificate/abc",
            "expected the ARN of an ACM certificate",
        ),
        ("llm:endpointHostname", "https://llm.example.com", "expected a fully qualified DNS name"),
        ("llm:endpointHostname", "*.example.com", "expected a fully qualified DNS name"),
        ("llm:loadBalancerSourceRanges", '["203.0.113.1/24"]', "expected IPv4 networks in CIDR form"),
    ],
)
def test_load_balancer_values_are_checked(key, value, expected):
    errors = errors_of({"llm:serviceType": "LoadBalancer", key: value})
    assert any(error.startswith(f"{key}:") and expected in error for error in errors), errors


def test_load_balancer_keys_without_a_load_balancer_are_errors():
    errors = errors_of(
        {"llm:loadBalancerScheme": "internet-facing", "llm:loadBalancerSourceRanges": '["203.0.113.0/24"]'}
    )
    assert errors == [
        "llm:loadBalancerScheme: 'internet-facing' is not valid; applies only with llm:serviceType LoadBalancer; set "
        "that or drop it",
        "llm:loadBalancerSourceRanges: ['203.0.113.0/24'] is not valid; applies only with llm:serviceType "
        "LoadBalancer; set that or drop it",
    ]


SCALES_TO_ZERO = {"autoscaling:enabled": "true"}
PUBLIC = {
    **INTERNET_FACING,
    **WITH_TLS,
    "llm:loadBalancerSourceRanges": '["203.0.113.0/24"]',
    **SCALES_TO_ZERO,
}


def test_behind_a_tls_listener_a_request_is_held_only_as_long_as_the_nlb_keeps_it():
    # The NLB closes a TLS connection idle for 350 s; the hold stops 20 s before: 330 s. dev's default would
    # be 563 s (375 s startup budget x 1.5, rounded up).
    config = load(PUBLIC)
    assert config.scaling is not None and config.scaling.hold_seconds == 330
    [warning] = [w for w in config.warnings if "TLS listener" in w]
    assert "held at most 330 s" in warning and "less than the 375 s" in warning
    default = load(SCALES_TO_ZERO).scaling
    assert default is not None and default.hold_seconds == 563
    [error] = errors_of({**PUBLIC, "autoscaling:holdSeconds": "400"})
    assert error.startswith(
        "autoscaling:holdSeconds: 400 is not valid; expected at most 330 behind the load balancer"
    )
    shorter = load({**PUBLIC, "autoscaling:holdSeconds": "300"}).scaling
    assert shorter is not None and shorter.hold_seconds == 300
