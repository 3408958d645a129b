"""Where a model revision's files live in the stack's bucket, and the IAM policies around them (pure).

One prefix per model and revision, `models/<org>/<name>/<revision>/`, holds the whole snapshot vLLM needs:
config and tokenizer files beside the safetensors (vLLM pulls the small files from the same `s3://` path,
vllm/config/model.py `maybe_pull_model_tokenizer_for_runai`). The model server may only read its own prefix;
the staging Job may also write it; nothing reaches the bucket without TLS.
"""

from __future__ import annotations

import math
from typing import Any

from stacks.catalogs.instances import GpuInstance
from stacks.startup import stream_bytes_per_second

WEIGHTS_ROOT = "models"
# Parts a failed or cancelled staging left behind are deleted after a day (S3 keeps incomplete multipart
# uploads, and bills them, until they are aborted).
INCOMPLETE_UPLOAD_DAYS = 1
# Kubernetes ServiceAccounts whose IRSA roles reach the bucket.
SERVER_SERVICE_ACCOUNT = "vllm"
STAGER_SERVICE_ACCOUNT = "weights-stager"
# Run:ai streamer readers: S3 serves one request about 85-90 MB/s, so one reader per 85 MB/s of the instance's
# bandwidth keeps the NIC busy (Amazon S3 performance guidelines, "use multiple concurrent requests"). The
# streamer's own default, 16, is the floor: it also covers the burst of "up to 10 Gigabit" types. 64 readers
# already fill S3's per-instance ceiling.
S3_REQUEST_BYTES_PER_SECOND = 85e6
MIN_STREAM_CONCURRENCY = 16
MAX_STREAM_CONCURRENCY = 64
# The streamer stages chunks in CPU memory before copying them to the GPU. Unbounded (its default, -1), a 5 GB
# shard could sit in RAM beside the engine's own CPU memory; a quarter of the replica's memory keeps it inside
# the pod's limit.
STREAM_MEMORY_SHARE = 0.25


def model_prefix(model_id: str, revision: str) -> str:
    """`models/<org>/<name>/<revision>`: no trailing slash."""
    return f"{WEIGHTS_ROOT}/{model_id}/{revision}"


def s3_uri(bucket: str, prefix: str) -> str:
    """The model path vLLM's runai_streamer loader takes: the prefix as a directory."""
    return f"s3://{bucket}/{prefix}/"


def _list_prefix(bucket_arn: str, prefix: str) -> dict[str, Any]:
    return {
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": bucket_arn,
        "Condition": {"StringLike": {"s3:prefix": [f"{prefix}/*"]}},
    }


def reader_policy(bucket_arn: str, prefix: str) -> dict[str, Any]:
    """List and read one model revision's files, nothing else in the bucket."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            _list_prefix(bucket_arn, prefix),
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"{bucket_arn}/{prefix}/*"},
        ],
    }


def writer_policy(bucket_arn: str, prefix: str) -> dict[str, Any]:
    """What the staging Job needs: read (to find its marker) and multipart-write one revision's files."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            _list_prefix(bucket_arn, prefix),
            {
                "Effect": "Allow",
                "Action": ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
                "Resource": f"{bucket_arn}/{prefix}/*",
            },
        ],
    }


def tls_only_policy(bucket_arn: str) -> dict[str, Any]:
    """The bucket policy: every request without TLS is refused, whoever makes it."""
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


def streamer_config(instance: GpuInstance, replica_memory_mib: int) -> dict[str, int]:
    """vLLM's --model-loader-extra-config for the Run:ai streamer on this instance."""
    readers = math.ceil(stream_bytes_per_second(instance) / S3_REQUEST_BYTES_PER_SECOND)
    return {
        "concurrency": min(max(readers, MIN_STREAM_CONCURRENCY), MAX_STREAM_CONCURRENCY),
        "memory_limit": int(replica_memory_mib * 1024 * 1024 * STREAM_MEMORY_SHARE),
    }
