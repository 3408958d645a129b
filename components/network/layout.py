"""How the VPC is cut: subnet CIDRs per zone, which zones, NAT placement, discovery and cost tags."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from components.cost_tags import cost_tags
from components.karpenter.nodes import DISCOVERY_TAG

# The VPC is cut into eight equal blocks: private subnets take blocks 0..5 (one per zone, at most six
# zones), block 6 stays free for later use, and block 7 is cut into eight public subnets. With the VPC CNI
# every pod takes a VPC address, so the private side gets almost all of the space.
BLOCK_BITS = 3
PUBLIC_BLOCK = 7
PUBLIC_BITS = 3

# Subnet role tags read by the AWS cloud provider and the AWS Load Balancer Controller to place
# internet-facing and internal load balancers (EKS user guide, "Subnet requirements and considerations").
PUBLIC_ELB_TAG = "kubernetes.io/role/elb"
INTERNAL_ELB_TAG = "kubernetes.io/role/internal-elb"
# Zones where EKS refuses a cluster's subnets (EKS user guide, "View Amazon EKS networking requirements for VPC
# and subnets": disallowed Availability Zone IDs). Zone names map to different zone IDs in each account, so
# us-east-1a may be use1-az3 in one account and not in another: the check has to be on the ID.
EKS_UNSUPPORTED_ZONE_IDS = frozenset({"use1-az3", "usw1-az2", "cac1-az3"})


@dataclass(frozen=True)
class ZoneSubnets:
    public: str
    private: str


def subnet_cidrs(vpc_cidr: str, az_count: int) -> list[ZoneSubnets]:
    """The public and private subnet CIDRs of each zone, in zone order."""
    vpc = ipaddress.IPv4Network(vpc_cidr)
    blocks = list(vpc.subnets(prefixlen_diff=BLOCK_BITS))
    if az_count > PUBLIC_BLOCK - 1:
        raise ValueError(f"at most {PUBLIC_BLOCK - 1} zones fit the subnet layout, not {az_count}")
    public = list(blocks[PUBLIC_BLOCK].subnets(prefixlen_diff=PUBLIC_BITS))
    if public[0].prefixlen > 28:
        raise ValueError(
            f"{vpc_cidr} is too small: public subnets would be /{public[0].prefixlen}, smaller than AWS allows (/28)"
        )
    return [ZoneSubnets(public=str(public[zone]), private=str(blocks[zone])) for zone in range(az_count)]


def pick_zones(names: Sequence[str], zone_ids: Sequence[str], az_count: int) -> list[str]:
    """The first `az_count` zones the account can use for EKS, or an error that says how many there are.

    `names` and `zone_ids` are the region's zones in the same order, as the availability zones data source
    returns them."""
    available = [
        name for name, zone_id in zip(names, zone_ids, strict=True) if zone_id not in EKS_UNSUPPORTED_ZONE_IDS
    ]
    if len(available) < az_count:
        raise ValueError(
            f"network:azCount is {az_count} but the region has {len(available)} usable zones: {', '.join(available)}"
        )
    return available[:az_count]


def nat_gateway_count(mode: str, az_count: int) -> int:
    return 1 if mode == "single" else az_count


def nat_gateway_for_zone(mode: str, zone: int) -> int:
    """Which NAT gateway a zone's private subnet routes through: the shared one, or its own zone's."""
    return 0 if mode == "single" else zone


def network_tags(stack: str, name: str) -> dict[str, str]:
    """The tags of every network resource: its console name and the stack's cost tags."""
    return {"Name": name, **cost_tags(stack, component="network")}


def public_subnet_tags(stack: str, name: str, zone: str) -> dict[str, str]:
    return {**network_tags(stack, f"{name}-public-{zone}"), PUBLIC_ELB_TAG: "1"}


def private_subnet_tags(stack: str, name: str, cluster_name: str, zone: str) -> dict[str, str]:
    return {
        **network_tags(stack, f"{name}-private-{zone}"),
        INTERNAL_ELB_TAG: "1",
        DISCOVERY_TAG: cluster_name,
    }
