"""GPU instance types the platform can run models on, with the facts sizing and cost need.

Sources:
- GPU model, count, memory per GPU (MiB, as EC2 DescribeInstanceTypes reports it), vCPU, RAM and the
  node allocatable CPU/memory: Karpenter v1.14 docs, reference/instance-types.md (EC2 data, AL2023 defaults).
- Memory per GPU as torch reports it (MiB; vLLM budgets `gpu_memory_utilization` of this figure): L4
  23,034 (FACTS section 14, an AWS g6); A10G 22,599 (22.07 GiB, vLLM's log on an A10, the same 24 GB board:
  vllm-kv-observations.csv row 6); L40S 45,373 (44.31 GiB, the lowest of the 44.31-44.39 GiB vLLM logs show);
  A100 40GB 40,335 (39.39 GiB, row 5); H100 80GB 81,080 (79.18 GiB, rows 11 and 18).
- Local NVMe instance storage (GB): the EC2 accelerated-computing instance specifications pages.
- Baseline network bandwidth (Mbit/s; "up to" types burst above it for a while): Karpenter v1.14 docs,
  reference/instance-types.md, label karpenter.k8s.aws/instance-network-bandwidth.
- us-west-2 Linux on-demand $/h: skypilot-catalog catalogs/v8/aws/vms.csv (g6.2xlarge and g6e.xlarge from
  Karpenter's zz_generated.pricing_aws.go for us-east-1; every type checked in both regions was equal).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MIB = 1024**2
GIB = 1024**3


@dataclass(frozen=True)
class GpuInstance:
    name: str
    gpu_model: str
    gpu_count: int
    gpu_memory_mib: int
    torch_memory_mib: int
    vcpu: int
    memory_gib: int
    allocatable_cpu_millicores: int
    allocatable_memory_mib: int
    nvme_gb: int
    usd_per_hour: float
    network_mbps: int

    @property
    def family(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def torch_memory_bytes(self) -> int:
        return self.torch_memory_mib * MIB


GPU_INSTANCES: Mapping[str, GpuInstance] = {
    instance.name: instance
    for instance in (
        GpuInstance("g6.xlarge", "NVIDIA L4", 1, 22888, 23034, 4, 16, 3920, 14162, 250, 0.8048, 2500),
        GpuInstance("g6.2xlarge", "NVIDIA L4", 1, 22888, 23034, 8, 32, 7910, 29317, 450, 0.9776, 5000),
        GpuInstance("g6.12xlarge", "NVIDIA L4", 4, 22888, 23034, 48, 192, 47810, 178933, 3760, 4.6016, 40000),
        GpuInstance("g6e.xlarge", "NVIDIA L40S", 1, 45776, 45373, 4, 32, 3920, 29317, 250, 1.861, 2500),
        GpuInstance(
            "g6e.12xlarge", "NVIDIA L40S", 4, 45776, 45373, 48, 384, 47810, 360157, 3800, 10.49264, 100000
        ),
        GpuInstance("g5.xlarge", "NVIDIA A10G", 1, 22888, 22599, 4, 16, 3920, 14162, 250, 1.006, 2500),
        GpuInstance(
            "g5.12xlarge", "NVIDIA A10G", 4, 22888, 22599, 48, 192, 47810, 173400, 3800, 5.672, 40000
        ),
        GpuInstance(
            "p4d.24xlarge",
            "NVIDIA A100 40GB",
            8,
            40960,
            40335,
            96,
            1152,
            95690,
            1082712,
            8000,
            21.95764,
            400000,
        ),
        GpuInstance(
            "p5.48xlarge",
            "NVIDIA H100 80GB",
            8,
            81920,
            81080,
            192,
            2048,
            191450,
            1938410,
            30400,
            55.04,
            3200000,
        ),
    )
}


def family_members(instance: GpuInstance) -> tuple[str, ...]:
    """Catalog types of the same family with the same GPU count, cheapest first (fallback capacity)."""
    return tuple(
        other.name
        for other in sorted(GPU_INSTANCES.values(), key=lambda i: i.usd_per_hour)
        if other.family == instance.family and other.gpu_count == instance.gpu_count
    )


def gpu_instance_types(instance: GpuInstance, family_fallback: bool) -> tuple[str, ...]:
    """The configured type first, then (when allowed) the family's other sizes with the same GPUs."""
    types = [instance.name]
    if family_fallback:
        types += [name for name in family_members(instance) if name != instance.name]
    return tuple(types)


# General-purpose types for the system node pool (Prometheus, Grafana, kube-state-metrics): 2 vCPU / 8 GiB,
# current generations, us-west-2 Linux on-demand $/h from the same skypilot-catalog vms.csv.
SYSTEM_INSTANCE_PRICES: Mapping[str, float] = {
    "m6a.large": 0.0864,
    "m6i.large": 0.096,
    "m7i.large": 0.1008,
    "m7a.large": 0.11592,
}
# The system pool holds at most 4 of those nodes: its Karpenter limit, and the Standard-family vCPU quota it
# can draw on.
SYSTEM_POOL_VCPUS = 8
SYSTEM_POOL_MEMORY_GIB = 32
# Spot first and on-demand when spot has no capacity (Karpenter scheduling.md, "Capacity Type"): monitoring
# restarts in seconds.
SYSTEM_CAPACITY_TYPES = ("spot", "on-demand")
