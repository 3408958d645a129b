"""The EKS cluster: pure builders, then the inputs the real program hands pulumi_eks.Cluster."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pulumi
import pytest

from components.cluster.access import (
    access_entries,
    endpoint_access,
    fargate_selectors,
    pod_execution_trust_policy,
)
from components.cluster.kubeconfig import server_and_certificate, update_kubeconfig_command
from selfhost.plan.command import write_plan
from selfhost.plan.mocks import PlanMocks
from selfhost.plan.runner import SECRET, PlanResult, run_program, stack_config
from stacks.platform import build_platform

EKS = "eks:index:Cluster"
ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


TAGS = {"selfhost:stack": "dev", "selfhost:component": "cluster"}


def eks_inputs(plan: PlanResult) -> dict:
    (cluster,) = plan.of_type(EKS)
    return cluster.inputs


def test_admin_access_entries_grant_cluster_admin_at_cluster_scope():
    entries = access_entries(
        ["arn:aws:iam::111122223333:role/platform-admin", "arn:aws-us-gov:iam::444455556666:role/ops/oncall"],
        [],
        TAGS,
    )
    assert entries == {
        "admin-111122223333-platform-admin": {
            "principal_arn": "arn:aws:iam::111122223333:role/platform-admin",
            "type": "STANDARD",
            "access_policies": {
                "cluster-admin": {"policy_arn": ADMIN_POLICY, "access_scope": {"type": "cluster"}}
            },
            "tags": TAGS,
        },
        "admin-444455556666-oncall": {
            "principal_arn": "arn:aws-us-gov:iam::444455556666:role/ops/oncall",
            "type": "STANDARD",
            "access_policies": {
                "cluster-admin": {
                    "policy_arn": "arn:aws-us-gov:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
                    "access_scope": {"type": "cluster"},
                }
            },
            "tags": TAGS,
        },
    }
    assert access_entries([], [], TAGS) == {}


def test_preview_roles_get_view_access_and_the_preview_group():
    entries = access_entries([], ["arn:aws:iam::111122223333:role/selfhost-preview"], TAGS)
    assert entries == {
        "preview-111122223333-selfhost-preview": {
            "principal_arn": "arn:aws:iam::111122223333:role/selfhost-preview",
            "type": "STANDARD",
            "kubernetes_groups": ["selfhost:preview"],
            "access_policies": {
                "view": {
                    "policy_arn": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSViewPolicy",
                    "access_scope": {"type": "cluster"},
                }
            },
            "tags": TAGS,
        }
    }


def test_preview_roles_read_helm_release_secrets_only_where_releases_live(plan_with):
    plan = plan_with({"cluster:previewRoleArns": '["arn:aws:iam::123456789012:role/selfhost-preview"]'})
    roles = plan.of_type("kubernetes:rbac.authorization.k8s.io/v1:Role")
    bindings = plan.of_type("kubernetes:rbac.authorization.k8s.io/v1:RoleBinding")
    # The namespaces of the Helm releases: Karpenter's, monitoring's, the GPU agents'; not the model's.
    assert sorted(r.inputs["metadata"]["namespace"] for r in roles) == ["karpenter", "monitoring", "nvidia"]
    assert all(
        r.inputs["rules"]
        == [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list", "watch"]}]
        for r in roles
    )
    assert all(
        b.inputs["subjects"]
        == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "selfhost:preview"}]
        for b in bindings
    )
    assert len(bindings) == 3
    [entry] = [e for key, e in eks_inputs(plan)["accessEntries"].items() if key.startswith("preview-")]
    assert entry["kubernetesGroups"] == ["selfhost:preview"]


def test_without_preview_roles_there_is_no_preview_access(dev_plan):
    assert not dev_plan.of_type("selfhost:index:PreviewAccess")


def test_fargate_takes_karpenters_namespace_and_coredns_only():
    assert fargate_selectors(["karpenter"]) == [
        {"namespace": "karpenter"},
        {"namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
    ]


def test_pod_execution_role_trusts_fargate_for_this_clusters_profiles_only():
    policy = pod_execution_trust_policy("aws", "us-west-2", "111122223333", "llm-dev")
    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"Service": "eks-fargate-pods.amazonaws.com"}
    assert statement["Action"] == "sts:AssumeRole"
    assert statement["Condition"] == {
        "ArnLike": {"aws:SourceArn": "arn:aws:eks:us-west-2:111122223333:fargateprofile/llm-dev/*"}
    }


def test_public_endpoint_only_with_cidrs():
    assert endpoint_access(["203.0.113.0/24"]).public is True
    assert endpoint_access(["203.0.113.0/24"]).public_cidrs == ["203.0.113.0/24"]
    # pulumi-eks rejects publicAccessCidrs on a cluster whose public endpoint is off.
    assert endpoint_access([]).public is False
    assert endpoint_access([]).public_cidrs is None


def test_endpoint_and_certificate_are_read_from_the_kubeconfig():
    kubeconfig = {
        "clusters": [
            {
                "name": "kubernetes",
                "cluster": {
                    "server": "https://ABC.gr7.us-west-2.eks.amazonaws.com",
                    "certificate-authority-data": "Q0E=",
                },
            }
        ]
    }
    assert server_and_certificate(json.dumps(kubeconfig)) == (
        "https://ABC.gr7.us-west-2.eks.amazonaws.com",
        "Q0E=",
    )


def test_update_kubeconfig_command():
    assert (
        update_kubeconfig_command("eu-west-1", "llm-prod", None)
        == "aws eks update-kubeconfig --region eu-west-1 --name llm-prod"
    )
    assert update_kubeconfig_command("eu-west-1", "llm-prod", "team").endswith(" --profile team")


def test_dev_cluster_inputs(dev_plan: PlanResult):
    inputs = eks_inputs(dev_plan)
    assert dev_plan.of_type(EKS)[0].parent == "cluster"
    assert inputs["name"] == "llm-dev"
    assert inputs["version"] == "1.35"
    assert inputs["upgradePolicy"] == {"supportType": "STANDARD"}
    assert inputs["authenticationMode"] == "API"
    assert inputs["accessEntries"] == {}
    assert inputs["skipDefaultNodeGroup"] is True
    assert inputs["skipDefaultSecurityGroups"] is True
    assert inputs["createOidcProvider"] is True
    assert inputs["endpointPrivateAccess"] is True
    assert inputs["endpointPublicAccess"] is True
    assert inputs["publicAccessCidrs"] == ["0.0.0.0/0"]
    assert set(inputs["enabledClusterLogTypes"]) >= {"api", "audit", "authenticator"}
    private_ids = [f"llm-dev-private-{zone}-id" for zone in range(3)]
    assert inputs["vpcId"] == "llm-dev-vpc-id"
    assert inputs["privateSubnetIds"] == private_ids
    assert "publicSubnetIds" not in inputs and "subnetIds" not in inputs


def test_secrets_are_encrypted_with_a_rotating_key(dev_plan: PlanResult):
    key = dev_plan.named("llm-dev-eks-secrets")
    assert key.type == "aws:kms/key:Key"
    assert key.inputs["enableKeyRotation"] is True
    # The mock gives every KMS key this ARN (selfhost/plan/mocks.py).
    assert eks_inputs(dev_plan)["encryptionConfigKeyArn"] == (
        "arn:aws:kms:us-west-2:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    )


def test_control_plane_log_group_is_created_first_with_a_retention(dev_plan: PlanResult):
    group = dev_plan.named("llm-dev-control-plane")
    # EKS writes control-plane logs to /aws/eks/<cluster>/cluster.
    assert group.inputs["name"] == "/aws/eks/llm-dev/cluster"
    assert group.inputs["retentionInDays"] == 30
    assert "llm-dev-control-plane" in dev_plan.of_type(EKS)[0].dependencies


def test_fargate_profile_for_karpenter_and_coredns_in_private_subnets(dev_plan: PlanResult):
    fargate = eks_inputs(dev_plan)["fargate"]
    assert fargate["selectors"] == [
        {"namespace": "karpenter"},
        {"namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
    ]
    assert fargate["subnetIds"] == [f"llm-dev-private-{zone}-id" for zone in range(3)]
    role = dev_plan.named("llm-dev-fargate-pods")
    assert fargate["podExecutionRoleArn"] == "arn:aws:iam::123456789012:role/llm-dev-fargate-pods"
    trust = json.loads(role.inputs["assumeRolePolicy"])
    assert trust["Statement"][0]["Condition"]["ArnLike"]["aws:SourceArn"] == (
        "arn:aws:eks:us-west-2:123456789012:fargateprofile/llm-dev/*"
    )
    attachment = dev_plan.named("llm-dev-fargate-pods-policy")
    assert attachment.inputs["policyArn"] == "arn:aws:iam::aws:policy/AmazonEKSFargatePodExecutionRolePolicy"
    # The profile must not be created before the role can be used.
    assert "llm-dev-fargate-pods-policy" in dev_plan.of_type(EKS)[0].dependencies


def test_control_plane_waits_for_the_network_routes(dev_plan: PlanResult):
    dependencies = dev_plan.of_type(EKS)[0].dependencies
    assert {"llm-dev-nat-0", "llm-dev-private-0-default", "llm-dev-private-0-rta", "llm-dev-s3"} <= set(
        dependencies
    )


def test_karpenter_discovers_the_eks_managed_security_group(dev_plan: PlanResult):
    tag = dev_plan.named("llm-dev-cluster-sg-discovery")
    # The mock's clusterSecurityGroupId, i.e. the group EKS creates when pulumi-eks creates none.
    assert tag.inputs == {
        "resourceId": "sg-0c1a2b3c4d5e6f701",
        "key": "karpenter.sh/discovery",
        "value": "llm-dev",
    }


def test_kubernetes_provider_holds_a_secret_kubeconfig_and_waits_for_fargate(dev_plan: PlanResult):
    provider = dev_plan.named("llm-dev-k8s")
    assert provider.type == "pulumi:providers:kubernetes"
    assert provider.inputs["kubeconfig"] == SECRET
    assert provider.inputs["enableServerSideApply"] in (True, "true")
    assert {"llm-dev", "llm-dev-cluster-sg-discovery"} <= set(provider.dependencies)


def test_stack_outputs(dev_plan: PlanResult):
    outputs = dev_plan.outputs
    assert outputs["cluster_name"] == "llm-dev"
    assert outputs["region"] == "us-west-2"
    assert (
        outputs["update_kubeconfig_command"] == "aws eks update-kubeconfig --region us-west-2 --name llm-dev"
    )
    assert outputs["kubeconfig"] == SECRET
    assert outputs["oidc_provider_arn"].startswith(
        "arn:aws:iam::123456789012:oidc-provider/oidc.eks.us-west-2."
    )


def test_kubeconfig_is_nowhere_in_plain_text(dev_plan: PlanResult, tmp_path: Path):
    write_plan(dev_plan, tmp_path)
    text = (tmp_path / "resources.json").read_text()
    # The mock kubeconfig's CA data and its get-token command would show if it leaked.
    assert "certificate-authority-data" not in text
    assert "get-token" not in text


def test_admins_and_a_private_endpoint_from_config(plan_with: Callable[..., PlanResult]):
    plan = plan_with(
        {
            "cluster:adminRoleArns": ["arn:aws:iam::123456789012:role/platform-admin"],
            "cluster:publicAccessCidrs": [],
            "cluster:supportType": "EXTENDED",
        }
    )
    inputs = eks_inputs(plan)
    assert inputs["accessEntries"] == {
        "admin-123456789012-platform-admin": {
            "principalArn": "arn:aws:iam::123456789012:role/platform-admin",
            "type": "STANDARD",
            "accessPolicies": {
                "cluster-admin": {"policyArn": ADMIN_POLICY, "accessScope": {"type": "cluster"}}
            },
            "tags": TAGS,
        }
    }
    assert inputs["endpointPublicAccess"] is False
    assert inputs["endpointPrivateAccess"] is True
    assert inputs.get("publicAccessCidrs") is None
    assert inputs["upgradePolicy"] == {"supportType": "EXTENDED"}


@pytest.mark.parametrize("stack_plan", ["dev_plan", "prod_plan"])
def test_both_stacks_build_the_cluster(stack_plan: str, request: pytest.FixtureRequest):
    plan: PlanResult = request.getfixturevalue(stack_plan)
    assert len(plan.of_type(EKS)) == 1
    assert len(plan.of_type("selfhost:index:Cluster")) == 1
    assert len(plan.of_type("selfhost:index:Network")) == 1
    assert eks_inputs(plan)["name"] == f"llm-{plan.stack}"


class ProviderKubeconfigs(PlanMocks):
    """The mocks of the plan, also keeping what the Kubernetes provider is given (mocks see secrets in plain
    text; the plan's own record masks them)."""

    def __init__(self) -> None:
        self.kubeconfigs: list[dict] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs):
        if args.typ == "pulumi:providers:kubernetes":
            # A secret reaches the mocks in its wire form, {<secret signature>: ..., "value": ...}.
            self.kubeconfigs.append(json.loads(args.inputs["kubeconfig"]["value"]))
        return super().new_resource(args)


def kubeconfigs_of(overrides: dict[str, str]) -> tuple[dict, dict]:
    """The Kubernetes provider's kubeconfig and the exported one, for the dev stack with `overrides`."""
    config, secret_keys = stack_config("dev")
    config.update(overrides)
    mocks = ProviderKubeconfigs()

    def program(platform_config):
        outputs = build_platform(platform_config, deploying=False)
        return {"kubeconfig": pulumi.Output.unsecret(outputs["kubeconfig"])}

    plan = run_program("dev", config, secret_keys, program, mocks)
    [provider_kubeconfig] = mocks.kubeconfigs
    return provider_kubeconfig, json.loads(plan.outputs["kubeconfig"])


def exec_args(kubeconfig: dict) -> list[str]:
    [user] = kubeconfig["users"]
    return user["user"]["exec"]["args"]


def test_an_aws_profile_reaches_the_provider_and_the_exported_kubeconfig():
    # pulumi-eks's kubeconfigJson never carries the profile (cluster.ts exports genKubeconfig(false)): the
    # provider's kubeconfig is built here, with --profile and --region for `aws eks get-token`.
    provider, exported = kubeconfigs_of({"aws:profile": "team-admin"})
    assert provider == exported
    args = exec_args(provider)
    assert args[args.index("--profile") + 1] == "team-admin"
    assert args[args.index("--region") + 1] == "us-west-2"
    assert args[args.index("--cluster-name") + 1] == "llm-dev"
    [cluster] = provider["clusters"]
    # The mock's endpoint and CA (selfhost/plan/mocks.py), carried over from pulumi-eks's kubeconfig.
    assert cluster["cluster"] == {
        "server": "https://EXAMPLE.gr7.us-west-2.eks.amazonaws.com",
        "certificate-authority-data": "LS0tLS1CRUdJTg==",
    }


def test_without_a_profile_the_kubeconfig_uses_the_default_chain():
    provider, exported = kubeconfigs_of({})
    assert provider == exported
    assert "--profile" not in exec_args(provider)
    assert not any(entry["name"] == "AWS_PROFILE" for entry in provider["users"][0]["user"]["exec"]["env"])


def test_the_cluster_enforces_network_policies(dev_plan):
    # The VPC CNI add-on pulumi-eks manages runs its network policy agent, which enforces the model
    # server's NetworkPolicy on EC2 nodes.
    assert eks_inputs(dev_plan)["vpcCniOptions"]["enableNetworkPolicy"] is True
