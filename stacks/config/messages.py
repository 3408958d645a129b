"""A stack's config errors as this project says them: the fully qualified key, the value as the stack file
has it (never a secret's), and what would be valid."""

from __future__ import annotations

import difflib
import json
from collections.abc import Collection, Iterable, Mapping
from typing import Any, get_args

import annotated_types
from pydantic import ValidationError
from pydantic.fields import FieldInfo

from stacks.config.schema import NAMESPACES, OWNED_NAMESPACES, Namespace, fields_by_key, is_secret


def plain_text_secrets(raw: Mapping[str, str], secret_keys: Collection[str]) -> list[str]:
    """Secret keys written in plain text into the stack file, where anyone with the repository reads them."""
    return [
        f"{key} is written in plain text in the stack file; remove it there and store it encrypted with "
        f"`pulumi config set --secret {key} <value>`"
        for model in NAMESPACES
        for alias, field in fields_by_key(model).items()
        for key in [f"{model.namespace}:{alias}"]
        if is_secret(field) and key in raw and key not in secret_keys
    ]


def invalid(namespace: str, alias: str, message: str, value: Any) -> str:
    """`key: value is not valid; expected ...`, never quoting a secret's value."""
    model = next(model for model in NAMESPACES if model.namespace == namespace)
    if value is None:
        return f"{namespace}:{alias} is unset; {message}"
    shown = "the value" if is_secret(fields_by_key(model).get(alias)) else repr(value)
    return f"{namespace}:{alias}: {shown} is not valid; {message}"


def from_validation_error(
    model: type[Namespace], error: ValidationError, values: Mapping[str, Any]
) -> list[str]:
    """pydantic's errors for one namespace as this project says them: key, value as written, what is valid.

    One message per key: a list with two bad items is one bad value."""
    messages: dict[str, str] = {}
    fields = fields_by_key(model)
    for detail in error.errors(include_url=False):
        alias = str(detail["loc"][0]) if detail["loc"] else ""
        if alias in messages:
            continue
        if detail["type"] == "extra_forbidden":
            messages[alias] = _unknown_key(model, alias)
        else:
            value = _as_written(values.get(alias, detail.get("input")))
            messages[alias] = invalid(model.namespace, alias, _expected(detail, fields.get(alias)), value)
    return list(messages.values())


def _as_written(value: Any) -> Any:
    """A value as the stack file has it: Pulumi passes numbers, booleans and lists as text, so `-1` and
    `["spot", "reserved"]` arrive as strings; a message shows them as numbers and lists again."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _unknown_key(model: type[Namespace], alias: str) -> str:
    key = f"{model.namespace}:{alias}"
    valid = [f"{model.namespace}:{name}" for name in fields_by_key(model)]
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return f"{key}: unknown key{hint}; the keys of {model.namespace}: are " + ", ".join(valid)


# Namespaces read by something other than this program: the providers it uses (pulumi-aws, pulumi-eks,
# pulumi-kubernetes, pulumi-random) and the Pulumi engine itself.
PROVIDER_NAMESPACES = frozenset({"aws", "eks", "kubernetes", "random", "pulumi"})


def unknown_namespaces(keys: Iterable[str]) -> tuple[list[str], list[str]]:
    """Keys in a namespace nothing reads, as (errors, warnings). One spelt like the program's own (`lm:`,
    `autoscalling:`) is a typo that would leave every setting of the namespace at its default: an error. Any
    other (a key an imported ESC environment brings for other programs) is only said."""
    owned = sorted(OWNED_NAMESPACES)
    read_by = (
        "the program's keys are under "
        + ", ".join(f"{each}:" for each in owned)
        + ", its providers' under "
        + ", ".join(f"{each}:" for each in sorted(PROVIDER_NAMESPACES - {"pulumi"}))
        + " and the engine's under pulumi:"
    )
    errors: list[str] = []
    warnings: list[str] = []
    for key in keys:
        namespace, _, name = key.partition(":")
        if namespace in OWNED_NAMESPACES or namespace in PROVIDER_NAMESPACES:
            continue
        close = difflib.get_close_matches(namespace, owned, n=1, cutoff=0.6)
        if close:
            errors.append(
                f"{key}: nothing reads the namespace {namespace}: (did you mean {close[0]}:{name}?); {read_by}"
            )
        else:
            warnings.append(f"{key} is ignored: nothing reads the namespace {namespace}:; {read_by}")
    return errors, warnings


# What a value of each type must look like, in words.
_KIND_WORDS: dict[type, str] = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}


def _expected(detail: Mapping[str, Any], field: FieldInfo | None) -> str:
    """What is valid for the field, in the words of the rule that failed."""
    kind = detail["type"]
    context = detail.get("ctx") or {}
    if kind in ("value_error", "config"):
        return str(context.get("message") or context.get("error") or detail["msg"]).removeprefix(
            "Value error, "
        )
    if kind == "literal_error":
        return f"expected one of {context['expected']}"
    if kind in ("list_type", "tuple_type", "too_short"):
        examples = (field.examples if field is not None else None) or [["a", "b"]]
        example = json.dumps(examples[0])
        return f"expected a list, e.g. {example}" + (
            ", with at least one item" if kind == "too_short" else ""
        )
    return "expected " + _describe(field)


def _describe(field: FieldInfo | None) -> str:
    """A field's type and bounds in words: "a whole number from 2 to 6", "a number strictly between 0 and 1"."""
    if field is None:
        return "a valid value"
    types = (field.annotation, *get_args(field.annotation))
    words = next((word for kind, word in _KIND_WORDS.items() if kind in types), "a valid value")
    bound: dict[str, Any] = {}
    for rule in field.metadata:
        for name in ("ge", "le", "gt", "lt"):
            if isinstance(rule, getattr(annotated_types, name.capitalize())):
                bound[name] = getattr(rule, name)
    if "ge" in bound and "le" in bound:
        return f"{words} from {bound['ge']} to {bound['le']}"
    if "gt" in bound and "lt" in bound:
        return f"{words} strictly between {bound['gt']} and {bound['lt']}"
    if "ge" in bound:
        return f"{words} ≥ {bound['ge']}"
    if "gt" in bound:
        return f"{words} > {bound['gt']}"
    return words
