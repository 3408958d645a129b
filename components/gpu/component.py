"""GPU support on Karpenter's GPU nodes: the NVIDIA device plugin, the DCGM exporter and the GPU dashboard.

Without the device plugin a GPU node never advertises `nvidia.com/gpu`, and Karpenter never sees it as
initialized (Karpenter scheduling.md); the AL2023 NVIDIA AMI ships the driver but not the plugin (AWS EKS
user guide, ml-eks-k8s-device-plugin). Both charts run as DaemonSets restricted to GPU nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.gpu.dashboard import GPU_DASHBOARD_TITLE, gpu_dashboard
from components.helm_chart import HelmChart, release_args
from components.karpenter.nodes import GPU_PRESENT_LABEL, gpu_taint_tolerations
from components.monitoring.dashboards import dashboard_configmap

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


@dataclass
class GpuSupportArgs:
    provider: k8s.Provider
    # The kube-prometheus-stack release: it installs the ServiceMonitor CRD the DCGM chart's monitor needs,
    # and the namespace the dashboard ConfigMap goes to.
    monitoring_release: pulumi.Resource
    dashboard_namespace: str
    # What must exist before charts install, e.g. the Karpenter release, so DaemonSet pods find GPU nodes.
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class GpuSupport(pulumi.ComponentResource):
    """The NVIDIA device plugin and DCGM exporter on GPU nodes, and the GPU dashboard for Grafana."""

    def __init__(self, name: str, args: GpuSupportArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("selfhost:index:GpuSupport", name, None, opts)
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata={"name": GPU_NAMESPACE},
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider),
        )
        self.device_plugin = k8s.helm.v3.Release(
            f"{name}-device-plugin",
            release_args(
                DEVICE_PLUGIN_RELEASE, DEVICE_PLUGIN_CHART, namespace.metadata.name, device_plugin_values()
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[*args.depends_on]),
        )
        after_monitoring = [*args.depends_on, args.monitoring_release]
        self.dcgm_exporter = k8s.helm.v3.Release(
            f"{name}-dcgm-exporter",
            release_args(
                DCGM_EXPORTER_RELEASE, DCGM_EXPORTER_CHART, namespace.metadata.name, dcgm_exporter_values()
            ),
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=after_monitoring),
        )
        manifest = dashboard_configmap(GPU_DASHBOARD_CONFIGMAP, args.dashboard_namespace, gpu_dashboard())
        self.dashboard = k8s.core.v1.ConfigMap(
            f"{name}-dashboard",
            metadata=manifest["metadata"],
            data=manifest["data"],
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=after_monitoring),
        )
        self.dashboards = [GPU_DASHBOARD_TITLE]
        self.register_outputs(
            {
                "device_plugin": self.device_plugin.name,
                "dcgm_exporter": self.dcgm_exporter.name,
                "dashboards": self.dashboards,
            }
        )
