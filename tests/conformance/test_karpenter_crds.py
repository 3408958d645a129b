"""Every Karpenter object in the plans validates against the v1.14.1 CRDs in the reference folder: the strict
structural schema of the served version (unknown fields rejected) and the CRDs' CEL validation rules."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest

from selfhost.plan.runner import PlanResult
from tests.conformance.crd_schema import Crds, cel_errors, load_crds, schema_errors, strict_schema

KARPENTER_TYPES = ("kubernetes:karpenter.sh/", "kubernetes:karpenter.k8s.aws/")
# RFC 1123 subdomain, the rule for cluster-scoped object names.
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")

# Stacks and overrides whose Karpenter objects differ: on-demand only (prod), a parked model (GPU limit
# 0), the family fallback (two instance types), a pinned AMI and a larger root volume.
VARIANTS: dict[str, tuple[str, dict[str, object]]] = {
    "dev": ("dev", {}),
    "prod": ("prod", {}),
    "parked": ("dev", {"llm:replicas": 0}),
    "fallback": ("dev", {"llm:instanceFamilyFallback": True, "cluster:nodeRootVolumeGiB": 200}),
}


@pytest.fixture(scope="module")
def crds(reference: Path) -> Crds:
    return load_crds(reference / "karpenter")


def karpenter_objects(plan: PlanResult) -> list[dict[str, Any]]:
    """The objects as the API server would receive them: the custom resource's fields, nothing Pulumi adds."""
    return [
        {key: value for key, value in r.inputs.items() if key in ("apiVersion", "kind", "metadata", "spec")}
        for r in plan.resources
        if r.type.startswith(KARPENTER_TYPES)
    ]


@pytest.fixture(scope="module", params=list(VARIANTS))
def objects(request, dev_plan, prod_plan, plan_with) -> list[dict[str, Any]]:
    stack, overrides = VARIANTS[request.param]
    if not overrides:
        return karpenter_objects(dev_plan if stack == "dev" else prod_plan)
    return karpenter_objects(plan_with(overrides, stack))


def test_the_plan_has_both_node_classes_and_both_node_pools(objects):
    assert sorted((o["kind"], o["metadata"]["name"]) for o in objects) == [
        ("EC2NodeClass", "gpu"),
        ("EC2NodeClass", "system"),
        ("NodePool", "gpu"),
        ("NodePool", "system"),
    ]


def test_every_object_matches_its_crds_strict_schema(objects, crds):
    for obj in objects:
        assert schema_errors(crds, obj) == [], obj["metadata"]["name"]


def test_every_object_passes_its_crds_validation_rules(objects, crds):
    for obj in objects:
        assert cel_errors(crds, obj) == [], obj["metadata"]["name"]


def test_names_are_dns_subdomains(objects):
    assert all(DNS_SUBDOMAIN.match(o["metadata"]["name"]) for o in objects)
    assert all(set(o["metadata"]) == {"name"} for o in objects)


def test_node_classes_use_an_alias_alone_and_a_role_not_a_profile(objects):
    # The CRD's CEL rules, asserted directly as well: an alias term must be the only amiSelectorTerm, and
    # exactly one of role / instanceProfile is set.
    for spec in (o["spec"] for o in objects if o["kind"] == "EC2NodeClass"):
        terms = spec["amiSelectorTerms"]
        assert len(terms) == 1 and set(terms[0]) == {"alias"}
        assert ("role" in spec) != ("instanceProfile" in spec)


def test_every_pool_references_a_node_class_of_the_plan(objects):
    classes = {o["metadata"]["name"] for o in objects if o["kind"] == "EC2NodeClass"}
    for pool in (o for o in objects if o["kind"] == "NodePool"):
        reference = pool["spec"]["template"]["spec"]["nodeClassRef"]
        assert reference["group"] == "karpenter.k8s.aws" and reference["kind"] == "EC2NodeClass"
        assert reference["name"] in classes


# The checks themselves must reject what the API server rejects.


def _gpu_class(dev_plan: PlanResult) -> dict[str, Any]:
    [found] = [
        o
        for o in karpenter_objects(dev_plan)
        if o["kind"] == "EC2NodeClass" and o["metadata"]["name"] == "gpu"
    ]
    return copy.deepcopy(found)


def _gpu_pool(dev_plan: PlanResult) -> dict[str, Any]:
    [found] = [
        o for o in karpenter_objects(dev_plan) if o["kind"] == "NodePool" and o["metadata"]["name"] == "gpu"
    ]
    return copy.deepcopy(found)


def test_a_misspelt_field_is_rejected(dev_plan, crds):
    node_class = _gpu_class(dev_plan)
    node_class["spec"]["metadataOptions"]["httpPutResponseHopLimt"] = 1
    node_class["spec"]["blockDeviceMappings"][0]["ebs"]["size"] = "50Gi"
    errors = schema_errors(crds, node_class)
    assert len(errors) == 2 and all("was unexpected" in e for e in errors)


def test_a_value_outside_the_schema_is_rejected(dev_plan, crds):
    pool = _gpu_pool(dev_plan)
    pool["spec"]["disruption"]["consolidationPolicy"] = "WhenIdle"
    pool["spec"]["limits"]["nvidia.com/gpu"] = "a few"
    assert len(schema_errors(crds, pool)) == 2


def test_an_alias_with_another_term_and_a_second_identity_break_the_rules(dev_plan, crds):
    node_class = _gpu_class(dev_plan)
    node_class["spec"]["amiSelectorTerms"].append({"id": "ami-0123456789abcdef0"})
    node_class["spec"]["instanceProfile"] = "profile"
    assert schema_errors(crds, node_class) == []
    messages = "\n".join(cel_errors(crds, node_class))
    assert (
        "'alias' is mutually exclusive, cannot be set with a combination of other amiSelectorTerms"
        in messages
    )
    assert "must specify exactly one of ['role', 'instanceProfile']" in messages


def test_restricted_labels_and_half_scheduled_budgets_break_the_rules(dev_plan, crds):
    pool = _gpu_pool(dev_plan)
    pool["spec"]["template"]["metadata"]["labels"]["karpenter.sh/owner"] = "me"
    pool["spec"]["disruption"]["budgets"].append({"nodes": "0", "schedule": "@daily"})
    messages = "\n".join(cel_errors(crds, pool))
    assert 'label domain "karpenter.sh" is restricted' in messages
    assert "'schedule' must be set with 'duration'" in messages


def test_strict_schema_keeps_maps_and_preserved_fields_open():
    schema = {
        "type": "object",
        "properties": {
            "metadata": {"type": "object"},
            "spec": {
                "type": "object",
                "properties": {
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "closed": {"type": "object"},
                },
            },
        },
    }
    closed = strict_schema(schema)
    assert closed["additionalProperties"] is False
    assert "additionalProperties" not in closed["properties"]["metadata"]
    spec = closed["properties"]["spec"]
    assert spec["additionalProperties"] is False
    assert spec["properties"]["labels"]["additionalProperties"] == {"type": "string"}
    assert "additionalProperties" not in spec["properties"]["raw"]
    assert spec["properties"]["closed"]["additionalProperties"] is False
