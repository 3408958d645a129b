"""What the stack costs per hour while it serves, item by item (us-west-2 on-demand list prices).

Sources:
- EKS control plane: $0.10/h in standard support, $0.60/h in extended support (AWS Containers blog,
  "Amazon EKS extended support for Kubernetes versions pricing").
- NAT gateway: $0.045/h plus $0.045/GB processed in US West (Oregon) (AWS VPC pricing), and its Elastic IP
  $0.005/h like every public IPv4 address since February 2024 (AWS News Blog, "New AWS Public IPv4 Address
  Charge").
- Fargate Linux/x86: $0.04048 per vCPU-hour, $0.004445 per GB-hour; each pod gets its request plus
  256 MB, rounded up to the next Fargate size (EKS user guide, fargate-pod-configuration).
- EBS gp3: $0.08 per GB-month (AWS EBS pricing, us-west-2), 730 hours a month.
- KMS customer managed key: $1 per key-month.
"""

from __future__ import annotations

from dataclasses import dataclass

from stacks.catalogs.instances import SYSTEM_INSTANCE_PRICES
from stacks.config import PlatformConfig

# Every price in the catalogs and here is a us-west-2 list price.
PRICE_REGION = "us-west-2"
HOURS_PER_MONTH = 730
EKS_USD_PER_HOUR = {"STANDARD": 0.10, "EXTENDED": 0.60}
NAT_USD_PER_HOUR = 0.045
PUBLIC_IPV4_USD_PER_HOUR = 0.005
FARGATE_USD_PER_VCPU_HOUR = 0.04048
FARGATE_USD_PER_GB_HOUR = 0.004445
GP3_USD_PER_GB_MONTH = 0.08
KMS_USD_PER_KEY_MONTH = 1.0
# Karpenter's chart runs 2 replicas; at 1 vCPU / 1 GiB requests Fargate bills 1 vCPU / 2 GB each.
KARPENTER_FARGATE = (2, 1.0, 2.0)
# CoreDNS (EKS add-on, 2 replicas, 100m / 70Mi requests) lands on the smallest size, 0.25 vCPU / 0.5 GB.
COREDNS_FARGATE = (2, 0.25, 0.5)
SYSTEM_NODES = 1


@dataclass(frozen=True)
class CostItem:
    name: str
    usd_per_hour: float
    detail: str


def _fargate(pods: int, vcpu: float, gb: float) -> float:
    return pods * (vcpu * FARGATE_USD_PER_VCPU_HOUR + gb * FARGATE_USD_PER_GB_HOUR)


def _gp3(gib: int) -> float:
    return gib * GP3_USD_PER_GB_MONTH / HOURS_PER_MONTH


def cost_items(config: PlatformConfig) -> list[CostItem]:
    plan = config.serving
    instance = config.instance
    nat_count = 1 if config.network.nat_gateways == "single" else config.network.az_count
    system_type, system_price = min(SYSTEM_INSTANCE_PRICES.items(), key=lambda item: item[1])
    nodes = plan.nodes + SYSTEM_NODES
    items = [
        CostItem(
            "EKS control plane",
            EKS_USD_PER_HOUR[config.cluster.support_type],
            f"{config.cluster.support_type.lower()} support",
        ),
        CostItem(
            "NAT gateways",
            nat_count * (NAT_USD_PER_HOUR + PUBLIC_IPV4_USD_PER_HOUR),
            f"{nat_count} x (${NAT_USD_PER_HOUR}/h + ${PUBLIC_IPV4_USD_PER_HOUR}/h public IPv4), before data",
        ),
        CostItem(
            "GPU nodes",
            plan.nodes * instance.usd_per_hour,
            f"{plan.nodes} x {instance.name} on-demand (${instance.usd_per_hour}/h); spot is cheaper when available",
        ),
        CostItem(
            "System node",
            SYSTEM_NODES * system_price,
            f"{SYSTEM_NODES} x {system_type} on-demand, the cheapest system pool type",
        ),
        CostItem("Karpenter on Fargate", _fargate(*KARPENTER_FARGATE), "2 pods x 1 vCPU / 2 GB"),
        CostItem("CoreDNS on Fargate", _fargate(*COREDNS_FARGATE), "2 pods x 0.25 vCPU / 0.5 GB"),
        CostItem(
            "Node root volumes",
            nodes * _gp3(config.cluster.node_root_volume_gib),
            f"{nodes} x {config.cluster.node_root_volume_gib} GiB gp3",
        ),
        CostItem("KMS key", KMS_USD_PER_KEY_MONTH / HOURS_PER_MONTH, "EKS secrets encryption"),
    ]
    if config.monitoring.persistence:
        items.append(
            CostItem(
                "Prometheus volume",
                _gp3(config.monitoring.storage_gib),
                f"{config.monitoring.storage_gib} GiB gp3",
            )
        )
    return items


def total_usd_per_hour(items: list[CostItem]) -> float:
    return sum(item.usd_per_hour for item in items)
