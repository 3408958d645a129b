"""Validate custom resources against their CustomResourceDefinitions the way the API server would.

Reusable for any CRD file in the reference folder (Karpenter's, prometheus-operator's):

- `load_crds(directory)` reads every CustomResourceDefinition there, keyed by (group, kind).
- `strict_schema(schema)` closes every object schema that lists its properties (`additionalProperties:
  false`), so an unknown or misspelt field is an error, as with `kubectl apply --validate=strict` (the API
  server prunes or, with strict field validation, rejects fields a structural schema does not declare).
  Schemas marked `x-kubernetes-preserve-unknown-fields` stay open, so does the root `metadata` (ObjectMeta
  is checked by the API server itself), and so do anyOf/allOf/oneOf/not branches, which in a structural
  schema only add value checks to fields the enclosing schema declares.
- `schema_errors(crds, obj)` validates an object against the strict schema of the version its apiVersion
  names, which must be served.
- `cel_errors(crds, obj)` evaluates the schema's `x-kubernetes-validations` rules with cel-python, plus the
  two Kubernetes CEL library functions these CRDs use (`find`, `split`). Transition rules (those reading
  `oldSelf`) apply only to updates and are skipped: the plan describes creation.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

Crds = Mapping[tuple[str, str], dict[str, Any]]

PRESERVE_UNKNOWN = "x-kubernetes-preserve-unknown-fields"
VALIDATIONS = "x-kubernetes-validations"


def load_crds(directory: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Every CustomResourceDefinition in the directory's YAML files, keyed by (group, kind)."""
    crds: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(directory.glob("*.yaml")):
        text = path.read_text()
        # Other files may sit beside the CRDs (Karpenter's CloudFormation template uses tags YAML rejects).
        if "kind: CustomResourceDefinition" not in text:
            continue
        for document in yaml.safe_load_all(text):
            if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
                spec = document["spec"]
                crds[(spec["group"], spec["names"]["kind"])] = document
    return crds


def crd_for(crds: Crds, obj: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The CRD of an object and the version its apiVersion names."""
    group, _, version = obj["apiVersion"].rpartition("/")
    key = (group, obj["kind"])
    if key not in crds:
        raise KeyError(f"no CRD for {obj['kind']} in group {group!r}; known: {sorted(crds)}")
    return crds[key], version


def served_schema(crd: Mapping[str, Any], version: str) -> dict[str, Any]:
    """The openAPIV3Schema of a served version of the CRD."""
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            if not entry.get("served"):
                raise ValueError(f"{crd['metadata']['name']}: version {version} is not served")
            return entry["schema"]["openAPIV3Schema"]
    served = [entry["name"] for entry in crd["spec"]["versions"] if entry.get("served")]
    raise ValueError(f"{crd['metadata']['name']}: no version {version}; served: {served}")


def strict_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a CRD schema in which undeclared fields are errors (see the module docstring)."""
    return _close(copy.deepcopy(dict(schema)), root=True)


def _close(schema: dict[str, Any], root: bool = False) -> dict[str, Any]:
    if schema.get("nullable"):
        types = schema.get("type")
        if isinstance(types, str):
            schema["type"] = [types, "null"]
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for name, subschema in properties.items():
            if not (root and name == "metadata"):
                _close(subschema)
    if isinstance(schema.get("items"), dict):
        _close(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        _close(schema["additionalProperties"])
    is_object = "properties" in schema or schema.get("type") == "object"
    if is_object and "additionalProperties" not in schema and not schema.get(PRESERVE_UNKNOWN):
        schema["additionalProperties"] = False
    return schema


def schema_errors(crds: Crds, obj: Mapping[str, Any]) -> list[str]:
    """Every structural error of the object against its CRD's strict schema, as 'path: message'."""
    crd, version = crd_for(crds, obj)
    validator = jsonschema.Draft7Validator(strict_schema(served_schema(crd, version)))
    return [
        f"{'.'.join(str(part) for part in error.absolute_path) or '<root>'}: {error.message}"
        for error in sorted(validator.iter_errors(dict(obj)), key=lambda e: list(map(str, e.absolute_path)))
    ]


def validation_rules(
    schema: Mapping[str, Any], value: Any, path: str = ""
) -> Iterator[tuple[str, dict, Any]]:
    """(path, rule, value) for every x-kubernetes-validations rule that applies to a present value."""
    for rule in schema.get(VALIDATIONS) or []:
        yield path or "<root>", rule, value
    if isinstance(value, Mapping):
        for name, subschema in (schema.get("properties") or {}).items():
            if name in value:
                yield from validation_rules(subschema, value[name], f"{path}.{name}" if path else name)
        additional = schema.get("additionalProperties")
        if isinstance(additional, dict):
            for key, item in value.items():
                yield from validation_rules(additional, item, f"{path}[{key}]")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from validation_rules(schema["items"], item, f"{path}[{index}]")


def cel_errors(crds: Crds, obj: Mapping[str, Any]) -> list[str]:
    """Every x-kubernetes-validations rule the object breaks, as 'path: message (rule)'."""
    celpy = _celpy()
    crd, version = crd_for(crds, obj)
    environment = celpy.Environment()
    functions = _kubernetes_cel_functions(celpy)
    errors: list[str] = []
    for path, rule, value in validation_rules(served_schema(crd, version), obj):
        expression = rule["rule"]
        if re.search(r"\boldSelf\b", expression):
            continue
        program = environment.program(environment.compile(expression), functions=functions)
        try:
            result = program.evaluate({"self": celpy.json_to_cel(value)})
        except celpy.CELEvalError as error:
            result = error
        if isinstance(result, celpy.CELEvalError):
            errors.append(f"{path}: rule not evaluable ({expression}): {result}")
        elif not result:
            errors.append(f"{path}: {rule.get('message', 'rule failed')} ({expression})")
    return errors


def _celpy() -> Any:
    """cel-python, a dev dependency; outside CI a clone without it skips instead of failing."""
    try:
        import celpy
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("cel-python is missing; CI must evaluate the CRDs' validation rules")
        pytest.skip("cel-python is not installed (uv sync installs the dev dependencies)")
    return celpy


def _kubernetes_cel_functions(celpy: Any) -> dict[str, Any]:
    """The Kubernetes CEL string library functions the reference CRDs call (k8s.io/apiserver cel/library)."""
    celtypes = celpy.celtypes

    def find(text: Any, pattern: Any) -> Any:
        match = re.search(str(pattern), str(text))
        return celtypes.StringType(match.group(0) if match else "")

    def split(text: Any, separator: Any) -> Any:
        return celtypes.ListType([celtypes.StringType(part) for part in str(text).split(str(separator))])

    return {"find": find, "split": split}
