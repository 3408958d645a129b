import pytest

from selfhost.plan.runner import stack_config
from stacks.config import load_config
from stacks.cost import (
    cost_items,
    idle_usd_per_hour,
    nat_usd_avoided_per_cold_start,
    peak_usd_per_hour,
    total_usd_per_hour,
)
from tests.variants import DOCKER_HUB_CREDENTIALS, PUBLIC_ENDPOINT


def items_of(stack: str) -> dict[str, float]:
    config = load_config(stack_config(stack)[0], stack)
    return {item.name: item.usd_per_hour for item in cost_items(config)}


def test_dev_cost_per_hour():
    # dev scales between 0 and 2 replicas: the items are its peak, 2 GPU nodes.
    items = items_of("dev")
    # Karpenter on Fargate: 2 pods x (1 vCPU x $0.04048 + 2 GB x $0.004445) = 2 x $0.04937 = $0.09874.
    assert items["Karpenter on Fargate"] == pytest.approx(0.09874)
    # CoreDNS: 2 x (0.25 x $0.04048 + 0.5 x $0.004445) = 2 x $0.0123425 = $0.024685.
    assert items["CoreDNS on Fargate"] == pytest.approx(0.024685)
    # Root volumes: (2 GPU nodes + 1 system node) x 50 GiB x $0.08 / 730 h = $0.016438.
    assert items["Node root volumes"] == pytest.approx(0.016438, abs=1e-6)
    assert items["GPU nodes"] == pytest.approx(2 * 0.8048)
    # One NAT gateway: $0.045/h plus $0.005/h for its public IPv4 address.
    assert items["NAT gateways"] == pytest.approx(0.05)
    # Mistral-7B's 14.483 GB of weights in S3 Standard: 14.483 x $0.023 / 730 h = $0.000456.
    assert items["Weights in S3"] == pytest.approx(0.000456, abs=1e-6)
    # 0.10 EKS + 0.05 NAT + 2 x 0.8048 g6.xlarge + 0.0864 m6a.large + 0.09874 + 0.024685 + 0.016438
    # + 1/730 KMS (0.00137) + 0.000456 = $1.98769/h.
    assert sum(items.values()) == pytest.approx(1.98769, abs=1e-4)
    assert "Prometheus volume" not in items
    # Without Docker Hub credentials the image is not cached, so ECR stores nothing.
    assert "vLLM image in ECR" not in items


def test_prod_cost_per_hour():
    # prod scales between 2 and 4 replicas: the items are its peak, 4 GPU nodes.
    items = items_of("prod")
    assert items["NAT gateways"] == pytest.approx(3 * (0.045 + 0.005))
    assert items["GPU nodes"] == pytest.approx(4 * 0.8048)
    # 100 GiB x $0.08 / 730 h.
    assert items["Prometheus volume"] == pytest.approx(0.010959, abs=1e-6)
    # 0.10 + 0.15 + 4 x 0.8048 (3.2192) + 0.0864 + 0.09874 + 0.024685 + 5 x 50 x 0.08 / 730 (0.027397)
    # + 0.00137 + 0.010959 + 0.000456 (weights in S3) = $3.71921/h.
    config = load_config(stack_config("prod")[0], "prod")
    assert total_usd_per_hour(cost_items(config)) == pytest.approx(3.71921, abs=1e-4)


def test_idle_and_peak_follow_the_scaling_range():
    dev = load_config(stack_config("dev")[0], "dev")
    # dev idle (0 replicas): the peak less 2 x 0.8048 and 2 root volumes (2 x 50 x 0.08 / 730 = 0.010959):
    # 1.98769 - 1.6096 - 0.010959 = $0.36713/h, the stack without any GPU node.
    assert idle_usd_per_hour(dev) == pytest.approx(0.36713, abs=1e-4)
    assert peak_usd_per_hour(dev) == pytest.approx(1.98769, abs=1e-4)
    prod = load_config(stack_config("prod")[0], "prod")
    # prod never goes below 2 replicas: 3.71921 - 2 x 0.8048 - 2 x 0.005479 = $2.09865/h.
    assert idle_usd_per_hour(prod) == pytest.approx(2.09865, abs=1e-4)


def test_the_image_cache_costs_its_storage_and_saves_nat_data_per_cold_start():
    raw = {**stack_config("dev")[0], "llm:dockerHubCredentialsArn": DOCKER_HUB_CREDENTIALS}
    config = load_config(raw, "dev")
    items = {item.name: item.usd_per_hour for item in cost_items(config)}
    # 12.64 GB in ECR at $0.10 per GB-month: 1.264 / 730 = $0.001732/h.
    assert items["vLLM image in ECR"] == pytest.approx(0.001732, abs=1e-6)
    # Per cold start, (14.483 GB weights + 12.64 GB image) x $0.045/GB of NAT processing = $1.2205.
    assert nat_usd_avoided_per_cold_start(config) == pytest.approx(1.2205, abs=1e-4)
    # Without the cache only the weights avoid the NAT: 14.483 x 0.045 = $0.6518.
    assert nat_usd_avoided_per_cold_start(load_config(stack_config("dev")[0], "dev")) == pytest.approx(
        0.6518, abs=1e-4
    )


def test_extended_support_costs_six_times_more():
    config = load_config({"cluster:version": "1.33", "cluster:supportType": "EXTENDED"}, "dev")
    assert {i.name: i.usd_per_hour for i in cost_items(config)}["EKS control plane"] == 0.60


def load_balanced(scheme: str) -> dict[str, float]:
    raw = {**stack_config("dev")[0], **PUBLIC_ENDPOINT, "llm:loadBalancerScheme": scheme}
    return {item.name: item.usd_per_hour for item in cost_items(load_config(raw, "dev"))}


def test_a_load_balancer_adds_its_hourly_charge():
    assert "Network Load Balancer" not in items_of("dev")
    # Internal: the NLB-hour only, $0.0225.
    assert load_balanced("internal")["Network Load Balancer"] == pytest.approx(0.0225)
    # Internet-facing in dev's 3 zones: $0.0225 + 3 public IPv4 addresses x $0.005 = $0.0375.
    assert load_balanced("internet-facing")["Network Load Balancer"] == pytest.approx(0.0375)
