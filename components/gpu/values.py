"""Helm values of the NVIDIA device plugin and the DCGM exporter: both only on NVIDIA GPU nodes."""

from __future__ import annotations

from typing import Any

from components.helm_chart import HelmChart
from components.karpenter.nodes import GPU_PRESENT_LABEL, gpu_taint_tolerations

# nvidia-device-plugin Chart.yaml @ v0.20.0 (gh-pages index.yaml lists 0.20.0 as the newest).
DEVICE_PLUGIN_CHART = HelmChart(
    "nvidia-device-plugin", "https://nvidia.github.io/k8s-device-plugin", "0.20.0"
)
# dcgm-exporter deployment/Chart.yaml @ tag 4.5.3-4.8.2.
DCGM_EXPORTER_CHART = HelmChart(
    "dcgm-exporter", "https://nvidia.github.io/dcgm-exporter/helm-charts", "4.8.2"
)
GPU_NAMESPACE = "nvidia"
DEVICE_PLUGIN_RELEASE = "nvidia-device-plugin"
DCGM_EXPORTER_RELEASE = "dcgm-exporter"
GPU_DASHBOARD_CONFIGMAP = "gpu-dashboard"

# Karpenter labels each node with its instance type's well-known labels, the GPU maker among them ("nvidia"
# for g6: Karpenter v1.14 docs, instance-types.md), whatever the NodePool's own labels say.
GPU_MANUFACTURER_LABEL = "karpenter.k8s.aws/instance-gpu-manufacturer"


def gpu_node_affinity() -> dict[str, Any]:
    """Required node affinity for NVIDIA GPU nodes; the two terms are ORed.

    It replaces the device plugin chart's default, whose other terms need node-feature-discovery labels
    (feature.node.kubernetes.io/pci-10de.present) that nothing sets here: NFD only comes with
    `gfd.enabled`, which stays off. The Karpenter term keeps the plugin scheduling even on a GPU node
    whose NodePool lost the gpu.present label, so such a node still gets initialized.
    """
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": GPU_PRESENT_LABEL, "operator": "In", "values": ["true"]}]},
                    {
                        "matchExpressions": [
                            {"key": GPU_MANUFACTURER_LABEL, "operator": "In", "values": ["nvidia"]}
                        ]
                    },
                ]
            }
        }
    }


def device_plugin_values() -> dict[str, Any]:
    # Tolerations are set rather than inherited: the chart's default list also tolerates CriticalAddonsOnly
    # (nvidia-device-plugin values.yaml @ v0.20.0), a taint for nodes kept for cluster add-ons, which
    # no node here carries; the GPU taint is the only one the plugin has to get past.
    return {"affinity": gpu_node_affinity(), "tolerations": gpu_taint_tolerations()}


def dcgm_exporter_values() -> dict[str, Any]:
    # The chart's defaults have no affinity and tolerate only the control-plane taint (dcgm-exporter
    # values.yaml @ 4.5.3-4.8.2): without these it would crash-loop on CPU nodes and miss GPU nodes.
    # serviceMonitor.honorLabels stays false: the exporter's pod/namespace/container labels (the pod using
    # the GPU) then arrive as exported_pod/exported_namespace/exported_container instead of overwriting the
    # exporter's own target labels. Prometheus selects this ServiceMonitor without a `release` label
    # because the monitoring component turns the *NilUsesHelmValues flags off.
    return {
        "affinity": gpu_node_affinity(),
        "tolerations": gpu_taint_tolerations(),
        "serviceMonitor": {"enabled": True, "honorLabels": False},
    }
