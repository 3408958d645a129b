"""The Docker Hub pull-through cache: the image rewrite, the rule's prefix, the nodes' right to pull through
it, and the plan with and without Docker Hub credentials."""

from __future__ import annotations

import json

import pytest

from components.registry.layout import cache_prefix, cached_image, docker_hub_repository, node_pull_policy
from selfhost.plan.mocks import ACCOUNT_ID
from tests.variants import DOCKER_HUB_CREDENTIALS

HOST = f"{ACCOUNT_ID}.dkr.ecr.us-west-2.amazonaws.com"
DIGEST = "sha256:" + "0" * 64


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("vllm/vllm-openai:v0.33.0", "vllm/vllm-openai:v0.33.0"),
        ("docker.io/vllm/vllm-openai:v0.33.0", "vllm/vllm-openai:v0.33.0"),
        (f"vllm/vllm-openai:v0.33.0@{DIGEST}", f"vllm/vllm-openai:v0.33.0@{DIGEST}"),
        ("busybox:1.37.0", "library/busybox:1.37.0"),
        ("public.ecr.aws/docker/library/busybox:1.37.0", None),
        (f"{HOST}/mirror/vllm/vllm-openai:v0.33.0", None),
        ("localhost/vllm:dev", None),
    ],
)
def test_docker_hub_images_are_recognised_whatever_their_spelling(image, repository):
    assert docker_hub_repository(image) == repository


def test_the_cache_serves_the_same_tag_and_digest_under_its_prefix():
    assert (
        cached_image(f"vllm/vllm-openai:v0.33.0@{DIGEST}", HOST, "llm-dev-docker-hub")
        == f"{HOST}/llm-dev-docker-hub/vllm/vllm-openai:v0.33.0@{DIGEST}"
    )
    # An image from another registry is left alone.
    assert cached_image("public.ecr.aws/x/y:1", HOST, "p") == "public.ecr.aws/x/y:1"


def test_the_prefix_fits_ecrs_30_characters():
    assert cache_prefix("llm-dev") == "llm-dev-docker-hub"
    assert cache_prefix("llm-Team_A") == "llm-team-a-docker-hub"
    # llm- plus a 26-character stack is 41 characters with the suffix: hashed down to 23.
    long = cache_prefix("llm-" + "a" * 26)
    assert len(long) <= 30 and long.endswith("-docker-hub")
    assert long != cache_prefix("llm-" + "b" * 26)


def test_nodes_may_import_and_create_only_under_the_prefix():
    [statement] = node_pull_policy("aws", "us-west-2", ACCOUNT_ID, "llm-dev-docker-hub")["Statement"]
    assert statement["Action"] == ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"]
    assert statement["Resource"] == f"arn:aws:ecr:us-west-2:{ACCOUNT_ID}:repository/llm-dev-docker-hub/*"


def test_without_credentials_the_image_comes_from_docker_hub(dev_plan):
    assert not dev_plan.of_type("aws:ecr/pullThroughCacheRule:PullThroughCacheRule")
    deployment = dev_plan.named("model-server-deployment")
    assert (
        deployment.inputs["spec"]["template"]["spec"]["containers"][0]["image"] == "vllm/vllm-openai:v0.33.0"
    )


def test_with_credentials_the_model_server_and_the_staging_job_pull_through_the_cache(plan_with):
    plan = plan_with({"llm:dockerHubCredentialsArn": DOCKER_HUB_CREDENTIALS})
    [rule] = plan.of_type("aws:ecr/pullThroughCacheRule:PullThroughCacheRule")
    assert rule.inputs == {
        "ecrRepositoryPrefix": "llm-dev-docker-hub",
        "upstreamRegistryUrl": "registry-1.docker.io",
        "credentialArn": DOCKER_HUB_CREDENTIALS,
    }
    expected = f"{HOST}/llm-dev-docker-hub/vllm/vllm-openai:v0.33.0"
    deployment = plan.named("model-server-deployment")
    [job] = plan.of_type("kubernetes:batch/v1:Job")
    for workload in (deployment, job):
        assert workload.inputs["spec"]["template"]["spec"]["containers"][0]["image"] == expected
    assert plan.outputs["vllm_image"] == expected
    [pull] = [p for p in plan.of_type("aws:iam/rolePolicy:RolePolicy") if p.name.endswith("node-pull")]
    assert pull.inputs["role"] == plan.outputs["karpenter_node_role"]
    assert json.loads(pull.inputs["policy"])["Statement"][0]["Resource"].endswith("llm-dev-docker-hub/*")
    # The model server's objects wait for the nodes' right to pull through the cache.
    assert pull.name in plan.named("model-server-namespace").dependencies


def test_credentials_must_be_a_pull_through_secret_in_the_stacks_region(plan_with):
    from stacks.config import ConfigError

    with pytest.raises(ConfigError) as error:
        plan_with({"llm:dockerHubCredentialsArn": DOCKER_HUB_CREDENTIALS.replace("us-west-2", "eu-west-1")})
    [message] = error.value.errors
    assert message.startswith("llm:dockerHubCredentialsArn:") and "us-west-2" in message
    with pytest.raises(ConfigError, match="ecr-pullthroughcache/"):
        plan_with(
            {"llm:dockerHubCredentialsArn": DOCKER_HUB_CREDENTIALS.replace("ecr-pullthroughcache/", "")}
        )
