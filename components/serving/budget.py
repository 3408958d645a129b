"""What one vLLM replica may take from its GPU node, and how long it may take to start.

A GPU node runs the model's replicas and a few DaemonSets, nothing else (the GPU taint keeps other pods
away). Each replica asks for an equal share of what the node offers after the DaemonSets: Karpenter buys a
node only if the pending pods' requests fit its allocatable, so requests sized from the instance's
allocatable let `replicas_per_node` replicas land on one node, as the sizing plan intends.

Start-up follows the stack's startup budget (stacks/startup.py: node launch, image pull, weights streamed
from S3, engine start). Probes and timeouts allow a multiple of it, so a slow start is not mistaken for a
stuck one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stacks.catalogs.instances import GpuInstance
from stacks.startup import StartupBudget

# DaemonSets on every GPU node and what they request (scheduling counts requests, not use):
#   kube-proxy (EKS add-on)                         100m
#   aws-node (VPC CNI: aws-node + aws-eks-nodeagent)  50m (25m each, amazon-vpc-cni-k8s manifests)
#   dcgm-exporter (chart 4.8.2 values.yaml)          100m  128Mi
#   ebs-csi-node (EBS CSI add-on, 3 containers)       30m  120Mi
#   nvidia-device-plugin 0.20.0, node-exporter 4.56.1: no requests in their charts' defaults
# That is 280m and 248Mi. The budget below leaves room for the ones without requests and for a future
# DaemonSet; the replica's memory limit equals its request, so the node's memory is never overcommitted.
DAEMONSET_CPU_MILLICORES = 500
DAEMONSET_MEMORY_MIB = 1024

# /dev/shm: PyTorch and NCCL exchange tensors between the tensor-parallel workers through shared memory;
# vLLM's Kubernetes guide mounts a 2Gi memory emptyDir. It counts against the pod's memory.
SHM_GIB_PER_GPU = 2

# Local cache: the weights stream from S3 straight into GPU memory, so the disk holds only the config and
# tokenizer vLLM pulls beside them and the compile caches (torch.compile, Triton, FlashInfer kernels).
MODEL_FILES_GIB = 1
COMPILE_CACHE_GIB = 10
# Beyond the cache: the container's writable layer and its logs.
WRITABLE_LAYER_GIB = 5

# A startup probe that gives up restarts the whole load, and a rollout marked failed stops `pulumi up`: both
# allow three times the budget (a slow S3 stream once burst credits are gone, a slow first compile).
STARTUP_MARGIN = 3
STARTUP_PROBE_PERIOD_SECONDS = 10

# Graceful stop: the Service drops the pod's endpoint while the preStop hook sleeps, then vLLM gets SIGTERM,
# lets the requests it is running finish for up to DRAIN_SECONDS (its --shutdown-timeout, whose default 0
# aborts them at once: vllm/entrypoints/launchers/launcher.py and vllm/v1/engine/core.py at v0.33.0), and
# tears the engine down before the kubelet's SIGKILL.
# A spot node gets this long between EC2's interruption notice and its reclaim (EC2 user guide, "Spot Instance
# interruption notices"), whatever the pod's grace period: the drain below is cut there.
SPOT_NOTICE_SECONDS = 120
PRE_STOP_SLEEP_SECONDS = 15
DRAIN_SECONDS = 150
TEARDOWN_SECONDS = 15


@dataclass(frozen=True)
class ReplicaResources:
    """Requests and limits of one replica (CPU in millicores, memory and disk in MiB/GiB)."""

    gpus: int
    cpu_millicores: int
    memory_mib: int
    shm_gib: int
    model_cache_gib: int
    ephemeral_storage_gib: int


def replica_resources(
    instance: GpuInstance, replicas_per_node: int, tensor_parallel_size: int
) -> ReplicaResources:
    """An equal share of the node's allocatable CPU and memory after the DaemonSets, rounded down."""
    cpu = (instance.allocatable_cpu_millicores - DAEMONSET_CPU_MILLICORES) // replicas_per_node
    memory = (instance.allocatable_memory_mib - DAEMONSET_MEMORY_MIB) // replicas_per_node
    cache = MODEL_FILES_GIB + COMPILE_CACHE_GIB
    return ReplicaResources(
        gpus=tensor_parallel_size,
        cpu_millicores=cpu // 100 * 100,
        memory_mib=memory,
        shm_gib=SHM_GIB_PER_GPU * tensor_parallel_size,
        model_cache_gib=cache,
        ephemeral_storage_gib=cache + WRITABLE_LAYER_GIB,
    )


def startup_probe_failure_threshold(budget: StartupBudget) -> int:
    """Probe failures allowed from the container's start: the weights' stream and the engine's start."""
    return math.ceil(budget.container_seconds * STARTUP_MARGIN / STARTUP_PROBE_PERIOD_SECONDS)


def replica_ready_seconds(budget: StartupBudget) -> int:
    """From a pod being created to it serving, when it needs a new node: the whole budget, with margin."""
    return budget.total_seconds * STARTUP_MARGIN


def termination_grace_seconds() -> int:
    return PRE_STOP_SLEEP_SECONDS + DRAIN_SECONDS + TEARDOWN_SECONDS


def rollout_seconds(budget: StartupBudget, replicas: int) -> int:
    """How long `pulumi up` may wait for the Deployment: an update replaces replicas one at a time."""
    return replica_ready_seconds(budget) * max(replicas, 1)
