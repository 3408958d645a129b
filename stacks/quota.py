"""The EC2 vCPU quotas a stack draws on, and how much of each its node pools may use at once.

EC2 limits running instances per family group in vCPUs, per region, separately for on-demand and spot (EC2
user guide, "Amazon EC2 service quotas" and "Spot Instance quotas"); new accounts start the GPU groups at 0.
A rollout or a drift replacement launches the new GPU node before draining the old one, which is why the GPU
pool's limit has room for one spare node: the quota has to cover that spare too. With both capacity types
allowed, Karpenter may launch all of it on either, so each quota must cover the whole.

Quota codes are given where they are stable and well known; names are what the Service Quotas console and
`aws service-quotas list-service-quotas --service-code ec2` show.
"""

from __future__ import annotations

from dataclasses import dataclass

from stacks.catalogs.instances import (
    GPU_INSTANCES,
    SYSTEM_CAPACITY_TYPES,
    SYSTEM_POOL_VCPUS,
    GpuInstance,
    gpu_instance_types,
)

# (instance family prefix, capacity type) -> (quota name, quota code or None)
_GPU_QUOTAS: dict[tuple[str, str], tuple[str, str | None]] = {
    ("g", "on-demand"): ("Running On-Demand G and VT instances", "L-DB2E81BA"),
    ("g", "spot"): ("All G and VT Spot Instance Requests", "L-3819A6DF"),
    ("p4", "on-demand"): ("Running On-Demand P instances", "L-417A185B"),
    ("p4", "spot"): ("All P4, P3 and P2 Spot Instance Requests", None),
    ("p5", "on-demand"): ("Running On-Demand P instances", "L-417A185B"),
    ("p5", "spot"): ("All P5 Spot Instance Requests", None),
}
_STANDARD_QUOTAS = {
    "on-demand": ("Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances", "L-1216C47A"),
    "spot": ("All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests", "L-34B43A08"),
}


@dataclass(frozen=True)
class QuotaNeed:
    quota: str
    code: str | None
    capacity_type: str
    vcpus: int
    why: str


def _gpu_group(instance: GpuInstance) -> str:
    family = instance.family
    return "g" if family.startswith("g") else family[:2]


def quota_needs(
    instance: GpuInstance, capacity_types: tuple[str, ...], gpu_limit: int, family_fallback: bool = False
) -> list[QuotaNeed]:
    """vCPUs each quota must allow: the GPU pool at its limit (the plan's nodes plus the spare) and the
    system pool at its limit. With the family fallback the pool may launch any of the family's sizes with the
    same GPUs, and its limit counts GPUs only: each node may be the widest of them."""
    gpu_nodes = gpu_limit // instance.gpu_count
    launchable = [GPU_INSTANCES[name] for name in gpu_instance_types(instance, family_fallback)]
    widest = max(launchable, key=lambda each: each.vcpu)
    as_what = (
        f"{widest.name} ({widest.vcpu} vCPUs), the widest type the pool may launch"
        if widest.name != instance.name
        else f"{instance.name} ({instance.vcpu} vCPUs)"
    )
    needs = [
        QuotaNeed(
            *_GPU_QUOTAS[(_gpu_group(instance), capacity_type)],
            capacity_type=capacity_type,
            vcpus=gpu_nodes * widest.vcpu,
            why=f"{gpu_nodes} x {as_what}: the plan's nodes and one spare for rollouts",
        )
        for capacity_type in capacity_types
        if gpu_nodes
    ]
    needs += [
        QuotaNeed(
            *_STANDARD_QUOTAS[capacity_type],
            capacity_type=capacity_type,
            vcpus=SYSTEM_POOL_VCPUS,
            why="the system pool's limit (monitoring)",
        )
        for capacity_type in SYSTEM_CAPACITY_TYPES
    ]
    return needs


def check_command(need: QuotaNeed, region: str) -> str:
    """The AWS CLI command that prints the account's value of a quota, by name."""
    return (
        f"aws service-quotas list-service-quotas --service-code ec2 --region {region} "
        f"--query \"Quotas[?QuotaName=='{need.quota}'].Value\""
    )
