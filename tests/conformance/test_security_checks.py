"""checkov's Kubernetes checks on the plan's manifests: no finding is left unexplained.

A check that does not fit an LLM server is skipped on the object itself, with a `checkov.io/skipN` annotation
whose text gives the reason (components/serving/manifests.py security_check_exceptions); checkov reports it as
skipped with that text. Everything else must pass.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from selfhost.plan.command import write_plan
from tests.variants import PUBLIC_ENDPOINT

CHECKOV = Path(sys.executable).with_name("checkov")


def checkov_results(manifests: Path) -> dict:
    result = subprocess.run(
        [
            str(CHECKOV),
            "--directory",
            str(manifests),
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads(result.stdout)
    return report["results"]


@pytest.mark.parametrize("variant", ["dev", "prod", "load-balancer"])
def test_every_kubernetes_check_passes_or_is_skipped_with_its_reason(
    variant, dev_plan, prod_plan, plan_with, tmp_path
):
    plan = {
        "dev": dev_plan,
        "prod": prod_plan,
        "load-balancer": plan_with(PUBLIC_ENDPOINT) if variant == "load-balancer" else None,
    }[variant]
    assert plan is not None
    write_plan(plan, tmp_path)
    results = checkov_results(tmp_path / "manifests")
    failed = [f"{c['check_id']} {c['check_name']} ({c['resource']})" for c in results["failed_checks"]]
    assert failed == []
    unexplained = [
        c["check_id"] for c in results["skipped_checks"] if not c["check_result"].get("suppress_comment")
    ]
    assert unexplained == []
    passed = {c["check_id"] for c in results["passed_checks"]}
    # A NetworkPolicy selects the model server's pods (CKV2_K8S_6 would fail without one).
    assert "CKV2_K8S_6" in passed
    assert len(passed) > 50


def test_a_digest_pinned_image_needs_no_exception(plan_with, tmp_path):
    digest = "sha256:" + "0123456789abcdef" * 4
    write_plan(plan_with({"llm:vllmImage": f"vllm/vllm-openai:v0.33.0@{digest}"}), tmp_path)
    results = checkov_results(tmp_path / "manifests")
    # The vLLM image's workloads: the model server and the staging Job (the responder has its own image).
    vllm_image = ("Deployment.llm.vllm", "Job.llm.stage-weights-")

    def runs_vllm(check: dict) -> bool:
        return check["resource"] == vllm_image[0] or check["resource"].startswith(vllm_image[1])

    passed = {c["check_id"] for c in results["passed_checks"] if runs_vllm(c)}
    skipped = {c["check_id"] for c in results["skipped_checks"] if runs_vllm(c)}
    assert "CKV_K8S_43" in passed and "CKV_K8S_43" not in skipped
