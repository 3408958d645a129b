"""One cost-allocation convention (components/cost_tags.py) on every AWS resource the program registers: each one
whose pulumi_aws class takes `tags` carries `selfhost:stack` and the `selfhost:component` of the component that
owns it, and pulumi-eks tags what it creates with the same."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from functools import cache

import pytest

from components.cost_tags import STACK_TAG, cost_tags
from selfhost.plan.runner import PlanResult, RecordedResource
from tests.variants import DOCKER_HUB_CREDENTIALS

COMPONENT_TAG = "selfhost:component"
EKS = "eks:index:Cluster"
# The `selfhost:component` value of each component's AWS resources, by the component's resource name.
COMPONENT_OF_PARENT = {
    "network": "network",
    "cluster": "cluster",
    "karpenter": "karpenter",
    "monitoring": "monitoring",
    "model-weights": "weights",
    "load-balancer": "load-balancer",
}


@cache
def aws_class(type_token: str) -> type:
    """The pulumi_aws class of a type token: aws:ec2/vpc:Vpc is pulumi_aws.ec2.Vpc (aws:index/... the top level).
    An unknown token fails the test rather than leaving its resource unchecked."""
    _, module_and_file, class_name = type_token.split(":")
    module = module_and_file.split("/")[0]
    package = importlib.import_module("pulumi_aws" if module == "index" else f"pulumi_aws.{module}")
    return getattr(package, class_name)


@cache
def takes_tags(type_token: str) -> bool:
    return "tags" in inspect.signature(aws_class(type_token)._internal_init).parameters


def taggable(plan: PlanResult) -> list[RecordedResource]:
    """The plan's AWS resources whose class takes `tags`. aws:ec2/tag:Tag is not one of them: it sets one tag on
    a resource the program does not own (the EKS-managed security group), whose other tags it leaves alone."""
    return [r for r in plan.resources if r.custom and r.type.startswith("aws:") and takes_tags(r.type)]


@pytest.fixture(scope="module")
def image_cache_plan(plan_with: Callable[..., PlanResult]) -> PlanResult:
    return plan_with({"llm:dockerHubCredentialsArn": DOCKER_HUB_CREDENTIALS})


PLANS = ["dev_plan", "prod_plan", "public_endpoint_plan", "image_cache_plan"]


def test_the_type_lookup_finds_classes_with_and_without_tags():
    assert aws_class("aws:ec2/vpc:Vpc").__name__ == "Vpc" and takes_tags("aws:ec2/vpc:Vpc")
    assert takes_tags("aws:iam/policy:Policy") and takes_tags(
        "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
    )
    assert not takes_tags("aws:ec2/tag:Tag") and not takes_tags("aws:ec2/route:Route")


@pytest.mark.parametrize("stack_plan", PLANS)
def test_every_taggable_aws_resource_carries_the_stack_tag(stack_plan: str, request: pytest.FixtureRequest):
    plan: PlanResult = request.getfixturevalue(stack_plan)
    resources = taggable(plan)
    # The lookup must have found something: the VPC, its subnets, routing, the cluster's key and roles...
    assert len(resources) >= 25, [r.type for r in resources]
    untagged = {
        r.name: r.inputs.get("tags")
        for r in resources
        if (r.inputs.get("tags") or {}).get(STACK_TAG) != plan.stack
    }
    assert not untagged


@pytest.mark.parametrize("stack_plan", PLANS)
def test_the_component_tag_names_the_component_that_owns_the_resource(
    stack_plan: str, request: pytest.FixtureRequest
):
    plan: PlanResult = request.getfixturevalue(stack_plan)
    wrong = {
        r.name: (r.parent, (r.inputs.get("tags") or {}).get(COMPONENT_TAG))
        for r in taggable(plan)
        if (r.inputs.get("tags") or {}).get(COMPONENT_TAG) != COMPONENT_OF_PARENT.get(r.parent or "")
    }
    assert not wrong


@pytest.mark.parametrize("stack_plan", ["dev_plan", "prod_plan"])
def test_pulumi_eks_tags_the_cluster_and_what_it_creates(stack_plan: str, request: pytest.FixtureRequest):
    plan: PlanResult = request.getfixturevalue(stack_plan)
    [cluster] = plan.of_type(EKS)
    # pulumi-eks puts `tags` on the cluster and on the add-ons and roles it creates; `cluster_tags` would reach
    # the cluster only.
    assert cluster.inputs["tags"] == cost_tags(plan.stack, component="cluster")


def test_names_stay_beside_the_cost_tags(dev_plan: PlanResult):
    vpc = dev_plan.named("llm-dev-vpc")
    assert vpc.inputs["tags"] == {"Name": "llm-dev", **cost_tags("dev", component="network")}
    subnet = dev_plan.named("llm-dev-private-0")
    assert subnet.inputs["tags"]["Name"] == "llm-dev-private-us-west-2a"
    assert subnet.inputs["tags"]["karpenter.sh/discovery"] == "llm-dev"
