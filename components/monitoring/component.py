"""Prometheus, Alertmanager and Grafana (kube-prometheus-stack) on the system node pool.

Prometheus selects every ServiceMonitor, PodMonitor and PrometheusRule in the cluster, so other components
ship monitors and rules without a `release` label (they `depends_on` `Monitoring.release` for the CRDs).
Grafana's admin password is generated here, kept as a Pulumi secret and handed to Grafana through a
Kubernetes Secret, so it never appears in the Helm values. Dashboards are ConfigMaps labelled for Grafana's
sidecar (components/monitoring/dashboards.py), loaded from every namespace.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pulumi_random as random

from components.cost_tags import cost_tags
from components.helm_chart import release_args
from components.iam import service_account_trust_policy
from components.monitoring.values import (
    EBS_CSI_ADDON,
    EBS_CSI_SERVICE_ACCOUNT,
    GRAFANA_ADMIN_SECRET,
    GRAFANA_ADMIN_USER,
    GRAFANA_PASSWORD_KEY,
    GRAFANA_USER_KEY,
    KUBE_PROMETHEUS_STACK_CHART,
    MONITORING_NAMESPACE,
    RELEASE_NAME,
    ebs_csi_policy_arn,
    gp3_storage_class,
    grafana_port_forward_command,
    kube_prometheus_stack_values,
    prometheus_claim,
    prometheus_volume,
)
from stacks.config import MonitoringSettings


@dataclass
class MonitoringArgs:
    provider: k8s.Provider
    settings: MonitoringSettings
    # The stack (for cost tags) and its name prefix (PlatformConfig.name) for AWS object names.
    stack: str
    stack_name: str
    # The availability zone Prometheus' EBS volume (and so Prometheus) lives in, with persistence.
    zone: pulumi.Input[str]
    cluster_name: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_provider_url: pulumi.Input[str]
    # What must exist before anything needs a node, e.g. the Karpenter release.
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


# How long `pulumi destroy` may wait for Prometheus' volume to be detached before AWS lets it be deleted.
VOLUME_DELETE_TIMEOUT = "15m"


class Monitoring(pulumi.ComponentResource):
    """kube-prometheus-stack, its Grafana admin secret, and EBS storage for Prometheus when persistent."""

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("selfhost:index:Monitoring", name, None, opts)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider)
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace", metadata={"name": MONITORING_NAMESPACE}, opts=k8s_opts
        )
        password = random.RandomPassword(
            f"{name}-grafana-admin-password",
            length=32,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.grafana_admin_password: pulumi.Output[str] = pulumi.Output.secret(password.result)
        admin_secret = k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata={"name": GRAFANA_ADMIN_SECRET, "namespace": namespace.metadata.name},
            type="Opaque",
            string_data={
                GRAFANA_USER_KEY: GRAFANA_ADMIN_USER,
                GRAFANA_PASSWORD_KEY: self.grafana_admin_password,
            },
            opts=k8s_opts,
        )
        storage = self._ebs_storage(name, args, namespace) if args.settings.persistence else []
        self.release = k8s.helm.v3.Release(
            f"{name}-kube-prometheus-stack",
            # Generous: the first install waits for Karpenter to buy a system node (and, with persistence,
            # for an EBS volume) before Prometheus and Grafana report ready.
            release_args(
                RELEASE_NAME,
                KUBE_PROMETHEUS_STACK_CHART,
                namespace.metadata.name,
                kube_prometheus_stack_values(args.settings),
                timeout_seconds=1200,
            ),
            opts=pulumi.ResourceOptions(
                parent=self, provider=args.provider, depends_on=[*args.depends_on, admin_secret, *storage]
            ),
        )
        self.namespace = MONITORING_NAMESPACE
        self.grafana_port_forward_command = grafana_port_forward_command()
        self.register_outputs(
            {
                "release": self.release.name,
                "grafana_port_forward_command": self.grafana_port_forward_command,
                "grafana_admin_password": self.grafana_admin_password,
            }
        )

    def _ebs_storage(
        self, name: str, args: MonitoringArgs, namespace: k8s.core.v1.Namespace
    ) -> list[pulumi.Resource]:
        """The EBS CSI driver add-on with its IRSA role, and the StorageClass Prometheus' volume uses.

        Where the add-on's pods run: the controller Deployment (kube-system) on the system node pool, since
        the cluster's Fargate profile takes only Karpenter's namespace and CoreDNS (components/cluster/component.py)
        and GPU nodes are tainted; the node DaemonSet on every EC2 node Karpenter buys, including the
        system node Prometheus' volume attaches to (Fargate cannot mount EBS volumes: EKS user guide,
        ebs-csi). Nothing runs on a node before Karpenter can buy one, hence `depends_on`.
        """
        role = aws.iam.Role(
            f"{name}-ebs-csi-role",
            name=f"{args.stack_name}-ebs-csi",
            assume_role_policy=pulumi.Output.all(args.oidc_provider_arn, args.oidc_provider_url).apply(
                lambda arn_and_url: json.dumps(
                    service_account_trust_policy(arn_and_url[0], arn_and_url[1], *EBS_CSI_SERVICE_ACCOUNT)
                )
            ),
            tags=cost_tags(args.stack, component="monitoring"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        policy = aws.iam.RolePolicyAttachment(
            f"{name}-ebs-csi-policy",
            role=role.name,
            policy_arn=pulumi.Output.from_input(args.oidc_provider_arn).apply(ebs_csi_policy_arn),
            opts=pulumi.ResourceOptions(parent=self),
        )
        addon = aws.eks.Addon(
            f"{name}-ebs-csi-driver",
            cluster_name=args.cluster_name,
            addon_name=EBS_CSI_ADDON,
            service_account_role_arn=role.arn,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            tags=cost_tags(args.stack, component="monitoring"),
            # The add-on turns ACTIVE only once its controller pods run, which may need a node bought.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*args.depends_on, policy]),
        )
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=args.provider)
        manifest = gp3_storage_class()
        storage_class = k8s.storage.v1.StorageClass(
            f"{name}-gp3",
            metadata=manifest["metadata"],
            provisioner=manifest["provisioner"],
            parameters=manifest["parameters"],
            reclaim_policy=manifest["reclaimPolicy"],
            volume_binding_mode=manifest["volumeBindingMode"],
            allow_volume_expansion=manifest["allowVolumeExpansion"],
            opts=k8s_opts,
        )
        # Destroy runs in reverse: the release (and Prometheus) first, then the claim, the PersistentVolume and
        # this volume, whose deletion waits for the driver to detach it; only then the add-on.
        volume = aws.ebs.Volume(
            f"{name}-prometheus-volume",
            availability_zone=args.zone,
            size=args.settings.storage_gib,
            type="gp3",
            encrypted=True,
            tags={"Name": f"{args.stack_name}-prometheus", **cost_tags(args.stack, component="monitoring")},
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[addon],
                # AWS refuses to delete an attached volume; the provider retries until the detach is done.
                custom_timeouts=pulumi.CustomTimeouts(delete=VOLUME_DELETE_TIMEOUT),
            ),
        )
        volume_name = f"{args.stack_name}-prometheus"
        pv = pulumi.Output.all(volume.id, volume.availability_zone).apply(
            lambda id_and_zone: prometheus_volume(volume_name, id_and_zone[0], id_and_zone[1], args.settings)
        )
        persistent_volume = k8s.core.v1.PersistentVolume(
            f"{name}-prometheus-pv",
            metadata={"name": volume_name},
            spec=pv.apply(lambda manifest: manifest["spec"]),
            opts=pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[storage_class])),
        )
        claim = prometheus_claim(volume_name, args.settings)
        persistent_claim = k8s.core.v1.PersistentVolumeClaim(
            f"{name}-prometheus-pvc",
            metadata=claim["metadata"],
            spec=claim["spec"],
            opts=pulumi.ResourceOptions.merge(
                k8s_opts, pulumi.ResourceOptions(depends_on=[persistent_volume, namespace])
            ),
        )
        return [addon, storage_class, persistent_claim]
