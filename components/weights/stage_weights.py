"""Copy one Hugging Face model revision into the stack's S3 bucket: the staging Job's program.

It runs in the vLLM image, which carries huggingface_hub, requests and boto3 (boto3 comes with the Run:ai
streamer's S3 extra), so the Job needs no image of its own. Environment: MODEL_ID, MODEL_REVISION, BUCKET,
PREFIX, AWS_REGION and, for gated models, HF_TOKEN_PATH (the mounted token file).

Each file streams from Hugging Face straight into an S3 multipart upload, so the node's disk never holds a
shard. The run is idempotent: `<PREFIX>/.staged.json`, written last, marks a complete copy, and a run that
finds it exits at once. A failure exits non-zero with one line saying what went wrong; the Job's pod keeps it
as its termination message, which is what `pulumi up` reports.
"""

from __future__ import annotations

import json
import os
import posixpath
import sys
from collections.abc import Callable, Iterable, Mapping
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

MARKER = ".staged.json"
# What vLLM loads from the prefix: weights, config, tokenizer and chat template files.
WANTED = ("*.safetensors", "*.json", "*.model", "*.txt", "*.tiktoken", "*.jinja", "tokenizer*")
# Other formats of the same weights (PyTorch pickles, the original checkpoint, Mistral's consolidated file):
# gigabytes vLLM never reads from a safetensors snapshot.
UNWANTED = ("original/*", "consolidated*", "*.bin", "*.pt", "*.pth", "*.gguf", "*.msgpack", "*.h5")
CHUNK_BYTES = 64 * 1024 * 1024
UPLOAD_THREADS = 8


class StagingError(Exception):
    """What went wrong, in one sentence for the Job's termination message."""


def wanted(filename: str) -> bool:
    if any(fnmatch(filename, pattern) for pattern in UNWANTED):
        return False
    return any(fnmatch(posixpath.basename(filename), pattern) for pattern in WANTED)


def select_files(filenames: Iterable[str]) -> list[str]:
    """The repository's files vLLM needs, sorted; a snapshot without safetensors cannot be served."""
    files = sorted(name for name in filenames if wanted(name))
    if not any(name.endswith(".safetensors") for name in files):
        raise StagingError(
            "the revision has no .safetensors files; vLLM's S3 loader streams safetensors only"
        )
    return files


def already_staged(s3: Any, bucket: str, prefix: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=bucket, Key=f"{prefix}/{MARKER}")
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def stage(
    s3: Any,
    model_info: Callable[[], Any],
    open_file: Callable[[str, str], Any],
    upload: Callable[[Any, str], None],
    model: str,
    revision: str,
    bucket: str,
    prefix: str,
) -> list[str]:
    """Copy the revision's files (unless the marker says they are there) and write the marker last.

    `model_info()` returns huggingface_hub's ModelInfo for the revision, `open_file(commit, name)` a readable
    stream of one file at that commit, `upload(stream, key)` puts a stream at a key of the bucket.
    """
    if already_staged(s3, bucket, prefix):
        print(f"{model}@{revision} is already in s3://{bucket}/{prefix}/", flush=True)
        return []
    info = model_info()
    files = select_files(sibling.rfilename for sibling in info.siblings or ())
    for name in files:
        print(f"copying {name}", flush=True)
        with open_file(info.sha, name) as stream:
            upload(stream, f"{prefix}/{name}")
    marker = {"model": model, "revision": revision, "commit": info.sha, "files": files}
    s3.put_object(Bucket=bucket, Key=f"{prefix}/{MARKER}", Body=json.dumps(marker).encode())
    print(f"staged {len(files)} files of {model}@{revision} (commit {info.sha})", flush=True)
    return files


def main(env: Mapping[str, str]) -> int:
    import boto3
    import requests
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import BotoCoreError, ClientError
    from huggingface_hub import HfApi, hf_hub_url
    from huggingface_hub.errors import HfHubHTTPError

    model, revision, bucket, prefix = env["MODEL_ID"], env["MODEL_REVISION"], env["BUCKET"], env["PREFIX"]
    token_path = env.get("HF_TOKEN_PATH")
    token = Path(token_path).read_text().strip() if token_path else None
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    s3 = boto3.client("s3", region_name=env["AWS_REGION"])
    transfer = TransferConfig(
        multipart_chunksize=CHUNK_BYTES, multipart_threshold=CHUNK_BYTES, max_concurrency=UPLOAD_THREADS
    )

    def open_file(commit: str, name: str) -> Any:
        response = requests.get(
            hf_hub_url(model, name, revision=commit), headers=headers, stream=True, timeout=(10, 300)
        )
        response.raise_for_status()
        # Hugging Face may compress a small file in transit; S3 must get the file's own bytes.
        response.raw.decode_content = True
        return response

    def upload(response: Any, key: str) -> None:
        s3.upload_fileobj(response.raw, bucket, key, Config=transfer)

    try:
        stage(
            s3,
            lambda: HfApi(token=token).model_info(model, revision=revision),
            open_file,
            upload,
            model,
            revision,
            bucket,
            prefix,
        )
    except HfHubHTTPError as error:
        raise StagingError(
            f"Hugging Face refused {model} at {revision} ({error}); for a gated model accept its licence on "
            "its page and set llm:hfToken, and check llm:modelRevision"
        ) from error
    except requests.RequestException as error:
        raise StagingError(f"downloading from Hugging Face failed: {error}") from error
    except (BotoCoreError, ClientError) as error:
        raise StagingError(f"writing to s3://{bucket}/{prefix}/ failed: {error}") from error
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(os.environ))
    except StagingError as error:
        print(f"staging failed: {error}", file=sys.stderr, flush=True)
        sys.exit(1)
