"""What one vLLM replica may take from its GPU node, and how long it may take to start.

A GPU node runs the model's replicas and a few DaemonSets, nothing else (the GPU taint keeps other pods
away). Each replica asks for an equal share of what the node offers after the DaemonSets: Karpenter buys a
node only if the pending pods' requests fit its allocatable, so requests sized from the instance's
allocatable let `replicas_per_node` replicas land on one node, as the sizing plan intends.

Start-up is slow and dominated by the model: each new pod downloads the weights from Hugging Face into an
emptyDir (a fresh pod starts with an empty cache), loads them into GPU memory, then compiles and captures
CUDA graphs. Probes and timeouts are derived from the weights' size so a large model is not killed while it
is still downloading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stacks.catalogs.instances import GpuInstance

GIB_IN_MIB = 1024

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

# Model cache: the safetensors weights plus 10% (tokenizer, config, filesystem slack), and room for the
# compile caches vLLM keeps beside them (torch.compile, Triton, FlashInfer kernels).
CACHE_WEIGHTS_FACTOR = 1.1
COMPILE_CACHE_GIB = 10
# Beyond the cache: the container's writable layer and its logs.
WRITABLE_LAYER_GIB = 5

# Start-up time, kept deliberately pessimistic (a probe that gives up too early restarts the download):
# Hugging Face downloads through the NAT gateway at 25 MiB/s (200 Mbit/s; the Xet/CDN path is usually
# several times faster), weights load from local NVMe at 200 MiB/s, and engine start-up (CUDA context,
# memory profiling, torch.compile, CUDA graph capture) takes five minutes.
DOWNLOAD_MIB_PER_SECOND = 25
LOAD_MIB_PER_SECOND = 200
ENGINE_INIT_SECONDS = 300
STARTUP_PROBE_PERIOD_SECONDS = 10

# Before the container starts at all: Karpenter launches the instance, it boots and joins, the NVIDIA
# device plugin advertises the GPUs (about five minutes), and the multi-GB vLLM image is pulled.
NODE_READY_SECONDS = 600
IMAGE_PULL_SECONDS = 900

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
    instance: GpuInstance, replicas_per_node: int, tensor_parallel_size: int, weights_gib: float
) -> ReplicaResources:
    """An equal share of the node's allocatable CPU and memory after the DaemonSets, rounded down."""
    cpu = (instance.allocatable_cpu_millicores - DAEMONSET_CPU_MILLICORES) // replicas_per_node
    memory = (instance.allocatable_memory_mib - DAEMONSET_MEMORY_MIB) // replicas_per_node
    cache = model_cache_gib(weights_gib)
    return ReplicaResources(
        gpus=tensor_parallel_size,
        cpu_millicores=cpu // 100 * 100,
        memory_mib=memory,
        shm_gib=SHM_GIB_PER_GPU * tensor_parallel_size,
        model_cache_gib=cache,
        ephemeral_storage_gib=cache + WRITABLE_LAYER_GIB,
    )


def model_cache_gib(weights_gib: float) -> int:
    return math.ceil(weights_gib * CACHE_WEIGHTS_FACTOR + COMPILE_CACHE_GIB)


def startup_seconds(weights_gib: float) -> int:
    """Download, load and engine start-up of one replica, from container start to /health answering."""
    weights_mib = weights_gib * GIB_IN_MIB
    return math.ceil(
        weights_mib / DOWNLOAD_MIB_PER_SECOND + weights_mib / LOAD_MIB_PER_SECOND + ENGINE_INIT_SECONDS
    )


def startup_probe_failure_threshold(weights_gib: float) -> int:
    return math.ceil(startup_seconds(weights_gib) / STARTUP_PROBE_PERIOD_SECONDS)


def replica_ready_seconds(weights_gib: float) -> int:
    """From a pod being created to it serving, when it needs a new node: the worst case of one replica."""
    probe_window = startup_probe_failure_threshold(weights_gib) * STARTUP_PROBE_PERIOD_SECONDS
    return NODE_READY_SECONDS + IMAGE_PULL_SECONDS + probe_window


def termination_grace_seconds() -> int:
    return PRE_STOP_SLEEP_SECONDS + DRAIN_SECONDS + TEARDOWN_SECONDS


def rollout_seconds(weights_gib: float, replicas: int) -> int:
    """How long `pulumi up` may wait for the Deployment: an update replaces replicas one at a time."""
    return replica_ready_seconds(weights_gib) * max(replicas, 1)
