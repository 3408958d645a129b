"""GPU support on Karpenter's GPU nodes: the NVIDIA device plugin, the DCGM exporter and the GPU dashboard.

Without the device plugin a GPU node never advertises `nvidia.com/gpu`, and Karpenter never sees it as
initialized (Karpenter scheduling.md); the AL2023 NVIDIA AMI ships the driver but not the plugin (AWS EKS
user guide, ml-eks-k8s-device-plugin). Both charts run as DaemonSets restricted to GPU nodes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components.gpu.dashboard import GPU_DASHBOARD_TITLE, gpu_dashboard
from components.gpu.values import (
    DCGM_EXPORTER_CHART,
    DCGM_EXPORTER_RELEASE,
    DEVICE_PLUGIN_CHART,
    DEVICE_PLUGIN_RELEASE,
    GPU_DASHBOARD_CONFIGMAP,
    GPU_NAMESPACE,
    dcgm_exporter_values,
    device_plugin_values,
)
from components.helm_chart import release_args
from components.monitoring.dashboards import dashboard_configmap


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
