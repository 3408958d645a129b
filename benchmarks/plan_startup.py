"""How long `selfhost plan dev` takes against the floor it cannot go below: importing the Pulumi SDKs it needs.

The floor is a fresh interpreter that imports exactly the Pulumi SDK modules a plan loads (`pulumi`,
`pulumi_aws.ec2`, `pulumi_kubernetes.core.v1`, ...; listed by running a plan first), and nothing else. The
plan is `selfhost plan dev` in a fresh interpreter, as a user runs it. Both run ROUNDS times, alternating,
and the medians are compared; the plan should stay within TARGET_RATIO of the floor. What makes up the rest
is the program itself and the command line: loading the Automation API or the chat client on the way to a plan
would show here.

The SDKs load their submodules lazily, so a bare `import pulumi_aws` costs a fraction of what registering an
`aws.ec2.Vpc` costs (pulumi_aws/ec2/__init__.py imports every EC2 resource class). That top-level import is
printed too, for comparison; it is not a floor a plan can reach.

    uv run python benchmarks/plan_startup.py [--rounds N] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
SDK_PACKAGES = ("pulumi", "pulumi_aws", "pulumi_eks", "pulumi_kubernetes", "pulumi_random")
TARGET_RATIO = 3.0


def sdk_modules_of_a_plan(out: Path) -> list[str]:
    """The Pulumi SDK modules (whole packages and the lazily loaded submodules) that a plan imports."""
    script = (
        "import json, sys\n"
        "from selfhost.cli import main\n"
        f"main(['plan', 'dev', '--out', {str(out)!r}])\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {SDK_PACKAGES!r})))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_DIR, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.splitlines()[-1])


def wall_seconds(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=PROJECT_DIR, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description="`selfhost plan dev` against the Pulumi SDK import floor.")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "plan"
        modules = sdk_modules_of_a_plan(out)
        floor_command = [sys.executable, "-c", "import " + ", ".join(modules)]
        plan_command = [sys.executable, "-m", "selfhost.cli", "plan", "dev", "--out", str(out)]
        top_level_command = [sys.executable, "-c", "import " + ", ".join(SDK_PACKAGES)]
        floors, plans, top_levels = [], [], []
        for _ in range(args.rounds):
            floors.append(wall_seconds(floor_command))
            plans.append(wall_seconds(plan_command))
            top_levels.append(wall_seconds(top_level_command))
    floor, plan, top_level = (statistics.median(times) for times in (floors, plans, top_levels))
    figures = {
        "sdk_modules": len(modules),
        "floor_seconds": round(floor, 2),
        "plan_seconds": round(plan, 2),
        "ratio": round(plan / floor, 2),
        "target_ratio": TARGET_RATIO,
        "top_level_import_seconds": round(top_level, 2),
    }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(
            f"SDK floor ({len(modules)} modules) {floor:.2f} s, selfhost plan dev {plan:.2f} s: "
            f"{plan / floor:.2f}x (target at most {TARGET_RATIO:g}x), medians of {args.rounds} rounds; "
            f"a bare `import {', '.join(SDK_PACKAGES)}` takes {top_level:.2f} s"
        )
    return 0 if plan / floor <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
