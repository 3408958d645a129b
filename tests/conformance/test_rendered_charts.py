"""Every Helm release of the dev and prod plans (and of dev with a public endpoint) rendered with the real upstream chart and the plan's values.

What `pulumi up` would install, checked before any cloud: the chart renders with these values; every object it
renders is valid (built-in kinds against the Kubernetes schemas of the cluster's version, custom resources
against the CRDs the charts themselves install, unknown fields rejected); and every pod, rendered or the
plan's own, has somewhere to run: a node of Karpenter's GPU or system pool, or the cluster's Fargate profile.
The device plugin and the DCGM exporter must cover the GPU pool.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from selfhost.plan.command import HELM_RELEASE
from selfhost.plan.runner import PlanResult
from tests.conformance.crd_schema import schema_errors
from tests.conformance.helm import extract_helm, render
from tests.conformance.scheduling import G6_XLARGE_LABELS, M7I_LARGE_LABELS, Node, node_from_pool, schedulable

# The shipped stacks, and dev with its endpoint on the internet (the load balancer controller's chart).
STACKS = ("dev", "prod", "public-endpoint")
# Kinds whose pods a controller creates from a pod template: the path to the template's pod spec.
POD_SPEC_PATHS: Mapping[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",),
    # prometheus-operator turns these into StatefulSets with the resource's scheduling fields.
    "Prometheus": ("spec",),
    "Alertmanager": ("spec",),
}
# The device plugin chart's MPS control daemon selects nvidia.com/mps.capable=true nodes only: it runs where
# MPS sharing is configured, which this platform does not do (FACTS: the real charts).
RUNS_NOWHERE_BY_DESIGN = {"nvidia-device-plugin-mps-control-daemon"}
GPU_AGENTS = {"nvidia-device-plugin", "dcgm-exporter"}


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return extract_helm(tmp_path_factory.mktemp("helm"))


@pytest.fixture(scope="module")
def rendered(
    plans: dict[str, PlanResult], helm: Path, charts: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """variant -> release name -> the objects its chart renders."""
    result: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for variant, plan in plans.items():
        values = tmp_path_factory.mktemp(f"values-{variant}")
        result[variant] = {
            release.inputs["name"]: render(
                helm, charts, release.inputs, values / f"{release.inputs['name']}.yaml", kube_version(plan)
            )
            for release in plan.of_type(HELM_RELEASE)
        }
    return result


def kube_version(plan: PlanResult) -> str:
    return f"{plan.config.cluster.version}.0"


def crds_of(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (crd["spec"]["group"], crd["spec"]["names"]["kind"]): crd
        for crd in objects
        if crd.get("kind") == "CustomResourceDefinition"
    }


def all_objects(releases: Mapping[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [obj for objects in releases.values() for obj in objects]


@pytest.mark.parametrize("stack", STACKS)
def test_every_release_renders_with_the_real_chart(rendered, stack):
    releases = rendered[stack]
    # Both stacks scale with KEDA; only dev scales to zero, through the HTTP add-on. A load balancer brings its
    # controller.
    extra = {
        "dev": {"keda", "http-add-on"},
        "prod": {"keda"},
        "public-endpoint": {"keda", "http-add-on", "aws-load-balancer-controller"},
    }[stack]
    assert set(releases) == {
        "karpenter-crd",
        "karpenter",
        "kube-prometheus-stack",
        "nvidia-device-plugin",
        "dcgm-exporter",
        *extra,
    }
    assert all(releases.values()), {name: len(objects) for name, objects in releases.items()}


@pytest.mark.parametrize("stack", STACKS)
def test_every_rendered_object_is_valid(rendered, plans, stack):
    plan = plans[stack]
    objects = all_objects(rendered[stack])
    crds = crds_of(objects)
    problems: list[str] = []
    for obj in objects:
        group = obj["apiVersion"].rpartition("/")[0]
        label = f"{obj['kind']} {obj['metadata'].get('name')}"
        if (group, obj["kind"]) in crds:
            problems += [f"{label}: {error}" for error in schema_errors(crds, obj)]
            continue
        try:
            kubernetes_validate.validate(obj, kube_version(plan), strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{label}: {error.message}")
    assert problems == []


def pod_specs(obj: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    path = POD_SPEC_PATHS.get(obj["kind"])
    if path is None:
        return
    node: Any = obj
    for key in path:
        node = node[key]
    yield node


def fargate_runs(selectors: list[Mapping[str, Any]], namespace: str, labels: Mapping[str, str]) -> bool:
    """A pod runs on Fargate when a profile selector names its namespace and its labels include the
    selector's (EKS user guide, fargate-profile)."""
    return any(
        selector["namespace"] == namespace
        and all(labels.get(key) == value for key, value in (selector.get("labels") or {}).items())
        for selector in selectors
    )


def pool(plan: PlanResult, name: str) -> dict[str, Any]:
    [node_pool] = [
        r.inputs
        for r in plan.of_type("kubernetes:karpenter.sh/v1:NodePool")
        if r.name.endswith(f"-{name}-node-pool")
    ]
    return node_pool


def nodes_of(plan: PlanResult) -> dict[str, Node]:
    """A node as each of the plan's NodePools would launch it."""
    gpu = pool(plan, "gpu")
    assert (
        gpu["spec"]["template"]["spec"]["requirements"][0]["values"][0]
        == G6_XLARGE_LABELS["node.kubernetes.io/instance-type"]
    )
    return {
        "gpu": node_from_pool(gpu, G6_XLARGE_LABELS, "ip-10-0-1-10.us-west-2.compute.internal"),
        "system": node_from_pool(
            pool(plan, "system"), M7I_LARGE_LABELS, "ip-10-0-2-20.us-west-2.compute.internal"
        ),
    }


def workloads(
    plan: PlanResult, releases: Mapping[str, list[dict[str, Any]]]
) -> Iterator[tuple[str, str, dict]]:
    """(where from, namespace, object) for every object that makes pods: rendered and the plan's own."""
    for release, objects in releases.items():
        namespace = next(
            r.inputs["namespace"] for r in plan.of_type(HELM_RELEASE) if r.inputs["name"] == release
        )
        for obj in objects:
            if obj["kind"] in POD_SPEC_PATHS:
                yield release, obj["metadata"].get("namespace") or namespace, obj
    for resource in plan.resources:
        if resource.custom and resource.inputs.get("kind") in POD_SPEC_PATHS:
            yield "plan", resource.inputs["metadata"]["namespace"], resource.inputs


@pytest.mark.parametrize("stack", STACKS)
def test_every_pod_has_a_node_pool_or_the_fargate_profile_that_runs_it(rendered, plans, stack):
    plan = plans[stack]
    nodes = nodes_of(plan)
    [cluster] = plan.of_type("eks:index:Cluster")
    selectors = cluster.inputs["fargate"]["selectors"]
    homeless: list[str] = []
    checked = 0
    for source, namespace, obj in workloads(plan, rendered[stack]):
        name = obj["metadata"]["name"]
        for spec in pod_specs(obj):
            checked += 1
            labels = {
                **obj["metadata"].get("labels", {}),
                **(obj["spec"].get("template", {}).get("metadata") or {}).get("labels", {}),
            }
            on_nodes = [pool_name for pool_name, node in nodes.items() if schedulable(spec, node)]
            if obj["kind"] == "DaemonSet":
                # DaemonSets never run on Fargate; they run on every node they schedule on.
                if not on_nodes and name not in RUNS_NOWHERE_BY_DESIGN:
                    homeless.append(f"{source}: DaemonSet {namespace}/{name} fits no node pool")
            elif not on_nodes and not fargate_runs(selectors, namespace, labels):
                homeless.append(f"{source}: {obj['kind']} {namespace}/{name} fits no node pool nor Fargate")
    assert homeless == []
    assert checked >= 12


@pytest.mark.parametrize("stack", STACKS)
def test_the_gpu_agents_cover_the_gpu_pool_and_stay_off_the_system_pool(rendered, plans, stack):
    plan = plans[stack]
    nodes = nodes_of(plan)
    daemonsets = {
        obj["metadata"]["name"]: obj for obj in all_objects(rendered[stack]) if obj["kind"] == "DaemonSet"
    }
    assert set(daemonsets) >= GPU_AGENTS
    for name in GPU_AGENTS:
        [spec] = pod_specs(daemonsets[name])
        assert schedulable(spec, nodes["gpu"]), name
        assert not schedulable(spec, nodes["system"]), name


def test_the_model_server_lands_on_the_gpu_pool_and_karpenter_on_fargate(rendered, dev_plan):
    nodes = nodes_of(dev_plan)
    deployment = dev_plan.named("model-server-deployment")
    [spec] = pod_specs(deployment.inputs)
    assert schedulable(spec, nodes["gpu"]) and not schedulable(spec, nodes["system"])
    [controller] = [o for o in rendered["dev"]["karpenter"] if o["kind"] == "Deployment"]
    [cluster] = dev_plan.of_type("eks:index:Cluster")
    assert fargate_runs(
        cluster.inputs["fargate"]["selectors"],
        "karpenter",
        controller["spec"]["template"]["metadata"]["labels"],
    )


@pytest.mark.parametrize("stack", STACKS)
def test_prometheus_operator_leaves_fargate_out_of_the_kubelet_targets(rendered, stack):
    # The operator lists every node in the kubelet Endpoints; Fargate's kubelets cannot be scraped and would
    # be down targets (TargetDown). --kubelet-selector keeps them out.
    [operator] = [
        o
        for o in rendered[stack]["kube-prometheus-stack"]
        if o["kind"] == "Deployment" and o["metadata"]["name"] == "kube-prometheus-stack-operator"
    ]
    args = operator["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--kubelet-selector=eks.amazonaws.com/compute-type!=fargate" in args


@pytest.mark.parametrize("stack", STACKS)
def test_kube_prometheus_stack_upgrades_its_crds_before_each_upgrade(rendered, stack):
    jobs = [
        o
        for o in rendered[stack]["kube-prometheus-stack"]
        if o["kind"] == "Job" and "crds-upgrade" in o["metadata"]["name"]
    ]
    [job] = jobs
    assert set(job["metadata"]["annotations"]["helm.sh/hook"].split(",")) >= {"pre-install", "pre-upgrade"}
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"karpenter.sh/nodepool": "system"}
    [container] = pod["containers"]
    assert "--server-side" in " ".join(container.get("command", []) + container.get("args", []))
    [unpack] = pod["initContainers"]
    assert unpack["image"] == "public.ecr.aws/docker/library/busybox:1.37.0"


def test_the_load_balancer_controller_renders_as_the_platform_relies_on(rendered, plans):
    objects = rendered["public-endpoint"]["aws-load-balancer-controller"]
    kinds = {(o["kind"], o["metadata"]["name"]) for o in objects}
    # The IRSA role trusts this ServiceAccount by name.
    assert ("ServiceAccount", "aws-load-balancer-controller") in kinds
    # The platform's Service names its class: no webhook intercepts every Service created in the cluster, and no
    # Ingress class or Ingress validation comes with it.
    webhooks = {
        hook["name"]
        for o in objects
        if o["kind"] in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
        for hook in o["webhooks"]
    }
    assert "mservice.elbv2.k8s.aws" not in webhooks and "vingress.elbv2.k8s.aws" not in webhooks
    assert not [o for o in objects if o["kind"] in ("IngressClass", "List")]
    # The CRDs the controller watches install with the chart.
    assert ("CustomResourceDefinition", "targetgroupbindings.elbv2.k8s.aws") in kinds
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    # Region and VPC as flags: the nodes' metadata service answers only the host network (hop limit 1).
    plan = plans["public-endpoint"]
    assert f"--aws-region={plan.config.region}" in container["args"]
    assert "--aws-vpc-id=llm-dev-vpc-id" in container["args"]
    assert "--default-target-type=ip" in container["args"]
    assert deployment["spec"]["replicas"] == 2
    assert ("PodDisruptionBudget", "aws-load-balancer-controller") in kinds
