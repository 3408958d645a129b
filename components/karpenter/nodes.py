"""Karpenter's node classes and node pools, as plain dicts, and the labels and taints workloads use to pick
a pool.

Field names and allowed values: the v1.14.1 CRDs (karpenter.sh_nodepools.yaml,
karpenter.k8s.aws_ec2nodeclasses.yaml) in aws/karpenter-provider-aws at tag v1.14.1. Behaviour notes cite the
v1.14 docs (website/content/en/v1.14/concepts/*.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.cost_tags import cost_tags
from stacks.catalogs.instances import (
    SYSTEM_CAPACITY_TYPES,
    SYSTEM_INSTANCE_PRICES,
    SYSTEM_POOL_MEMORY_GIB,
    SYSTEM_POOL_VCPUS,
)

Manifest = dict[str, Any]

NODE_POOL_API = "karpenter.sh/v1"
NODE_CLASS_API = "karpenter.k8s.aws/v1"
NODE_CLASS_GROUP = "karpenter.k8s.aws"

GPU_POOL = "gpu"
SYSTEM_POOL = "system"
POOL_LABEL = "selfhost/pool"
# Karpenter labels every node with the NodePool that launched it; workloads pick a pool by this label.
NODE_POOL_LABEL = "karpenter.sh/nodepool"
# Karpenter's EC2NodeClass selects subnets and security groups by this tag (Karpenter getting-started guide).
DISCOVERY_TAG = "karpenter.sh/discovery"
# The NVIDIA device plugin's default node affinity matches this label (among NFD labels that Karpenter
# nodes lack); without it the plugin never runs and Karpenter never sees the GPU node initialised.
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
# The extended resource the device plugin advertises; also the key of the GPU pool's taint.
GPU_RESOURCE = "nvidia.com/gpu"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "true", "effect": "NoSchedule"}

# AL2023's root device (docs: nodeclasses.md, blockDeviceMappings defaults).
ROOT_DEVICE = "/dev/xvda"
# System nodes are recycled after 30 days (the CRD default, stated so the choice is visible): a fresh node
# picks up the node class's current AMI and clears whatever a long-lived host accumulates.
SYSTEM_EXPIRE_AFTER = "720h"
# GPU nodes never expire on a timer. Expiration is forceful: it ignores the pool's disruption budgets and
# launches no replacement first (v1.14 concepts/disruption.md, "Expiration"), so it would drain the only
# replica at a random hour. GPU nodes are recycled by drift instead (a new AMI or node class change), which
# honours the budgets: one node at a time, never in business hours.
GPU_EXPIRE_AFTER = "Never"
# Longer than Prometheus' own termination grace (600 s, the prometheus-operator default), shorter than the time
# Pulumi waits for a node class to be deleted (NODE_CLASS_DELETE_TIMEOUT in the component).
SYSTEM_TERMINATION_GRACE_PERIOD = "15m"
# Upper bound of the system pool: 4 nodes of the 2 vCPU / 8 GiB types it may use.
SYSTEM_POOL_LIMITS = {"cpu": str(SYSTEM_POOL_VCPUS), "memory": f"{SYSTEM_POOL_MEMORY_GIB}Gi"}


@dataclass(frozen=True)
class NodeSettings:
    """What the node classes and pools of one stack are built from."""

    stack: str
    ami_alias: str
    root_volume_gib: int
    gpu_instance_types: tuple[str, ...]
    capacity_types: tuple[str, ...]
    # nvidia.com/gpu the GPU pool may hold at once (the serving plan's GPUs plus a spare node's).
    gpu_limit: int


def gpu_taint_tolerations() -> list[dict[str, str]]:
    """Tolerate the GPU NodePool's taint (nvidia.com/gpu=true:NoSchedule) whatever its value."""
    return [{"key": GPU_TAINT["key"], "operator": "Exists", "effect": GPU_TAINT["effect"]}]


def _node_class(
    name: str,
    cluster_name: str,
    role_name: str,
    nodes: NodeSettings,
    tags: dict[str, str],
    local_nvme: bool,
) -> Manifest:
    spec: dict[str, Any] = {
        # An alias picks the EKS-optimized AMI variant per instance: AL2023 NVIDIA for GPU types, standard
        # otherwise (amifamily/al2023.go). Pinned in production, since `latest` drifts on every release.
        "amiSelectorTerms": [{"alias": nodes.ami_alias}],
        "role": role_name,
        "subnetSelectorTerms": [{"tags": {DISCOVERY_TAG: cluster_name}}],
        "securityGroupSelectorTerms": [{"tags": {DISCOVERY_TAG: cluster_name}}],
        "blockDeviceMappings": [
            {
                "deviceName": ROOT_DEVICE,
                "ebs": {
                    "volumeSize": f"{nodes.root_volume_gib}Gi",
                    "volumeType": "gp3",
                    "encrypted": True,
                    "deleteOnTermination": True,
                },
            }
        ],
        # IMDSv2 only, and a hop limit of 1 so that containers in the pod network cannot reach the instance
        # metadata service and borrow the node role (which can manage ENIs and pull every ECR image).
        # Pods that need AWS use IRSA. Node agents that read metadata (VPC CNI, kube-proxy) use the host
        # network and are one hop away; the NVIDIA device plugin, DCGM exporter and vLLM do not use it.
        "metadataOptions": {
            "httpEndpoint": "enabled",
            "httpProtocolIPv6": "disabled",
            "httpTokens": "required",
            "httpPutResponseHopLimit": 1,
        },
        "tags": tags,
    }
    if local_nvme:
        # The instance-store NVMe becomes a RAID0 array that holds kubelet and containerd data (images,
        # emptyDir, the model cache), and allocatable ephemeral storage becomes its size
        # (nodeclasses.md, instanceStorePolicy). The EBS root volume then only carries the OS.
        spec["instanceStorePolicy"] = "RAID0"
    return {"apiVersion": NODE_CLASS_API, "kind": "EC2NodeClass", "metadata": {"name": name}, "spec": spec}


def gpu_node_class(nodes: NodeSettings, cluster_name: str, role_name: str) -> Manifest:
    # Nothing about the model is in the node class: any change to its spec, tags included, drifts every GPU
    # node, which would replace them while the model's Deployment rolls. Cost per model comes from the pods'
    # `selfhost/model` label instead. Every GPU type in the catalog has local NVMe (nvme_gb in the catalog).
    return _node_class(
        GPU_POOL, cluster_name, role_name, nodes, cost_tags(nodes.stack, pool=GPU_POOL), local_nvme=True
    )


def system_node_class(nodes: NodeSettings, cluster_name: str, role_name: str) -> Manifest:
    # The system pool's types (m6a/m6i/m7i/m7a .large) have no instance store.
    return _node_class(
        SYSTEM_POOL, cluster_name, role_name, nodes, cost_tags(nodes.stack, pool=SYSTEM_POOL), False
    )


def _node_class_ref(name: str) -> dict[str, str]:
    return {"group": NODE_CLASS_GROUP, "kind": "EC2NodeClass", "name": name}


def gpu_node_pool(nodes: NodeSettings) -> Manifest:
    return {
        "apiVersion": NODE_POOL_API,
        "kind": "NodePool",
        "metadata": {"name": GPU_POOL},
        "spec": {
            "template": {
                "metadata": {"labels": {GPU_PRESENT_LABEL: "true", POOL_LABEL: GPU_POOL}},
                "spec": {
                    "nodeClassRef": _node_class_ref(GPU_POOL),
                    "requirements": [
                        {
                            "key": "node.kubernetes.io/instance-type",
                            "operator": "In",
                            "values": list(nodes.gpu_instance_types),
                        },
                        {
                            "key": "karpenter.sh/capacity-type",
                            "operator": "In",
                            "values": list(nodes.capacity_types),
                        },
                        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                    ],
                    # Only pods that tolerate the taint (the model server, GPU agents) land here.
                    "taints": [GPU_TAINT],
                    "expireAfter": GPU_EXPIRE_AFTER,
                },
            },
            # The serving plan's GPUs plus one spare node's, so a replacement can start before a node is
            # drained (stacks/sizing.py; stacks/config/__init__.py keeps it within llm:maxGpus). 0 when llm:replicas
            # is 0: no GPU node can be bought while the model is parked.
            "limits": {GPU_RESOURCE: nodes.gpu_limit},
            "disruption": {
                # A GPU node goes only once no model replica runs on it. Underutilization-driven moves
                # would restart a replica elsewhere and pay another multi-minute model load for a small
                # saving, so they are not allowed.
                "consolidationPolicy": "WhenEmpty",
                # Long enough that a replica being rescheduled (a rollout, a crash loop) finds the node
                # still there instead of waiting for a new one and another image pull.
                "consolidateAfter": "10m",
                "budgets": [
                    # At most one GPU node is taken away at a time, so at most one replica reloads.
                    {"nodes": "1"},
                    # No replacement for drift (a new AMI or node class change) during business hours,
                    # 08:00-18:00 UTC on weekdays (schedules are UTC); empty nodes still go.
                    {"nodes": "0", "reasons": ["Drifted"], "schedule": "0 8 * * mon-fri", "duration": "10h"},
                ],
            },
        },
    }


def system_node_pool() -> Manifest:
    return {
        "apiVersion": NODE_POOL_API,
        "kind": "NodePool",
        "metadata": {"name": SYSTEM_POOL},
        "spec": {
            "template": {
                "metadata": {"labels": {POOL_LABEL: SYSTEM_POOL}},
                "spec": {
                    "nodeClassRef": _node_class_ref(SYSTEM_POOL),
                    "requirements": [
                        {
                            "key": "node.kubernetes.io/instance-type",
                            "operator": "In",
                            "values": list(SYSTEM_INSTANCE_PRICES),
                        },
                        {
                            "key": "karpenter.sh/capacity-type",
                            "operator": "In",
                            "values": list(SYSTEM_CAPACITY_TYPES),
                        },
                        {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]},
                    ],
                    "expireAfter": SYSTEM_EXPIRE_AFTER,
                    # A draining node waits for its volumes to detach. At `pulumi destroy` the EBS CSI
                    # driver may be gone before Prometheus' volume detaches; without a bound Karpenter
                    # would keep that node, and the node class deletion would wait for it forever.
                    "terminationGracePeriod": SYSTEM_TERMINATION_GRACE_PERIOD,
                },
            },
            "limits": SYSTEM_POOL_LIMITS,
            "disruption": {
                # Monitoring workloads restart in seconds, so consolidating onto fewer or cheaper
                # nodes (on-demand back to spot) is worth it.
                "consolidationPolicy": "WhenEmptyOrUnderutilized",
                "consolidateAfter": "5m",
                "budgets": [{"nodes": "1"}],
            },
        },
    }
