"""The EC2 quotas a stack needs, worked out by hand from the catalog's vCPUs and the pool limits."""

from __future__ import annotations

import json

from selfhost.plan.command import write_plan
from stacks.catalogs.instances import GPU_INSTANCES
from stacks.quota import quota_needs


def gpu_rows(needs):
    return {(need.quota, need.capacity_type): need.vcpus for need in needs if "Standard" not in need.quota}


def test_dev_needs_three_g6_xlarge_of_either_capacity_type():
    # dev: autoscaling up to 2 replicas on g6.xlarge -> 2 nodes, plus one spare node in the GPU pool's limit =
    # 3 GPUs = 3 nodes; 3 x 4 vCPUs = 12, on spot and on on-demand alike (Karpenter may launch either).
    needs = quota_needs(GPU_INSTANCES["g6.xlarge"], ("spot", "on-demand"), gpu_limit=3)
    assert gpu_rows(needs) == {
        ("All G and VT Spot Instance Requests", "spot"): 12,
        ("Running On-Demand G and VT instances", "on-demand"): 12,
    }
    # The system pool's limit, 8 vCPUs, on the Standard quotas.
    assert {need.vcpus for need in needs if "Standard" in need.quota} == {8}


def test_prod_needs_twenty_on_demand_vcpus():
    # prod: up to 4 replicas -> 4 nodes + 1 spare = 5 x 4 vCPUs = 20, on-demand only.
    needs = quota_needs(GPU_INSTANCES["g6.xlarge"], ("on-demand",), gpu_limit=5)
    assert gpu_rows(needs) == {("Running On-Demand G and VT instances", "on-demand"): 20}


def test_the_family_fallback_counts_the_widest_size_the_pool_may_launch():
    # With the fallback the GPU pool may launch g6.2xlarge (8 vCPUs, the same single L4) for any of its 3
    # nodes, and its limit counts GPUs only: 3 x 8 = 24 vCPUs, not 3 x 4.
    [need] = quota_needs(GPU_INSTANCES["g6.xlarge"], ("on-demand",), gpu_limit=3, family_fallback=True)[:1]
    assert need.vcpus == 24
    assert need.why.startswith("3 x g6.2xlarge (8 vCPUs), the widest type the pool may launch")


def test_p4d_draws_on_the_p_quota():
    # 70B on p4d.24xlarge: 1 node + 1 spare = 16 GPUs / 8 per node = 2 nodes x 96 vCPUs = 192.
    needs = quota_needs(GPU_INSTANCES["p4d.24xlarge"], ("on-demand",), gpu_limit=16)
    assert gpu_rows(needs) == {("Running On-Demand P instances", "on-demand"): 192}


def test_a_parked_model_needs_no_gpu_quota():
    assert gpu_rows(quota_needs(GPU_INSTANCES["g6.xlarge"], ("spot", "on-demand"), gpu_limit=0)) == {}


def test_the_report_states_the_quota_and_the_spot_caveat(dev_plan, prod_plan, tmp_path):
    report = write_plan(dev_plan, tmp_path / "dev")
    # dev: a pool limit of 3 GPUs (2 replicas at most, plus a spare node) = 3 x g6.xlarge x 4 vCPUs = 12.
    assert {(row["quota"], row["vcpus"]) for row in report["quota"]} >= {
        ("Running On-Demand G and VT instances", 12),
        ("All G and VT Spot Instance Requests", 12),
    }
    markdown = (tmp_path / "dev" / "report.md").read_text()
    assert "| Running On-Demand G and VT instances (`L-DB2E81BA`) | on-demand | 12 |" in markdown
    assert "## Spot" in markdown and "120 s after its interruption notice" in markdown
    write_plan(prod_plan, tmp_path / "prod")
    prod = json.loads((tmp_path / "prod" / "report.json").read_text())
    # prod: a pool limit of 5 GPUs (4 replicas at most, plus a spare node) = 5 x g6.xlarge x 4 vCPUs = 20,
    # on-demand only; the system pool's 8 vCPUs on both Standard quotas (it may run on either).
    assert {(row["quota"], row["capacity_type"], row["vcpus"]) for row in prod["quota"]} == {
        ("Running On-Demand G and VT instances", "on-demand", 20),
        ("Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances", "on-demand", 8),
        ("All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests", "spot", 8),
    }
    assert "## Spot" not in (tmp_path / "prod" / "report.md").read_text()


def test_the_report_counts_the_family_fallback(plan_with, tmp_path):
    report = write_plan(plan_with({"llm:instanceFamilyFallback": "true"}), tmp_path)
    # dev's 3 GPU nodes, each possibly a g6.2xlarge: 3 x 8 = 24 vCPUs on each GPU quota.
    assert {row["vcpus"] for row in report["quota"] if "G and VT" in row["quota"]} == {24}
