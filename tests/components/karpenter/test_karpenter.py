"""Karpenter: IAM against upstream's CloudFormation template, the interruption queue and its rules, the Helm
release, and the node classes and pools as the real program registers them (dev and prod plans)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi_aws as aws
import pulumi_kubernetes as k8s
import pytest
import yaml

from components.iam import service_account_trust_policy
from components.karpenter.component import NODE_CLASS_DELETE_TIMEOUT, Karpenter, KarpenterArgs
from components.karpenter.iam import (
    CONTROLLER_POLICIES,
    UPSTREAM_CONTROLLER_POLICIES,
    ControllerScope,
    interruption_queue_policy,
)
from components.karpenter.values import CHART, CRD_CHART, KARPENTER_VERSION
from components.karpenter.values import NAMESPACE as KARPENTER_NAMESPACE
from selfhost.plan.command import HELM_RELEASE
from selfhost.plan.mocks import ACCOUNT_ID, OIDC_ISSUER, REGION
from selfhost.plan.runner import PlanResult, RecordedResource, run_program, stack_config
from stacks.catalogs.instances import GPU_INSTANCES, SYSTEM_INSTANCE_PRICES, gpu_instance_types
from stacks.platform import node_settings
from tests.conformance.helm_values import reference_chart, reference_values, unknown_value_paths

PREFIX = "llm-dev-karpenter"
CLUSTER = "llm-dev"
NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"
NODE_CLASS = "kubernetes:karpenter.k8s.aws/v1:EC2NodeClass"
# The ARNs the plan's mocks give these resources: arn:aws:<service>:<region>:<account>:<name>.
NODE_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/{PREFIX}-node-role"
CONTROLLER_ROLE_ARN = f"arn:aws:iam::{ACCOUNT_ID}:role/{PREFIX}-controller-role"
QUEUE_ARN = f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{CLUSTER}"

# Upstream's managed policies (cloudformation.yaml resource names) and the short names ours carry.
UPSTREAM_POLICY_NAMES = {
    "NodeLifecyclePolicy": "node-lifecycle",
    "IAMIntegrationPolicy": "iam-integration",
    "EKSIntegrationPolicy": "eks-integration",
    "InterruptionPolicy": "interruption",
    "ZonalShiftPolicy": "zonal-shift",
    "ResourceDiscoveryPolicy": "resource-discovery",
}


class CloudFormationLoader(yaml.SafeLoader):
    """Reads !Sub, !GetAtt and !Ref as {"Sub": value} etc. instead of failing on the tags."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node)}
    assert isinstance(node, yaml.MappingNode)
    return {suffix: loader.construct_mapping(node)}


CloudFormationLoader.add_multi_constructor("!", _intrinsic)


@pytest.fixture(scope="module")
def upstream(reference: Path) -> dict[str, Any]:
    return yaml.load(
        (reference / "karpenter" / "cloudformation.yaml").read_text(), Loader=CloudFormationLoader
    )


def render_sub(template: str, values: dict[str, str]) -> str:
    """CloudFormation's !Sub: every ${Name} replaced; an unknown name is an error."""
    return re.sub(r"\$\{([^}]+)\}", lambda match: values[match.group(1)], template)


def upstream_values(cluster: str, node_role_arn: str, queue_arn: str) -> dict[str, str]:
    return {
        "ClusterName": cluster,
        "AWS::Partition": "aws",
        "AWS::Region": REGION,
        "AWS::AccountId": ACCOUNT_ID,
        "AWS::URLSuffix": "amazonaws.com",
        "KarpenterNodeRole.Arn": node_role_arn,
        "KarpenterInterruptionQueue.Arn": queue_arn,
    }


def upstream_policy(upstream: dict[str, Any], name: str, values: dict[str, str]) -> dict[str, Any]:
    return json.loads(render_sub(upstream["Resources"][name]["Properties"]["PolicyDocument"]["Sub"], values))


def example_scope() -> tuple[dict[str, str], ControllerScope]:
    """Upstream's template parameters and our controller scope for one made-up cluster, c1."""
    values = upstream_values(
        "c1", "arn:aws:iam::123456789012:role/n", "arn:aws:sqs:us-west-2:123456789012:c1"
    )
    scope = ControllerScope(
        "aws",
        REGION,
        ACCOUNT_ID,
        "c1",
        values["KarpenterNodeRole.Arn"],
        values["KarpenterInterruptionQueue.Arn"],
    )
    return values, scope


def actions(document: dict[str, Any]) -> set[str]:
    found: set[str] = set()
    for statement in document["Statement"]:
        action = statement["Action"]
        found.update([action] if isinstance(action, str) else action)
    return found


def resources_of(statement: dict[str, Any]) -> list[str]:
    resource = statement["Resource"]
    return [resource] if isinstance(resource, str) else resource


def only(plan: PlanResult, type_: str, predicate: Callable[[RecordedResource], bool]) -> RecordedResource:
    matches = [r for r in plan.of_type(type_) if predicate(r)]
    assert len(matches) == 1, [r.name for r in matches]
    return matches[0]


def node_pool(plan: PlanResult, name: str) -> dict[str, Any]:
    return only(plan, NODE_POOL, lambda r: r.inputs["metadata"]["name"] == name).inputs


def node_class(plan: PlanResult, name: str) -> dict[str, Any]:
    return only(plan, NODE_CLASS, lambda r: r.inputs["metadata"]["name"] == name).inputs


def karpenter_release(plan: PlanResult) -> RecordedResource:
    return only(plan, HELM_RELEASE, lambda r: r.inputs["chart"] == CHART)


def requirement(pool: dict[str, Any], key: str) -> dict[str, Any]:
    [found] = [r for r in pool["spec"]["template"]["spec"]["requirements"] if r["key"] == key]
    return found


# --- IAM: trust -------------------------------------------------------------------------------------------


def test_controller_trust_is_the_service_account_and_audience_of_this_clusters_issuer(dev_plan):
    role = dev_plan.named(f"{PREFIX}-controller-role")
    [statement] = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"] == {"Federated": f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{OIDC_ISSUER}"}
    # Condition keys name the issuer without its scheme (IAM user guide, IRSA trust policies).
    assert statement["Condition"] == {
        "StringEquals": {
            f"{OIDC_ISSUER}:sub": "system:serviceaccount:karpenter:karpenter",
            f"{OIDC_ISSUER}:aud": "sts.amazonaws.com",
        }
    }


def test_the_chart_creates_the_service_account_the_trust_names(dev_plan):
    release = karpenter_release(dev_plan).inputs
    assert (release["namespace"], release["values"]["serviceAccount"]["name"]) == ("karpenter", "karpenter")
    assert release["values"]["serviceAccount"].get("create", True) is True
    assert release["values"]["serviceAccount"]["annotations"] == {
        "eks.amazonaws.com/role-arn": CONTROLLER_ROLE_ARN
    }


def test_trust_condition_strips_only_the_scheme():
    document = service_account_trust_policy(
        "arn:aws:iam::111122223333:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/ABC",
        "https://oidc.eks.eu-west-1.amazonaws.com/id/ABC",
        "ns",
        "sa",
    )
    conditions = document["Statement"][0]["Condition"]["StringEquals"]
    assert set(conditions) == {
        "oidc.eks.eu-west-1.amazonaws.com/id/ABC:sub",
        "oidc.eks.eu-west-1.amazonaws.com/id/ABC:aud",
    }
    assert conditions["oidc.eks.eu-west-1.amazonaws.com/id/ABC:sub"] == "system:serviceaccount:ns:sa"


def test_the_fargate_profile_covers_the_controllers_namespace(dev_plan):
    cluster = dev_plan.named(CLUSTER)
    namespaces = [selector["namespace"] for selector in cluster.inputs["fargate"]["selectors"]]
    assert KARPENTER_NAMESPACE in namespaces
    assert karpenter_release(dev_plan).inputs["namespace"] == KARPENTER_NAMESPACE


# --- IAM: the controller's permissions against upstream --------------------------------------------------


@pytest.mark.parametrize(("upstream_name", "ours"), UPSTREAM_POLICY_NAMES.items())
def test_plan_policy_equals_upstreams_for_this_cluster(dev_plan, upstream, upstream_name, ours):
    expected = upstream_policy(upstream, upstream_name, upstream_values(CLUSTER, NODE_ROLE_ARN, QUEUE_ARN))
    planned = json.loads(dev_plan.named(f"{PREFIX}-controller-{ours}").inputs["policy"])
    assert actions(planned) == actions(expected)
    assert planned == expected


def test_every_upstream_controller_action_is_granted_and_no_other_but_spot_role_creation(upstream):
    values, scope = example_scope()
    upstream_actions = set().union(
        *(actions(upstream_policy(upstream, name, values)) for name in UPSTREAM_POLICY_NAMES)
    )
    ours = set().union(*(actions(document(scope)) for document in CONTROLLER_POLICIES.values()))
    assert upstream_actions <= ours
    assert ours - upstream_actions == {"iam:CreateServiceLinkedRole"}
    assert len(UPSTREAM_CONTROLLER_POLICIES) == len(UPSTREAM_POLICY_NAMES) == 6


def test_no_wildcard_resource_or_action_beyond_upstreams(upstream):
    values, scope = example_scope()
    # Actions that upstream grants on Resource "*": only those may be unscoped in ours.
    unscoped_upstream = {
        action
        for name in UPSTREAM_POLICY_NAMES
        for statement in upstream_policy(upstream, name, values)["Statement"]
        if "*" in resources_of(statement)
        for action in actions({"Statement": [statement]})
    }
    for document in CONTROLLER_POLICIES.values():
        for statement in document(scope)["Statement"]:
            assert not any(action.endswith("*") for action in actions({"Statement": [statement]}))
            if "*" in resources_of(statement):
                assert actions({"Statement": [statement]}) <= unscoped_upstream, statement
            assert all("*" not in r or r.endswith("/*") or r == "*" for r in resources_of(statement))


def test_spot_service_linked_role_grant_names_one_role_of_one_service(dev_plan):
    [statement] = json.loads(
        dev_plan.named(f"{PREFIX}-controller-spot-service-linked-role").inputs["policy"]
    )["Statement"]
    assert statement["Action"] == "iam:CreateServiceLinkedRole"
    assert statement["Resource"] == (
        f"arn:aws:iam::{ACCOUNT_ID}:role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot"
    )
    assert statement["Condition"] == {"StringEquals": {"iam:AWSServiceName": "spot.amazonaws.com"}}


def test_every_controller_policy_is_attached_to_the_controller_role(dev_plan):
    attachments = [
        r
        for r in dev_plan.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if r.parent == "karpenter"
    ]
    to_controller = {r.name for r in attachments if r.inputs["role"] == f"{PREFIX}-controller-role"}
    assert to_controller == {f"{PREFIX}-controller-{name}-attachment" for name in CONTROLLER_POLICIES}


# --- IAM: nodes -------------------------------------------------------------------------------------------


def test_node_role_trust_and_managed_policies_match_upstream(dev_plan, upstream):
    values = upstream_values(CLUSTER, NODE_ROLE_ARN, QUEUE_ARN)
    upstream_role = upstream["Resources"]["KarpenterNodeRole"]["Properties"]
    [upstream_statement] = upstream_role["AssumeRolePolicyDocument"]["Statement"]
    [statement] = json.loads(dev_plan.named(f"{PREFIX}-node-role").inputs["assumeRolePolicy"])["Statement"]
    assert statement["Principal"] == {
        "Service": render_sub(upstream_statement["Principal"]["Service"]["Sub"], values)
    }
    assert statement["Action"] == upstream_statement["Action"] == ["sts:AssumeRole"]
    attached = {
        r.inputs["policyArn"]
        for r in dev_plan.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if r.inputs["role"] == f"{PREFIX}-node-role"
    }
    assert attached == {render_sub(arn["Sub"], values) for arn in upstream_role["ManagedPolicyArns"]}


def test_nodes_join_through_an_ec2_linux_access_entry(dev_plan):
    entry = only(dev_plan, "aws:eks/accessEntry:AccessEntry", lambda r: r.parent == "karpenter").inputs
    assert entry == {**entry, "type": "EC2_LINUX", "principalArn": NODE_ROLE_ARN, "clusterName": CLUSTER}
    assert "kubernetesGroups" not in entry


# --- Interruption queue ------------------------------------------------------------------------------------


def test_queue_is_named_after_the_cluster_encrypted_and_short_lived(dev_plan, upstream):
    queue = only(dev_plan, "aws:sqs/queue:Queue", lambda r: r.parent == "karpenter").inputs
    properties = upstream["Resources"]["KarpenterInterruptionQueue"]["Properties"]
    assert queue["name"] == CLUSTER
    assert queue["messageRetentionSeconds"] == properties["MessageRetentionPeriod"] == 300
    assert queue["sqsManagedSseEnabled"] is properties["SqsManagedSseEnabled"] is True


def test_queue_policy_allows_eventbridge_and_sqs_and_denies_plain_http(dev_plan, upstream):
    planned = only(dev_plan, "aws:sqs/queuePolicy:QueuePolicy", lambda r: r.parent == "karpenter").inputs
    expected = upstream["Resources"]["KarpenterInterruptionQueuePolicy"]["Properties"]["PolicyDocument"]
    document = json.loads(planned["policy"])
    assert planned["queueUrl"] == f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{CLUSTER}"
    assert document["Id"] == expected["Id"]
    # Upstream's YAML writes the Bool condition as a boolean; IAM compares it as the string "false".
    normalised = json.loads(json.dumps(expected["Statement"]).replace("false", '"false"'))
    for statement in normalised:
        statement["Resource"] = QUEUE_ARN
    assert document["Statement"] == normalised


def test_queue_policy_denies_every_sqs_action_without_tls():
    deny = interruption_queue_policy("arn:q")["Statement"][1]
    assert (deny["Effect"], deny["Action"], deny["Principal"]) == ("Deny", "sqs:*", "*")
    assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_five_event_rules_with_upstreams_patterns_each_targeting_the_queue(dev_plan, upstream):
    expected = sorted(
        (json.dumps(resource["Properties"]["EventPattern"], sort_keys=True), target["Id"])
        for resource in upstream["Resources"].values()
        if resource["Type"] == "AWS::Events::Rule"
        for target in resource["Properties"]["Targets"]
    )
    assert len(expected) == 5
    rules = {
        r.name: r.inputs
        for r in dev_plan.of_type("aws:cloudwatch/eventRule:EventRule")
        if r.parent == "karpenter"
    }
    targets = [
        r.inputs
        for r in dev_plan.of_type("aws:cloudwatch/eventTarget:EventTarget")
        if r.parent == "karpenter"
    ]
    planned = sorted(
        (json.dumps(json.loads(rules[target["rule"]]["eventPattern"]), sort_keys=True), target["targetId"])
        for target in targets
    )
    assert planned == expected
    assert {target["arn"] for target in targets} == {QUEUE_ARN}
    assert all(len(name) + 8 <= 64 for name in rules), "auto-named rules must fit EventBridge's 64 characters"


# --- Helm ---------------------------------------------------------------------------------------------------


def test_release_is_the_pinned_oci_chart_with_crds_from_their_own_release(dev_plan, reference):
    release = karpenter_release(dev_plan).inputs
    crds = only(dev_plan, HELM_RELEASE, lambda r: r.inputs["chart"] == CRD_CHART).inputs
    chart = reference_chart(reference, "karpenter")
    assert release["chart"] == "oci://public.ecr.aws/karpenter/karpenter"
    assert crds["chart"] == "oci://public.ecr.aws/karpenter/karpenter-crd"
    assert release["version"] == crds["version"] == KARPENTER_VERSION == chart["version"] == "1.14.1"
    assert release["name"] == "karpenter" and release["skipCrds"] is True
    assert crds["namespace"] == release["namespace"] == "karpenter"
    assert release["createNamespace"] is True


def test_release_values(dev_plan):
    values = karpenter_release(dev_plan).inputs["values"]
    assert values["settings"] == {
        "clusterName": CLUSTER,
        "clusterEndpoint": f"https://EXAMPLE.gr7.{REGION}.eks.amazonaws.com",
        # The queue's name, as the chart's settings.interruptionQueue documents.
        "interruptionQueue": CLUSTER,
    }
    # The getting-started guide's Fargate sizing: 1 vCPU / 1Gi, requests equal to limits.
    resources = {"cpu": "1", "memory": "1Gi"}
    assert values["controller"]["resources"] == {"requests": resources, "limits": resources}
    assert values["controller"]["env"] == [{"name": "AWS_REGION", "value": REGION}]
    assert values["dnsPolicy"] == "Default"
    assert values["replicas"] == 2


def test_every_value_key_exists_in_the_charts_values_yaml(dev_plan, reference):
    values = karpenter_release(dev_plan).inputs["values"]
    accepted = {
        "serviceAccount.annotations": "free-form annotations (values.yaml: `annotations: {}`)",
        "controller.resources": "a ResourceRequirements copied verbatim (values.yaml: `resources: {}`)",
    }
    assert unknown_value_paths(values, reference_values(reference, "karpenter"), accepted) == []


def test_release_waits_for_fargate_permissions_and_crds(dev_plan):
    dependencies = set(karpenter_release(dev_plan).dependencies)
    assert CLUSTER in dependencies, "the EKS cluster with the Fargate profile for the controller's namespace"
    assert f"{PREFIX}-crd-release" in dependencies
    assert {f"{PREFIX}-controller-{name}-attachment" for name in CONTROLLER_POLICIES} <= dependencies


def test_custom_resources_depend_on_both_releases(dev_plan):
    custom = dev_plan.of_type(NODE_POOL) + dev_plan.of_type(NODE_CLASS)
    assert len(custom) == 4
    for resource in custom:
        assert {f"{PREFIX}-release", f"{PREFIX}-crd-release"} <= set(resource.dependencies), resource.name
    for resource in dev_plan.of_type(NODE_CLASS):
        assert f"{PREFIX}-node-access-entry" in resource.dependencies
    for resource in dev_plan.of_type(NODE_POOL):
        assert f"{PREFIX}-{resource.inputs['metadata']['name']}-node-class" in resource.dependencies


# --- Node pools ---------------------------------------------------------------------------------------------


def test_gpu_pool_taint_labels_and_requirements(dev_plan):
    pool = node_pool(dev_plan, "gpu")
    template = pool["spec"]["template"]
    assert template["spec"]["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NoSchedule"}]
    assert template["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
    assert template["spec"]["nodeClassRef"] == {
        "group": "karpenter.k8s.aws",
        "kind": "EC2NodeClass",
        "name": "gpu",
    }
    assert requirement(pool, "node.kubernetes.io/instance-type")["values"] == ["g6.xlarge"]
    assert requirement(pool, "karpenter.sh/capacity-type")["values"] == ["spot", "on-demand"]
    assert requirement(pool, "kubernetes.io/arch") == {
        "key": "kubernetes.io/arch",
        "operator": "In",
        "values": ["amd64"],
    }


def test_gpu_pool_in_prod_is_on_demand(prod_plan):
    assert requirement(node_pool(prod_plan, "gpu"), "karpenter.sh/capacity-type")["values"] == ["on-demand"]


def test_family_fallback_adds_the_other_sizes_with_the_same_gpus(plan_with):
    plan = plan_with({"llm:instanceFamilyFallback": True})
    # g6 sizes with one L4 in the catalog: g6.xlarge ($0.8048/h) and g6.2xlarge ($0.9776/h).
    assert requirement(node_pool(plan, "gpu"), "node.kubernetes.io/instance-type")["values"] == [
        "g6.xlarge",
        "g6.2xlarge",
    ]


def test_fallback_keeps_the_chosen_type_first_and_same_gpu_count():
    # g6.12xlarge has 4 GPUs; g6.xlarge and g6.2xlarge have 1 and are no fallback for it.
    assert gpu_instance_types(GPU_INSTANCES["g6.12xlarge"], family_fallback=True) == ("g6.12xlarge",)


@pytest.mark.parametrize(
    ("stack", "expected"),
    [
        # dev: at most 2 replicas (autoscaling:maxReplicas) on g6.xlarge (1 GPU) = 2 nodes; one spare node:
        # (2 + 1) x 1 = 3 GPUs.
        ("dev", 3),
        # prod: at most 4 replicas = 4 nodes; (4 + 1) x 1 = 5 GPUs.
        ("prod", 5),
    ],
)
def test_gpu_limit_is_the_serving_plan_plus_a_spare_node(request, stack, expected):
    plan = request.getfixturevalue(f"{stack}_plan")
    assert node_pool(plan, "gpu")["spec"]["limits"] == {"nvidia.com/gpu": expected}


def test_parked_model_allows_no_gpu_node(plan_with):
    parked = plan_with({"autoscaling:enabled": "false", "llm:replicas": 0})
    assert node_pool(parked, "gpu")["spec"]["limits"] == {"nvidia.com/gpu": 0}


def test_gpu_pool_disruption_does_not_reshuffle_loaded_models(dev_plan):
    disruption = node_pool(dev_plan, "gpu")["spec"]["disruption"]
    assert disruption["consolidationPolicy"] == "WhenEmpty"
    minutes = re.fullmatch(r"(\d+)m", disruption["consolidateAfter"])
    assert minutes and int(minutes.group(1)) >= 5
    assert {"nodes": "1"} in disruption["budgets"]
    [business_hours] = [b for b in disruption["budgets"] if b["nodes"] == "0"]
    assert business_hours["reasons"] == ["Drifted"]
    assert {"schedule", "duration"} <= set(business_hours)


def test_system_pool_small_general_purpose_spot_first(dev_plan):
    pool = node_pool(dev_plan, "system")
    template = pool["spec"]["template"]
    assert requirement(pool, "node.kubernetes.io/instance-type")["values"] == list(SYSTEM_INSTANCE_PRICES)
    assert all(name.endswith(".large") for name in SYSTEM_INSTANCE_PRICES)
    assert requirement(pool, "karpenter.sh/capacity-type")["values"] == ["spot", "on-demand"]
    assert template["metadata"]["labels"] == {"selfhost/pool": "system"}
    assert "taints" not in template["spec"]
    assert template["spec"]["nodeClassRef"]["name"] == "system"
    assert set(pool["spec"]["limits"]) == {"cpu", "memory"}
    assert pool["spec"]["disruption"]["budgets"] == [{"nodes": "1"}]


# --- Node classes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gpu", "system"])
def test_node_class_volume_imds_role_and_discovery(dev_plan, name):
    spec = node_class(dev_plan, name)["spec"]
    # Pulumi.yaml's cluster:nodeRootVolumeGiB default is 50.
    assert spec["blockDeviceMappings"] == [
        {
            "deviceName": "/dev/xvda",
            "ebs": {
                "volumeSize": "50Gi",
                "volumeType": "gp3",
                "encrypted": True,
                "deleteOnTermination": True,
            },
        }
    ]
    assert spec["metadataOptions"]["httpTokens"] == "required"
    assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1
    assert spec["role"] == f"{PREFIX}-node-role"
    assert "instanceProfile" not in spec
    assert spec["subnetSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": CLUSTER}}]
    assert spec["securityGroupSelectorTerms"] == [{"tags": {"karpenter.sh/discovery": CLUSTER}}]
    assert spec["amiSelectorTerms"] == [{"alias": "al2023@latest"}]


def test_discovery_tags_are_on_the_private_subnets_and_the_cluster_security_group(dev_plan):
    tagged_subnets = [
        s
        for s in dev_plan.of_type("aws:ec2/subnet:Subnet")
        if s.inputs["tags"].get("karpenter.sh/discovery") == CLUSTER
    ]
    assert tagged_subnets
    sg_tags = [
        t.inputs for t in dev_plan.of_type("aws:ec2/tag:Tag") if t.inputs["key"] == "karpenter.sh/discovery"
    ]
    assert [tag["value"] for tag in sg_tags] == [CLUSTER]


def test_gpu_class_uses_the_instance_store_and_tags_cost(dev_plan):
    gpu, system = node_class(dev_plan, "gpu")["spec"], node_class(dev_plan, "system")["spec"]
    assert gpu["instanceStorePolicy"] == "RAID0"
    assert "instanceStorePolicy" not in system
    assert gpu["tags"] == {"selfhost:stack": "dev", "selfhost:pool": "gpu"}
    assert system["tags"] == {"selfhost:stack": "dev", "selfhost:pool": "system"}


def inputs_by_name(plan, kind: str) -> dict[str, dict]:
    """The objects of a kind by name: the order the engine registers them in is not part of the contract."""
    return {r.inputs["metadata"]["name"]: r.inputs for r in plan.of_type(kind)}


def test_changing_the_model_changes_no_node_class_or_pool(dev_plan, plan_with):
    # Any change to an EC2NodeClass or NodePool spec drifts every node of it (Karpenter replaces them while the
    # Deployment rolls out the new model); the model's cost is allocated by the pods' label instead.
    qwen = plan_with({"llm:model": "Qwen/Qwen2.5-7B-Instruct"})
    for kind in (NODE_CLASS, NODE_POOL):
        assert inputs_by_name(qwen, kind) == inputs_by_name(dev_plan, kind), kind
    deployment = qwen.named("model-server-deployment")
    assert (
        deployment.inputs["spec"]["template"]["metadata"]["labels"]["selfhost/model"] == "qwen2-5-7b-instruct"
    )


def test_gpu_nodes_never_expire_on_a_timer(dev_plan):
    # Expiration ignores disruption budgets and starts no replacement first: GPU nodes are recycled by drift.
    assert node_pool(dev_plan, "gpu")["spec"]["template"]["spec"]["expireAfter"] == "Never"
    assert node_pool(dev_plan, "system")["spec"]["template"]["spec"]["expireAfter"] == "720h"


def test_root_volume_size_follows_config(plan_with):
    spec = node_class(plan_with({"cluster:nodeRootVolumeGiB": 80}), "gpu")["spec"]
    assert spec["blockDeviceMappings"][0]["ebs"]["volumeSize"] == "80Gi"


def test_prod_pins_a_dated_ami_release(prod_plan):
    for name in ("gpu", "system"):
        [term] = node_class(prod_plan, name)["spec"]["amiSelectorTerms"]
        assert re.fullmatch(r"al2023@v\d{8}", term["alias"]), term


def test_outputs_name_the_node_role_and_queue(dev_plan):
    assert dev_plan.outputs["karpenter_node_role"] == f"{PREFIX}-node-role"
    assert dev_plan.outputs["karpenter_interruption_queue"] == CLUSTER


def test_component_stands_alone_on_plain_inputs_and_waits_for_what_it_is_given():
    def program(config):
        provider = k8s.Provider("test-kubernetes", kubeconfig="{}")
        profile = aws.eks.FargateProfile(
            "test-fargate-profile",
            cluster_name="c1",
            pod_execution_role_arn=f"arn:aws:iam::{ACCOUNT_ID}:role/fargate",
            selectors=[{"namespace": "karpenter"}],
            subnet_ids=["subnet-0123456789abcdef0"],
        )
        Karpenter(
            "karpenter",
            KarpenterArgs(
                name=config.name,
                region=config.region,
                nodes=node_settings(config),
                cluster_name="c1",
                cluster_endpoint="https://c1.example",
                oidc_provider_arn=f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/oidc.example/id/C1",
                oidc_provider_url="https://oidc.example/id/C1",
                provider=provider,
                depends_on=[profile],
            ),
        )
        return {}

    config, secret_keys = stack_config("dev")
    plan = run_program("dev", config, secret_keys, program)
    assert "test-fargate-profile" in karpenter_release(plan).dependencies
    assert len(plan.of_type(NODE_POOL)) == len(plan.of_type(NODE_CLASS)) == 2
    [statement] = json.loads(plan.named(f"{PREFIX}-controller-role").inputs["assumeRolePolicy"])["Statement"]
    assert (
        statement["Condition"]["StringEquals"]["oidc.example/id/C1:sub"]
        == "system:serviceaccount:karpenter:karpenter"
    )


def test_destroy_cannot_hang_on_a_system_node_that_never_drains(dev_plan):
    # Karpenter force-drains a system node after its grace period (15 minutes); the node class deletion,
    # which waits for its nodes, must be allowed longer than that.
    grace = node_pool(dev_plan, "system")["spec"]["template"]["spec"]["terminationGracePeriod"]
    assert grace.endswith("m") and NODE_CLASS_DELETE_TIMEOUT.endswith("m")
    # Prometheus' own grace is 600 s (prometheus-operator default): the node's must be longer.
    assert 10 < int(grace[:-1]) < int(NODE_CLASS_DELETE_TIMEOUT[:-1])


def test_node_classes_outlive_nothing_their_nodes_need(dev_plan):
    # On create the classes wait for the node role's policies and access entry; on destroy (reverse order) the
    # classes, whose finalizer waits until their nodes are gone, are deleted before any of those.
    attachments = {
        r.name
        for r in dev_plan.of_type("aws:iam/rolePolicyAttachment:RolePolicyAttachment")
        if r.inputs["role"] == f"{PREFIX}-node-role"
    }
    assert len(attachments) == 4
    for pool in ("gpu", "system"):
        [created] = [r for r in dev_plan.of_type(NODE_CLASS) if r.name == f"{PREFIX}-{pool}-node-class"]
        assert attachments | {f"{PREFIX}-node-access-entry"} <= set(created.dependencies), pool


def test_a_fitting_70b_model_plans_under_the_default_gpu_ceiling(plan_with):
    # Llama-3.1-70B on p4d.24xlarge (8 x A100 40GB), dev's 0-2 replicas with llm:maxGpus unset: one replica per
    # node, (2 + 1) x 8 = 24 GPUs in the pool's limit, which the default ceiling (derived from the plan) admits.
    plan = plan_with({"llm:model": "meta-llama/Llama-3.1-70B-Instruct", "llm:instanceType": "p4d.24xlarge"})
    assert node_pool(plan, "gpu")["spec"]["limits"] == {"nvidia.com/gpu": 24}
