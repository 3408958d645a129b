"""Every object the model server creates, as the offline plan records it, against the upstream schemas.

- Core Kubernetes objects: kubernetes-validate's schemas for the stack's cluster version, strict (unknown
  fields rejected).
- ServiceMonitor and PrometheusRule: the prometheus-operator CRDs that kube-prometheus-stack 88.5.3 installs
  (../shared/reference/kube-prometheus-stack/crds); ScaledObject and InterceptorRoute: KEDA 2.20.2's and the
  HTTP add-on 0.15.0's (../shared/reference/keda, keda-add-ons-http); unknown fields rejected and CEL rules
  evaluated (tests/conformance/crd_schema).
- The pod lands on a node of the plan's GPU NodePool (labels and taints as Karpenter sets them) and not on
  a system node, and its requests fit the instance's allocatable (../shared/reference/aws).
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from selfhost.plan.command import write_plan
from selfhost.plan.runner import SECRET, PlanResult, run_program, stack_config
from tests.conformance.crd_schema import Crds, cel_errors, load_crds, schema_errors
from tests.conformance.scheduling import Node, node_from_pool, schedulable
from tests.variants import PUBLIC_ENDPOINT

MODEL_SERVER = "selfhost:index:ModelServer"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
OPERATOR_CRDS = "kube-prometheus-stack/crds"
CUSTOM_KINDS = ("ServiceMonitor", "PrometheusRule", "ScaledObject", "InterceptorRoute")
KEDA_CRDS = ("keda", "keda-add-ons-http")
# The model server's own objects (a stack that scales to zero also runs a small responder beside it).
SERVER = "vllm"
# What DaemonSets on a GPU node request (components/serving/budget.py lists the sources): kube-proxy
# 100m, aws-node 2 x 25m, dcgm-exporter 100m/128Mi, ebs-csi-node 3 x 10m/40Mi.
DAEMONSET_CPU_MILLICORES = 100 + 50 + 100 + 30
DAEMONSET_MEMORY_MIB = 128 + 120

FIXED = {"autoscaling:enabled": "false"}
CASES = {
    "dev": ("dev", {}),
    "prod": ("prod", {}),
    "multi-gpu": (
        "dev",
        {**FIXED, "llm:model": "meta-llama/Llama-3.1-70B-Instruct", "llm:instanceType": "g6e.12xlarge"},
    ),
    "packed": ("dev", {**FIXED, "llm:instanceType": "g6.12xlarge", "llm:replicas": 4}),
    "load-balancer": ("dev", PUBLIC_ENDPOINT),
}


def serving_objects(plan: PlanResult) -> list[dict[str, Any]]:
    (server,) = plan.of_type(MODEL_SERVER)
    return [r.inputs for r in plan.resources if r.parent == server.name and "kind" in r.inputs]


def of_kind(objects: list[dict[str, Any]], kind: str, name: str = SERVER) -> dict[str, Any]:
    (match,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return match


def kubernetes_version(plan: PlanResult) -> str:
    return f"{plan.config.cluster.version}.0"


@pytest.fixture(scope="module", params=list(CASES))
def case_plan(request, dev_plan, prod_plan, plan_with) -> PlanResult:
    """Each case planned once for every test of this module."""
    stack, overrides = CASES[request.param]
    if not overrides:
        return dev_plan if stack == "dev" else prod_plan
    return plan_with(overrides, stack)


@pytest.fixture(scope="module")
def operator_crds(reference: Path) -> Crds:
    crds = load_crds(reference / OPERATOR_CRDS)
    for folder in KEDA_CRDS:
        crds.update(load_crds(reference / folder))
    return crds


def test_core_objects_validate_strictly(case_plan):
    version = kubernetes_version(case_plan)
    core = [o for o in serving_objects(case_plan) if o["kind"] not in CUSTOM_KINDS]
    kinds = {o["kind"] for o in core}
    assert {"Namespace", "Secret", "Deployment", "Service", "ConfigMap"} <= kinds
    for manifest in core:
        try:
            kubernetes_validate.validate(dict(manifest), version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{manifest['kind']} {manifest['metadata']['name']}: {str(error).splitlines()[0]}")


def test_custom_objects_validate_against_their_crds(case_plan, operator_crds):
    objects = [o for o in serving_objects(case_plan) if o["kind"] in CUSTOM_KINDS]
    kinds = {o["kind"] for o in objects}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds
    # Autoscaling: dev scales to zero (a ScaledObject and the route), prod from 2 (a ScaledObject only).
    expected = {"dev": {"ScaledObject", "InterceptorRoute"}, "prod": {"ScaledObject"}}.get(
        case_plan.stack if case_plan.config.scaling is not None else "", set()
    )
    assert kinds - {"ServiceMonitor", "PrometheusRule"} == expected
    for manifest in objects:
        assert schema_errors(operator_crds, manifest) == [], manifest["kind"]
        assert cel_errors(operator_crds, manifest) == [], manifest["kind"]


def test_strict_crd_schema_rejects_unknown_fields(operator_crds, dev_plan):
    monitor = copy.deepcopy(of_kind(serving_objects(dev_plan), "ServiceMonitor"))
    monitor["spec"]["endpoints"][0]["metricsPath"] = "/metrics"
    errors = schema_errors(operator_crds, monitor)
    assert len(errors) == 1 and "metricsPath" in errors[0]


def test_strict_kubernetes_schema_rejects_unknown_fields(dev_plan):
    deployment = copy.deepcopy(of_kind(serving_objects(dev_plan), "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, kubernetes_version(dev_plan), strict=True)


def test_service_monitor_scrapes_the_service_port(case_plan):
    objects = serving_objects(case_plan)
    monitor, service = of_kind(objects, "ServiceMonitor"), of_kind(objects, "Service")
    labels = service["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}


def test_service_selects_the_pods(case_plan):
    objects = serving_objects(case_plan)
    deployment, service = of_kind(objects, "Deployment"), of_kind(objects, "Service")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert service["spec"]["ports"][0]["targetPort"] in {port["name"] for port in container["ports"]}


def node_pool(plan: PlanResult, pool: str) -> dict[str, Any]:
    (found,) = [r.inputs for r in plan.of_type(NODE_POOL) if r.inputs["metadata"]["name"] == pool]
    return found


def pool_node(plan: PlanResult, pool: str) -> Node:
    """A node as Karpenter launches it from the plan's NodePool (no instance-type labels needed here)."""
    return node_from_pool(node_pool(plan, pool), {}, f"{pool}-node")


def test_pods_schedule_on_gpu_nodes_only(case_plan):
    pod = of_kind(serving_objects(case_plan), "Deployment")["spec"]["template"]["spec"]
    assert schedulable(pod, pool_node(case_plan, "gpu"))
    assert not schedulable(pod, pool_node(case_plan, "system"))


# FACTS.md section 5: | type | GPU | #GPU | GPU mem | vCPU | RAM | Karpenter allocatable cpu / mem / pods | $/h |
ALLOCATABLE_ROW = re.compile(
    r"^\| ([a-z0-9]+\.[a-z0-9]+) \|[^|]+\| (\d+) \|(?:[^|]+\|){3} (\d+)m / (\d+)Mi / \d+ \|"
)


def reference_allocatable(reference: Path) -> dict[str, tuple[int, int, int]]:
    """GPUs, allocatable millicores and MiB per instance type, from the reference facts (Karpenter's
    instance-types.md), independent of the catalog in stacks/catalogs/instances.py."""
    rows = {}
    for line in (reference / "FACTS.md").read_text().splitlines():
        match = ALLOCATABLE_ROW.match(line)
        if match:
            rows[match.group(1)] = (int(match.group(2)), int(match.group(3)), int(match.group(4)))
    return rows


def test_replicas_per_node_fit_the_instance(case_plan, reference):
    gpus, cpu_allocatable, memory_allocatable = reference_allocatable(reference)[
        case_plan.config.instance.name
    ]
    per_node = case_plan.config.serving.replicas_per_node
    container = of_kind(serving_objects(case_plan), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    requests = container["resources"]["requests"]
    assert per_node * int(requests["nvidia.com/gpu"]) <= gpus
    cpu = int(requests["cpu"].removesuffix("m"))
    memory = int(requests["memory"].removesuffix("Mi"))
    assert per_node * cpu + DAEMONSET_CPU_MILLICORES <= cpu_allocatable
    assert per_node * memory + DAEMONSET_MEMORY_MIB <= memory_allocatable


def test_gpu_node_pool_limit_leaves_room_for_a_surge_pod(case_plan):
    gpu_pool = node_pool(case_plan, "gpu")
    deployment = of_kind(serving_objects(case_plan), "Deployment")
    gpus = int(
        deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["nvidia.com/gpu"]
    )
    surge = deployment["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
    # The most replicas: the Deployment's own count, or KEDA's maximum when it owns the count.
    replicas = deployment["spec"].get("replicas", case_plan.config.serving.replicas)
    assert (replicas + surge) * gpus <= gpu_pool["spec"]["limits"]["nvidia.com/gpu"]


def test_no_secret_value_in_the_plan(tmp_path):
    config, secret_keys = stack_config("dev")
    api_key, token = "sk-plan-api-key-0123456789abcdefghij", "hf_plantoken0123456789abcdefghij"
    config.update({"llm:apiKey": api_key, "llm:hfToken": token})
    plan = run_program("dev", config, [*secret_keys, "llm:apiKey", "llm:hfToken"])
    write_plan(plan, tmp_path)
    written = "\n".join(path.read_text() for path in tmp_path.rglob("*") if path.is_file())
    assert api_key not in written and token not in written
    secret = of_kind(serving_objects(plan), "Secret", "vllm-credentials")
    assert secret["stringData"] == {"api-key": SECRET, "hf-token": SECRET}
