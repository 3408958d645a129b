"""A pinned Helm chart from an HTTP chart repository, and the release arguments that install it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s


@dataclass(frozen=True)
class HelmChart:
    name: str
    repo: str
    version: str


def release_args(
    release_name: str,
    chart: HelmChart,
    namespace: pulumi.Input[str],
    values: pulumi.Input[dict[str, Any]],
    timeout_seconds: int = 600,
) -> k8s.helm.v3.ReleaseArgs:
    """Arguments for a `helm.v3.Release` with a fixed release name, so object names (and the commands
    that reach them, such as a Service to port-forward) do not carry a random suffix."""
    return k8s.helm.v3.ReleaseArgs(
        name=release_name,
        chart=chart.name,
        version=chart.version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=chart.repo),
        namespace=namespace,
        values=values,
        timeout=timeout_seconds,
    )
