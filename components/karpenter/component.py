"""Karpenter: the controller that buys EC2 nodes for pending pods and gives them back when idle.

The controller runs on Fargate (namespace `karpenter`), so no node has to exist before it, and it
authenticates through IRSA. It launches nodes from two pools: `gpu` for the model server and `system` for
everything else that needs a node (monitoring). An SQS queue fed by EventBridge tells it of
spot interruptions and scheduled maintenance so it can drain a node before EC2 takes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.cost_tags import cost_tags
from components.iam import aws_managed_policy_arn, service_account_trust_policy
from components.karpenter.iam import (
    CONTROLLER_POLICIES,
    INTERRUPTION_RULES,
    INTERRUPTION_TARGET_ID,
    NODE_MANAGED_POLICIES,
    ControllerScope,
    interruption_queue_policy,
    node_trust_policy,
)
from components.karpenter.nodes import (
    GPU_POOL,
    NODE_CLASS_API,
    SYSTEM_POOL,
    NodeSettings,
    gpu_node_class,
    gpu_node_pool,
    system_node_class,
    system_node_pool,
)
from components.karpenter.values import (
    CHART,
    CRD_CHART,
    KARPENTER_VERSION,
    NAMESPACE,
    SERVICE_ACCOUNT,
    helm_values,
)

# Seconds an interruption message is kept: a spot warning comes 2 minutes ahead, so older ones are moot
# (upstream MessageRetentionPeriod).
QUEUE_RETENTION_SECONDS = 300
# Helm waits for both controller pods; each needs a Fargate node, which takes a minute or two to start.
RELEASE_TIMEOUT_SECONDS = 600
# Deleting a node class waits for its nodes to drain; a system node may take its 15-minute grace period.
NODE_CLASS_DELETE_TIMEOUT = "30m"


@dataclass
class KarpenterArgs:
    # The stack's name prefix (PlatformConfig.name) for AWS object names.
    name: str
    region: str
    nodes: NodeSettings
    cluster_name: pulumi.Input[str]
    cluster_endpoint: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    # The issuer URL as EKS reports it, https:// included.
    oidc_provider_url: pulumi.Input[str]
    provider: k8s.Provider
    # What the controller's pods need before they can run: the Fargate profile for `karpenter`.
    depends_on: Sequence[pulumi.Resource] = field(default_factory=list)


class Karpenter(pulumi.ComponentResource):
    """IRSA controller role, node role and access entry, interruption queue, Helm releases, pools."""

    release: k8s.helm.v3.Release
    crd_release: k8s.helm.v3.Release
    gpu_node_pool_name: str = GPU_POOL
    system_node_pool_name: str = SYSTEM_POOL
    namespace: str = NAMESPACE
    # The NodePools, for what must wait until nodes can be bought.
    node_pools: list[k8s.apiextensions.CustomResource]
    controller_role_arn: pulumi.Output[str]
    node_role_name: pulumi.Output[str]
    interruption_queue_name: pulumi.Output[str]

    def __init__(self, name: str, args: KarpenterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("selfhost:index:Karpenter", name, None, opts)
        # Children carry the stack's prefix, so AWS names show which stack they belong to.
        self._name = f"{args.name}-karpenter"
        self._args = args
        self._tags = cost_tags(args.nodes.stack, component="karpenter")
        invoke = pulumi.InvokeOutputOptions(parent=self)
        self._partition = aws.get_partition_output(opts=invoke)
        self._account_id = aws.get_caller_identity_output(opts=invoke).account_id

        queue = self._interruption_queue()
        node_role, node_access = self._node_role()
        controller_role, grants = self._controller_role(node_role, queue)
        self.crd_release, self.release = self._releases(controller_role, queue, grants)
        self.node_pools = self._node_pools(node_role, node_access)

        self.controller_role_arn = controller_role.arn
        self.node_role_name = node_role.name
        self.interruption_queue_name = queue.name
        self.register_outputs(
            {
                "release": self.release,
                "crd_release": self.crd_release,
                "gpu_node_pool_name": self.gpu_node_pool_name,
                "system_node_pool_name": self.system_node_pool_name,
                "controller_role_arn": self.controller_role_arn,
                "node_role_name": self.node_role_name,
                "interruption_queue_name": self.interruption_queue_name,
            }
        )

    def _child(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self)

    def _kubernetes_child(self, *depends_on: pulumi.Resource) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, provider=self._args.provider, depends_on=list(depends_on))

    def _interruption_queue(self) -> aws.sqs.Queue:
        queue = aws.sqs.Queue(
            f"{self._name}-interruption-queue",
            # Upstream names the queue after the cluster; the chart takes the name.
            name=self._args.cluster_name,
            message_retention_seconds=QUEUE_RETENTION_SECONDS,
            sqs_managed_sse_enabled=True,
            tags=self._tags,
            opts=self._child(),
        )
        aws.sqs.QueuePolicy(
            f"{self._name}-interruption-queue-policy",
            queue_url=queue.url,
            policy=queue.arn.apply(lambda arn: json.dumps(interruption_queue_policy(arn))),
            opts=self._child(),
        )
        for rule in INTERRUPTION_RULES:
            event_rule = aws.cloudwatch.EventRule(
                f"{self._name}-{rule.short_name}",
                description=f"Karpenter interruption handling: {rule.upstream_name}",
                event_pattern=json.dumps(rule.pattern),
                tags=self._tags,
                opts=self._child(),
            )
            aws.cloudwatch.EventTarget(
                f"{self._name}-{rule.short_name}-target",
                rule=event_rule.name,
                arn=queue.arn,
                target_id=INTERRUPTION_TARGET_ID,
                opts=self._child(),
            )
        return queue

    def _node_role(self) -> tuple[aws.iam.Role, list[pulumi.Resource]]:
        """The node role, its managed policies and its access entry: everything a node needs to join, which
        the node classes wait for on create and which outlives them (and so their nodes) on destroy."""
        role = aws.iam.Role(
            f"{self._name}-node-role",
            description="Nodes launched by Karpenter",
            assume_role_policy=self._partition.dns_suffix.apply(
                lambda suffix: json.dumps(node_trust_policy(suffix))
            ),
            tags=self._tags,
            opts=self._child(),
        )
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{self._name}-node-role-{policy_name}",
                role=role.name,
                policy_arn=self._partition.partition.apply(
                    lambda partition, policy=policy_name: aws_managed_policy_arn(partition, policy)
                ),
                opts=self._child(),
            )
            for policy_name in NODE_MANAGED_POLICIES
        ]
        # With API authentication, nodes join through an access entry (the EKS equivalent of upstream's
        # aws-auth mapping to system:bootstrappers and system:nodes).
        access_entry = aws.eks.AccessEntry(
            f"{self._name}-node-access-entry",
            cluster_name=self._args.cluster_name,
            principal_arn=role.arn,
            type="EC2_LINUX",
            tags=self._tags,
            opts=self._child(),
        )
        return role, [*attachments, access_entry]

    def _controller_role(
        self, node_role: aws.iam.Role, queue: aws.sqs.Queue
    ) -> tuple[aws.iam.Role, list[aws.iam.RolePolicyAttachment]]:
        args = self._args
        trust = pulumi.Output.all(args.oidc_provider_arn, args.oidc_provider_url).apply(
            lambda values: json.dumps(
                service_account_trust_policy(values[0], values[1], NAMESPACE, SERVICE_ACCOUNT)
            )
        )
        role = aws.iam.Role(
            f"{self._name}-controller-role",
            description="Karpenter controller (IRSA)",
            assume_role_policy=trust,
            tags=self._tags,
            opts=self._child(),
        )
        scope = pulumi.Output.all(
            self._partition.partition,
            args.region,
            self._account_id,
            args.cluster_name,
            node_role.arn,
            queue.arn,
        ).apply(lambda values: ControllerScope(*values))
        grants = []
        for policy_name, document in CONTROLLER_POLICIES.items():
            policy = aws.iam.Policy(
                f"{self._name}-controller-{policy_name}",
                description=f"Karpenter controller: {policy_name}",
                policy=scope.apply(_rendered(document)),
                tags=self._tags,
                opts=self._child(),
            )
            grants.append(
                aws.iam.RolePolicyAttachment(
                    f"{self._name}-controller-{policy_name}-attachment",
                    role=role.name,
                    policy_arn=policy.arn,
                    opts=self._child(),
                )
            )
        return role, grants

    def _releases(
        self, controller_role: aws.iam.Role, queue: aws.sqs.Queue, grants: list[aws.iam.RolePolicyAttachment]
    ) -> tuple[k8s.helm.v3.Release, k8s.helm.v3.Release]:
        args = self._args
        crd_release = k8s.helm.v3.Release(
            f"{self._name}-crd-release",
            name="karpenter-crd",
            chart=CRD_CHART,
            version=KARPENTER_VERSION,
            namespace=NAMESPACE,
            create_namespace=True,
            opts=self._kubernetes_child(),
        )
        values = pulumi.Output.all(
            args.cluster_name, args.cluster_endpoint, queue.name, controller_role.arn
        ).apply(lambda v: helm_values(v[0], v[1], v[2], v[3], args.region))
        release = k8s.helm.v3.Release(
            f"{self._name}-release",
            name="karpenter",
            chart=CHART,
            version=KARPENTER_VERSION,
            namespace=NAMESPACE,
            create_namespace=True,
            # The CRDs come from the karpenter-crd release above.
            skip_crds=True,
            values=values,
            timeout=RELEASE_TIMEOUT_SECONDS,
            # The pods must find their Fargate profile and, once running, their permissions.
            opts=self._kubernetes_child(crd_release, *args.depends_on, *grants),
        )
        return crd_release, release

    def _node_pools(
        self, node_role: aws.iam.Role, node_access: list[pulumi.Resource]
    ) -> list[k8s.apiextensions.CustomResource]:
        args = self._args
        node_class_inputs = pulumi.Output.all(args.cluster_name, node_role.name)
        classes = {
            GPU_POOL: node_class_inputs.apply(lambda v: gpu_node_class(args.nodes, v[0], v[1])),
            SYSTEM_POOL: node_class_inputs.apply(lambda v: system_node_class(args.nodes, v[0], v[1])),
        }
        pools = {GPU_POOL: gpu_node_pool(args.nodes), SYSTEM_POOL: system_node_pool()}
        created_pools = []
        for pool, node_class in classes.items():
            # Custom resources need their CRDs, a running controller (also so that deleting them can
            # drain and terminate their nodes), and nodes need their role's policies and access entry to join;
            # on destroy the class goes (its finalizer waits for its nodes) before those do.
            created_class = k8s.apiextensions.CustomResource(
                f"{self._name}-{pool}-node-class",
                api_version=NODE_CLASS_API,
                kind="EC2NodeClass",
                # The name is the pool's, known before the role and cluster names the spec embeds.
                metadata={"name": pool},
                spec=node_class.apply(lambda m: m["spec"]),
                opts=pulumi.ResourceOptions.merge(
                    self._kubernetes_child(self.release, self.crd_release, *node_access),
                    # Its finalizer holds the deletion until every node of the class is drained and
                    # terminated, up to the system pool's 15-minute termination grace period.
                    pulumi.ResourceOptions(
                        custom_timeouts=pulumi.CustomTimeouts(delete=NODE_CLASS_DELETE_TIMEOUT)
                    ),
                ),
            )
            pool_manifest = pools[pool]
            created_pool = k8s.apiextensions.CustomResource(
                f"{self._name}-{pool}-node-pool",
                api_version=pool_manifest["apiVersion"],
                kind=pool_manifest["kind"],
                metadata=pool_manifest["metadata"],
                spec=pool_manifest["spec"],
                opts=self._kubernetes_child(self.release, self.crd_release, created_class),
            )
            created_pools.append(created_pool)
        return created_pools


def _rendered(document: Callable[[ControllerScope], dict[str, Any]]) -> Callable[[ControllerScope], str]:
    return lambda scope: json.dumps(document(scope))
