"""The model server: its Deployment against the sizing plan, its Service, budget and credentials, and the
ModelServer component under the Pulumi SDK's mocks.

Expected figures are worked out by hand from the catalog facts (stacks/catalogs/instances.py, stacks/catalogs/models.py) and
the budget constants documented in components/serving/budget.py; the comments show the arithmetic.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

import kubernetes_validate
import pulumi_kubernetes as k8s
import pytest

from components.serving.component import ModelAccessError, ModelServer, ModelServerArgs
from components.serving.manifests import (
    ServingSettings,
    credentials_secret,
    deployment_manifest,
    endpoint,
    network_policy,
    pod_disruption_budget,
    selector_labels,
    service_manifest,
)
from selfhost.plan.runner import SECRET, PlanResult, run_program, stack_config
from stacks.config import ConfigError, PlatformConfig, load_config
from stacks.platform import build_platform, model_serving, secret_output

LLAMA_70B = "meta-llama/Llama-3.1-70B-Instruct"
MISTRAL_7B = "mistralai/Mistral-7B-Instruct-v0.2"
QWEN_7B = "Qwen/Qwen2.5-7B-Instruct"


def platform_config(overrides: Mapping[str, str], stack: str = "dev") -> PlatformConfig:
    """The stack's own config file with some keys overridden, parsed as the program parses it."""
    raw, _ = stack_config(stack)
    raw.update(overrides)
    raw.pop("llm:hfToken", None)
    return load_config(raw, stack)


def settings_for(overrides: Mapping[str, str], stack: str = "dev") -> ServingSettings:
    config = platform_config(overrides, stack)
    return model_serving(config)


DEV = {}
PROD: dict[str, str] = {}
MULTI_GPU = {"llm:model": LLAMA_70B, "llm:instanceType": "g6e.12xlarge"}
PACKED = {"llm:instanceType": "g6.12xlarge", "llm:replicas": "4"}


def container(manifest: Mapping[str, Any]) -> dict[str, Any]:
    (only,) = manifest["spec"]["template"]["spec"]["containers"]
    return only


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


# Per case: (stack, overrides, TP, max_model_len, GPUs, CPU, memory, cache, ephemeral, shm, startup probe
# failures, replicas). Hand calculations:
# - Mistral-7B: weights 7,241,732,096 x 2 B = 13.49 GiB; one L4 holds 42,160 KV tokens at the safe end of the
#   estimate (worked in tests/stacks/test_sizing.py) >= 32768: TP 1 and the full 32768 context.
#   Cache: ceil(13.49 x 1.1 + 10) = ceil(24.84) = 25 GiB; ephemeral 25 + 5 = 30 GiB.
#   Start-up: 13.49 x 1024 = 13813.8 MiB / 25 = 552.6 s download + / 200 = 69.1 s load + 300 s = 921.6 s,
#   in 10 s periods: ceil(92.16) = 93 failures.
# - g6.xlarge: (3920m - 500m) / 1 = 3420m, rounded down to 3400m; (14162 - 1024) / 1 = 13138 MiB.
# - g6.12xlarge packed: 4 L4s / TP 1 = 4 replicas on 1 node; (47810 - 500) / 4 = 11827.5 -> 11800m;
#   (178933 - 1024) / 4 = 44477.25 -> 44477 MiB.
# - Llama-3.1-70B on g6e.12xlarge: weights 70,553,706,496 x 2 B = 131.42 GiB; only TP 4 holds them, and its
#   KV cache holds 49,776 tokens at the safe end (tests/stacks/test_sizing.py), below the 131072 context: capped
#   to 49776. 4 GPUs per replica, 1 replica per node:
#   (47810 - 500) = 47310 -> 47300m; 360157 - 1024 = 359133 MiB; shm 2 GiB x 4 = 8 GiB.
#   Cache ceil(131.42 x 1.1 + 10) = ceil(154.56) = 155 GiB, ephemeral 160 GiB. Start-up: 131.42 x 1024 =
#   134574.1 MiB / 25 = 5383.0 s + / 200 = 672.9 s + 300 s = 6355.8 s -> 636 failures.
CASES = {
    "dev": ("dev", DEV, 1, 32768, 1, "3400m", "13138Mi", "25Gi", "30Gi", "2Gi", 93, 1),
    "prod": ("prod", PROD, 1, 32768, 1, "3400m", "13138Mi", "25Gi", "30Gi", "2Gi", 93, 2),
    "multi-gpu": ("dev", MULTI_GPU, 4, 49776, 4, "47300m", "359133Mi", "155Gi", "160Gi", "8Gi", 636, 1),
    "packed": ("dev", PACKED, 1, 32768, 1, "11800m", "44477Mi", "25Gi", "30Gi", "2Gi", 93, 4),
}


@pytest.mark.parametrize("case", CASES)
def test_deployment_follows_the_sizing_plan(case):
    stack, overrides, tp, context, gpus, cpu, memory, cache, ephemeral, shm, failures, replicas = CASES[case]
    settings = settings_for(overrides, stack)
    manifest = deployment_manifest(settings)
    vllm = container(manifest)
    args = vllm["args"]

    assert manifest["spec"]["replicas"] == replicas
    assert args[0] == settings.model_id
    assert flag(args, "--served-model-name") == settings.model_id
    assert flag(args, "--tensor-parallel-size") == str(tp)
    assert flag(args, "--max-model-len") == str(context)
    assert flag(args, "--gpu-memory-utilization") == "0.9"
    assert "--enable-prefix-caching" in args
    assert vllm["resources"]["requests"] == {
        "cpu": cpu,
        "memory": memory,
        "ephemeral-storage": ephemeral,
        "nvidia.com/gpu": str(gpus),
    }
    assert vllm["resources"]["limits"] == {"memory": memory, "nvidia.com/gpu": str(gpus)}
    volumes = {
        volume["name"]: volume["emptyDir"] for volume in manifest["spec"]["template"]["spec"]["volumes"]
    }
    assert volumes == {"model-cache": {"sizeLimit": cache}, "dshm": {"medium": "Memory", "sizeLimit": shm}}
    assert vllm["startupProbe"]["failureThreshold"] == failures
    assert vllm["startupProbe"]["periodSeconds"] == 10


@pytest.mark.parametrize("case", ["multi-gpu", "packed"])
def test_the_platform_plan_deploys_the_same(case, plan_with):
    """The whole program (config from the stack files, the platform's composition) records the Deployment
    the builders give for the case."""
    stack, overrides, tp, context, gpus, cpu, memory, *_, replicas = CASES[case]
    plan = plan_with(overrides, stack)
    (deployment,) = plan.of_type("kubernetes:apps/v1:Deployment")
    vllm = container(deployment.inputs)
    assert deployment.inputs["spec"]["replicas"] == replicas
    assert flag(vllm["args"], "--tensor-parallel-size") == str(tp)
    assert flag(vllm["args"], "--max-model-len") == str(context)
    assert vllm["resources"]["requests"]["nvidia.com/gpu"] == str(gpus)
    assert (vllm["resources"]["requests"]["cpu"], vllm["resources"]["requests"]["memory"]) == (cpu, memory)


def test_the_cases_are_the_intended_shapes():
    multi = platform_config(MULTI_GPU).serving
    assert (multi.tensor_parallel_size, multi.replicas_per_node, multi.nodes) == (4, 1, 1)
    packed = platform_config(PACKED).serving
    assert (packed.tensor_parallel_size, packed.replicas_per_node, packed.nodes) == (1, 4, 1)


def test_probes_health_and_graceful_stop():
    manifest = deployment_manifest(settings_for(DEV))
    vllm = container(manifest)
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert vllm[probe]["httpGet"] == {"path": "/health", "port": "http"}
    # Liveness gives a busy engine a minute: 6 failures x 10 s.
    assert vllm["livenessProbe"]["failureThreshold"] * vllm["livenessProbe"]["periodSeconds"] == 60
    pod = manifest["spec"]["template"]["spec"]
    # 15 s for the endpoint to leave the Service, then up to 150 s for vLLM to finish the answers it is
    # streaming (vLLM's default --shutdown-timeout 0 aborts them) and 15 s to stop: 180 s.
    assert vllm["lifecycle"] == {"preStop": {"sleep": {"seconds": 15}}}
    assert flag(vllm["args"], "--shutdown-timeout") == "150"
    assert pod["terminationGracePeriodSeconds"] == 180
    # Rollout deadline: 600 s node + 900 s image pull + 93 x 10 s start-up = 2430 s.
    assert manifest["spec"]["progressDeadlineSeconds"] == 2430
    assert manifest["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_pod_runs_on_gpu_nodes_without_privileges():
    pod = deployment_manifest(settings_for(DEV))["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"karpenter.sh/nodepool": "gpu"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    # The image's own non-root user (UID 2000, GID 0); an unknown UID breaks torch's getpass.getuser().
    assert (pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]) == (2000, 0)
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    context = container({"spec": {"template": {"spec": pod}}})["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}


def test_no_service_link_variables_reach_vllm():
    # The Service is named vllm, so Kubernetes service links would inject VLLM_PORT=tcp://<ip>:8000, which
    # vLLM's get_vllm_port (vllm/envs.py) rejects as "appears to be a URI" before the server starts.
    manifest = deployment_manifest(settings_for(DEV))
    assert service_manifest(settings_for(DEV))["metadata"]["name"].upper() + "_PORT" == "VLLM_PORT"
    assert manifest["spec"]["template"]["spec"]["enableServiceLinks"] is False
    assert "VLLM_PORT" not in {item["name"] for item in container(manifest)["env"]}


def test_api_key_and_token_reach_vllm_only_through_the_secret():
    settings = dataclasses.replace(settings_for(MULTI_GPU), with_hf_token=True)
    manifest = deployment_manifest(settings)
    vllm = container(manifest)
    env = {item["name"]: item for item in vllm["env"]}
    # vLLM reads its key only from VLLM_API_KEY or --api-key (vllm/envs.py): a Secret-backed variable.
    assert env["VLLM_API_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "vllm-credentials", "key": "api-key"}
    }
    # The Hugging Face token is a file, which huggingface_hub reads through HF_TOKEN_PATH.
    assert "HF_TOKEN" not in env
    assert env["HF_TOKEN_PATH"]["value"] == "/var/run/secrets/huggingface/token"
    [mount] = [m for m in vllm["volumeMounts"] if m["name"] == "hf-token"]
    assert mount == {"name": "hf-token", "mountPath": "/var/run/secrets/huggingface", "readOnly": True}
    [volume] = [v for v in manifest["spec"]["template"]["spec"]["volumes"] if v["name"] == "hf-token"]
    assert volume["secret"]["secretName"] == "vllm-credentials"
    assert volume["secret"]["items"] == [{"key": "hf-token", "path": "token"}]
    assert env["HF_HOME"]["value"].startswith("/models/")
    assert not any(arg.startswith("--api-key") for arg in vllm["args"])
    secret = credentials_secret(settings, "key", "token")
    assert secret["stringData"] == {"api-key": "key", "hf-token": "token"}

    without = settings_for(DEV)
    without_manifest = deployment_manifest(without)
    assert "HF_TOKEN_PATH" not in {item["name"] for item in container(without_manifest)["env"]}
    assert "hf-token" not in {v["name"] for v in without_manifest["spec"]["template"]["spec"]["volumes"]}
    assert credentials_secret(without, "key", None)["stringData"] == {"api-key": "key"}


def test_extra_engine_args_come_last():
    settings = settings_for({"llm:extraEngineArgs": '["--enforce-eager", "--max-num-seqs", "64"]'})
    args = container(deployment_manifest(settings))["args"]
    assert args[-3:] == ["--enforce-eager", "--max-num-seqs", "64"]


@pytest.mark.parametrize("flag_text", ["--tensor-parallel-size", "--max-model-len=8192", "--api-key"])
def test_extra_engine_args_cannot_override_what_the_platform_sets(flag_text):
    with pytest.raises(ConfigError, match=r"llm:extraEngineArgs"):
        platform_config({"llm:extraEngineArgs": json.dumps([flag_text, "2"])})


def test_spread_and_disruption_budget_only_with_several_replicas():
    single = settings_for(DEV)
    assert "topologySpreadConstraints" not in deployment_manifest(single)["spec"]["template"]["spec"]
    assert pod_disruption_budget(single) is None

    two_nodes = settings_for(PROD, "prod")
    spread = deployment_manifest(two_nodes)["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {(s["topologyKey"], s["whenUnsatisfiable"], s["maxSkew"]) for s in spread} == {
        ("topology.kubernetes.io/zone", "ScheduleAnyway", 1),
        ("kubernetes.io/hostname", "DoNotSchedule", 1),
    }
    budget = pod_disruption_budget(two_nodes)
    assert budget is not None and budget["spec"]["maxUnavailable"] == 1

    # Four replicas packed on one 4-GPU node: spreading would buy nodes, but evictions still go one by one.
    packed = settings_for(PACKED)
    assert "topologySpreadConstraints" not in deployment_manifest(packed)["spec"]["template"]["spec"]
    assert pod_disruption_budget(packed) is not None


def test_service_is_cluster_internal_unless_a_load_balancer_is_asked_for():
    default = service_manifest(settings_for(DEV))
    assert default["spec"]["type"] == "ClusterIP"
    assert default["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]
    assert "annotations" not in default["metadata"]

    internal = service_manifest(settings_for({"llm:serviceType": "LoadBalancer"}))
    assert internal["spec"]["type"] == "LoadBalancer"
    assert internal["metadata"]["annotations"] == {
        "service.beta.kubernetes.io/aws-load-balancer-type": "nlb",
        "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
    }
    public = service_manifest(
        settings_for({"llm:serviceType": "LoadBalancer", "llm:loadBalancerScheme": "internet-facing"})
    )
    assert public["metadata"]["annotations"] == {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}


def test_endpoint_commands():
    reach = endpoint(settings_for(DEV))
    assert reach.service == "llm/vllm"
    assert reach.port == 8000
    assert reach.in_cluster_url == "http://vllm.llm.svc.cluster.local:8000/v1"
    assert reach.port_forward_command == "kubectl -n llm port-forward svc/vllm 8000:8000"
    assert "http://localhost:8000/v1/chat/completions" in reach.curl_command
    assert "$(pulumi stack output --show-secrets api_key)" in reach.curl_command
    assert f'"model": "{MISTRAL_7B}"' in reach.curl_command


def serve(config: PlatformConfig) -> dict[str, Any]:
    """The model server alone, on a provider of its own, as the platform composes it."""
    provider = k8s.Provider("test-kubernetes", kubeconfig="{}")
    server = ModelServer(
        "model",
        ModelServerArgs(
            settings=model_serving(config),
            provider=provider,
            api_key=secret_output(config.llm.api_key),
            hf_token=secret_output(config.llm.hf_token),
        ),
    )
    return {
        "endpoint_service": server.endpoint_service,
        "endpoint_port": server.endpoint_port,
        "api_key": server.api_key,
        "curl_command": server.curl_command,
    }


def serve_plan(
    overrides: Mapping[str, str], stack: str = "dev", secrets: Mapping[str, str] | None = None
) -> PlanResult:
    config, secret_keys = stack_config(stack)
    config.update(overrides)
    config.update(secrets or {})
    return run_program(stack, config, [*secret_keys, *(secrets or {})], program=serve)


def test_component_registers_every_object_under_itself():
    plan = serve_plan({}, "prod")
    children = [r for r in plan.resources if r.parent == "model"]
    assert sorted(r.type for r in children) == sorted(
        [
            "kubernetes:core/v1:Namespace",
            "random:index/randomPassword:RandomPassword",
            "kubernetes:core/v1:Secret",
            "kubernetes:apps/v1:Deployment",
            "kubernetes:core/v1:Service",
            "kubernetes:networking.k8s.io/v1:NetworkPolicy",
            "kubernetes:policy/v1:PodDisruptionBudget",
            "kubernetes:monitoring.coreos.com/v1:ServiceMonitor",
            "kubernetes:monitoring.coreos.com/v1:PrometheusRule",
            "kubernetes:core/v1:ConfigMap",
        ]
    )
    assert plan.named("model").type == "selfhost:index:ModelServer"
    # Everything namespaced waits for the namespace; the Deployment also for its credentials.
    for resource in children:
        if resource.type.startswith("kubernetes:") and resource.type != "kubernetes:core/v1:Namespace":
            assert "model-namespace" in resource.dependencies, resource.name
    assert "model-credentials" in plan.named("model-deployment").dependencies
    assert plan.outputs["endpoint_service"] == "llm/vllm"
    assert plan.outputs["endpoint_port"] == 8000
    assert plan.outputs["api_key"] == SECRET


def test_dashboard_ships_as_a_configmap_grafana_picks_up():
    configmap = serve_plan({}).named("model-dashboard").inputs
    # kube-prometheus-stack's Grafana sidecar loads ConfigMaps labelled grafana_dashboard: "1".
    assert configmap["metadata"]["labels"] == {"grafana_dashboard": "1"}
    (document,) = configmap["data"].values()
    board = json.loads(document)
    assert board["uid"] == "selfhost-vllm"
    assert board["title"] == "Model serving (vLLM)"


def test_generated_api_key_is_long_and_header_safe():
    password = serve_plan({}).named("model-api-key").inputs
    assert password["length"] >= 32
    assert password["special"] is False


def test_configured_api_key_replaces_the_generated_one_and_no_secret_leaks():
    key, token = "sk-configured-key-0123456789abcdef", "hf_configuredtoken0123456789"
    plan = serve_plan({}, secrets={"llm:apiKey": key, "llm:hfToken": token})
    assert not plan.of_type("random:index/randomPassword:RandomPassword")
    assert plan.named("model-credentials").inputs["stringData"] == {"api-key": SECRET, "hf-token": SECRET}
    everything = repr([r.inputs for r in plan.resources]) + repr(plan.outputs)
    assert key not in everything and token not in everything


def test_gated_model_without_token_stops_pulumi_up():
    # The plan, like a preview, only warns (config loading already did): the dev stack serves a gated model.
    assert serve_plan({}).named("model-deployment")
    config, secret_keys = stack_config("dev")
    with pytest.raises(ModelAccessError, match=r"llm:hfToken"):
        run_program("dev", config, secret_keys, program=lambda c: build_platform(c, deploying=True))
    # An open model, or a gated one with a token, deploys.
    for overrides in ({"llm:model": QWEN_7B}, {"llm:hfToken": "hf_token0123456789"}):
        outputs = run_program(
            "dev",
            {**config, **overrides},
            [*secret_keys, "llm:hfToken"],
            program=lambda c: build_platform(c, deploying=True),
        ).outputs
        assert outputs["endpoint_port"] == 8000


def test_the_network_policy_admits_prometheus_and_the_named_namespaces_only():
    policy = network_policy(settings_for({"llm:clientNamespaces": '["apps", "batch-jobs"]'}))
    assert policy["spec"]["podSelector"] == {"matchLabels": selector_labels(settings_for(DEV))}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}
        for name in ("monitoring", "apps", "batch-jobs")
    ]
    kubernetes_validate.validate(policy, "1.33.0", strict=True)


def test_a_load_balancer_reaches_the_model_server_from_its_vpc():
    [rule] = network_policy(settings_for({"llm:serviceType": "LoadBalancer"}))["spec"]["ingress"]
    assert {"ipBlock": {"cidr": "10.0.0.0/16"}} in rule["from"]
    [closed] = network_policy(settings_for(DEV))["spec"]["ingress"]
    assert not any("ipBlock" in source for source in closed["from"])


def test_client_namespaces_must_be_namespace_names():
    with pytest.raises(ConfigError) as error:
        platform_config({"llm:clientNamespaces": '["Apps_1"]'})
    assert error.value.errors[0].startswith(
        "llm:clientNamespaces: ['Apps_1'] is not valid; expected Kubernetes namespace names"
    )
