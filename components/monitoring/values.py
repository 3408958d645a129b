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

STORAGE_CLASS = "gp3-encrypted"
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


def prometheus_storage(settings: MonitoringSettings) -> dict[str, Any]:
    """prometheusSpec.storageSpec (a prometheus-operator StorageSpec) and retentionSize."""
    if settings.persistence:
        return {
            "storageSpec": {
                "volumeClaimTemplate": {
                    "spec": {
                        "storageClassName": STORAGE_CLASS,
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": f"{settings.storage_gib}Gi"}},
                    }
                }
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
    }


def gp3_storage_class(stack_name: str) -> dict[str, Any]:
    """Encrypted gp3 volumes from the EBS CSI driver (parameters: aws-ebs-csi-driver docs/parameters.md).

    WaitForFirstConsumer creates the volume in the zone of the node Prometheus lands on. Volumes are
    tagged with the stack so any left behind after a destroy can be found (docs/tagging.md).
    """
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS},
        "provisioner": "ebs.csi.aws.com",
        "parameters": {
            "type": "gp3",
            "encrypted": "true",
            "tagSpecification_1": f"selfhost-stack={stack_name}",
        },
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
    }


def ebs_csi_policy_arn(oidc_provider_arn: str) -> str:
    """The AWS managed policy for the driver, in the cluster's partition (the OIDC provider ARN's)."""
    return aws_managed_policy_arn(arn_partition(oidc_provider_arn), "service-role/AmazonEBSCSIDriverPolicy")


def grafana_port_forward_command() -> str:
    return (
        f"kubectl --namespace {MONITORING_NAMESPACE} port-forward svc/{GRAFANA_SERVICE} "
        f"{GRAFANA_LOCAL_PORT}:{GRAFANA_SERVICE_PORT}"
    )
