"""What a command needs before it can do anything, and the one way every command says it is missing.

Every `selfhost` command reports a prerequisite found missing before anything ran (a CLI, a stack file, a
valid config, a deployed stack) the same way: `selfhost COMMAND STACK: <one sentence on what to do>` on
stderr, and exit code 2. Failures of something that ran exit 1.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

EXIT_PREREQUISITE = 2
EXIT_FAILED = 1

# What each tool is and how to get it.
TOOLS: Mapping[str, tuple[str, str]] = {
    "pulumi": ("the Pulumi CLI", "curl -fsSL https://get.pulumi.com | sh, or brew install pulumi"),
    "kubectl": ("kubectl", "https://kubernetes.io/docs/tasks/tools/, or brew install kubectl"),
    "aws": (
        "the AWS CLI v2",
        "https://docs.aws.amazon.com/cli/latest/userguide/getting-started-install.html",
    ),
}


# What the Pulumi CLI prints when something it needs before it can run is missing, and what to do about it.
# Credentials: pulumi-aws "No valid credential sources found" (pulumi-aws#3310), the Terraform-era
# "no valid credential sources for Terraform AWS Provider found" / "NoCredentialProviders".
PULUMI_PREREQUISITES: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("no valid credential sources", "nocredentialproviders", "failed to refresh cached credentials"),
        "No AWS credentials were found: sign in (aws configure, aws sso login or AWS_PROFILE; OIDC in CI), "
        "check with `aws sts get-caller-identity` and run the command again.",
    ),
    (
        ("expiredtoken", "invalidclienttokenid", "invalid credentials configured", "security token included"),
        "The AWS credentials are expired or invalid: refresh them (e.g. aws sso login), check with "
        "`aws sts get-caller-identity` and run the command again.",
    ),
    (
        ("pulumi_access_token must be set",),
        "The Pulumi CLI is not logged in to a state backend: run `pulumi login --local` to keep state on this "
        "machine, `pulumi login s3://BUCKET` for a team, or set PULUMI_ACCESS_TOKEN for Pulumi Cloud.",
    ),
    (
        ("passphrase must be set", "incorrect passphrase"),
        "The stack's secrets are encrypted with a passphrase: set PULUMI_CONFIG_PASSPHRASE (or "
        "PULUMI_CONFIG_PASSPHRASE_FILE) to the stack's passphrase and run the command again.",
    ),
)
# The CLI's words for a stack the backend does not hold: `error: no stack named 'dev' found`.
NO_STACK_NAMED = "no stack named"


def stack_not_in_backend(stack: str) -> str:
    return (
        f"Stack {stack} does not exist in the backend the Pulumi CLI is logged in to (`pulumi whoami -v` "
        f"shows which): create it with `selfhost up {stack}`, or log in to the backend that holds it."
    )


def pulumi_prerequisite(output: str, stack: str) -> str | None:
    """The sentence for a Pulumi CLI failure whose cause was missing before anything ran (a login, a
    passphrase, AWS credentials, the stack itself), from what the CLI printed; None for any other failure."""
    text = output.lower()
    if NO_STACK_NAMED in text:
        return stack_not_in_backend(stack)
    for needles, sentence in PULUMI_PREREQUISITES:
        if any(needle in text for needle in needles):
            return sentence
    return None


def missing_stack_file(path: Path) -> str:
    """A stack file that is not there: a typo in the stack's name would otherwise make a new, empty stack."""
    return (
        f"there is no {path.name} in {path.parent}: copy Pulumi.dev.yaml to it (or pick dev or prod) and run "
        "the command again."
    )


def config_errors(errors: Iterable[str]) -> str:
    """A config the program refuses: every error, one per line, under one sentence."""
    listed = list(errors)
    return f"the stack's config has {len(listed)} error(s):\n" + "\n".join(
        f"  - {message}" for message in listed
    )


def missing_tool(tool: str, needed_for: str, instead: str = "") -> str:
    """The sentence for a tool that is not on PATH: what needs it, how to install it, what to do instead."""
    name, install = TOOLS[tool]
    alternative = f", or {instead}" if instead else ""
    return f"{name} is not on PATH and is needed {needed_for}: install it ({install}) and run the command again{alternative}."


def report(command: str, stack: str | None, sentence: str, code: int = EXIT_PREREQUISITE) -> int:
    """Print `selfhost COMMAND [STACK]: sentence` on stderr and return the exit code."""
    prefix = f"selfhost {command} {stack}" if stack else f"selfhost {command}"
    print(f"{prefix}: {sentence}", file=sys.stderr)
    return code
