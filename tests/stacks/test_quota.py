"""The EC2 quotas a stack needs, worked out by hand from the catalog's vCPUs and the pool limits."""

from __future__ import annotations

import json

from selfhost.plan.command import write_plan
from stacks.catalogs.instances import GPU_INSTANCES
from stacks.quota import quota_needs


def gpu_rows(needs):
    return {(need.quota, need.capacity_type): need.vcpus for need in needs if "Standard" not in need.quota}


def test_dev_needs_two_g6_xlarge_of_either_capacity_type():
    # dev: 1 replica on g6.xlarge -> 1 node, plus one spare node in the GPU pool limit = 2 GPUs = 2 nodes;
    # 2 x 4 vCPUs = 8, on spot and on on-demand alike (Karpenter may launch either).
    needs = quota_needs(GPU_INSTANCES["g6.xlarge"], ("spot", "on-demand"), gpu_limit=2)
    assert gpu_rows(needs) == {
        ("All G and VT Spot Instance Requests", "spot"): 8,
        ("Running On-Demand G and VT instances", "on-demand"): 8,
    }
    # The system pool's limit, 8 vCPUs, on the Standard quotas.
    assert {need.vcpus for need in needs if "Standard" in need.quota} == {8}


def test_prod_needs_twelve_on_demand_vcpus():
    # prod: 2 replicas -> 2 nodes + 1 spare = 3 x 4 vCPUs = 12, on-demand only.
    needs = quota_needs(GPU_INSTANCES["g6.xlarge"], ("on-demand",), gpu_limit=3)
    assert gpu_rows(needs) == {("Running On-Demand G and VT instances", "on-demand"): 12}


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
    prod = write_plan(prod_plan, tmp_path / "prod")
    assert json.loads((tmp_path / "prod" / "report.json").read_text())["quota"] == prod["quota"]
    assert "## Spot" not in (tmp_path / "prod" / "report.md").read_text()
