"""The policy pack's rules: each passes on the real dev and prod plans and fails on a hand-made violation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from policy.rules import (
    DEFAULT_MAX_GPUS,
    EC2_INSTANCE,
    EC2_NODE_CLASS,
    EKS_CLUSTER,
    HELM_RELEASE,
    LAUNCH_TEMPLATE,
    NODE_POOL,
    REMOTE_COMPONENTS,
    RESOURCE_RULES,
    SERVICE,
    Exposure,
    containers,
    eks_secrets_encryption_violations,
    gpu_ceiling_violations,
    gpu_node_pool_violations,
    image_pin_problem,
    imdsv2_violations,
    is_gpu_node_pool,
    is_internal_load_balancer,
    pinned_image_violations,
    service_exposure_violations,
    vllm_api_key_violations,
)
from selfhost.plan.runner import PlanResult
from tests.policy.engine_view import engine_view

DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def plan_violations(
    plan: PlanResult, exposure: Exposure | None = None, max_gpus: int = DEFAULT_MAX_GPUS
) -> list[str]:
    """Every rule over every resource of a plan as the engine shows it to the pack (remote components
    without properties, pulumi-eks's EKS cluster as a child: tests/policy/engine_view.py)."""
    exposure = exposure or Exposure(plan.config.llm.service_type, plan.config.llm.load_balancer_scheme)
    seen = list(engine_view(plan))
    found = []
    for resource_type, name, props in seen:
        messages = [message for rule in RESOURCE_RULES.values() for message in rule(resource_type, props)]
        messages += service_exposure_violations(resource_type, props, exposure)
        found += [f"{resource_type} {name}: {message}" for message in messages]
    found += gpu_ceiling_violations(
        ((name, resource_type, props) for resource_type, name, props in seen), max_gpus
    )
    return found


def vllm_workloads(plan: PlanResult) -> list[str]:
    return [
        resource.name
        for resource in plan.resources
        if any("vllm/vllm-openai" in str(c.get("image")) for c in containers(resource.type, resource.inputs))
    ]


# The real plans.


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_rule_passes_on_the_stack_plan(stack: str, request: pytest.FixtureRequest) -> None:
    plan: PlanResult = request.getfixturevalue(f"{stack}_plan")
    assert plan_violations(plan) == []


def test_the_dev_plan_gives_every_rule_something_to_check(dev_plan: PlanResult) -> None:
    """Passing is only worth something if the resources each rule guards are in the plan."""
    assert any(is_gpu_node_pool(r.inputs) for r in dev_plan.of_type(NODE_POOL)), "no GPU NodePool"
    assert dev_plan.of_type(EC2_NODE_CLASS), "no EC2NodeClass"
    assert [r for r in engine_view(dev_plan) if r[0] == EKS_CLUSTER], "no EKS cluster"
    assert dev_plan.of_type(HELM_RELEASE), "no Helm release"
    assert vllm_workloads(dev_plan), "no vLLM workload"
    assert dev_plan.of_type(SERVICE), "no Service"


def test_a_load_balancer_plan_passes_when_the_config_asks_for_one(
    plan_with: Callable[..., PlanResult],
) -> None:
    plan = plan_with({"llm:serviceType": "LoadBalancer"})
    balancers = [s for s in plan.of_type(SERVICE) if s.inputs.get("spec", {}).get("type") == "LoadBalancer"]
    assert balancers, "llm:serviceType LoadBalancer made no LoadBalancer Service"
    assert all(is_internal_load_balancer(s.inputs) for s in balancers)
    assert plan_violations(plan) == []
    # The same Services under the default exposure (ClusterIP) are what the rule exists to stop.
    assert plan_violations(plan, exposure=Exposure())


def test_an_internet_facing_plan_passes_when_the_config_says_so(
    public_endpoint_plan: PlanResult,
) -> None:
    assert plan_violations(public_endpoint_plan) == []


def test_the_gpu_ceiling_stops_the_dev_plan_below_its_gpu_limit(dev_plan: PlanResult) -> None:
    # dev: at most 2 Mistral-7B replicas (autoscaling:maxReplicas), one per g6.xlarge (1 L4 GPU) = 2 nodes;
    # the GPU pool's limit keeps one spare node: (2 + 1) nodes x 1 GPU = 3 GPUs. A ceiling of 2 is below it.
    assert plan_violations(dev_plan, max_gpus=3) == []
    assert plan_violations(dev_plan, max_gpus=2) == [
        "NodePools may hold 3 GPUs in all, above this stack's ceiling of 2: lower their nvidia.com/gpu "
        "limits or raise the policy's maxGpus"
    ]


# Hand-made resources: one compliant and one violating fixture per rule.


def gpu_node_pool(**changes: Any) -> dict[str, Any]:
    pool: dict[str, Any] = {
        "apiVersion": "karpenter.sh/v1",
        "kind": "NodePool",
        "metadata": {"name": "gpu"},
        "spec": {
            "template": {
                "metadata": {"labels": {"nvidia.com/gpu.present": "true"}},
                "spec": {
                    "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "gpu"},
                    "requirements": [
                        {"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["g6.xlarge"]}
                    ],
                    "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}],
                },
            },
            "limits": {"nvidia.com/gpu": 2},
        },
    }
    pool["spec"].update(changes)
    return pool


def system_node_pool() -> dict[str, Any]:
    return {
        "spec": {
            "template": {
                "spec": {
                    "requirements": [
                        {"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["c", "m"]}
                    ]
                }
            },
            "limits": {"cpu": "64"},
        }
    }


def test_a_tainted_and_limited_gpu_pool_passes() -> None:
    assert gpu_node_pool_violations(NODE_POOL, gpu_node_pool()) == []


def test_a_gpu_pool_without_taint_or_limit_fails() -> None:
    pool = gpu_node_pool(limits={"cpu": "100"})
    del pool["spec"]["template"]["spec"]["taints"]
    assert gpu_node_pool_violations(NODE_POOL, pool) == [
        "GPU NodePool has no `nvidia.com/gpu` NoSchedule taint in spec.template.spec.taints: pods that do not "
        "request GPUs could be scheduled onto (and keep alive) GPU nodes",
        "GPU NodePool sets no whole-number `nvidia.com/gpu` in spec.limits: Karpenter could buy GPU nodes "
        "without bound",
    ]


def test_a_prefer_no_schedule_taint_is_not_enough() -> None:
    pool = gpu_node_pool()
    pool["spec"]["template"]["spec"]["taints"] = [{"key": "nvidia.com/gpu", "effect": "PreferNoSchedule"}]
    assert len(gpu_node_pool_violations(NODE_POOL, pool)) == 1


@pytest.mark.parametrize(
    ("requirement", "gpu"),
    [
        (
            {"key": "karpenter.k8s.aws/instance-gpu-manufacturer", "operator": "In", "values": ["nvidia"]},
            True,
        ),
        ({"key": "karpenter.k8s.aws/instance-gpu-count", "operator": "Gt", "values": ["0"]}, True),
        ({"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["g6e"]}, True),
        ({"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["p5en"]}, True),
        ({"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["g"]}, True),
        ({"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["p4d.24xlarge"]}, True),
        # g4ad carries AMD GPUs; m and c families none.
        ({"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["g4ad"]}, False),
        ({"key": "node.kubernetes.io/instance-type", "operator": "In", "values": ["m7i.large"]}, False),
        ({"key": "karpenter.k8s.aws/instance-gpu-count", "operator": "DoesNotExist"}, False),
    ],
)
def test_gpu_pools_are_recognised_by_their_requirements(requirement: dict[str, Any], gpu: bool) -> None:
    pool = {"spec": {"template": {"spec": {"requirements": [requirement]}}}}
    assert is_gpu_node_pool(pool) is gpu


def test_a_cpu_pool_needs_no_gpu_taint() -> None:
    assert gpu_node_pool_violations(NODE_POOL, system_node_pool()) == []


def vllm_deployment(container: dict[str, Any]) -> dict[str, Any]:
    base = {"name": "vllm", "image": "vllm/vllm-openai:v0.33.0", "args": ["--model", "mistralai/Mistral-7B"]}
    return {"spec": {"template": {"spec": {"containers": [{**base, **container}]}}}}


SECRET_KEY_ENV = {
    "name": "VLLM_API_KEY",
    "valueFrom": {"secretKeyRef": {"name": "vllm-api-key", "key": "key"}},
}


@pytest.mark.parametrize(
    "container",
    [
        {"env": [SECRET_KEY_ENV]},
        {"env": [{**SECRET_KEY_ENV, "name": "API_KEY"}], "args": ["--model", "m", "--api-key", "$(API_KEY)"]},
        {"env": [{**SECRET_KEY_ENV, "name": "API_KEY"}], "args": ["--api-key=$(API_KEY)"]},
        {
            "env": [{**SECRET_KEY_ENV, "name": "K"}],
            "command": ["/bin/sh", "-c", "vllm serve m --api-key ${K}"],
        },
    ],
)
def test_a_vllm_server_with_a_key_from_a_secret_passes(container: dict[str, Any]) -> None:
    assert vllm_api_key_violations(DEPLOYMENT, vllm_deployment(container)) == []


def test_a_vllm_server_without_a_key_fails() -> None:
    assert vllm_api_key_violations(DEPLOYMENT, vllm_deployment({})) == [
        "vLLM container 'vllm' serves without an API key: set VLLM_API_KEY from a Secret "
        "(valueFrom.secretKeyRef) or pass --api-key $(VAR) with VAR read from a Secret"
    ]


@pytest.mark.parametrize("args", [["--api-key", "sk-123"], ["--api_key", "sk-123"], ["--api_key=sk-123"]])
def test_a_vllm_key_in_plain_text_fails(args: list[str]) -> None:
    # vLLM reads --api_key as --api-key (its argument parser swaps underscores for dashes).
    in_args = vllm_deployment({"env": [SECRET_KEY_ENV], "args": args})
    in_env = vllm_deployment({"env": [{"name": "VLLM_API_KEY", "value": "sk-123"}]})
    assert vllm_api_key_violations(DEPLOYMENT, in_args) == [
        "vLLM container 'vllm' passes --api-key a value that is not an environment variable read from a "
        "Secret (secretKeyRef): the key would sit in plain text in the pod spec"
    ]
    assert vllm_api_key_violations(DEPLOYMENT, in_env) == [
        "vLLM container 'vllm' sets VLLM_API_KEY as a plain value: read it from a Secret with "
        "valueFrom.secretKeyRef"
    ]


@pytest.mark.parametrize(
    ("command", "serves"),
    [
        (["python3", "/opt/selfhost/stage_weights.py"], False),
        (["vllm", "serve"], True),
        (["python3", "-m", "vllm.entrypoints.openai.api_server"], True),
        (["/bin/sh", "-c", "exec vllm serve m"], True),
    ],
)
def test_only_a_container_that_runs_the_api_server_needs_a_key(command: list[str], serves: bool) -> None:
    # A program of its own in the vLLM image (the staging Job's copy) opens no API; the image's entrypoint does.
    violations = vllm_api_key_violations(DEPLOYMENT, vllm_deployment({"command": command, "args": []}))
    assert bool(violations) == serves


def test_a_vllm_image_from_another_registry_is_still_checked() -> None:
    mirrored = vllm_deployment(
        {"image": "123456789012.dkr.ecr.us-west-2.amazonaws.com/vllm/vllm-openai:v0.33.0"}
    )
    assert len(vllm_api_key_violations(DEPLOYMENT, mirrored)) == 1


def load_balancer(annotations: dict[str, str], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"annotations": annotations}, "spec": {"type": "LoadBalancer", **spec}}


INTERNAL = {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}
ALLOWED = Exposure("LoadBalancer", "internal")


def test_cluster_ip_services_need_no_config() -> None:
    assert service_exposure_violations(SERVICE, {"spec": {"type": "ClusterIP"}}, Exposure()) == []


def test_an_internal_load_balancer_passes_when_the_config_allows_it() -> None:
    assert service_exposure_violations(SERVICE, load_balancer(INTERNAL), ALLOWED) == []
    scheme_for_lb_controller = load_balancer(
        {"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"},
        loadBalancerClass="service.k8s.aws/nlb",
    )
    assert service_exposure_violations(SERVICE, scheme_for_lb_controller, ALLOWED) == []


def test_a_load_balancer_the_config_does_not_allow_fails() -> None:
    assert service_exposure_violations(SERVICE, load_balancer(INTERNAL), Exposure()) == [
        "Service is of type LoadBalancer but the stack's llm:serviceType is ClusterIP: set llm:serviceType to "
        "LoadBalancer to expose the endpoint outside the cluster"
    ]


def test_a_load_balancer_not_marked_internal_fails() -> None:
    expected = [
        "Service of type LoadBalancer is not marked internal while llm:loadBalancerScheme is internal: annotate "
        'it service.beta.kubernetes.io/aws-load-balancer-internal: "true" (or, for the AWS Load Balancer '
        "Controller, service.beta.kubernetes.io/aws-load-balancer-scheme: internal), or set "
        "llm:loadBalancerScheme to internet-facing"
    ]
    assert service_exposure_violations(SERVICE, load_balancer({}), ALLOWED) == expected
    # The in-tree controller ignores the scheme annotation: without the LB controller claiming the Service,
    # `scheme: internal` alone still builds an internet-facing load balancer.
    scheme_only = load_balancer({"service.beta.kubernetes.io/aws-load-balancer-scheme": "internal"})
    assert service_exposure_violations(SERVICE, scheme_only, ALLOWED) == expected


PUBLIC = Exposure("LoadBalancer", "internet-facing")
TLS = {
    "service.beta.kubernetes.io/aws-load-balancer-ssl-cert": "arn:aws:acm:us-west-2:123456789012:certificate/x"
}
OFFICE = ["203.0.113.0/24"]


def test_an_internet_facing_load_balancer_passes_with_tls_and_client_ranges_when_the_config_says_so() -> None:
    assert (
        service_exposure_violations(SERVICE, load_balancer(TLS, loadBalancerSourceRanges=OFFICE), PUBLIC)
        == []
    )
    # The ranges may also come as the annotation both controllers read.
    ranges = {"service.beta.kubernetes.io/load-balancer-source-ranges": "203.0.113.0/24, 198.51.100.0/24"}
    assert service_exposure_violations(SERVICE, load_balancer({**TLS, **ranges}), PUBLIC) == []


def test_an_internet_facing_load_balancer_without_tls_or_client_ranges_fails() -> None:
    assert service_exposure_violations(SERVICE, load_balancer({}), PUBLIC) == [
        "internet-facing Service has no TLS certificate (service.beta.kubernetes.io/aws-load-balancer-ssl-cert): "
        "requests and their API key would cross the internet in clear text; set llm:loadBalancerCertificateArn",
        "internet-facing Service names no client ranges (spec.loadBalancerSourceRanges), so it admits every "
        "address; set llm:loadBalancerSourceRanges",
    ]
    assert (
        len(service_exposure_violations(SERVICE, load_balancer({}, loadBalancerSourceRanges=OFFICE), PUBLIC))
        == 1
    )
    assert len(service_exposure_violations(SERVICE, load_balancer(TLS), PUBLIC)) == 1


def test_an_internet_facing_load_balancer_open_to_everyone_needs_the_config_to_say_so() -> None:
    anywhere = load_balancer(TLS, loadBalancerSourceRanges=["0.0.0.0/0"])
    assert service_exposure_violations(SERVICE, anywhere, PUBLIC) == [
        "internet-facing Service admits 0.0.0.0/0 while llm:loadBalancerOpenToInternet is not true: name the "
        "client ranges in llm:loadBalancerSourceRanges, or set that key to open it on purpose"
    ]
    on_purpose = Exposure("LoadBalancer", "internet-facing", open_to_internet=True)
    assert service_exposure_violations(SERVICE, anywhere, on_purpose) == []


@pytest.mark.parametrize(
    ("resource_type", "props"),
    [
        (
            EC2_NODE_CLASS,
            {"spec": {"metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 1}}},
        ),
        (LAUNCH_TEMPLATE, {"metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "required"}}),
        (EC2_INSTANCE, {"metadataOptions": {"httpTokens": "required"}}),
    ],
)
def test_imdsv2_required_passes(resource_type: str, props: dict[str, Any]) -> None:
    assert imdsv2_violations(resource_type, props) == []


def test_imdsv1_or_an_unset_token_mode_fails() -> None:
    assert imdsv2_violations(EC2_NODE_CLASS, {"spec": {"metadataOptions": {"httpTokens": "optional"}}}) == [
        "spec.metadataOptions.httpTokens is 'optional', not 'required': set it explicitly so that nodes accept "
        "only IMDSv2 (session tokens) and a pod cannot read the node role's credentials with a plain GET"
    ]
    assert imdsv2_violations(LAUNCH_TEMPLATE, {"imageId": "ami-0123"}) == [
        "metadataOptions.httpTokens is unset, not 'required': set it explicitly so that nodes accept only "
        "IMDSv2 (session tokens) and a pod cannot read the node role's credentials with a plain GET"
    ]


def test_eks_clusters_with_a_secrets_key_pass() -> None:
    key = "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    encrypted = {"encryptionConfig": {"resources": ["secrets"], "provider": {"keyArn": key}}}
    assert eks_secrets_encryption_violations(EKS_CLUSTER, encrypted) == []


def test_eks_clusters_without_a_secrets_key_fail() -> None:
    assert eks_secrets_encryption_violations(
        EKS_CLUSTER, {"encryptionConfig": {"resources": ["secrets"]}}
    ) == [
        "EKS cluster has no encryptionConfig with resources ['secrets'] and a provider.keyArn: give it a "
        "customer managed KMS key for Secrets envelope encryption, so that the key policy, rotation and "
        "CloudTrail record stay yours"
    ]
    assert eks_secrets_encryption_violations(EKS_CLUSTER, {"version": "1.35"})


def test_a_remote_component_shown_without_properties_breaks_no_rule() -> None:
    # The engine shows pulumi-eks's component with {} (its Node SDK sends no inputs): no rule may read it.
    for remote in REMOTE_COMPONENTS:
        assert [message for rule in RESOURCE_RULES.values() for message in rule(remote, {})] == []


@pytest.mark.parametrize(
    ("image", "problem"),
    [
        ("vllm/vllm-openai:v0.33.0", None),
        ("nvcr.io/nvidia/k8s-device-plugin:0.20.0", None),
        ("localhost:5000/app@sha256:" + "a" * 64, None),
        ("localhost:5000/app", "has no tag (it means latest)"),
        ("python", "has no tag (it means latest)"),
        ("vllm/vllm-openai:latest", "uses the latest tag"),
        ("vllm/vllm-openai:", "has an empty tag"),
    ],
)
def test_image_references_are_read_like_a_registry_would(image: str, problem: str | None) -> None:
    assert image_pin_problem(image) == problem


def test_pinned_images_and_charts_pass() -> None:
    assert pinned_image_violations(DEPLOYMENT, vllm_deployment({})) == []
    release = {"chart": "oci://public.ecr.aws/karpenter/karpenter", "version": "1.14.1"}
    assert pinned_image_violations(HELM_RELEASE, release) == []


def test_latest_images_and_floating_charts_fail() -> None:
    cron_job = {
        "spec": {
            "jobTemplate": {
                "spec": {
                    "template": {"spec": {"initContainers": [{"name": "fetch", "image": "busybox:latest"}]}}
                }
            }
        }
    }
    assert pinned_image_violations("kubernetes:batch/v1:CronJob", cron_job) == [
        "container 'fetch' image 'busybox:latest' uses the latest tag: pin a version tag or a digest"
    ]
    assert pinned_image_violations(HELM_RELEASE, {"chart": "kube-prometheus-stack"}) == [
        "Helm chart 'kube-prometheus-stack' has no version: pin one so that a preview shows every upgrade"
    ]
    assert pinned_image_violations(HELM_RELEASE, {"chart": "nvidia-device-plugin", "version": "^0.20"}) == [
        "Helm chart 'nvidia-device-plugin' version '^0.20' is a range, not one exact version"
    ]


def test_gpu_limits_within_the_ceiling_pass() -> None:
    # Two GPU pools of 2 and 6 GPUs: 2 + 6 = 8, the default ceiling, exactly.
    pools = [
        ("gpu", NODE_POOL, gpu_node_pool()),
        ("gpu-large", NODE_POOL, gpu_node_pool(limits={"nvidia.com/gpu": "6"})),
        ("system", NODE_POOL, system_node_pool()),
    ]
    assert gpu_ceiling_violations(pools, DEFAULT_MAX_GPUS) == []


def test_gpu_limits_above_the_ceiling_or_unbounded_fail() -> None:
    # 2 + 7 = 9 GPUs, one more than the default ceiling of 8.
    over = [
        ("gpu", NODE_POOL, gpu_node_pool()),
        ("gpu-large", NODE_POOL, gpu_node_pool(limits={"nvidia.com/gpu": 7})),
    ]
    assert gpu_ceiling_violations(over, DEFAULT_MAX_GPUS) == [
        "NodePools may hold 9 GPUs in all, above this stack's ceiling of 8: lower their nvidia.com/gpu limits "
        "or raise the policy's maxGpus"
    ]
    unbounded = [("gpu", NODE_POOL, gpu_node_pool(limits={"cpu": "100"}))]
    assert gpu_ceiling_violations(unbounded, DEFAULT_MAX_GPUS) == [
        "NodePool gpu can launch GPU instances with no whole-number nvidia.com/gpu limit, so the stack's GPU "
        "count is unbounded (ceiling 8)"
    ]


def test_an_internet_facing_load_balancer_serves_no_port_in_clear_text_beside_tls() -> None:
    ports = [{"name": "https", "port": 443}, {"name": "http", "port": 80}]
    both = load_balancer(
        {**TLS, "service.beta.kubernetes.io/aws-load-balancer-ssl-ports": "443"},
        loadBalancerSourceRanges=OFFICE,
        ports=ports,
    )
    assert service_exposure_violations(SERVICE, both, PUBLIC) == [
        "internet-facing Service would serve port 80 in clear text beside its TLS listener: list it in "
        "service.beta.kubernetes.io/aws-load-balancer-ssl-ports or remove it"
    ]
    # Listed by name, or no ssl-ports at all (the controller then makes every port TLS).
    by_name = load_balancer(
        {**TLS, "service.beta.kubernetes.io/aws-load-balancer-ssl-ports": "https, http"},
        loadBalancerSourceRanges=OFFICE,
        ports=ports,
    )
    assert service_exposure_violations(SERVICE, by_name, PUBLIC) == []
    every_port = load_balancer(TLS, loadBalancerSourceRanges=OFFICE, ports=ports)
    assert service_exposure_violations(SERVICE, every_port, PUBLIC) == []
