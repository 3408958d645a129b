"""How long a new replica takes to serve when it needs a new GPU node: the startup budget.

Four phases, one after the other: Karpenter launches the node and the NVIDIA device plugin advertises its GPUs;
the kubelet pulls the vLLM image; vLLM streams the weights from the stack's S3 bucket into GPU memory; the
engine compiles and captures its CUDA graphs. Each figure below names its source. The startup probe, the
Deployment's progress deadline and Pulumi's wait for a rollout derive from this one budget
(components/serving/budget.py), and so does the cold start of scale to zero.

The target is three minutes for the default model with the weights in S3 and the image in ECR. Where the
arithmetic says otherwise the budget names the phase that bounds it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from stacks.catalogs.instances import GpuInstance

TARGET_SECONDS = 180

# Karpenter's maintainers see new nodes Ready in about 30-40 s (aws/karpenter-provider-aws issue 6165);
# GPU instances boot slower (awslabs/amazon-eks-ami issue 1099), and the device plugin must register the GPUs
# before the pod fits: 20 s more is an assumption, not a measurement.
NODE_READY_SECONDS = 40
GPU_ADVERTISED_SECONDS = 20
# The vllm/vllm-openai image: 12.64 GB compressed (discuss.vllm.ai, "current vllm docker image size is
# 12.64GB", linked from vllm-project/vllm issue 27154; v0.33 is not measured and is no smaller).
IMAGE_COMPRESSED_BYTES = 12.64e9
# A standard containerd pull downloads and then unpacks each gzip layer: AWS measures 4-6 minutes for 15-20 GB
# (AWS Machine Learning Blog, "Reducing container cold start times using SOCI index on DLAMI and DLC"),
# about 58 MB/s (17.5 GB in 300 s). Unpacking, not the network, bounds it.
STANDARD_PULL_BYTES_PER_SECOND = 58e6
# S3 serves one instance up to about 100 Gbit/s with enough parallel requests (Amazon S3 performance
# guidelines); below that the instance's baseline network bandwidth bounds the weights' stream.
S3_MAX_MBPS = 100_000
# Engine start on a cold node: torch.compile about 29 s ("torch.compile takes 28.77 s in total",
# kubernetes-sigs/gateway-api-inference-extension PR 550, an 8B model), CUDA graph capture about 14 s ("Graph
# capturing finished in 14 secs", vllm-project/vllm PR 11349) and memory profiling with the KV cache
# allocation, assumed 7 s.
ENGINE_START_SECONDS = 29 + 14 + 7


@dataclass(frozen=True)
class Phase:
    seconds: int
    assumption: str
    source: str


@dataclass(frozen=True)
class StartupBudget:
    node_launch: Phase
    image_pull: Phase
    weight_load: Phase
    engine_start: Phase
    total_seconds: int
    target_seconds: int
    meets_target: bool
    # The phase that takes longest: what to shorten first when the target is missed.
    bound: str

    @property
    def container_seconds(self) -> int:
        """From the container's start to /health answering: what the startup probe must cover."""
        return self.weight_load.seconds + self.engine_start.seconds

    @property
    def phases(self) -> dict[str, Phase]:
        return {
            "node_launch": self.node_launch,
            "image_pull": self.image_pull,
            "weight_load": self.weight_load,
            "engine_start": self.engine_start,
        }


def stream_bytes_per_second(instance: GpuInstance) -> float:
    """What one replica's weights stream from S3 at: the instance's baseline bandwidth, up to S3's ceiling."""
    return min(instance.network_mbps, S3_MAX_MBPS) * 1e6 / 8


def startup_budget(instance: GpuInstance, weights_bytes: float, image_cached: bool) -> StartupBudget:
    """The budget of one replica of `weights_bytes` of weights on a new `instance`."""
    pull_rate = min(STANDARD_PULL_BYTES_PER_SECOND, instance.network_mbps * 1e6 / 8)
    registry = (
        "ECR pull-through cache in the stack's region"
        if image_cached
        else "Docker Hub through the NAT gateway, anonymously (its pull limit counts per NAT address)"
    )
    stream_rate = stream_bytes_per_second(instance)
    phases = {
        "node_launch": Phase(
            NODE_READY_SECONDS + GPU_ADVERTISED_SECONDS,
            f"node Ready in {NODE_READY_SECONDS} s, GPUs advertised {GPU_ADVERTISED_SECONDS} s later",
            "aws/karpenter-provider-aws issue 6165; GPU delay assumed",
        ),
        "image_pull": Phase(
            math.ceil(IMAGE_COMPRESSED_BYTES / pull_rate),
            f"{IMAGE_COMPRESSED_BYTES / 1e9:.2f} GB compressed from {registry}, pulled and unpacked at "
            f"{pull_rate / 1e6:.0f} MB/s",
            "vllm-project/vllm issue 27154 (size); AWS ML Blog, SOCI on DLAMI and DLC (standard pull rate)",
        ),
        "weight_load": Phase(
            math.ceil(weights_bytes / stream_rate),
            f"{weights_bytes / 1e9:.2f} GB of safetensors streamed from S3 at {stream_rate / 1e6:.0f} MB/s, the "
            f"{instance.name}'s baseline {instance.network_mbps:,} Mbit/s",
            "Karpenter instance-types reference (bandwidth); Amazon S3 performance guidelines",
        ),
        "engine_start": Phase(
            ENGINE_START_SECONDS,
            "torch.compile 29 s, CUDA graph capture 14 s, profiling and KV cache 7 s",
            "gateway-api-inference-extension PR 550 and vLLM PR 11349 start-up logs",
        ),
    }
    total = sum(phase.seconds for phase in phases.values())
    return StartupBudget(
        **phases,
        total_seconds=total,
        target_seconds=TARGET_SECONDS,
        meets_target=total <= TARGET_SECONDS,
        bound=max(phases, key=lambda name: phases[name].seconds),
    )
