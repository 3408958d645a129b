"""The whole platform for one stack: components composed in dependency order, and the stack's outputs."""

from __future__ import annotations

from typing import Any

import pulumi

from stacks.config import PlatformConfig


def build_platform(config: PlatformConfig) -> dict[str, Any]:
    for warning in config.warnings:
        pulumi.log.warn(warning)
    return {
        "region": config.region,
        "model": config.llm.model.id,
        "max_model_len": config.serving.max_model_len,
        "tensor_parallel_size": config.serving.tensor_parallel_size,
    }
