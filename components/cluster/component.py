"""The EKS cluster: API-only authentication, admin access entries, IRSA, secrets encryption, control-plane
logs, Fargate for Karpenter and CoreDNS, and the Kubernetes provider every other component uses.

No node group: Karpenter buys every EC2 node. Its controller and CoreDNS run on Fargate, so the cluster
schedules them (and resolves names) before the first node exists.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_eks as eks
import pulumi_kubernetes as k8s

from components.cluster.access import (
    CONTROL_PLANE_LOG_TYPES,
    LOG_RETENTION_DAYS,
    access_entries,
    endpoint_access,
    fargate_selectors,
    pod_execution_trust_policy,
)
from components.cluster.kubeconfig import exec_kubeconfig, server_and_certificate
from components.cost_tags import cost_tags
from components.iam import aws_managed_policy_arn
from components.karpenter.nodes import DISCOVERY_TAG
from stacks.config import ClusterSettings


@dataclass
class ClusterArgs:
    # The stack (for cost tags) and its name prefix (PlatformConfig.name) for AWS object names.
    stack: str
    name: str
    region: str
    settings: ClusterSettings
    vpc_id: pulumi.Input[str]
    private_subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    # Namespaces whose pods run on Fargate (Karpenter's); CoreDNS is always added.
    fargate_namespaces: Sequence[str]
    # The AWS CLI profile `aws eks get-token` must use; None: the default credential chain.
    aws_profile: str | None = None
    # Resources the control plane waits for, e.g. the network's NAT routes that CoreDNS needs to pull images.
    depends_on: Sequence[pulumi.Resource] = ()


class Cluster(pulumi.ComponentResource):
    eks: eks.Cluster
    provider: k8s.Provider
    name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    oidc_provider_arn: pulumi.Output[str]
    oidc_provider_url: pulumi.Output[str]
    oidc_issuer: pulumi.Output[str]
    cluster_security_group_id: pulumi.Output[str]
    node_security_group_id: pulumi.Output[str]

    def __init__(self, resource_name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("selfhost:index:Cluster", resource_name, None, opts)
        self._args = args
        self._child = pulumi.ResourceOptions(parent=self)
        self._tags = cost_tags(args.stack, component="cluster")
        invoke = pulumi.InvokeOutputOptions(parent=self)
        self._partition = aws.get_partition_output(opts=invoke).partition
        self._account_id = aws.get_caller_identity_output(opts=invoke).account_id

        log_group = aws.cloudwatch.LogGroup(
            f"{args.name}-control-plane",
            name=f"/aws/eks/{args.name}/cluster",
            retention_in_days=LOG_RETENTION_DAYS,
            tags=self._tags,
            opts=self._child,
        )
        pod_execution_role, pod_execution_policy = self._pod_execution_role()
        self.eks = self._eks_cluster(
            self._secrets_key(),
            pod_execution_role,
            depends_on=[log_group, pod_execution_policy, *args.depends_on],
        )
        server_and_ca = self.eks.kubeconfig_json.apply(server_and_certificate)
        self.endpoint = pulumi.Output.unsecret(server_and_ca.apply(lambda pair: pair[0]))
        self.kubeconfig = pulumi.Output.secret(
            server_and_ca.apply(
                lambda pair: json.dumps(
                    exec_kubeconfig(args.name, pair[0], pair[1], args.region, args.aws_profile)
                )
            )
        )
        self.provider = self._kubernetes_provider()

        # The name resolves once the control plane exists, so that resources naming the cluster wait for it.
        self.name = self.eks.cluster_security_group_id.apply(lambda _: args.name)
        self.oidc_provider_arn = self.eks.oidc_provider_arn
        self.oidc_provider_url = self.eks.oidc_provider_url
        self.oidc_issuer = self.eks.oidc_issuer
        self.cluster_security_group_id = self.eks.cluster_security_group_id
        self.node_security_group_id = self.eks.node_security_group_id
        self.register_outputs(
            {
                "name": self.name,
                "endpoint": self.endpoint,
                "kubeconfig": self.kubeconfig,
                "oidc_provider_arn": self.oidc_provider_arn,
                "oidc_provider_url": self.oidc_provider_url,
                "oidc_issuer": self.oidc_issuer,
                "cluster_security_group_id": self.cluster_security_group_id,
                "node_security_group_id": self.node_security_group_id,
            }
        )

    def _secrets_key(self) -> aws.kms.Key:
        name = self._args.name
        key = aws.kms.Key(
            f"{name}-eks-secrets",
            description=f"Envelope encryption of Kubernetes secrets in EKS cluster {name}",
            enable_key_rotation=True,
            tags=self._tags,
            opts=self._child,
        )
        aws.kms.Alias(
            f"{name}-eks-secrets-alias",
            name=f"alias/{name}-eks-secrets",
            target_key_id=key.key_id,
            opts=self._child,
        )
        return key

    def _pod_execution_role(self) -> tuple[aws.iam.Role, aws.iam.RolePolicyAttachment]:
        name, region = self._args.name, self._args.region
        role = aws.iam.Role(
            f"{name}-fargate-pods",
            name=f"{name}-fargate-pods",
            description=f"Fargate pod execution role of EKS cluster {name} (image pulls, node registration)",
            assume_role_policy=pulumi.Output.all(self._partition, self._account_id).apply(
                lambda values: json.dumps(pod_execution_trust_policy(values[0], region, values[1], name))
            ),
            tags=self._tags,
            opts=self._child,
        )
        policy = aws.iam.RolePolicyAttachment(
            f"{name}-fargate-pods-policy",
            role=role.name,
            policy_arn=self._partition.apply(
                lambda partition: aws_managed_policy_arn(partition, "AmazonEKSFargatePodExecutionRolePolicy")
            ),
            opts=self._child,
        )
        return role, policy

    def _eks_cluster(
        self, secrets_key: aws.kms.Key, pod_execution_role: aws.iam.Role, depends_on: list[pulumi.Resource]
    ) -> eks.Cluster:
        args, settings = self._args, self._args.settings
        access = endpoint_access(settings.public_access_cidrs)
        return eks.Cluster(
            args.name,
            name=args.name,
            version=settings.version,
            # Without it the cluster moves to extended support ($0.60/h instead of $0.10/h) when its version
            # leaves standard support; STANDARD upgrades the version instead.
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type=settings.support_type),
            # Unset means the deprecated aws-auth ConfigMap; access entries need API.
            authentication_mode=eks.AuthenticationMode.API,
            access_entries=access_entries(settings.admin_role_arns, settings.preview_role_arns, self._tags),
            vpc_id=args.vpc_id,
            # Control-plane network interfaces go into private subnets only; load balancers find the public
            # subnets by their role tag, not through the cluster.
            private_subnet_ids=args.private_subnet_ids,
            endpoint_private_access=True,
            endpoint_public_access=access.public,
            public_access_cidrs=access.public_cidrs,
            skip_default_node_group=True,
            # The EKS-managed cluster security group then guards both the control plane and the nodes: it
            # admits all traffic between its members, which Fargate pods (CoreDNS, Karpenter) also join.
            # pulumi-eks's own node group would not admit traffic from Fargate pods.
            skip_default_security_groups=True,
            create_oidc_provider=True,
            # For pulumi-eks's own provider only: the kubeconfig it exports leaves the profile out, which is
            # why this component builds the one everything else uses (kubeconfig.py).
            provider_credential_opts=(
                eks.KubeconfigOptionsArgs(profile_name=args.aws_profile) if args.aws_profile else None
            ),
            # The VPC CNI add-on pulumi-eks manages (addons/cni-addon.ts) with its network policy agent on: the
            # model server's NetworkPolicy is enforced on EC2 nodes (AL2023's kernel has the eBPF it needs;
            # Fargate pods are not covered: EKS user guide, cni-network-policy).
            vpc_cni_options=eks.VpcCniOptionsArgs(enable_network_policy=True),
            encryption_config_key_arn=secrets_key.arn,
            enabled_cluster_log_types=list(CONTROL_PLANE_LOG_TYPES),
            # pulumi-eks creates one profile from this and installs the CoreDNS add-on with computeType
            # Fargate once the profile exists.
            fargate={
                "pod_execution_role_arn": pod_execution_role.arn,
                "selectors": fargate_selectors(args.fargate_namespaces),
                "subnet_ids": args.private_subnet_ids,
            },
            # pulumi-eks puts `tags` on the cluster and on the add-ons (VPC CNI, kube-proxy, CoreDNS) and roles it
            # creates (nodejs/eks/cluster/cluster.ts); `cluster_tags` would reach the cluster only. Its OIDC
            # provider and Fargate profile take no tags from it.
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on),
        )

    def _kubernetes_provider(self) -> k8s.Provider:
        name = self._args.name
        # pulumi-eks's cluster_security_group_tags would tag a group it did not create here (pulumi-eks#1194),
        # so the discovery tag goes onto the EKS-managed group directly.
        discovery_tag = aws.ec2.Tag(
            f"{name}-cluster-sg-discovery",
            resource_id=self.eks.cluster_security_group_id,
            key=DISCOVERY_TAG,
            value=name,
            opts=self._child,
        )
        # Pods created before the Fargate profile exists never move to Fargate, and Karpenter finds no
        # security group before the tag: the provider is usable only once both are in place.
        ready_kubeconfig = pulumi.Output.all(
            self.kubeconfig, self.eks.fargate_profile_id, discovery_tag.id
        ).apply(lambda values: values[0])
        return k8s.Provider(
            f"{name}-k8s",
            kubeconfig=pulumi.Output.secret(ready_kubeconfig),
            enable_server_side_apply=True,
            opts=self._child,
        )
