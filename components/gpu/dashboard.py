"""The GPU dashboard: utilization, tensor-core activity, memory, power and temperature per GPU and per node.

Metric names are those the dcgm-exporter 4.8.2 chart exports by default: its counters ConfigMap
(deployment/templates/metrics-configmap.yaml, mounted over the image's default-counters.csv) lists every
metric used here, as does etc/default-counters.csv at tag 4.5.3-4.8.2. DCGM_FI_DEV_FB_RESERVED is in that
CSV but missing from the chart's ConfigMap as read, so it is left out.

Labels are the exporter's own: `Hostname` (the Kubernetes node name: the chart sets NODE_NAME and the
exporter reports it, internal/pkg/hostname), `gpu` (index on the node) and `modelName`. The ServiceMonitor
keeps `honorLabels: false`, so the exporter's pod/namespace/container labels (the workload using the GPU)
arrive as exported_pod/exported_namespace/exported_container; the panels group by `Hostname` and `gpu`,
which no target label shadows.
"""

from __future__ import annotations

from typing import Any

from components.monitoring.dashboards import Panel, Query, Variable, dashboard

GPU_DASHBOARD_UID = "selfhost-gpus"
GPU_DASHBOARD_TITLE = "GPUs (NVIDIA DCGM)"

EACH_GPU = '{Hostname=~"$node", gpu=~"$gpu"}'
EACH_NODE = '{Hostname=~"$node"}'
GPU_LEGEND = "{{Hostname}} GPU {{gpu}} ({{modelName}})"
NODE_LEGEND = "{{Hostname}}"


def gpu_dashboard() -> dict[str, Any]:
    variables = (
        Variable("node", "Node", "label_values(DCGM_FI_DEV_GPU_UTIL, Hostname)"),
        Variable("gpu", "GPU", f"label_values(DCGM_FI_DEV_GPU_UTIL{EACH_NODE}, gpu)"),
    )
    panels = (
        Panel(
            "GPU utilization",
            "Share of time a kernel ran on the GPU (DCGM_FI_DEV_GPU_UTIL, %).",
            "percent",
            (Query(f"DCGM_FI_DEV_GPU_UTIL{EACH_GPU}", GPU_LEGEND),),
            min=0,
            max=100,
        ),
        Panel(
            "Tensor core activity",
            "Ratio of cycles the tensor (HMMA) pipe is active (DCGM_FI_PROF_PIPE_TENSOR_ACTIVE, 0-1).",
            "percentunit",
            (Query(f"DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{EACH_GPU}", GPU_LEGEND),),
            min=0,
            max=1,
        ),
        Panel(
            "GPU memory used",
            "Framebuffer memory in use (DCGM_FI_DEV_FB_USED, MiB); vLLM reserves most of it at start-up.",
            "mbytes",
            (Query(f"DCGM_FI_DEV_FB_USED{EACH_GPU}", GPU_LEGEND),),
            min=0,
        ),
        Panel(
            "GPU memory free",
            "Framebuffer memory free (DCGM_FI_DEV_FB_FREE, MiB).",
            "mbytes",
            (Query(f"DCGM_FI_DEV_FB_FREE{EACH_GPU}", GPU_LEGEND),),
            min=0,
        ),
        Panel(
            "GPU memory used (share)",
            "Used / (used + free) framebuffer memory.",
            "percentunit",
            (
                Query(
                    f"DCGM_FI_DEV_FB_USED{EACH_GPU} / (DCGM_FI_DEV_FB_USED{EACH_GPU} + DCGM_FI_DEV_FB_FREE{EACH_GPU})",
                    GPU_LEGEND,
                ),
            ),
            min=0,
            max=1,
        ),
        Panel(
            "Power draw",
            "Board power (DCGM_FI_DEV_POWER_USAGE, W).",
            "watt",
            (Query(f"DCGM_FI_DEV_POWER_USAGE{EACH_GPU}", GPU_LEGEND),),
            min=0,
        ),
        Panel(
            "GPU temperature",
            "GPU die temperature (DCGM_FI_DEV_GPU_TEMP, degrees C).",
            "celsius",
            (Query(f"DCGM_FI_DEV_GPU_TEMP{EACH_GPU}", GPU_LEGEND),),
        ),
        Panel(
            "GPUs per node",
            "GPUs reporting to DCGM on each node, by model.",
            "none",
            (
                Query(
                    f"count by (Hostname, modelName) (DCGM_FI_DEV_GPU_UTIL{EACH_NODE})",
                    "{{Hostname}} {{modelName}}",
                ),
            ),
            kind="stat",
        ),
        Panel(
            "Node: average GPU utilization",
            "Mean utilization of the GPUs of each node (%).",
            "percent",
            (Query(f"avg by (Hostname) (DCGM_FI_DEV_GPU_UTIL{EACH_NODE})", NODE_LEGEND),),
            min=0,
            max=100,
        ),
        Panel(
            "Node: average tensor core activity",
            "Mean tensor-pipe activity of the GPUs of each node (0-1).",
            "percentunit",
            (Query(f"avg by (Hostname) (DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{EACH_NODE})", NODE_LEGEND),),
            min=0,
            max=1,
        ),
        Panel(
            "Node: GPU memory used and free",
            "Framebuffer memory summed over the GPUs of each node (MiB).",
            "mbytes",
            (
                Query(f"sum by (Hostname) (DCGM_FI_DEV_FB_USED{EACH_NODE})", "{{Hostname}} used"),
                Query(f"sum by (Hostname) (DCGM_FI_DEV_FB_FREE{EACH_NODE})", "{{Hostname}} free"),
            ),
            min=0,
        ),
        Panel(
            "Node: power draw",
            "Board power summed over the GPUs of each node (W).",
            "watt",
            (Query(f"sum by (Hostname) (DCGM_FI_DEV_POWER_USAGE{EACH_NODE})", NODE_LEGEND),),
            min=0,
        ),
        Panel(
            "Node: hottest GPU",
            "Highest GPU temperature on each node (degrees C).",
            "celsius",
            (Query(f"max by (Hostname) (DCGM_FI_DEV_GPU_TEMP{EACH_NODE})", NODE_LEGEND),),
        ),
    )
    return dashboard(GPU_DASHBOARD_UID, GPU_DASHBOARD_TITLE, ("gpu", "nvidia", "dcgm"), variables, panels)
