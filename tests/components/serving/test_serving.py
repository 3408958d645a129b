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
    ModelSource,
    ServingSettings,
    credentials_secret,
    deployment_manifest,
    endpoint,
    network_policy,
    pod_disruption_budget,
    selector_labels,
    service_manifest,
)
from components.weights.component import ModelWeights, ModelWeightsArgs
from selfhost.plan.runner import SECRET, PlanResult, run_program, stack_config
from stacks.config import ConfigError, PlatformConfig, load_config
from stacks.platform import build_platform, model_serving, secret_output
from tests.variants import PUBLIC_ENDPOINT

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


# Where the tests' replicas get their weights and image (the program passes the bucket's and cache's Outputs).
SOURCE = ModelSource(
    uri="s3://llm-dev-weights-x/models/mistralai/Mistral-7B-Instruct-v0.2/main/",
    image="vllm/vllm-openai:v0.33.0",
)
# The stacks as they ship (KEDA scales dev between 0 and 2 replicas, prod between 2 and 4), and fixed-replica
# variants for what does not depend on autoscaling.
DEV = {}
PROD: dict[str, str] = {}
FIXED = {"autoscaling:enabled": "false"}
SINGLE = {**FIXED, "llm:replicas": "1"}
MULTI_GPU = {**SINGLE, "llm:model": LLAMA_70B, "llm:instanceType": "g6e.12xlarge"}
PACKED = {**FIXED, "llm:instanceType": "g6.12xlarge", "llm:replicas": "4"}
INTERNAL_LOAD_BALANCER = {"llm:serviceType": "LoadBalancer"}


def container(manifest: Mapping[str, Any]) -> dict[str, Any]:
    (only,) = manifest["spec"]["template"]["spec"]["containers"]
    return only


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


# Per case: (stack, overrides, TP, max_model_len, GPUs, CPU, memory, cache, ephemeral, shm, startup probe
# failures, replicas; None where KEDA owns the count). Hand calculations:
# - Mistral-7B: weights 7,241,732,096 x 2 B = 14,483,464,192 B = 13.49 GiB; one L4 holds 42,160 KV tokens at
#   the safe end of the estimate (worked in tests/stacks/test_sizing.py) >= 32768: TP 1 and the full context.
# - Cache: the weights stream from S3 to the GPU, so only config/tokenizer (1 GiB) and compile caches (10 GiB):
#   11 GiB; ephemeral 11 + 5 = 16 GiB.
# - Startup probe: 3 x (weights stream + 50 s engine start) in 10 s periods. g6.xlarge streams at its 2,500
#   Mbit/s baseline, 312,500,000 B/s: 14,483,464,192 / 312,500,000 = 46.3 -> 47 s; 3 x 97 = 291 s -> 30.
# - g6.xlarge: (3920m - 500m) / 1 = 3420m, rounded down to 3400m; (14162 - 1024) / 1 = 13138 MiB.
# - g6.12xlarge packed: 4 L4s / TP 1 = 4 replicas on 1 node; (47810 - 500) / 4 = 11827.5 -> 11800m;
#   (178933 - 1024) / 4 = 44477.25 -> 44477 MiB. 40,000 Mbit/s = 5e9 B/s: 14,483,464,192 / 5e9 = 2.9 -> 3 s;
#   3 x 53 = 159 s -> 16.
# - Llama-3.1-70B on g6e.12xlarge: weights 70,553,706,496 x 2 B = 141,107,412,992 B; only TP 4 holds them, and
#   its KV cache holds 49,776 tokens at the safe end (tests/stacks/test_sizing.py), below the 131072 context:
#   capped to 49776. 4 GPUs per replica, 1 replica per node: (47810 - 500) = 47310 -> 47300m;
#   360157 - 1024 = 359133 MiB; shm 2 GiB x 4 = 8 GiB. 100,000 Mbit/s (S3's per-instance ceiling too) =
#   12.5e9 B/s: 141,107,412,992 / 12.5e9 = 11.3 -> 12 s; 3 x 62 = 186 s -> 19.
CASES = {
    "dev": ("dev", DEV, 1, 32768, 1, "3400m", "13138Mi", "11Gi", "16Gi", "2Gi", 30, None),
    "prod": ("prod", PROD, 1, 32768, 1, "3400m", "13138Mi", "11Gi", "16Gi", "2Gi", 30, None),
    "multi-gpu": ("dev", MULTI_GPU, 4, 49776, 4, "47300m", "359133Mi", "11Gi", "16Gi", "8Gi", 19, 1),
    "packed": ("dev", PACKED, 1, 32768, 1, "11800m", "44477Mi", "11Gi", "16Gi", "2Gi", 16, 4),
}


@pytest.mark.parametrize("case", CASES)
def test_deployment_follows_the_sizing_plan(case):
    stack, overrides, tp, context, gpus, cpu, memory, cache, ephemeral, shm, failures, replicas = CASES[case]
    settings = settings_for(overrides, stack)
    manifest = deployment_manifest(settings, SOURCE)
    vllm = container(manifest)
    args = vllm["args"]

    assert manifest["spec"].get("replicas") == replicas
    # The weights come from the stack's bucket; clients still name the model by its id.
    assert args[0] == SOURCE.uri
    assert flag(args, "--load-format") == "runai_streamer"
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
    deployment = plan.named("model-server-deployment")
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
    manifest = deployment_manifest(settings_for(DEV), SOURCE)
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
    # Rollout deadline: 3 x the startup budget, 60 s node + 218 s image (12.64 GB at 58 MB/s = 217.9 s)
    # + 47 s weights + 50 s engine = 375 s: 1125 s.
    assert manifest["spec"]["progressDeadlineSeconds"] == 1125
    assert manifest["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


def test_pod_runs_on_gpu_nodes_without_privileges():
    pod = deployment_manifest(settings_for(DEV), SOURCE)["spec"]["template"]["spec"]
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
    manifest = deployment_manifest(settings_for(DEV), SOURCE)
    assert service_manifest(settings_for(DEV))["metadata"]["name"].upper() + "_PORT" == "VLLM_PORT"
    assert manifest["spec"]["template"]["spec"]["enableServiceLinks"] is False
    assert "VLLM_PORT" not in {item["name"] for item in container(manifest)["env"]}


def test_the_api_key_reaches_vllm_only_through_the_secret_and_the_token_never():
    settings = dataclasses.replace(settings_for(MULTI_GPU), with_hf_token=True)
    manifest = deployment_manifest(settings, SOURCE)
    vllm = container(manifest)
    env = {item["name"]: item for item in vllm["env"]}
    # vLLM reads its key only from VLLM_API_KEY or --api-key (vllm/envs.py): a Secret-backed variable.
    assert env["VLLM_API_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "vllm-credentials", "key": "api-key"}
    }
    assert not any(str(arg).startswith("--api-key") for arg in vllm["args"])
    # The weights come from S3, so the model server never holds the Hugging Face token (the staging Job does).
    assert not {"HF_TOKEN", "HF_TOKEN_PATH"} & set(env)
    assert "hf-token" not in {v["name"] for v in manifest["spec"]["template"]["spec"]["volumes"]}
    secret = credentials_secret(settings, "key", "token")
    assert secret["stringData"] == {"api-key": "key", "hf-token": "token"}
    assert credentials_secret(settings_for(DEV), "key", None)["stringData"] == {"api-key": "key"}


def test_the_weights_stream_from_s3_with_the_pods_own_role():
    settings = settings_for(DEV)
    manifest = deployment_manifest(settings, SOURCE)
    vllm = container(manifest)
    pod = manifest["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "vllm"
    assert {"name": "AWS_REGION", "value": "us-west-2"} in vllm["env"]
    # g6.xlarge: 312.5 MB/s / 85 MB/s per S3 request = 3.7 -> 4 readers, raised to the streamer's own 16; the
    # staging buffer a quarter of the replica's 13,138 MiB: 13,138 x 1,048,576 = 13,776,191,488 B, / 4 = 3,444,047,872 B.
    assert json.loads(flag(vllm["args"], "--model-loader-extra-config")) == {
        "concurrency": 16,
        "memory_limit": 3_444_047_872,
    }
    # p5.48xlarge: 3,200 Gbit/s, S3's 100 Gbit/s ceiling = 12.5e9 B/s / 85e6 = 147 readers, capped at 64.
    p5 = settings_for({"llm:model": LLAMA_70B, "llm:instanceType": "p5.48xlarge"})
    p5_args = container(deployment_manifest(p5, SOURCE))["args"]
    assert json.loads(flag(p5_args, "--model-loader-extra-config"))["concurrency"] == 64


def test_extra_engine_args_come_last():
    settings = settings_for({"llm:extraEngineArgs": '["--enforce-eager", "--max-num-seqs", "64"]'})
    args = container(deployment_manifest(settings, SOURCE))["args"]
    assert args[-3:] == ["--enforce-eager", "--max-num-seqs", "64"]


@pytest.mark.parametrize("flag_text", ["--tensor-parallel-size", "--max-model-len=8192", "--api-key"])
def test_extra_engine_args_cannot_override_what_the_platform_sets(flag_text):
    with pytest.raises(ConfigError, match=r"llm:extraEngineArgs"):
        platform_config({"llm:extraEngineArgs": json.dumps([flag_text, "2"])})


def test_spread_and_disruption_budget_only_with_several_replicas():
    single = settings_for(SINGLE)
    assert "topologySpreadConstraints" not in deployment_manifest(single, SOURCE)["spec"]["template"]["spec"]
    assert pod_disruption_budget(single) is None

    # prod: KEDA keeps 2 to 4 replicas, one per node.
    two_nodes = settings_for(PROD, "prod")
    spread = deployment_manifest(two_nodes, SOURCE)["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {(s["topologyKey"], s["whenUnsatisfiable"], s["maxSkew"]) for s in spread} == {
        ("topology.kubernetes.io/zone", "ScheduleAnyway", 1),
        ("kubernetes.io/hostname", "DoNotSchedule", 1),
    }
    budget = pod_disruption_budget(two_nodes)
    assert budget is not None and budget["spec"]["maxUnavailable"] == 1

    # Four replicas packed on one 4-GPU node: spreading would buy nodes, but evictions still go one by one.
    packed = settings_for(PACKED)
    assert "topologySpreadConstraints" not in deployment_manifest(packed, SOURCE)["spec"]["template"]["spec"]
    assert pod_disruption_budget(packed) is not None


def test_the_model_servers_service_stays_inside_the_cluster_even_with_a_load_balancer():
    for overrides in (DEV, INTERNAL_LOAD_BALANCER):
        service = service_manifest(settings_for(overrides))
        assert service["spec"]["type"] == "ClusterIP"
        # The ServiceMonitor scrapes this port by name; the NLB is a Service of its own (components/ingress).
        assert service["spec"]["ports"] == [
            {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
        ]
        assert "annotations" not in service["metadata"]


def test_endpoint_commands():
    reach = endpoint(settings_for(SINGLE))
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
    settings = model_serving(config)
    weights = ModelWeights(
        "weights",
        ModelWeightsArgs(
            stack=config.stack,
            stack_name=config.name,
            namespace=settings.namespace,
            prefix="models/test/main",
            keep_bucket=False,
            oidc_provider_arn="arn:aws:iam::123456789012:oidc-provider/oidc.example",
            oidc_provider_url="https://oidc.example",
        ),
    )
    server = ModelServer(
        "model",
        ModelServerArgs(
            settings=settings,
            provider=provider,
            weights=weights,
            image=settings.image,
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
            "kubernetes:core/v1:ServiceAccount",
            "kubernetes:core/v1:ServiceAccount",
            "kubernetes:core/v1:ConfigMap",
            "kubernetes:networking.k8s.io/v1:NetworkPolicy",
            "kubernetes:batch/v1:Job",
            # prod scales between 2 and 4 replicas: a ScaledObject, no route (it never scales to zero).
            "kubernetes:keda.sh/v1alpha1:ScaledObject",
        ]
    )
    assert plan.named("model").type == "selfhost:index:ModelServer"
    # Everything namespaced waits for the namespace; the Deployment also for its credentials.
    for resource in children:
        if resource.type.startswith("kubernetes:") and resource.type != "kubernetes:core/v1:Namespace":
            assert "model-namespace" in resource.dependencies, resource.name
    assert "model-credentials" in plan.named("model-deployment").dependencies
    # The model server starts once the weights are staged, and reads them as `vllm`.
    assert "model-stage-weights" in plan.named("model-deployment").dependencies
    assert "model-vllm-service-account" in plan.named("model-deployment").dependencies
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
        assert outputs["endpoint_url"].endswith("/v1")


def test_the_network_policy_admits_prometheus_and_the_named_namespaces_only():
    policy = network_policy(settings_for({**SINGLE, "llm:clientNamespaces": '["apps", "batch-jobs"]'}))
    assert policy["spec"]["podSelector"] == {"matchLabels": selector_labels(settings_for(DEV))}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
    assert rule["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}
        for name in ("monitoring", "apps", "batch-jobs")
    ]
    kubernetes_validate.validate(policy, "1.33.0", strict=True)


def test_a_load_balancer_reaches_the_model_server_from_its_clients_and_its_own_subnets():
    # Fixed replicas: the NLB targets the model server's pods.
    settings = settings_for({**FIXED, **PUBLIC_ENDPOINT})
    [rule] = network_policy(settings)["spec"]["ingress"]
    blocks = [source["ipBlock"]["cidr"] for source in rule["from"] if "ipBlock" in source]
    # The client range, then dev's three public subnets: block 7 of the /16 cut in eight (10.0.224.0/19), cut
    # again in eight /22s, the first three.
    assert blocks == ["203.0.113.0/24", "10.0.224.0/22", "10.0.228.0/22", "10.0.232.0/22"]
    [closed] = network_policy(settings_for(DEV))["spec"]["ingress"]
    assert not any("ipBlock" in source for source in closed["from"])


def test_with_scale_to_zero_the_load_balancer_reaches_the_interceptors_not_the_model_server():
    settings = settings_for(PUBLIC_ENDPOINT)
    [rule] = network_policy(settings)["spec"]["ingress"]
    assert not any("ipBlock" in source for source in rule["from"])


def test_client_namespaces_must_be_namespace_names():
    with pytest.raises(ConfigError) as error:
        platform_config({"llm:clientNamespaces": '["Apps_1"]'})
    assert error.value.errors[0].startswith(
        "llm:clientNamespaces: ['Apps_1'] is not valid; expected Kubernetes namespace names"
    )
