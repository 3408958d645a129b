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
- Network Load Balancer: $0.0225 per NLB-hour plus $0.006 per NLCU-hour used (AWS Elastic Load Balancing pricing;
  the page's US East (N. Virginia) figures, taken for us-west-2 without confirming them here); an
  internet-facing one also holds a public IPv4 address in each of its subnets, $0.005/h each.
- S3 Standard storage: $0.023 per GB-month for the first 50 TB (Amazon S3 pricing, us-west-2).
- ECR private storage: $0.10 per GB-month (Amazon ECR pricing); data from ECR or S3 to instances in the same
  region through the VPC's S3 gateway endpoint is free, while the NAT gateway charges per GB processed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stacks.catalogs.instances import SYSTEM_INSTANCE_PRICES
from stacks.config import PlatformConfig
from stacks.sizing import weights_bytes
from stacks.startup import IMAGE_COMPRESSED_BYTES

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
S3_USD_PER_GB_MONTH = 0.023
ECR_USD_PER_GB_MONTH = 0.10
NAT_USD_PER_GB = 0.045
NLB_USD_PER_HOUR = 0.0225
NLCU_USD_PER_HOUR = 0.006
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


def gpu_nodes_for(config: PlatformConfig, replicas: int) -> int:
    """GPU nodes that `replicas` replicas occupy (the plan packs replicas_per_node on each)."""
    return math.ceil(replicas / config.serving.replicas_per_node)


def cost_items(config: PlatformConfig, gpu_nodes: int | None = None) -> list[CostItem]:
    """The items of the stack's cost per hour with `gpu_nodes` GPU nodes running; unset, the plan's nodes
    (with autoscaling, those of maxReplicas: the peak)."""
    instance = config.instance
    gpu_nodes = config.serving.nodes if gpu_nodes is None else gpu_nodes
    nat_count = 1 if config.network.nat_gateways == "single" else config.network.az_count
    system_type, system_price = min(SYSTEM_INSTANCE_PRICES.items(), key=lambda item: item[1])
    nodes = gpu_nodes + SYSTEM_NODES
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
            gpu_nodes * instance.usd_per_hour,
            f"{gpu_nodes} x {instance.name} on-demand (${instance.usd_per_hour}/h); spot is cheaper when available",
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
    weights_gb = weights_bytes(config.model) / 1e9
    items.append(
        CostItem(
            "Weights in S3",
            weights_gb * S3_USD_PER_GB_MONTH / HOURS_PER_MONTH,
            f"{weights_gb:.1f} GB of {config.model.id} in S3 Standard",
        )
    )
    if config.llm.image_cached:
        image_gb = IMAGE_COMPRESSED_BYTES / 1e9
        items.append(
            CostItem(
                "vLLM image in ECR",
                image_gb * ECR_USD_PER_GB_MONTH / HOURS_PER_MONTH,
                f"{image_gb:.1f} GB cached from Docker Hub",
            )
        )
    if config.llm.service_type == "LoadBalancer":
        items.append(_load_balancer(config))
    if config.monitoring.persistence:
        items.append(
            CostItem(
                "Prometheus volume",
                _gp3(config.monitoring.storage_gib),
                f"{config.monitoring.storage_gib} GiB gp3",
            )
        )
    return items


def _load_balancer(config: PlatformConfig) -> CostItem:
    """The endpoint's NLB, one node per zone; capacity units (traffic) come on top."""
    detail = f"1 NLB, before capacity units (${NLCU_USD_PER_HOUR} per NLCU-hour)"
    if config.llm.load_balancer_scheme == "internal":
        return CostItem("Network Load Balancer", NLB_USD_PER_HOUR, detail)
    zones = config.network.az_count
    return CostItem(
        "Network Load Balancer",
        NLB_USD_PER_HOUR + zones * PUBLIC_IPV4_USD_PER_HOUR,
        f"{detail}, and {zones} x ${PUBLIC_IPV4_USD_PER_HOUR}/h public IPv4",
    )


def total_usd_per_hour(items: list[CostItem]) -> float:
    return sum(item.usd_per_hour for item in items)


def idle_usd_per_hour(config: PlatformConfig) -> float:
    """With autoscaling, what the stack costs at autoscaling:minReplicas (no GPU node at all when it is 0)."""
    floor = config.scaling.min_replicas if config.scaling is not None else config.serving.replicas
    return total_usd_per_hour(cost_items(config, gpu_nodes_for(config, floor)))


def peak_usd_per_hour(config: PlatformConfig) -> float:
    """At the most replicas the stack runs: llm:replicas, or autoscaling:maxReplicas."""
    return total_usd_per_hour(cost_items(config))


def nat_usd_avoided_per_cold_start(config: PlatformConfig) -> float:
    """NAT gateway data charges a new replica no longer pays: weights from S3 (gateway endpoint) and, when
    cached, the image from ECR, instead of Hugging Face and Docker Hub through the NAT."""
    gb = weights_bytes(config.model) / 1e9 + (IMAGE_COMPRESSED_BYTES / 1e9 if config.llm.image_cached else 0)
    return gb * NAT_USD_PER_GB
