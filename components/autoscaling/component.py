"""Autoscaling: KEDA and, with scale to zero, its HTTP add-on, as pinned Helm releases in the `keda` namespace.

Installed only when autoscaling is on. KEDA goes first: the add-on's chart carries a ScaledObject of its own (for
the interceptors) and needs KEDA's CRDs. KEDA's operator is scraped through a ServiceMonitor, so its release
waits for kube-prometheus-stack's CRDs. Their pods run on the system pool: the cluster's Fargate profile takes
only Karpenter's namespace and CoreDNS, and GPU nodes are tainted; nothing runs before Karpenter can buy a node,
hence `depends_on`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from components.autoscaling.manifests import interceptor_network_policy, namespace_manifest
from components.autoscaling.values import (
    HTTP_ADD_ON_CHART,
    HTTP_ADD_ON_RELEASE,
    KEDA_CHART,
    KEDA_RELEASE,
    NAMESPACE,
    http_add_on_values,
    keda_values,
)
from components.helm_chart import release_args
from components.serving.manifests import ServingSettings, scales_to_zero


@dataclass
class AutoscalingArgs:
    provider: k8s.Provider
    settings: ServingSettings
    # The kube-prometheus-stack release, whose ServiceMonitor CRD KEDA's monitor needs.
    monitoring_release: pulumi.Resource
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class Autoscaling(pulumi.ComponentResource):
    releases: list[k8s.helm.v3.Release]

    def __init__(self, name: str, args: AutoscalingArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("selfhost:index:Autoscaling", name, None, opts)
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=namespace_manifest(args.settings)["metadata"],
            opts=pulumi.ResourceOptions(parent=self, provider=args.provider),
        )
        keda = k8s.helm.v3.Release(
            f"{name}-keda",
            release_args(KEDA_RELEASE, KEDA_CHART, namespace.metadata.name, keda_values()),
            opts=pulumi.ResourceOptions(
                parent=self, provider=args.provider, depends_on=[*args.depends_on, args.monitoring_release]
            ),
        )
        self.releases = [keda]
        if scales_to_zero(args.settings):
            add_on = k8s.helm.v3.Release(
                f"{name}-http-add-on",
                release_args(
                    HTTP_ADD_ON_RELEASE, HTTP_ADD_ON_CHART, namespace.metadata.name, http_add_on_values()
                ),
                opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[keda]),
            )
            policy = interceptor_network_policy(args.settings)
            k8s.networking.v1.NetworkPolicy(
                f"{name}-interceptor-network-policy",
                metadata=policy["metadata"],
                spec=policy["spec"],
                opts=pulumi.ResourceOptions(parent=self, provider=args.provider, depends_on=[namespace]),
            )
            self.releases.append(add_on)
        self.register_outputs({"namespace": NAMESPACE})
