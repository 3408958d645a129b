"""What a command needs before it can do anything, and the one way every command says it is missing.

Every `selfhost` command reports a prerequisite found missing before anything ran (a CLI, a stack file, a
valid config, a deployed stack) the same way: `selfhost COMMAND STACK: <one sentence on what to do>` on
stderr, and exit code 2. Failures of something that ran exit 1.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

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
