"""ModelWeights: the stack's private S3 bucket of staged model weights and the two IRSA roles around it.

The bucket is encrypted (SSE-S3), closed to public access and to requests without TLS, owned by the account
(no ACLs), and drops incomplete multipart uploads after a day. `pulumi destroy` empties and deletes it unless
llm:keepWeightsBucket keeps it (then Pulumi forgets it and it stays in the account). The model server's role
may read one model revision's prefix; the staging Job's role may also write it. The GPU nodes reach S3 through
the VPC's gateway endpoint (components/network), not the NAT gateway.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.cost_tags import cost_tags
from components.iam import service_account_trust_policy
from components.weights.layout import (
    INCOMPLETE_UPLOAD_DAYS,
    SERVER_SERVICE_ACCOUNT,
    STAGER_SERVICE_ACCOUNT,
    reader_policy,
    s3_uri,
    tls_only_policy,
    writer_policy,
)


@dataclass
class ModelWeightsArgs:
    stack: str
    stack_name: str
    namespace: str
    prefix: str
    keep_bucket: bool
    oidc_provider_arn: pulumi.Input[str]
    oidc_provider_url: pulumi.Input[str]


class ModelWeights(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    model_uri: pulumi.Output[str]
    reader_role_arn: pulumi.Output[str]
    writer_role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ModelWeightsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("selfhost:index:ModelWeights", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket_prefix=f"{args.stack_name}-weights-",
            # Destroy empties the bucket first; kept, Pulumi leaves bucket and objects in the account.
            force_destroy=not args.keep_bucket,
            tags=cost_tags(args.stack, component="weights"),
            opts=child.merge(pulumi.ResourceOptions(retain_on_delete=args.keep_bucket)),
        )
        on_bucket = child.merge(pulumi.ResourceOptions(depends_on=[bucket]))
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership",
            bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=on_bucket,
        )
        public_access = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=on_bucket,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption",
            bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
            opts=on_bucket,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle",
            bucket=bucket.id,
            rules=[
                {
                    "id": "abort-incomplete-uploads",
                    "status": "Enabled",
                    "filter": {"prefix": ""},
                    "abort_incomplete_multipart_upload": {"days_after_initiation": INCOMPLETE_UPLOAD_DAYS},
                }
            ],
            opts=on_bucket,
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only",
            bucket=bucket.id,
            policy=bucket.arn.apply(lambda arn: json.dumps(tls_only_policy(arn))),
            # A policy put before the public access block would race it.
            opts=child.merge(pulumi.ResourceOptions(depends_on=[public_access])),
        )
        self.reader_role_arn = self._role(name, "reader", args, SERVER_SERVICE_ACCOUNT, bucket, reader_policy)
        self.writer_role_arn = self._role(name, "writer", args, STAGER_SERVICE_ACCOUNT, bucket, writer_policy)
        self.bucket_name = bucket.bucket
        self.model_uri = bucket.bucket.apply(lambda bucket_name: s3_uri(bucket_name, args.prefix))
        self.register_outputs(
            {
                "bucket_name": self.bucket_name,
                "model_uri": self.model_uri,
                "reader_role_arn": self.reader_role_arn,
                "writer_role_arn": self.writer_role_arn,
            }
        )

    def _role(
        self,
        name: str,
        kind: str,
        args: ModelWeightsArgs,
        service_account: str,
        bucket: aws.s3.Bucket,
        policy: Callable[[str, str], dict[str, Any]],
    ) -> pulumi.Output[str]:
        """An IRSA role for `args.namespace/service_account` with `policy` on the bucket's model prefix."""
        role = aws.iam.Role(
            f"{name}-{kind}-role",
            name=f"{args.stack_name}-weights-{kind}",
            assume_role_policy=pulumi.Output.all(args.oidc_provider_arn, args.oidc_provider_url).apply(
                lambda arn_and_url: json.dumps(
                    service_account_trust_policy(
                        arn_and_url[0], arn_and_url[1], args.namespace, service_account
                    )
                )
            ),
            tags=cost_tags(args.stack, component="weights"),
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.iam.RolePolicy(
            f"{name}-{kind}-policy",
            role=role.id,
            policy=bucket.arn.apply(lambda arn: json.dumps(policy(arn, args.prefix))),
            opts=pulumi.ResourceOptions(parent=self),
        )
        return role.arn
