"""Names and policies of the stack's Docker Hub pull-through cache (pure).

A pull-through cache rule maps `<registry>/<prefix>/<upstream repository>` to Docker Hub's repository: the
first pull imports the image into the stack's registry (ECR stores its layers in S3 in-region), later pulls
never leave the region. ECR reads Docker Hub credentials from a Secrets Manager secret named
`ecr-pullthroughcache/...` (AWS ECR user guide, "Creating a pull through cache rule").
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

DOCKER_HUB_URL = "registry-1.docker.io"
# How a Docker Hub image may be written: no registry, docker.io or registry-1.docker.io.
DOCKER_HUB_HOSTS = ("docker.io/", "index.docker.io/", "registry-1.docker.io/")
# ECR's ecrRepositoryPrefix: 2-30 characters, lower-case components separated by '.', '_' or '-' (ECR API
# reference, PullThroughCacheRule).
MAX_PREFIX_LENGTH = 30
PREFIX_SEPARATORS = re.compile(r"[^a-z0-9]+")


def cache_prefix(stack_name: str) -> str:
    """`<stack name>-docker-hub` in ECR's alphabet, shortened with a hash when it would not fit."""
    base = PREFIX_SEPARATORS.sub("-", stack_name.lower()).strip("-")
    prefix = f"{base}-docker-hub"
    if len(prefix) <= MAX_PREFIX_LENGTH:
        return prefix
    return f"llm-{hashlib.sha256(stack_name.encode()).hexdigest()[:8]}-docker-hub"


def docker_hub_repository(image: str) -> str | None:
    """The Docker Hub repository path and reference of an image (`vllm/vllm-openai:v0.33.0`), with
    `library/` for official images; None for an image in another registry."""
    for host in DOCKER_HUB_HOSTS:
        image = image.removeprefix(host)
    first = image.split("/", 1)[0]
    if "/" in image and ("." in first or ":" in first or first == "localhost"):
        return None
    return image if "/" in image.split("@", 1)[0].split(":", 1)[0] else f"library/{image}"


def cached_image(image: str, registry_host: str, prefix: str) -> str:
    """The image as the pull-through cache serves it, tag and digest kept; another registry's image as is."""
    repository = docker_hub_repository(image)
    return image if repository is None else f"{registry_host}/{prefix}/{repository}"


def registry_host(account_id: str, region: str, dns_suffix: str) -> str:
    return f"{account_id}.dkr.ecr.{region}.{dns_suffix}"


def node_pull_policy(partition: str, region: str, account_id: str, prefix: str) -> dict[str, Any]:
    """What the GPU nodes' role needs beyond AmazonEC2ContainerRegistryReadOnly to pull through the cache: import
    an upstream image and create its repository on the first pull (AWS ECR user guide, pull-through-cache-iam)."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "PullThroughDockerHub",
                "Effect": "Allow",
                "Action": ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"],
                "Resource": f"arn:{partition}:ecr:{region}:{account_id}:repository/{prefix}/*",
            }
        ],
    }
