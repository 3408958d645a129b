"""The cost-allocation tags every AWS resource of the platform that takes tags carries: `selfhost:<dimension>`, one
convention, so a Cost Explorer filter on `selfhost:stack` finds a stack's nodes, volumes and the rest.

Nodes and their volumes carry `selfhost:pool` (the Karpenter node classes); every other AWS resource that takes
tags carries `selfhost:component`, the component that creates it (tests/components/test_cost_tags.py)."""

from __future__ import annotations

STACK_TAG = "selfhost:stack"


def cost_tags(stack: str, **dimensions: str) -> dict[str, str]:
    """{"selfhost:stack": stack, "selfhost:<dimension>": value...}, e.g. cost_tags("dev", pool="gpu")."""
    return {STACK_TAG: stack, **{f"selfhost:{name}": value for name, value in dimensions.items()}}
