"""A real deployment: an ephemeral stack goes up, serves the model, passes the smoke check and is destroyed.

It costs money (an EKS cluster, a NAT gateway and a g6.xlarge for the 30-40 minutes it runs), so it runs only
when asked with SELFHOST_INTEGRATION=1, and only where AWS credentials, the Pulumi CLI (logged in to a
backend), the AWS CLI and kubectl are all present. The stack's resources are destroyed whatever happens; the
stack and its file are removed once that succeeded, and kept (named in the failure) when it did not.
"""

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from selfhost.automation.command import Console, open_stack, wait_for_model
from selfhost.plan.runner import PROJECT_DIR
from stacks.config import load_config

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


def ephemeral_settings(dev: dict[str, Any]) -> dict[str, Any]:
    """The dev stack's settings for a throwaway stack: an ungated model, and nothing tied to the dev stack's
    own secrets. A `secure:` value is encrypted for the dev stack alone (Pulumi Cloud cannot decrypt another
    stack's secrets), and so is a passphrase stack's salt: both go, and the new stack makes its own. The API
    endpoint stays open to the CI runner, whose address is not known ahead (the stack lives for one test)."""
    config = {
        key: value
        for key, value in (dev.get("config") or {}).items()
        if not (isinstance(value, dict) and "secure" in value)
    }
    config["llm:model"] = UNGATED_MODEL
    config["cluster:publicAccessOpenToInternet"] = True
    return {"config": config}


def ephemeral_stack_name() -> str:
    """SELFHOST_INTEGRATION_STACK when the workflow names the stack (so that its cleanup step can find it)."""
    return os.environ.get("SELFHOST_INTEGRATION_STACK") or f"ci-{uuid.uuid4().hex[:8]}"


def write_ephemeral_stack_file() -> tuple[str, Path]:
    """Pulumi.<name>.yaml: the dev stack's config made fit for a throwaway stack (ephemeral_settings)."""
    name = ephemeral_stack_name()
    settings = ephemeral_settings(yaml.safe_load((PROJECT_DIR / "Pulumi.dev.yaml").read_text()))
    stack_file = PROJECT_DIR / f"Pulumi.{name}.yaml"
    stack_file.write_text(yaml.safe_dump(settings, sort_keys=False))
    return name, stack_file


def test_the_throwaway_stack_leaves_the_dev_stacks_secrets_behind():
    dev = {
        "encryptionsalt": "v1:abc:def",
        "secretsprovider": "awskms://alias/dev",
        "config": {
            "aws:region": "us-west-2",
            "llm:hfToken": {"secure": "v1:AAAA"},
            "llm:replicas": 1,
        },
    }
    settings = ephemeral_settings(dev)
    assert settings == {
        "config": {
            "aws:region": "us-west-2",
            "llm:replicas": 1,
            "llm:model": UNGATED_MODEL,
            "cluster:publicAccessOpenToInternet": True,
        }
    }
    # What the test really writes validates as a stack other than dev.
    load_config(
        {
            key: json.dumps(value) if not isinstance(value, str) else value
            for key, value in settings["config"].items()
        },
        "ci-12345678",
    )


@pytest.mark.integration
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
