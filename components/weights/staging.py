"""The Kubernetes objects that stage a model revision into the bucket, and the model server's ServiceAccount.

The staging Job runs `stage_weights.py` (mounted from a ConfigMap) in the vLLM image on the system node pool,
with its own ServiceAccount whose IRSA role may write the revision's prefix. Its name carries a hash of what it
copies, so a new model, revision or image makes a new Job (a Job's pod template cannot change) and an
unchanged one is left alone; a rerun of the same copy finds the marker and exits at once. `pulumi up` waits
for the Job (pulumi-kubernetes awaits a Job's Complete condition and fails on Failed), and the model server
starts only after it.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from components.karpenter.nodes import NODE_POOL_LABEL, SYSTEM_POOL
from components.security_checks import skip_annotations, vllm_image_digest_reason
from components.weights.layout import STAGER_SERVICE_ACCOUNT
from stacks.startup import IMAGE_COMPRESSED_BYTES, STANDARD_PULL_BYTES_PER_SECOND

SCRIPT = Path(__file__).with_name("stage_weights.py")
SCRIPT_NAME = "stage_weights.py"
SCRIPT_DIR = "/opt/selfhost"
SCRIPT_CONFIGMAP = "stage-weights-script"
HF_TOKEN_DIR = "/var/run/secrets/huggingface"
HF_TOKEN_FILE = "token"
ROLE_ARN_ANNOTATION = "eks.amazonaws.com/role-arn"
# The image's non-root user (see components/serving/manifests.py).
RUN_AS_USER = 2000
RUN_AS_GROUP = 0
# Hugging Face through the NAT gateway, assumed at 200 Mbit/s (its CDN is usually several times faster): the
# copy's time limit, not its expected time.
HF_DOWNLOAD_BYTES_PER_SECOND = 25e6
# A failed copy is retried twice (a dropped connection), then the Job fails and `pulumi up` with it.
BACKOFF_LIMIT = 2
TIME_LIMIT_FACTOR = 2


@dataclass(frozen=True)
class StagingSettings:
    namespace: str
    model_id: str
    revision: str
    prefix: str
    # The image the Job runs (through the pull-through cache, an Output) and the configured reference it
    # comes from, which names the Job.
    image: Any
    configured_image: str
    region: str
    weights_bytes: float
    with_hf_token: bool
    credentials_secret: str
    hf_token_entry: str
    labels: dict[str, str]


def service_account(namespace: str, name: str, role_arn: Any, labels: dict[str, str]) -> dict[str, Any]:
    """A ServiceAccount whose pods get the IRSA role's credentials (the EKS pod identity webhook)."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {ROLE_ARN_ANNOTATION: role_arn},
        },
        # Neither pod talks to the Kubernetes API.
        "automountServiceAccountToken": False,
    }


@cache
def script() -> str:
    """The staging program, read once: the ConfigMap holds it and the Job's name hashes it."""
    return SCRIPT.read_text()


def script_configmap(settings: StagingSettings) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": SCRIPT_CONFIGMAP, "namespace": settings.namespace, "labels": settings.labels},
        "data": {SCRIPT_NAME: script()},
    }


def job_name(settings: StagingSettings) -> str:
    """`stage-weights-<hash>` of what the Job copies, with which program and image."""
    identity = "\n".join(
        (settings.model_id, settings.revision, settings.prefix, settings.configured_image, script())
    )
    return f"stage-weights-{hashlib.sha256(identity.encode()).hexdigest()[:10]}"


def staging_seconds(weights_bytes: float) -> int:
    """How long the copy may take: the image pull on a system node, then the download, twice over."""
    expected = (
        IMAGE_COMPRESSED_BYTES / STANDARD_PULL_BYTES_PER_SECOND + weights_bytes / HF_DOWNLOAD_BYTES_PER_SECOND
    )
    return math.ceil(expected * TIME_LIMIT_FACTOR)


def staging_job(settings: StagingSettings, bucket: Any) -> dict[str, Any]:
    env = [
        {"name": "MODEL_ID", "value": settings.model_id},
        {"name": "MODEL_REVISION", "value": settings.revision},
        {"name": "BUCKET", "value": bucket},
        {"name": "PREFIX", "value": settings.prefix},
        {"name": "AWS_REGION", "value": settings.region},
        {"name": "HF_HOME", "value": "/tmp/huggingface"},
        {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"},
    ]
    mounts = [
        {"name": "script", "mountPath": SCRIPT_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "script", "configMap": {"name": SCRIPT_CONFIGMAP}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
    ]
    if settings.with_hf_token:
        env.append({"name": "HF_TOKEN_PATH", "value": f"{HF_TOKEN_DIR}/{HF_TOKEN_FILE}"})
        mounts.append({"name": "hf-token", "mountPath": HF_TOKEN_DIR, "readOnly": True})
        volumes.append(
            {
                "name": "hf-token",
                "secret": {
                    "secretName": settings.credentials_secret,
                    "items": [{"key": settings.hf_token_entry, "path": HF_TOKEN_FILE}],
                    "defaultMode": 0o440,
                },
            }
        )
    container = {
        "name": "stage",
        "image": settings.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["python3", f"{SCRIPT_DIR}/{SCRIPT_NAME}"],
        "env": env,
        "volumeMounts": mounts,
        # Files stream from Hugging Face into S3 multipart uploads: a few 64 MiB chunks in memory, no disk.
        "resources": {
            "requests": {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "1Gi"},
            "limits": {"cpu": "1", "memory": "2Gi", "ephemeral-storage": "2Gi"},
        },
        # The script's last line on failure becomes the pod's termination message, which the Job reports.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "readOnlyRootFilesystem": True,
        },
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(settings),
            "namespace": settings.namespace,
            "labels": settings.labels,
            # A Job that failed is replaced (run again) by the next `pulumi up` instead of awaited again.
            "annotations": {
                "pulumi.com/replaceUnready": "true",
                **security_check_exceptions(settings.configured_image),
            },
        },
        "spec": {
            "backoffLimit": BACKOFF_LIMIT,
            "activeDeadlineSeconds": staging_seconds(settings.weights_bytes),
            "template": {
                "metadata": {"labels": settings.labels},
                "spec": {
                    "serviceAccountName": STAGER_SERVICE_ACCOUNT,
                    "automountServiceAccountToken": False,
                    "restartPolicy": "Never",
                    "nodeSelector": {NODE_POOL_LABEL: SYSTEM_POOL},
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": RUN_AS_USER,
                        "runAsGroup": RUN_AS_GROUP,
                        "seccompProfile": {"type": "RuntimeDefault"},
                    },
                    "containers": [container],
                    "volumes": volumes,
                },
            },
        },
    }


def security_check_exceptions(image: str) -> dict[str, str]:
    """checkov's Kubernetes checks the staging Job skips, each with its reason (see the model server's)."""
    reasons = {
        "CKV_K8S_15": "imagePullPolicy IfNotPresent: the vLLM image is pinned and 13 GB; Always would ask the "
        "registry on every run (Docker Hub counts that against its anonymous pull limit)",
        "CKV_K8S_40": "UID 2000 is the vLLM image's own non-root user; a UID missing from /etc/passwd breaks "
        "Python's getpass in the libraries it imports",
    }
    return skip_annotations({**reasons, **vllm_image_digest_reason(image)})


def ingress_lockdown(settings: StagingSettings) -> dict[str, Any]:
    """The staging pod serves nothing: a NetworkPolicy admitting no connection to it."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "stage-weights", "namespace": settings.namespace, "labels": settings.labels},
        "spec": {
            "podSelector": {
                "matchLabels": {"app.kubernetes.io/name": settings.labels["app.kubernetes.io/name"]}
            },
            "policyTypes": ["Ingress"],
        },
    }
