"""The network: subnet layout by hand calculation, then the VPC as the real program registers it."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest

from components.network.layout import (
    ZoneSubnets,
    nat_gateway_count,
    nat_gateway_for_zone,
    pick_zones,
    private_subnet_tags,
    public_subnet_tags,
    subnet_cidrs,
)
from selfhost.plan.runner import PlanResult, RecordedResource
from stacks.config import ConfigError

SUBNET = "aws:ec2/subnet:Subnet"
NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
ROUTE = "aws:ec2/route:Route"


def test_subnet_layout_of_a_slash_16_over_three_zones():
    # 10.0.0.0/16 in eighths is /19 blocks of 32 in the third octet: 10.0.0.0, 10.0.32.0, 10.0.64.0 are the
    # private subnets of zones 0..2. The last eighth, 10.0.224.0/19, in eighths is /22 blocks of 4 in the
    # third octet: 10.0.224.0, 10.0.228.0, 10.0.232.0 are the public subnets.
    assert subnet_cidrs("10.0.0.0/16", 3) == [
        ZoneSubnets(public="10.0.224.0/22", private="10.0.0.0/19"),
        ZoneSubnets(public="10.0.228.0/22", private="10.0.32.0/19"),
        ZoneSubnets(public="10.0.232.0/22", private="10.0.64.0/19"),
    ]


def test_subnet_layout_of_the_smallest_vpc_over_six_zones():
    # 172.16.0.0/20 spans 172.16.0.0-172.16.15.255. Eighths are /23 (2 in the third octet): privates at
    # 172.16.0, .2, .4, .6, .8, .10; the last eighth 172.16.14.0/23 in eighths is /26 (64 addresses):
    # publics at 172.16.14.0, .64, .128, .192, then 172.16.15.0 and 172.16.15.64.
    layout = subnet_cidrs("172.16.0.0/20", 6)
    assert [zone.private for zone in layout] == [f"172.16.{octet}.0/23" for octet in (0, 2, 4, 6, 8, 10)]
    assert [zone.public for zone in layout] == [
        "172.16.14.0/26",
        "172.16.14.64/26",
        "172.16.14.128/26",
        "172.16.14.192/26",
        "172.16.15.0/26",
        "172.16.15.64/26",
    ]


@pytest.mark.parametrize("vpc", ["10.0.0.0/16", "10.20.0.0/18", "192.168.16.0/20"])
@pytest.mark.parametrize("zones", [2, 3, 4, 5, 6])
def test_subnets_lie_inside_the_vpc_and_never_overlap(vpc: str, zones: int):
    network = ipaddress.IPv4Network(vpc)
    subnets = [
        ipaddress.IPv4Network(c) for zone in subnet_cidrs(vpc, zones) for c in (zone.public, zone.private)
    ]
    assert len(subnets) == 2 * zones
    assert all(subnet.subnet_of(network) for subnet in subnets)
    assert all(not a.overlaps(b) for i, a in enumerate(subnets) for b in subnets[i + 1 :])
    assert all(subnet.prefixlen <= 28 for subnet in subnets), "AWS subnets are /28 or larger"


def test_more_zones_than_the_layout_holds_is_an_error():
    with pytest.raises(ValueError, match="at most 6 zones"):
        subnet_cidrs("10.0.0.0/16", 7)


def test_a_vpc_too_small_for_slash_28_public_subnets_is_an_error():
    # /23 -> eighths are /26 -> the last eighth in eighths is /29, below AWS's /28 minimum.
    with pytest.raises(ValueError, match=r"would be /29"):
        subnet_cidrs("10.0.0.0/23", 2)


def test_zones_are_the_first_usable_ones_and_too_few_is_an_error():
    zones = ["us-west-2a", "us-west-2b", "us-west-2c", "us-west-2d"]
    ids = ["usw2-az2", "usw2-az1", "usw2-az3", "usw2-az4"]
    assert pick_zones(zones, ids, 3) == ["us-west-2a", "us-west-2b", "us-west-2c"]
    with pytest.raises(ValueError, match="azCount is 3 but the region has 2 usable zones"):
        pick_zones(["eu-south-2a", "eu-south-2b"], ["eus2-az1", "eus2-az2"], 3)


def test_zones_where_eks_refuses_cluster_subnets_are_skipped_by_zone_id():
    # The EKS user guide's disallowed zone IDs: use1-az3 (us-east-1), usw1-az2 (us-west-1), cac1-az3
    # (ca-central-1). In this account us-east-1a is use1-az3, so the three zones are b, c and d.
    zones = ["us-east-1a", "us-east-1b", "us-east-1c", "us-east-1d", "us-east-1e", "us-east-1f"]
    ids = ["use1-az3", "use1-az1", "use1-az2", "use1-az4", "use1-az5", "use1-az6"]
    assert pick_zones(zones, ids, 3) == ["us-east-1b", "us-east-1c", "us-east-1d"]
    # An account whose us-west-1b is usw1-az2 has two zones left for the cluster.
    west = ["us-west-1a", "us-west-1b", "us-west-1c"]
    with pytest.raises(
        ValueError, match="azCount is 3 but the region has 2 usable zones: us-west-1a, us-west-1c"
    ):
        pick_zones(west, ["usw1-az1", "usw1-az2", "usw1-az3"], 3)
    canada = ["ca-central-1a", "ca-central-1b", "ca-central-1d"]
    assert pick_zones(canada, ["cac1-az3", "cac1-az1", "cac1-az4"], 2) == ["ca-central-1b", "ca-central-1d"]


def test_nat_gateways_single_or_one_per_zone():
    assert nat_gateway_count("single", 3) == 1
    assert [nat_gateway_for_zone("single", zone) for zone in range(3)] == [0, 0, 0]
    assert nat_gateway_count("perAz", 3) == 3
    assert [nat_gateway_for_zone("perAz", zone) for zone in range(3)] == [0, 1, 2]


def test_subnet_tags_for_load_balancers_karpenter_and_cost_allocation():
    assert public_subnet_tags("dev", "llm-dev", "us-west-2a") == {
        "Name": "llm-dev-public-us-west-2a",
        "selfhost:stack": "dev",
        "selfhost:component": "network",
        "kubernetes.io/role/elb": "1",
    }
    assert private_subnet_tags("dev", "llm-dev", "llm-dev", "us-west-2a") == {
        "Name": "llm-dev-private-us-west-2a",
        "selfhost:stack": "dev",
        "selfhost:component": "network",
        "kubernetes.io/role/internal-elb": "1",
        "karpenter.sh/discovery": "llm-dev",
    }


def by_name(plan: PlanResult, type_: str, prefix: str) -> list[RecordedResource]:
    """Resources of a type whose names start with prefix, in name order (registration order varies)."""
    return sorted((r for r in plan.of_type(type_) if r.name.startswith(prefix)), key=lambda r: r.name)


def subnets(plan: PlanResult, tier: str) -> list[dict]:
    return [r.inputs for r in by_name(plan, SUBNET, f"llm-{plan.stack}-{tier}-")]


def test_dev_vpc_has_public_and_private_subnets_in_three_zones(dev_plan: PlanResult):
    vpc = dev_plan.named("llm-dev-vpc")
    assert vpc.parent == "network"
    assert vpc.inputs["cidrBlock"] == "10.0.0.0/16"
    assert vpc.inputs["enableDnsHostnames"] is True and vpc.inputs["enableDnsSupport"] is True
    public, private = subnets(dev_plan, "public"), subnets(dev_plan, "private")
    # The mocks offer us-west-2a..d; network:azCount 3 takes the first three.
    zones = ["us-west-2a", "us-west-2b", "us-west-2c"]
    assert [s["availabilityZone"] for s in public] == zones
    assert [s["availabilityZone"] for s in private] == zones
    assert [s["cidrBlock"] for s in private] == ["10.0.0.0/19", "10.0.32.0/19", "10.0.64.0/19"]
    assert all(s["tags"]["kubernetes.io/role/elb"] == "1" for s in public)
    assert all(s["mapPublicIpOnLaunch"] is False for s in public)
    assert all(s["tags"]["kubernetes.io/role/internal-elb"] == "1" for s in private)
    assert all(s["tags"]["karpenter.sh/discovery"] == "llm-dev" for s in private)
    assert not any("karpenter.sh/discovery" in s["tags"] for s in public), (
        "nodes must not land in public subnets"
    )


@pytest.mark.parametrize(("stack_plan", "expected"), [("dev_plan", 1), ("prod_plan", 3)])
def test_nat_gateways_per_mode(stack_plan: str, expected: int, request: pytest.FixtureRequest):
    # dev: natGateways single -> 1; prod: perAz over network:azCount 3 -> 3.
    plan: PlanResult = request.getfixturevalue(stack_plan)
    gateways = by_name(plan, NAT_GATEWAY, f"llm-{plan.stack}-nat-")
    assert len(gateways) == expected
    assert len(plan.of_type("aws:ec2/eip:Eip")) == expected
    public_ids = [f"llm-{plan.stack}-public-{zone}-id" for zone in range(3)]
    assert [g.inputs["subnetId"] for g in gateways] == public_ids[:expected]
    private_defaults = by_name(plan, ROUTE, f"llm-{plan.stack}-private-")
    nat_ids = [f"llm-{plan.stack}-nat-{index}-id" for index in range(expected)]
    assert [r.inputs["natGatewayId"] for r in private_defaults] == [
        nat_ids[min(z, expected - 1)] for z in range(3)
    ]
    assert all(r.inputs["destinationCidrBlock"] == "0.0.0.0/0" for r in private_defaults)


def test_public_subnets_route_to_the_internet_gateway(dev_plan: PlanResult):
    route = dev_plan.named("llm-dev-public-default")
    assert route.inputs["gatewayId"] == "llm-dev-igw-id"
    assert route.inputs["destinationCidrBlock"] == "0.0.0.0/0"
    associations = [r.inputs for r in dev_plan.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")]
    assert {a["subnetId"]: a["routeTableId"] for a in associations} == {
        **{f"llm-dev-public-{zone}-id": "llm-dev-public-rt-id" for zone in range(3)},
        **{f"llm-dev-private-{zone}-id": f"llm-dev-private-{zone}-rt-id" for zone in range(3)},
    }


def test_s3_gateway_endpoint_serves_the_private_route_tables(dev_plan: PlanResult):
    endpoint = dev_plan.named("llm-dev-s3")
    assert endpoint.inputs["vpcEndpointType"] == "Gateway"
    assert endpoint.inputs["serviceName"] == "com.amazonaws.us-west-2.s3"
    assert endpoint.inputs["routeTableIds"] == [f"llm-dev-private-{zone}-rt-id" for zone in range(3)]


def test_network_outputs_are_exported(dev_plan: PlanResult):
    assert dev_plan.outputs["vpc_id"] == "llm-dev-vpc-id"
    assert dev_plan.outputs["public_subnet_ids"] == [f"llm-dev-public-{zone}-id" for zone in range(3)]
    assert dev_plan.outputs["private_subnet_ids"] == [f"llm-dev-private-{zone}-id" for zone in range(3)]


def test_az_count_and_cidr_come_from_config(plan_with: Callable[..., PlanResult]):
    plan = plan_with({"network:azCount": "2", "network:cidr": "10.8.0.0/18"})
    private = subnets(plan, "private")
    # 10.8.0.0/18 in eighths is /21 blocks of 8 in the third octet: 10.8.0.0/21 and 10.8.8.0/21.
    assert [s["cidrBlock"] for s in private] == ["10.8.0.0/21", "10.8.8.0/21"]
    assert [s["availabilityZone"] for s in private] == ["us-west-2a", "us-west-2b"]


def test_vpcs_smaller_than_slash_20_are_rejected(plan_with: Callable[..., PlanResult]):
    # A /21 would leave /24 private subnets (251 addresses, one per pod) and /27 public ones.
    with pytest.raises(ConfigError, match=r"network:cidr: '10\.0\.0\.0/21'.*/16 to /20"):
        plan_with({"network:cidr": "10.0.0.0/21"})
