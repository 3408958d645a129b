"""`selfhost plan`: write the offline plan of a stack (resources, manifests, Helm values, report)."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from selfhost.plan.diff import PlanDiffError, PlanFiles, diff_markdown, diff_plans, read_plan
from selfhost.plan.report import (
    STARTUP_PHASE_NAMES,
    build_report,
    cost_line,
    endpoint_line,
    kv_cache_text,
    placement,
    report_markdown,
)
from selfhost.plan.runner import PROJECT_DIR, PlanResult, RecordedResource, plan_stack
from selfhost.prerequisites import config_errors, report
from stacks.config import ConfigError

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stack", nargs="?", default="dev", help="stack name (Pulumi.STACK.yaml), default dev")
    parser.add_argument("--out", type=Path, help="output directory, default build/plan/STACK")
    parser.add_argument(
        "--project-dir",
        type=Path,
        default=PROJECT_DIR,
        help="directory holding Pulumi.yaml and the stack files",
    )
    parser.add_argument(
        "--diff",
        type=Path,
        metavar="BASE_DIR",
        help="also compare with the plan in BASE_DIR (e.g. the base branch's) and write OUT/diff.md",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out: Path = args.out or args.project_dir / "build" / "plan" / args.stack
    if args.diff is not None and args.diff.resolve() == out.resolve():
        return report("plan", args.stack, f"--diff {args.diff} is the output directory; pass another --out.")
    try:
        result = plan_stack(args.stack, args.project_dir)
    except ConfigError as error:
        return report("plan", args.stack, config_errors(error.errors))
    except FileNotFoundError as error:
        return report("plan", args.stack, str(error))
    written = write_plan(result, out, args.project_dir)
    print(summary(written, out))
    if args.diff is not None:
        try:
            base = read_plan(args.diff)
            markdown = diff_markdown(diff_plans(base, read_plan(out)), base_label(base, args.diff))
        except PlanDiffError as error:
            return report("plan", args.stack, str(error))
        (out / "diff.md").write_text(markdown)
        print(f"\n{markdown}")
    return 0


def base_label(base: PlanFiles, directory: Path) -> str:
    """How a diff names its base: by the commit the plan was made from, by its directory without one."""
    commit = base.report.get("commit")
    return f"commit `{commit[:12]}`" if commit else f"`{directory}`"


def is_manifest(resource: RecordedResource) -> bool:
    """Kubernetes objects the program creates itself (not providers, not Helm releases)."""
    return (
        resource.type.startswith("kubernetes:")
        and resource.custom
        and resource.type != HELM_RELEASE
        and not resource.type.startswith("pulumi:providers:")
        and "kind" in resource.inputs
    )


def manifest_filename(manifest: dict[str, Any]) -> str:
    metadata = manifest.get("metadata", {})
    parts = [manifest["kind"].lower(), metadata.get("namespace"), metadata.get("name", "unnamed")]
    return "-".join(str(part) for part in parts if part) + ".yaml"


def helm_release(resource: RecordedResource) -> dict[str, Any]:
    inputs = resource.inputs
    return {
        "chart": inputs.get("chart"),
        "repo": (inputs.get("repositoryOpts") or {}).get("repo"),
        "version": inputs.get("version"),
        "namespace": inputs.get("namespace"),
        "values": inputs.get("values") or {},
    }


def write_plan(result: PlanResult, out: Path, project_dir: Path = PROJECT_DIR) -> dict[str, Any]:
    if out.exists():
        shutil.rmtree(out)
    (out / "manifests").mkdir(parents=True)
    (out / "helm").mkdir()
    resources = [
        {"type": r.type, "name": r.name, "parent": r.parent, "inputs": r.inputs} for r in result.resources
    ]
    (out / "resources.json").write_text(json.dumps(resources, indent=2, sort_keys=True) + "\n")
    for resource in result.resources:
        if is_manifest(resource):
            head = {
                key: resource.inputs[key]
                for key in ("apiVersion", "kind", "metadata")
                if key in resource.inputs
            }
            manifest = {**head, **{k: v for k, v in resource.inputs.items() if k not in head}}
            (out / "manifests" / manifest_filename(manifest)).write_text(
                yaml.safe_dump(manifest, sort_keys=False)
            )
        elif resource.type == HELM_RELEASE:
            name = resource.inputs.get("name") or resource.name
            (out / "helm" / f"{name}.yaml").write_text(
                yaml.safe_dump(helm_release(resource), sort_keys=False)
            )
    report = build_report(result, project_dir)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(report_markdown(report))
    return report


def startup_line(startup: dict[str, Any]) -> str:
    line = f"{startup['total_seconds']} s for a replica on a new node (target {startup['target_seconds']} s"
    if startup["meets_target"]:
        return line + ")"
    bound = STARTUP_PHASE_NAMES[startup["bound"]].lower()
    return f"{line}; the {bound} bounds it at {startup['phases'][startup['bound']]['seconds']} s)"


def summary(report: dict[str, Any], out: Path) -> str:
    sizing, cost = report["sizing"], report["cost"]
    width = max((len(t) for t in report["resources"]["by_type"]), default=10)
    lines = [
        f"Plan for stack {report['stack']}: {report['resources']['total']} resources -> {out}",
        "",
        f"  {'TYPE'.ljust(width)}  COUNT",
        *(f"  {t.ljust(width)}  {n:>5}" for t, n in report["resources"]["by_type"].items()),
        "",
        f"  Model    {report['model']}: {placement(sizing, report['instance_type'], report['scaling'])}",
        f"  Sizing   TP {sizing['tensor_parallel_size']}, max_model_len {sizing['max_model_len']}, "
        f"KV cache {kv_cache_text(sizing)}, "
        f"{sizing['gpu_memory_gib_required']} of {sizing['gpu_memory_gib_available']} GiB per GPU",
        f"  Endpoint {endpoint_line(report['endpoint'])}",
        f"  Startup  {startup_line(report['startup'])}",
        f"  Cost     {cost_line(cost, report['scaling'])}",
        *(f"  Warning  {warning}" for warning in report["warnings"]),
        "",
        "Next, to deploy it (README.md#deploy-to-aws):",
        "  1. install the Pulumi CLI and the AWS CLI v2, sign in to AWS and log in to a state backend (pulumi login)",
        f"  2. uv run selfhost preview {report['stack']}",
        f"  3. uv run selfhost up {report['stack']}",
    ]
    return "\n".join(lines)
