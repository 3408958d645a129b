"""Monitoring: kube-prometheus-stack values, the Grafana admin secret, EBS storage, and their wiring."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pulumi
import pulumi_kubernetes as k8s
import pytest

from components.iam import service_account_trust_policy
from components.monitoring.component import Monitoring, MonitoringArgs
from components.monitoring.dashboards import DASHBOARD_LABEL, DASHBOARD_LABEL_VALUE
from components.monitoring.values import (
    GRAFANA_ADMIN_SECRET,
    GRAFANA_PASSWORD_KEY,
    GRAFANA_USER_KEY,
    KUBE_PROMETHEUS_STACK_CHART,
    STORAGE_CLASS,
    ebs_csi_policy_arn,
    gp3_storage_class,
    kube_prometheus_stack_values,
    prometheus_claim,
    prometheus_volume,
)
from selfhost.plan.command import HELM_RELEASE, write_plan
from selfhost.plan.mocks import ACCOUNT_ID, OIDC_ISSUER, mock_random_password
from selfhost.plan.runner import SECRET, PlanResult, RecordedResource, run_program, stack_config
from stacks.config import MonitoringSettings, PlatformConfig
from tests.conformance.helm_values import lookup, reference_values

OIDC_ARN = f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{OIDC_ISSUER}"
OIDC_URL = f"https://{OIDC_ISSUER}"
EPHEMERAL = MonitoringSettings(retention="15d", persistence=False, storage_gib=50)
PERSISTENT = MonitoringSettings(retention="30d", persistence=True, storage_gib=100)
SYSTEM = {"karpenter.sh/nodepool": "system"}


def monitoring_plan(settings: MonitoringSettings) -> PlanResult:
    """Monitoring alone under the plan's mocks, with stand-ins for the provider and Karpenter."""

    def program(_: PlatformConfig) -> dict[str, Any]:
        provider = k8s.Provider("test-k8s", kubeconfig="{}")
        karpenter = pulumi.CustomResource("test:index:Karpenter", "karpenter-release")
        monitoring = Monitoring(
            "monitoring",
            MonitoringArgs(
                provider=provider,
                settings=settings,
                stack="test",
                stack_name="llm-test",
                zone="us-west-2b",
                cluster_name="llm-test",
                oidc_provider_arn=OIDC_ARN,
                oidc_provider_url=OIDC_URL,
                depends_on=[karpenter],
            ),
        )
        return {
            "password": monitoring.grafana_admin_password,
            "port_forward": monitoring.grafana_port_forward_command,
        }

    config, secret_keys = stack_config("dev")
    return run_program("dev", config, secret_keys, program=program)


@pytest.fixture(scope="module")
def ephemeral_plan() -> PlanResult:
    return monitoring_plan(EPHEMERAL)


@pytest.fixture(scope="module")
def persistent_plan() -> PlanResult:
    return monitoring_plan(PERSISTENT)


def only(plan: PlanResult, type_: str) -> RecordedResource:
    [resource] = plan.of_type(type_)
    return resource


# --- values ------------------------------------------------------------------------------------------


def test_prometheus_selects_every_monitor_rule_probe_and_scrape_config():
    spec = kube_prometheus_stack_values(EPHEMERAL)["prometheus"]["prometheusSpec"]
    for kind in ("serviceMonitor", "podMonitor", "rule", "probe", "scrapeConfig"):
        assert spec[f"{kind}SelectorNilUsesHelmValues"] is False, kind


def test_retention_and_persistent_storage_follow_config():
    spec = kube_prometheus_stack_values(PERSISTENT)["prometheus"]["prometheusSpec"]
    assert spec["retention"] == "30d"
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["storageClassName"] == STORAGE_CLASS == gp3_storage_class()["metadata"]["name"]
    assert claim["resources"] == {"requests": {"storage": "100Gi"}}
    assert spec["retentionSize"] == "85GB"  # 100 GiB x 0.85 = 85
    fifty = kube_prometheus_stack_values(
        MonitoringSettings(retention="15d", persistence=True, storage_gib=50)
    )["prometheus"]["prometheusSpec"]
    assert fifty["retentionSize"] == "42GB"  # 50 x 0.85 = 42.5, rounded down so it stays under the volume


def test_without_persistence_prometheus_uses_a_capped_empty_dir():
    spec = kube_prometheus_stack_values(EPHEMERAL)["prometheus"]["prometheusSpec"]
    assert spec["retention"] == "15d"
    assert spec["storageSpec"] == {"emptyDir": {"sizeLimit": "10Gi"}}
    assert spec["retentionSize"] == "8GB"  # 10 GiB x 0.85 = 8.5, rounded down


def test_persistent_volume_claim_template_is_a_valid_claim():
    claim = kube_prometheus_stack_values(PERSISTENT)["prometheus"]["prometheusSpec"]["storageSpec"]
    manifest = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": "prometheus-db"},
        "spec": claim["volumeClaimTemplate"]["spec"],
    }
    kubernetes_validate.validate(manifest, "1.33.0", strict=True)


def test_eks_managed_control_plane_targets_are_off_and_the_rest_kept():
    values = kube_prometheus_stack_values(EPHEMERAL)
    for component in ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy"):
        assert values[component] == {"enabled": False}
    # Scrapeable on EKS (API server through the kubernetes Service, kubelets, CoreDNS pods): defaults kept.
    assert not {"kubeApiServer", "kubelet", "coreDns"} & set(values)


def test_every_workload_but_node_exporter_sits_on_the_system_pool():
    values = kube_prometheus_stack_values(EPHEMERAL)
    for path in (
        "prometheus.prometheusSpec",
        "alertmanager.alertmanagerSpec",
        "prometheusOperator",
        "prometheusOperator.admissionWebhooks.patch",
        "grafana",
        "kube-state-metrics",
    ):
        assert lookup(values, path)["nodeSelector"] == SYSTEM, path
    assert "prometheus-node-exporter" not in values


def test_grafana_reads_its_admin_credentials_from_the_secret(reference: Path):
    grafana = kube_prometheus_stack_values(EPHEMERAL)["grafana"]
    assert grafana["admin"] == {
        "existingSecret": GRAFANA_ADMIN_SECRET,
        "userKey": GRAFANA_USER_KEY,
        "passwordKey": GRAFANA_PASSWORD_KEY,
    }
    assert "adminPassword" not in grafana
    upstream = reference_values(reference, "kube-prometheus-stack")["grafana"]["admin"]
    assert (upstream["userKey"], upstream["passwordKey"]) == ("admin-user", "admin-password")
    assert (GRAFANA_USER_KEY, GRAFANA_PASSWORD_KEY) == ("admin-user", "admin-password")


def test_dashboard_sidecar_watches_the_label_components_use_in_every_namespace(reference: Path):
    sidecar = kube_prometheus_stack_values(EPHEMERAL)["grafana"]["sidecar"]["dashboards"]
    assert sidecar == {
        "enabled": True,
        "label": "grafana_dashboard",
        "labelValue": "1",
        "searchNamespace": "ALL",
    }
    assert (DASHBOARD_LABEL, DASHBOARD_LABEL_VALUE) == ("grafana_dashboard", "1")
    upstream = reference_values(reference, "kube-prometheus-stack")["grafana"]["sidecar"]["dashboards"]
    assert (upstream["label"], upstream["labelValue"]) == (DASHBOARD_LABEL, DASHBOARD_LABEL_VALUE)


def test_ebs_csi_trust_policy_admits_only_the_controller_service_account():
    policy = service_account_trust_policy(OIDC_ARN, OIDC_URL, "kube-system", "ebs-csi-controller-sa")
    [statement] = policy["Statement"]
    assert statement["Principal"] == {"Federated": OIDC_ARN}
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Condition"] == {
        "StringEquals": {
            f"{OIDC_ISSUER}:sub": "system:serviceaccount:kube-system:ebs-csi-controller-sa",
            f"{OIDC_ISSUER}:aud": "sts.amazonaws.com",
        }
    }


def test_ebs_csi_policy_is_the_managed_one_in_the_cluster_partition():
    assert ebs_csi_policy_arn(OIDC_ARN) == "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
    china = "arn:aws-cn:iam::123456789012:oidc-provider/oidc.eks.cn-north-1.amazonaws.com.cn/id/X"
    assert ebs_csi_policy_arn(china) == "arn:aws-cn:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"


def test_storage_class_names_encrypted_gp3_and_allows_growing_the_claim():
    storage_class = gp3_storage_class()
    assert storage_class["provisioner"] == "ebs.csi.aws.com"
    assert storage_class["parameters"] == {"type": "gp3", "encrypted": "true"}
    assert storage_class["allowVolumeExpansion"] is True
    # The volume is Pulumi's: removing a claim must never delete it behind Pulumi's back.
    assert storage_class["reclaimPolicy"] == "Retain"
    kubernetes_validate.validate(storage_class, "1.33.0", strict=True)


def test_the_prometheus_claim_is_the_one_the_statefulset_would_create():
    # prometheus-operator: StatefulSet prometheus-<Prometheus name>, claims <template>-<StatefulSet>-<ordinal>;
    # kube-prometheus-stack names the Prometheus kube-prometheus-stack-prometheus.
    template = kube_prometheus_stack_values(PERSISTENT)["prometheus"]["prometheusSpec"]["storageSpec"]
    name = template["volumeClaimTemplate"]["metadata"]["name"]
    claim = prometheus_claim("llm-prod-prometheus", PERSISTENT)
    assert claim["metadata"] == {
        "name": f"{name}-prometheus-kube-prometheus-stack-prometheus-0",
        "namespace": "monitoring",
    }
    assert claim["spec"]["volumeName"] == "llm-prod-prometheus"
    assert claim["spec"]["resources"] == template["volumeClaimTemplate"]["spec"]["resources"]
    volume = prometheus_volume("llm-prod-prometheus", "vol-0123456789abcdef0", "us-west-2b", PERSISTENT)
    assert volume["spec"]["claimRef"] == claim["metadata"]
    assert volume["spec"]["csi"]["volumeHandle"] == "vol-0123456789abcdef0"
    assert volume["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert volume["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"] == [
        {
            "matchExpressions": [
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["us-west-2b"]}
            ]
        }
    ]
    for manifest in (claim, volume):
        kubernetes_validate.validate(manifest, "1.33.0", strict=True)


# --- wiring under mocks ------------------------------------------------------------------------------


def test_release_is_the_pinned_chart_in_the_monitoring_namespace(ephemeral_plan: PlanResult):
    release = only(ephemeral_plan, HELM_RELEASE)
    assert release.parent == "monitoring"
    assert release.inputs["name"] == "kube-prometheus-stack"
    assert release.inputs["chart"] == KUBE_PROMETHEUS_STACK_CHART.name == "kube-prometheus-stack"
    assert release.inputs["version"] == KUBE_PROMETHEUS_STACK_CHART.version == "88.5.3"
    assert release.inputs["repositoryOpts"] == {"repo": "https://prometheus-community.github.io/helm-charts"}
    assert release.inputs["namespace"] == "monitoring"
    assert release.inputs["values"] == kube_prometheus_stack_values(EPHEMERAL)
    assert {"karpenter-release", "monitoring-grafana-admin", "monitoring-namespace"} <= set(
        release.dependencies
    )


def test_admin_secret_holds_a_generated_password_as_a_secret(ephemeral_plan: PlanResult):
    secret = only(ephemeral_plan, "kubernetes:core/v1:Secret")
    assert secret.inputs["metadata"] == {"name": GRAFANA_ADMIN_SECRET, "namespace": "monitoring"}
    # Every key is there, every value masked (the plan never shows a secret, and the object stays valid).
    assert secret.inputs["stringData"] == {GRAFANA_USER_KEY: SECRET, GRAFANA_PASSWORD_KEY: SECRET}
    password = only(ephemeral_plan, "random:index/randomPassword:RandomPassword")
    assert password.inputs["length"] == 32
    assert password.name in secret.dependencies
    assert ephemeral_plan.outputs["password"] == SECRET
    assert ephemeral_plan.outputs["port_forward"] == (
        "kubectl --namespace monitoring port-forward svc/kube-prometheus-stack-grafana 3000:80"
    )


def test_no_ebs_resources_without_persistence(ephemeral_plan: PlanResult):
    types = {r.type for r in ephemeral_plan.resources}
    assert not types & {
        "aws:eks/addon:Addon",
        "aws:iam/role:Role",
        "kubernetes:storage.k8s.io/v1:StorageClass",
    }


def test_persistence_adds_the_ebs_csi_addon_with_its_irsa_role(persistent_plan: PlanResult):
    role = only(persistent_plan, "aws:iam/role:Role")
    assert role.inputs["name"] == "llm-test-ebs-csi"
    assert json.loads(role.inputs["assumeRolePolicy"]) == service_account_trust_policy(
        OIDC_ARN, OIDC_URL, "kube-system", "ebs-csi-controller-sa"
    )
    attachment = only(persistent_plan, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
    assert attachment.inputs == {
        "role": "llm-test-ebs-csi",
        "policyArn": "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy",
    }
    addon = only(persistent_plan, "aws:eks/addon:Addon")
    assert addon.inputs["addonName"] == "aws-ebs-csi-driver"
    assert addon.inputs["clusterName"] == "llm-test"
    assert addon.inputs["serviceAccountRoleArn"] == f"arn:aws:iam::{ACCOUNT_ID}:role/llm-test-ebs-csi"
    assert {attachment.name, "karpenter-release"} <= set(addon.dependencies)


def test_destroy_deletes_the_volume_while_the_driver_still_runs(persistent_plan: PlanResult):
    # Pulumi destroys in reverse dependency order: the release, the claim, the PersistentVolume and the EBS
    # volume each go before what they depend on, and the add-on (the driver that detaches) goes last.
    release = only(persistent_plan, HELM_RELEASE)
    claim = only(persistent_plan, "kubernetes:core/v1:PersistentVolumeClaim")
    volume_object = only(persistent_plan, "kubernetes:core/v1:PersistentVolume")
    volume = only(persistent_plan, "aws:ebs/volume:Volume")
    storage_class = only(persistent_plan, "kubernetes:storage.k8s.io/v1:StorageClass")
    addon = only(persistent_plan, "aws:eks/addon:Addon")
    assert {claim.name, storage_class.name, addon.name} <= set(release.dependencies)
    assert volume_object.name in claim.dependencies
    assert volume.name in volume_object.dependencies
    assert addon.name in volume.dependencies
    assert volume.inputs["availabilityZone"] == "us-west-2b"
    assert volume.inputs["size"] == 100
    assert volume.inputs["encrypted"] is True and volume.inputs["type"] == "gp3"
    assert volume.inputs["tags"] == {
        "Name": "llm-test-prometheus",
        "selfhost:stack": "test",
        "selfhost:component": "monitoring",
    }
    assert volume_object.inputs["spec"]["csi"]["volumeHandle"] == f"{volume.name}-id"
    assert storage_class.inputs["provisioner"] == "ebs.csi.aws.com"
    assert storage_class.inputs["parameters"]["encrypted"] == "true"
    assert storage_class.inputs["metadata"]["name"] == STORAGE_CLASS


def test_planned_objects_validate_strictly(ephemeral_plan: PlanResult, persistent_plan: PlanResult):
    for plan in (ephemeral_plan, persistent_plan):
        for resource in plan.resources:
            if resource.custom and resource.type.startswith("kubernetes:") and "kind" in resource.inputs:
                kubernetes_validate.validate(dict(resource.inputs), "1.33.0", strict=True)


# --- the whole plan ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_no_plain_text_grafana_password_anywhere_in_the_plan(
    dev_plan: PlanResult, prod_plan: PlanResult, tmp_path: Path, stack: str
):
    plan = dev_plan if stack == "dev" else prod_plan
    [password] = [
        r for r in plan.of_type("random:index/randomPassword:RandomPassword") if r.parent == "monitoring"
    ]
    # The value the mocks generated for this resource (a 32-character password, so the search means something).
    generated = mock_random_password(password.name, int(password.inputs["length"]))
    assert len(generated) == 32
    assert plan.outputs["grafana_admin_password"] == SECRET
    assert generated not in json.dumps([r.inputs for r in plan.resources], default=str)
    assert generated not in json.dumps(plan.outputs, default=str)
    write_plan(plan, tmp_path)
    for written in tmp_path.rglob("*"):
        if written.is_file():
            assert generated not in written.read_text(), written
    values = json.dumps(
        next(r for r in plan.of_type(HELM_RELEASE) if r.inputs["name"] == "kube-prometheus-stack").inputs
    )
    assert "adminPassword" not in values


def test_stack_outputs_tell_how_to_reach_grafana(dev_plan: PlanResult):
    assert dev_plan.outputs["grafana_port_forward_command"].startswith(
        "kubectl --namespace monitoring port-forward"
    )
    assert "GPUs (NVIDIA DCGM)" in dev_plan.outputs["grafana_dashboards"]
