"""Pulumi entry point: read and validate the stack's config, build the platform, export its outputs."""

import pulumi

from stacks.config import config_from_pulumi
from stacks.platform import build_platform

for name, value in build_platform(config_from_pulumi(), deploying=not pulumi.runtime.is_dry_run()).items():
    pulumi.export(name, value)
