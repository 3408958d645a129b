"""Kubernetes security checks (checkov) an object skips, as the annotations checkov reads on the object itself:
`checkov.io/skipN: CHECK_ID=reason`. checkov then reports each as skipped with its reason
(tests/conformance/test_security_checks.py runs the checks on the plan)."""

from __future__ import annotations

from collections.abc import Mapping

# "Image should use digest": passes only for an image pinned as repo:tag@sha256:...
IMAGE_DIGEST_CHECK = "CKV_K8S_43"


def skip_annotations(reasons: Mapping[str, str]) -> dict[str, str]:
    """The annotations skipping each check in `reasons` (check id to reason)."""
    return {
        f"checkov.io/skip{index}": f"{check}={reason}"
        for index, (check, reason) in enumerate(reasons.items(), 1)
    }


def vllm_image_digest_reason(image: str) -> dict[str, str]:
    """The digest check's reason while the vLLM image (llm:vllmImage) is pinned by tag; nothing once it has a
    digest, so that the check runs and passes."""
    if "@sha256:" in image:
        return {}
    return {
        IMAGE_DIGEST_CHECK: "the vLLM image is pinned by tag; pin a digest with llm:vllmImage "
        "repo:tag@sha256:... (docs/configuration.md)"
    }
