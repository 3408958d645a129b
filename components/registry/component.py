"""ImageCache: an ECR pull-through cache rule for Docker Hub and the node role's right to pull through it.

Only when the stack names Docker Hub credentials (llm:dockerHubCredentialsArn); `image` is then the vLLM
image as the cache serves it. The nodes' role already carries AmazonEC2ContainerRegistryReadOnly (Karpenter's
node role); this adds importing and creating the cached repositories under the rule's prefix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.registry.layout import (
    DOCKER_HUB_URL,
    cache_prefix,
    cached_image,
    node_pull_policy,
    registry_host,
)


@dataclass
class ImageCacheArgs:
    stack_name: str
    region: str
    credentials_arn: str
    image: str
    node_role_name: pulumi.Input[str]


class ImageCache(pulumi.ComponentResource):
    image: pulumi.Output[str]
    node_policy: aws.iam.RolePolicy

    def __init__(self, name: str, args: ImageCacheArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("selfhost:index:ImageCache", name, None, opts)
        prefix = cache_prefix(args.stack_name)
        rule = aws.ecr.PullThroughCacheRule(
            f"{name}-docker-hub",
            ecr_repository_prefix=prefix,
            upstream_registry_url=DOCKER_HUB_URL,
            credential_arn=args.credentials_arn,
            opts=pulumi.ResourceOptions(parent=self),
        )
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self))
        self.node_policy = aws.iam.RolePolicy(
            f"{name}-node-pull",
            role=args.node_role_name,
            policy=pulumi.Output.all(partition.partition, rule.registry_id).apply(
                lambda values: json.dumps(node_pull_policy(values[0], args.region, values[1], prefix))
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.image = pulumi.Output.all(rule.registry_id, partition.dns_suffix).apply(
            lambda values: cached_image(args.image, registry_host(values[0], args.region, values[1]), prefix)
        )
        self.register_outputs({"image": self.image})
