"""The endpoint's NLB: the Service the AWS Load Balancer Controller reads, the NetworkPolicy that must agree with it,
and the controller's release, checked against the controller's own annotation reference."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from components.ingress.manifests import Backend, LoadBalancerSettings, admitted_peers, endpoint_service
from components.ingress.values import SERVICE_ACCOUNT
from selfhost.plan.runner import PlanResult
from tests.variants import CERTIFICATE_ARN, PUBLIC_ENDPOINT

SERVICE = "kubernetes:core/v1:Service"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
PREFIX = "service.beta.kubernetes.io/"
# The annotation names in the first column of the reference's table: [service.beta.kubernetes.io/NAME](#anchor).
TABLE_NAME = re.compile(r"^\|\s*\[service\.beta\.kubernetes\.io/([^\]]+?)\s*\]\(#")
# dev's three public subnets: block 7 of 10.0.0.0/16 cut in eight (10.0.224.0/19), cut in eight /22s again.
DEV_PUBLIC_SUBNETS = ["10.0.224.0/22", "10.0.228.0/22", "10.0.232.0/22"]
# And its private subnets, where nodes and pods are: blocks 0 to 2, /19 each.
DEV_PRIVATE_SUBNETS = ["10.0.0.0/19", "10.0.32.0/19", "10.0.64.0/19"]
BACKEND = Backend("llm", {"app.kubernetes.io/name": "vllm"}, 8000)


def reference_annotations(reference: Path) -> list[re.Pattern[str]]:
    """The documented names as patterns: two are templates, e.g. `listener-attributes.${Protocol}-${Port}`."""
    table = (reference / "aws-load-balancer-controller" / "service-annotations.md").read_text()
    names = {m.group(1) for line in table.splitlines() if (m := TABLE_NAME.match(line))}
    assert len(names) == 48, "the v3.5.0 table names 48 annotations"
    return [re.compile(re.sub(r"\\\$\\\{\w+\\\}", "[A-Za-z0-9]+", re.escape(name))) for name in names]


def settings(certificate: str | None, scheme: str = "internet-facing") -> LoadBalancerSettings:
    return LoadBalancerSettings(
        scheme=scheme,
        certificate_arn=certificate,
        hostname="llm.example.com" if certificate else None,
        client_cidrs=("203.0.113.0/24",),
        node_cidrs=tuple(DEV_PUBLIC_SUBNETS),
        pod_cidrs=tuple(DEV_PRIVATE_SUBNETS),
        idle_timeout_seconds=1463,
    )


def test_with_a_certificate_the_one_listener_is_tls_on_443_to_the_pods_port():
    service = endpoint_service(settings(CERTIFICATE_ARN), BACKEND, "subnet-a,subnet-b")
    annotations = service["metadata"]["annotations"]
    assert annotations[PREFIX + "aws-load-balancer-ssl-cert"] == CERTIFICATE_ARN
    # Only 443 is TLS, and it is the only port: no plain listener opens beside it.
    assert annotations[PREFIX + "aws-load-balancer-ssl-ports"] == "443"
    assert (
        annotations[PREFIX + "aws-load-balancer-ssl-negotiation-policy"]
        == "ELBSecurityPolicy-TLS13-1-2-2021-06"
    )
    assert annotations[PREFIX + "aws-load-balancer-scheme"] == "internet-facing"
    assert annotations[PREFIX + "aws-load-balancer-nlb-target-type"] == "ip"
    assert annotations[PREFIX + "aws-load-balancer-subnets"] == "subnet-a,subnet-b"
    assert (
        annotations[PREFIX + "aws-load-balancer-target-group-attributes"] == "preserve_client_ip.enabled=true"
    )
    spec = service["spec"]
    assert spec["type"] == "LoadBalancer"
    assert spec["loadBalancerClass"] == "service.k8s.aws/nlb"
    assert spec["allocateLoadBalancerNodePorts"] is False
    assert spec["loadBalancerSourceRanges"] == ["203.0.113.0/24"]
    assert spec["ports"] == [{"name": "https", "port": 443, "targetPort": 8000, "protocol": "TCP"}]
    assert spec["selector"] == BACKEND.selector
    assert service["metadata"]["namespace"] == "llm"


def test_without_a_certificate_an_internal_listener_is_plain_on_80():
    service = endpoint_service(settings(None, "internal"), BACKEND, "subnet-a")
    assert not any("ssl" in name for name in service["metadata"]["annotations"])
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 8000, "protocol": "TCP"}]


def test_every_annotation_is_one_the_controller_documents(reference: Path):
    documented = reference_annotations(reference)
    for certificate in (CERTIFICATE_ARN, None):
        annotations = endpoint_service(settings(certificate), BACKEND, "subnet-a")["metadata"]["annotations"]
        assert all(name.startswith(PREFIX) for name in annotations)
        undocumented = [
            name
            for name in annotations
            if not any(pattern.fullmatch(name.removeprefix(PREFIX)) for pattern in documented)
        ]
        assert undocumented == []


def endpoint_of(plan: PlanResult) -> dict[str, Any]:
    [service] = [s.inputs for s in plan.of_type(SERVICE) if s.inputs["spec"].get("type") == "LoadBalancer"]
    return service


def policies_selecting(plan: PlanResult, service: dict[str, Any]) -> list[dict[str, Any]]:
    """The NetworkPolicies in the Service's namespace whose pod selector matches the pods it targets."""
    selected = service["spec"]["selector"]
    return [
        p.inputs
        for p in plan.of_type(NETWORK_POLICY)
        if p.inputs["metadata"]["namespace"] == service["metadata"]["namespace"]
        and p.inputs["spec"]["podSelector"]["matchLabels"].items() <= selected.items()
    ]


def ip_blocks(rule: dict[str, Any]) -> list[str]:
    return [peer["ipBlock"]["cidr"] for peer in rule.get("from", []) if "ipBlock" in peer]


@pytest.fixture(scope="module")
def fixed_replicas_plan(plan_with) -> PlanResult:
    return plan_with({**PUBLIC_ENDPOINT, "autoscaling:enabled": "false"})


@pytest.mark.parametrize("variant", ["scale-to-zero", "fixed-replicas"])
def test_the_network_policy_admits_exactly_the_load_balancers_clients(
    variant: str, public_endpoint_plan: PlanResult, fixed_replicas_plan: PlanResult
):
    plan = {"scale-to-zero": public_endpoint_plan, "fixed-replicas": fixed_replicas_plan}[variant]
    service = endpoint_of(plan)
    [port] = service["spec"]["ports"]
    [policy] = policies_selecting(plan, service)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    serving_rules = [
        r for r in policy["spec"]["ingress"] if {"protocol": "TCP", "port": port["targetPort"]} in r["ports"]
    ]
    [rule] = serving_rules
    # The clients the NLB's security group admits, then the NLB's own subnets (health checks) and no other range.
    assert ip_blocks(rule) == [*service["spec"]["loadBalancerSourceRanges"], *DEV_PUBLIC_SUBNETS]
    other_rules = [r for r in policy["spec"]["ingress"] if r is not rule]
    assert all(ip_blocks(r) == [] for r in other_rules)
    # The subnets the NLB is placed in are the public ones, whose CIDRs these are.
    subnets = service["metadata"]["annotations"][PREFIX + "aws-load-balancer-subnets"]
    assert subnets == ",".join(f"llm-dev-public-{zone}-id" for zone in range(3))
    public = [plan.named(f"llm-dev-public-{zone}").inputs["cidrBlock"] for zone in range(3)]
    assert public == DEV_PUBLIC_SUBNETS
    # And none of them holds a pod: every private subnet, where nodes are, lies outside them.
    private = [
        ipaddress.ip_network(plan.named(f"llm-dev-private-{zone}").inputs["cidrBlock"]) for zone in range(3)
    ]
    assert not any(p.overlaps(ipaddress.ip_network(cidr)) for p in private for cidr in DEV_PUBLIC_SUBNETS)


def test_with_scale_to_zero_the_load_balancer_fronts_the_interceptors(public_endpoint_plan: PlanResult):
    service = endpoint_of(public_endpoint_plan)
    assert service["metadata"]["namespace"] == "keda"
    assert service["spec"]["selector"] == {
        "app.kubernetes.io/component": "interceptor",
        "app.kubernetes.io/name": "http-add-on",
    }
    assert service["spec"]["ports"][0]["targetPort"] == 8080
    # The route the interceptors hold requests on serves any host, so the endpoint's name reaches it.
    [route] = [r.inputs for r in public_endpoint_plan.resources if r.inputs.get("kind") == "InterceptorRoute"]
    assert "hosts" not in route["spec"]


def test_without_scale_to_zero_the_load_balancer_targets_the_model_server(fixed_replicas_plan: PlanResult):
    service = endpoint_of(fixed_replicas_plan)
    deployment = fixed_replicas_plan.named("model-server-deployment").inputs
    assert service["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    [container] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "vllm"]
    assert {
        "name": "http",
        "containerPort": service["spec"]["ports"][0]["targetPort"],
        "protocol": "TCP",
    } in container["ports"]


def test_the_service_is_created_after_the_controller_and_the_controller_after_its_permissions(
    public_endpoint_plan: PlanResult,
):
    service = public_endpoint_plan.named("load-balancer-endpoint-service")
    release = public_endpoint_plan.named("load-balancer-release")
    assert release.name in service.dependencies
    attachment = public_endpoint_plan.named("load-balancer-policy-attachment")
    assert attachment.name in release.dependencies


def test_the_controllers_role_trusts_exactly_its_service_account(public_endpoint_plan: PlanResult):
    role = public_endpoint_plan.named("load-balancer-role").inputs
    [statement] = json.loads(role["assumeRolePolicy"])["Statement"]
    [subject] = [
        value for key, value in statement["Condition"]["StringEquals"].items() if key.endswith(":sub")
    ]
    values = public_endpoint_plan.named("load-balancer-release").inputs
    assert (
        subject == f"system:serviceaccount:{values['namespace']}:{values['values']['serviceAccount']['name']}"
    )
    assert values["values"]["serviceAccount"]["name"] == SERVICE_ACCOUNT


def test_outputs_name_the_https_endpoint(public_endpoint_plan: PlanResult, dev_plan: PlanResult):
    assert public_endpoint_plan.outputs["endpoint_url"] == "https://llm.example.com/v1"
    assert "load_balancer_hostname" in public_endpoint_plan.outputs
    assert dev_plan.outputs["endpoint_url"].startswith("http://")
    assert "load_balancer_hostname" not in dev_plan.outputs


def test_no_load_balancer_no_controller(dev_plan: PlanResult):
    assert not [r for r in dev_plan.resources if r.name.startswith("load-balancer")]


@pytest.mark.parametrize("certificate", [CERTIFICATE_ARN, None])
def test_the_service_is_a_valid_kubernetes_object(certificate: str | None):
    kubernetes_validate.validate(
        endpoint_service(settings(certificate), BACKEND, "subnet-a"), "1.33.0", strict=True
    )


def test_a_client_range_that_holds_the_cluster_leaves_its_pods_out():
    # The VPC's own CIDR (an internal load balancer's default range) holds dev's private subnets, where the pods
    # are: the policy's ipBlock cuts them out, so pods still need llm:clientNamespaces to call the model.
    internal = dataclasses.replace(settings(None, "internal"), client_cidrs=("10.0.0.0/16", "203.0.113.0/24"))
    peers = admitted_peers(internal)
    assert peers == [
        {"ipBlock": {"cidr": "10.0.0.0/16", "except": DEV_PRIVATE_SUBNETS}},
        {"ipBlock": {"cidr": "203.0.113.0/24"}},
        *({"ipBlock": {"cidr": cidr}} for cidr in DEV_PUBLIC_SUBNETS),
    ]
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "vllm", "namespace": "llm"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": peers}]},
    }
    kubernetes_validate.validate(policy, "1.33.0", strict=True)


def test_a_plain_listener_waits_as_long_as_a_request_may_be_held_and_answered():
    service = endpoint_service(settings(None, "internal"), BACKEND, "subnet-a")
    attributes = service["metadata"]["annotations"][PREFIX + "aws-load-balancer-listener-attributes.TCP-80"]
    assert attributes == "tcp.idle_timeout.seconds=1463"
    # A TLS listener's idle timeout is fixed by AWS: no attribute for it.
    tls = endpoint_service(settings(CERTIFICATE_ARN), BACKEND, "subnet-a")["metadata"]["annotations"]
    assert not any("listener-attributes" in name for name in tls)


def test_the_plain_listeners_idle_timeout_covers_the_hold_and_the_wait_for_an_answer(plan_with):
    # dev internal without TLS: held up to 563 s (375 s startup budget x 1.5, rounded up), then up to 900 s for
    # the response headers (the interceptor's responseHeader timeout): 563 + 900 = 1463 s.
    plan = plan_with({"llm:serviceType": "LoadBalancer"})
    annotations = endpoint_of(plan)["metadata"]["annotations"]
    assert (
        annotations[PREFIX + "aws-load-balancer-listener-attributes.TCP-80"]
        == "tcp.idle_timeout.seconds=1463"
    )


def test_the_namespace_of_the_pods_the_nlb_targets_injects_readiness_gates(
    public_endpoint_plan: PlanResult, fixed_replicas_plan: PlanResult, dev_plan: PlanResult
):
    gate = {"elbv2.k8s.aws/pod-readiness-gate-inject": "enabled"}

    def labels(plan: PlanResult, namespace: str) -> dict[str, str]:
        [found] = [
            r.inputs["metadata"].get("labels", {})
            for r in plan.of_type("kubernetes:core/v1:Namespace")
            if r.inputs["metadata"]["name"] == namespace
        ]
        return found

    assert gate.items() <= labels(public_endpoint_plan, "keda").items()
    assert not gate.items() & labels(public_endpoint_plan, "llm").items()
    assert gate.items() <= labels(fixed_replicas_plan, "llm").items()
    assert not gate.items() & labels(dev_plan, "keda").items()
