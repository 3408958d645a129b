"""A real deployment: an ephemeral stack goes up, serves the model, passes the smoke check and is destroyed.

It costs money (an EKS cluster, a NAT gateway and a g6.xlarge for the 30-40 minutes it runs), so it runs only
when asked with SELFHOST_INTEGRATION=1, and only where AWS credentials, the Pulumi CLI (logged in to a
backend), the AWS CLI and kubectl are all present. The stack's resources are destroyed whatever happens; the
stack and its file are removed once that succeeded, and kept (named in the failure) when it did not.
"""

import os
import shutil
import uuid
from pathlib import Path

import pytest
import yaml

from selfhost.automation.command import Console, open_stack, wait_for_model
from selfhost.plan.runner import PROJECT_DIR

pytestmark = pytest.mark.integration

# Qwen2.5-7B-Instruct is not gated on Hugging Face, so the stack needs no token to download it.
UNGATED_MODEL = "Qwen/Qwen2.5-7B-Instruct"
SERVE_TIMEOUT_SECONDS = 1800
AWS_CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_PROFILE",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
)


def missing_prerequisites() -> list[str]:
    missing = []
    if os.environ.get("SELFHOST_INTEGRATION") != "1":
        missing.append("SELFHOST_INTEGRATION=1 (this test deploys real, billed AWS resources)")
    aws_files = [Path.home() / ".aws" / "credentials", Path.home() / ".aws" / "config"]
    if not any(os.environ.get(name) for name in AWS_CREDENTIAL_VARIABLES) and not any(
        path.is_file() for path in aws_files
    ):
        missing.append("AWS credentials (environment variables or a profile in ~/.aws)")
    for tool in ("pulumi", "aws", "kubectl"):
        if shutil.which(tool) is None:
            missing.append(f"the {tool} CLI on PATH")
    return missing


def write_ephemeral_stack_file() -> tuple[str, Path]:
    """Pulumi.ci-XXXXXXXX.yaml: the dev stack's config with an ungated model, under a unique stack name."""
    name = f"ci-{uuid.uuid4().hex[:8]}"
    settings = yaml.safe_load((PROJECT_DIR / "Pulumi.dev.yaml").read_text())
    settings["config"]["llm:model"] = UNGATED_MODEL
    stack_file = PROJECT_DIR / f"Pulumi.{name}.yaml"
    stack_file.write_text(yaml.safe_dump(settings, sort_keys=False))
    return name, stack_file


def test_ephemeral_stack_goes_up_serves_and_is_destroyed():
    missing = missing_prerequisites()
    if missing:
        pytest.skip("needs " + ", ".join(missing))
    name, stack_file = write_ephemeral_stack_file()
    console = Console(json_mode=False)
    stack = None
    try:
        stack = open_stack(name, create=True)
        result = stack.up(on_output=console.output, on_error=console.error, color="never")
        assert result.summary.result == "succeeded"
        assert wait_for_model(name, SERVE_TIMEOUT_SECONDS, console) == 0
    finally:
        if stack is not None:
            try:
                stack.destroy(on_output=console.output, on_error=console.error, color="never")
            except Exception as error:
                raise AssertionError(
                    f"destroying stack {name} failed and its resources may still run: {stack_file.name} is kept "
                    f"so that `selfhost destroy {name} --yes` can finish the job"
                ) from error
            # `pulumi stack rm` also deletes the stack's file.
            stack.workspace.remove_stack(name)
        stack_file.unlink(missing_ok=True)
