"""Checking a request body against its wire model: errors in the public error shape, naming the field.

Two passes, in the order a user needs them: first every field the model does not declare
(refused, never dropped: ``shared.request_body.check_fields`` with the shape derived from the
model, "did you mean" included), then the model's types and values, the first problem named by
its dotted JSON path (``restoreTargetInfo.datasourceInfo.resourceName``).
"""

from __future__ import annotations

import types
from functools import cache
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from shared.errors import ErrorCode, UserError
from shared.request_body import ANY, ListOf, OneOf, Shape, check_fields
from shared.wire.common import NAME_PATTERN

M = TypeVar("M", bound=BaseModel)
_MAX_SHOWN = 40


def _models_in(annotation: Any) -> list[Any]:
    """The members of an annotation with its ``Annotated`` and ``X | None`` wrappers removed."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for arg in get_args(annotation) if arg is not type(None) for m in _models_in(arg)]
    return [annotation]


def _shape_of_annotation(annotation: Any) -> Shape:
    members = _models_in(annotation)
    if len(members) == 1 and get_origin(members[0]) is list:
        return ListOf(_shape_of_annotation(get_args(members[0])[0]))
    models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    if not models:
        return ANY
    if len(models) == 1:
        return shape_of(models[0])
    # A union of models: their objectType decides which one's fields apply.
    shapes: dict[str, Any] = {}
    for model in models:
        kinds = get_args(model.model_fields["objectType"].annotation)
        shapes.update(dict.fromkeys(kinds, shape_of(model)))
    return OneOf("objectType", shapes)


@cache
def shape_of(model: type[BaseModel]) -> dict[str, Shape]:
    """The field names ``model`` accepts at every level, as ``check_fields`` reads them."""
    return {(info.alias or name): _shape_of_annotation(info.annotation) for name, info in model.model_fields.items()}


def _path(doc: Any, loc: tuple[int | str, ...], root: str) -> str:
    """The dotted JSON path of ``loc`` in ``doc``: a union's tag in ``loc`` is not a step in the document."""
    out, node = root, doc
    for i, step in enumerate(loc):
        if isinstance(step, int):
            out += f"[{step}]"
            node = node[step] if isinstance(node, list) and 0 <= step < len(node) else None
        elif isinstance(node, dict) and step in node:
            out, node = (f"{out}.{step}" if out else step), node[step]
        elif i == len(loc) - 1:  # a missing field
            out, node = (f"{out}.{step}" if out else step), None
    return out or "body"


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."


def _message(error: ErrorDetails) -> tuple[str, str | None]:  # noqa: PLR0911 - one answer per kind of error
    """What is wrong, in the house's words, and the field to name below the path (a missing discriminator)."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "missing":
        return "is required", None
    if kind == "union_tag_not_found":
        field = str(ctx.get("discriminator", "objectType")).strip("'")
        return "is required: it says which kind of object this is (see the API description)", field
    if kind == "union_tag_invalid":
        field = str(ctx.get("discriminator", "objectType")).strip("'")
        return f"must be one of {ctx.get('expected_tags')}, got {_shown(ctx.get('tag'))}", field
    if kind in ("literal_error", "enum"):
        return f"must be {ctx.get('expected')}, got {_shown(error['input'])}", None
    if kind in ("string_type", "string_too_short"):
        return "must be a non-empty string", None
    if kind in ("bool_type", "bool_parsing"):
        return "must be true or false", None
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return "must be an object", None
    if kind == "list_type":
        return "must be a list", None
    if kind == "too_short":
        return f"must list at least {ctx.get('min_length', 1)} item(s)", None
    if kind.startswith("int") or kind in ("greater_than_equal", "less_than_equal"):
        return f"must be a whole number{_bounds(ctx)}, got {_shown(error['input'])}", None
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == NAME_PATTERN:
        return (
            f"{_shown(error['input'])} is not valid: use 1-150 letters, digits, '-', '_' or '.', starting with a "
            "letter or digit",
            None,
        )
    if kind == "string_pattern_mismatch":
        return f"{_shown(error['input'])} does not match {ctx.get('pattern')}", None
    return error["msg"][:1].lower() + error["msg"][1:], None


def _bounds(ctx: dict[str, Any]) -> str:
    if "ge" in ctx:
        return f" of at least {ctx['ge']}"
    if "le" in ctx:
        return f" of at most {ctx['le']}"
    return ""


def parse(model: type[M], doc: Any, *, root: str = "", code: ErrorCode = ErrorCode.INVALID_REQUEST) -> M:
    """``doc`` as ``model``; ``UserError(code)`` naming the first wrong field by its dotted path otherwise.

    Unknown fields are refused first, all of them listed (with "did you mean ...?"); then the first
    type or value problem. ``root`` prefixes every path (``instances[2]``).
    """
    if not isinstance(doc, dict):
        target = root or "body"
        raise UserError(code, f"{target} must be a JSON object", target=target)
    check_fields(doc, shape_of(model), code=code, root=root)
    try:
        return model.model_validate(doc)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        target = _path(doc, first["loc"], root)
        what, below = _message(first)
        if below is not None:
            target = f"{target}.{below}" if target != "body" else below
        raise UserError(code, f"{target}: {what}", target=target) from None
