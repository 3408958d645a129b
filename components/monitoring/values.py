"""kube-prometheus-stack's Helm values, Prometheus storage and the gp3 StorageClass, as plain dicts."""

from __future__ import annotations

from typing import Any

from components.helm_chart import HelmChart
from components.iam import arn_partition, aws_managed_policy_arn
from components.karpenter.nodes import NODE_POOL_LABEL, SYSTEM_POOL
from components.monitoring.dashboards import DASHBOARD_LABEL, DASHBOARD_LABEL_VALUE
from stacks.config import MonitoringSettings

# kube-prometheus-stack Chart.yaml @ tag kube-prometheus-stack-88.5.3 (prometheus-operator v0.93.1).
KUBE_PROMETHEUS_STACK_CHART = HelmChart(
    "kube-prometheus-stack", "https://prometheus-community.github.io/helm-charts", "88.5.3"
)
MONITORING_NAMESPACE = "monitoring"
RELEASE_NAME = "kube-prometheus-stack"
# The grafana subchart names its Service <release>-grafana when the release name does not contain
# "grafana" (grafana.fullname in the chart's _helpers.tpl); its Service listens on 80 (service.port).
GRAFANA_SERVICE = f"{RELEASE_NAME}-grafana"
GRAFANA_SERVICE_PORT = 80
GRAFANA_LOCAL_PORT = 3000
GRAFANA_ADMIN_SECRET = "grafana-admin"
GRAFANA_ADMIN_USER = "admin"
# grafana.admin.userKey / passwordKey defaults (kube-prometheus-stack values.yaml; grafana chart values.yaml).
GRAFANA_USER_KEY = "admin-user"
GRAFANA_PASSWORD_KEY = "admin-password"
# Karpenter's system NodePool; every monitoring workload except node-exporter (a DaemonSet that must run on
# every node, GPU nodes included: its chart tolerates all NoSchedule taints) stays there.
SYSTEM_NODE_SELECTOR = {NODE_POOL_LABEL: SYSTEM_POOL}

# EKS labels the node of every Fargate pod with eks.amazonaws.com/compute-type=fargate (EKS user guide, Fargate).
FARGATE_COMPUTE_TYPE_LABEL = "eks.amazonaws.com/compute-type"
STORAGE_CLASS = "gp3-encrypted"
EBS_CSI_DRIVER = "ebs.csi.aws.com"
ZONE_LABEL = "topology.kubernetes.io/zone"
# prometheus-operator names the StatefulSet prometheus-<Prometheus name> and its claims
# <claim template name>-<StatefulSet>-<ordinal> (pkg/prometheus/common.go PrefixedName, VolumeClaimName);
# kube-prometheus-stack names the Prometheus <release>-prometheus. One replica: ordinal 0.
CLAIM_TEMPLATE = "db"
PROMETHEUS_CLAIM = f"{CLAIM_TEMPLATE}-prometheus-{RELEASE_NAME}-prometheus-0"
EBS_CSI_ADDON = "aws-ebs-csi-driver"
# The EKS add-on's controller runs as this ServiceAccount (EKS user guide, csi-iam-role).
EBS_CSI_SERVICE_ACCOUNT = ("kube-system", "ebs-csi-controller-sa")
# Prometheus counts blocks, WAL and chunks against retentionSize; the rest of the volume is headroom for
# compaction, which writes a new block before deleting the old ones.
RETENTION_SIZE_SHARE = 0.85
# Without persistence the TSDB lives in an emptyDir on the system node's root volume (shared with the OS
# and images, cluster:nodeRootVolumeGiB, 50 GiB by default). The cap keeps a chatty cluster from filling the
# disk; Prometheus trims at the retention size before the kubelet would evict it at the cap.
EMPTY_DIR_GIB = 10


def _claim_spec(settings: MonitoringSettings) -> dict[str, Any]:
    return {
        "storageClassName": STORAGE_CLASS,
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": f"{settings.storage_gib}Gi"}},
    }


def prometheus_storage(settings: MonitoringSettings) -> dict[str, Any]:
    """prometheusSpec.storageSpec (a prometheus-operator StorageSpec) and retentionSize.

    With persistence, the StatefulSet's claim template names the claim PROMETHEUS_CLAIM, which the platform
    creates beforehand on its own EBS volume (prometheus_volume), so the StatefulSet adopts it."""
    if settings.persistence:
        return {
            "storageSpec": {
                "volumeClaimTemplate": {"metadata": {"name": CLAIM_TEMPLATE}, "spec": _claim_spec(settings)}
            },
            # Prometheus size units are powers of two ("GB" = GiB: Prometheus storage docs).
            "retentionSize": f"{int(settings.storage_gib * RETENTION_SIZE_SHARE)}GB",
        }
    return {
        "storageSpec": {"emptyDir": {"sizeLimit": f"{EMPTY_DIR_GIB}Gi"}},
        "retentionSize": f"{int(EMPTY_DIR_GIB * RETENTION_SIZE_SHARE)}GB",
    }


def kube_prometheus_stack_values(settings: MonitoringSettings) -> dict[str, Any]:
    """Helm values; every key exists in the chart's values.yaml or a subchart's (see the conformance test)."""
    return {
        "prometheus": {
            "prometheusSpec": {
                # With these true, an empty selector becomes matchLabels {release: <release>}
                # (templates/prometheus/prometheus.yaml); false selects every object in every namespace.
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
                "probeSelectorNilUsesHelmValues": False,
                "scrapeConfigSelectorNilUsesHelmValues": False,
                "retention": settings.retention,
                **prometheus_storage(settings),
                "nodeSelector": SYSTEM_NODE_SELECTOR,
            }
        },
        "alertmanager": {"alertmanagerSpec": {"nodeSelector": SYSTEM_NODE_SELECTOR}},
        "prometheusOperator": {
            "nodeSelector": SYSTEM_NODE_SELECTOR,
            "admissionWebhooks": {"patch": {"nodeSelector": SYSTEM_NODE_SELECTOR}},
            # The operator lists every node in the kubelet Endpoints the kubelet ServiceMonitor scrapes, Fargate's
            # too (pkg/kubelet/controller.go), whose kubelets Prometheus cannot reach: each would be a down target
            # and TargetDown would fire for the Karpenter and CoreDNS pods' "nodes". --kubelet-selector keeps
            # them out of the Endpoints altogether (values.yaml prometheusOperator.kubeletService.selector); EC2
            # nodes have no compute-type label and stay.
            "kubeletService": {"selector": f"{FARGATE_COMPUTE_TYPE_LABEL}!=fargate"},
        },
        "kube-state-metrics": {"nodeSelector": SYSTEM_NODE_SELECTOR},
        "grafana": {
            "nodeSelector": SYSTEM_NODE_SELECTOR,
            "admin": {
                "existingSecret": GRAFANA_ADMIN_SECRET,
                "userKey": GRAFANA_USER_KEY,
                "passwordKey": GRAFANA_PASSWORD_KEY,
            },
            "sidecar": {
                "dashboards": {
                    "enabled": True,
                    "label": DASHBOARD_LABEL,
                    "labelValue": DASHBOARD_LABEL_VALUE,
                    "searchNamespace": "ALL",
                }
            },
        },
        # EKS runs the controller manager, scheduler and etcd inside its managed control plane: no pods or
        # endpoints in the cluster for these ServiceMonitors to find (EKS exposes the first two only through
        # the API server's metrics.eks.amazonaws.com paths: EKS user guide, view-raw-metrics), so they would
        # only raise permanent TargetDown and *Down alerts. Disabling a component also drops its alert rules
        # (the rule templates check `<component>.enabled`). kube-proxy, an EKS add-on, binds its metrics to
        # 127.0.0.1:10249 and the add-on resets changes to that (aws/containers-roadmap#657).
        "kubeControllerManager": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeEtcd": {"enabled": False},
        "kubeProxy": {"enabled": False},
        "crds": {
            # Helm installs the crds subchart's CRDs once and never upgrades them (kube-prometheus-stack
            # UPGRADE.md asks for a server-side apply of the new CRDs before each upgrade). The chart's own
            # pre-install/pre-upgrade hook Job does that apply (`kubectl apply --server-side --force-conflicts`,
            # charts/crds/templates/upgrade/job.yaml), so a chart bump brings its operator's CRDs along.
            "upgradeJob": {
                "enabled": True,
                "nodeSelector": SYSTEM_NODE_SELECTOR,
                # Its init container unpacks the CRDs with busybox, `docker.io/busybox:latest` by default:
                # pinned, and from ECR Public's copy of the Docker official image, clear of Docker Hub's
                # anonymous pull limit.
                "image": {
                    "busybox": {
                        "registry": "public.ecr.aws",
                        "repository": "docker/library/busybox",
                        "tag": "1.37.0",
                    }
                },
            }
        },
    }


def gp3_storage_class() -> dict[str, Any]:
    """The class Prometheus' claim names: encrypted gp3 from the EBS CSI driver (aws-ebs-csi-driver
    docs/parameters.md). The volume itself is Pulumi's (prometheus_volume); the class lets the claim be
    resized, which the driver carries out on the EBS volume and its filesystem."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS},
        "provisioner": EBS_CSI_DRIVER,
        "parameters": {"type": "gp3", "encrypted": "true"},
        "reclaimPolicy": "Retain",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
    }


def prometheus_volume(name: str, volume_id: str, zone: str, settings: MonitoringSettings) -> dict[str, Any]:
    """The PersistentVolume over the stack's EBS volume, reserved for Prometheus' claim.

    The volume is a Pulumi resource rather than one the driver provisions: `pulumi destroy` then deletes it
    itself, after the claim and this object are gone and before the driver that detaches it (a volume the
    driver provisioned is deleted by the driver, asynchronously, and was left behind when the add-on went
    first). Retain: deleting this object never deletes the volume. Prometheus lands in the volume's zone
    (Karpenter buys its node there: the zone is a requirement of the pending pod).
    """
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": f"{settings.storage_gib}Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": STORAGE_CLASS,
            "csi": {"driver": EBS_CSI_DRIVER, "volumeHandle": volume_id, "fsType": "ext4"},
            "claimRef": {"namespace": MONITORING_NAMESPACE, "name": PROMETHEUS_CLAIM},
            "nodeAffinity": {
                "required": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": ZONE_LABEL, "operator": "In", "values": [zone]}]}
                    ]
                }
            },
        },
    }


def prometheus_claim(volume_name: str, settings: MonitoringSettings) -> dict[str, Any]:
    """The claim the Prometheus StatefulSet would create from its template, made first and bound to the
    stack's volume."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": PROMETHEUS_CLAIM, "namespace": MONITORING_NAMESPACE},
        "spec": {**_claim_spec(settings), "volumeName": volume_name},
    }


def ebs_csi_policy_arn(oidc_provider_arn: str) -> str:
    """The AWS managed policy for the driver, in the cluster's partition (the OIDC provider ARN's)."""
    return aws_managed_policy_arn(arn_partition(oidc_provider_arn), "service-role/AmazonEBSCSIDriverPolicy")


def grafana_port_forward_command() -> str:
    return (
        f"kubectl --namespace {MONITORING_NAMESPACE} port-forward svc/{GRAFANA_SERVICE} "
        f"{GRAFANA_LOCAL_PORT}:{GRAFANA_SERVICE_PORT}"
    )
