"""Stand-ins for what AWS, EKS and Kubernetes would return, for the offline plan and the tests.

A mock returns a resource's inputs plus the outputs the program goes on to read. Values follow the shape
of the real ones (ARNs, ids, a kubeconfig) so that code deriving names or policies from them runs as it
would in a deployment. Remote components (pulumi_eks.Cluster) must get plain values only: a dict for a
resource-reference output fails the whole program.
"""

from __future__ import annotations

import hashlib
import json
import string
from typing import Any

import pulumi

ACCOUNT_ID = "123456789012"
REGION = "us-west-2"
OIDC_ISSUER = f"oidc.eks.{REGION}.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"


def _kubeconfig(cluster: str) -> dict[str, Any]:
    """The shape pulumi-eks generates (nodejs/eks/cluster/cluster.ts, generateKubeconfig)."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "kubernetes",
                "cluster": {
                    "server": f"https://EXAMPLE.gr7.{REGION}.eks.amazonaws.com",
                    "certificate-authority-data": "LS0tLS1CRUdJTg==",
                },
            }
        ],
        "contexts": [{"name": "aws", "context": {"cluster": "kubernetes", "user": "aws"}}],
        "current-context": "aws",
        "users": [
            {
                "name": "aws",
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1beta1",
                        "command": "aws",
                        "args": [
                            "--region",
                            REGION,
                            "eks",
                            "get-token",
                            "--cluster-name",
                            cluster,
                            "--output",
                            "json",
                        ],
                        "env": [
                            {
                                "name": "KUBERNETES_EXEC_INFO",
                                "value": '{"apiVersion": "client.authentication.k8s.io/v1beta1"}',
                            }
                        ],
                    }
                },
            }
        ],
    }


def mock_random_password(name: str, length: int) -> str:
    """A password as random.RandomPassword makes one (letters and digits), fixed per resource name so
    tests can search the plan for it."""
    alphabet = string.ascii_letters + string.digits
    return "".join(alphabet[byte % len(alphabet)] for byte in hashlib.shake_256(name.encode()).digest(length))


def _arn(service: str, resource: str, region: str = REGION) -> str:
    return f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{resource}"


def _eks_cluster(name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    cluster = inputs.get("name") or name
    kubeconfig = _kubeconfig(cluster)
    return {
        "kubeconfig": kubeconfig,
        "kubeconfigJson": json.dumps(kubeconfig),
        "oidcProviderArn": f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{OIDC_ISSUER}",
        "oidcProviderUrl": f"https://{OIDC_ISSUER}",
        "oidcIssuer": OIDC_ISSUER,
        "clusterSecurityGroupId": "sg-0c1a2b3c4d5e6f701",
        "nodeSecurityGroupId": "sg-0c1a2b3c4d5e6f701",
        # The FargateProfile resource's id is "<cluster>:<profile name>".
        "fargateProfileId": f"{cluster}:{name}-fargateProfile-0123abcd",
        "fargateProfileStatus": "ACTIVE",
    }


def _aws_outputs(type_: str, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """ARNs and names the AWS provider would compute for the resource kinds the program reads back."""
    resource_name = inputs.get("name") or name
    if type_ == "aws:iam/role:Role":
        return {"arn": f"arn:aws:iam::{ACCOUNT_ID}:role/{resource_name}", "name": resource_name}
    if type_ == "aws:iam/policy:Policy":
        return {"arn": f"arn:aws:iam::{ACCOUNT_ID}:policy/{resource_name}", "name": resource_name}
    if type_ == "aws:sqs/queue:Queue":
        return {
            "arn": _arn("sqs", resource_name),
            "url": f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT_ID}/{resource_name}",
            "name": resource_name,
        }
    if type_ == "aws:kms/key:Key":
        return {"arn": _arn("kms", "key/1234abcd-12ab-34cd-56ef-1234567890ab"), "keyId": "1234abcd"}
    if type_ == "aws:s3/bucket:Bucket":
        # Auto-naming from bucket_prefix appends a timestamp and a counter.
        bucket = inputs.get("bucket") or f"{inputs.get('bucketPrefix', name)}20261201000000000001"
        return {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}", "id": bucket}
    if type_ == "aws:ecr/pullThroughCacheRule:PullThroughCacheRule":
        return {"registryId": ACCOUNT_ID}
    if type_ == "aws:cloudwatch/eventRule:EventRule":
        return {"arn": _arn("events", f"rule/{resource_name}"), "name": resource_name}
    return {"arn": _arn(type_.split(":")[1].split("/")[0], f"{resource_name}")}


class PlanMocks(pulumi.runtime.Mocks):
    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        outputs = dict(args.inputs)
        if args.typ == "eks:index:Cluster":
            outputs.update(_eks_cluster(args.name, args.inputs))
        elif args.typ.startswith("aws:"):
            outputs.update(_aws_outputs(args.typ, args.name, args.inputs))
        elif args.typ == "random:index/randomPassword:RandomPassword":
            # The provider marks `result` secret (additionalSecretOutputs); the mock monitor ignores that
            # option, so the mock returns it as a secret itself.
            password = mock_random_password(args.name, int(args.inputs.get("length", 16)))
            outputs["result"] = pulumi.Output.secret(password)
        return f"{args.name}-id", outputs

    # The SDK's mock monitor iterates the failures, so an invoke without failures returns [] (not None).
    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{REGION}{zone}" for zone in "abcd"]
            return {"names": names, "zoneIds": [f"usw2-az{i}" for i in range(1, 5)], "id": REGION}, []
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {
                "accountId": ACCOUNT_ID,
                "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/ci",
                "userId": "AIDA",
            }, []
        if args.token == "aws:index/getPartition:getPartition":
            return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}, []
        if args.token == "aws:index/getRegion:getRegion":
            return {"name": REGION, "region": REGION, "id": REGION}, []
        return {}, []
