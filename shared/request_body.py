"""Reading request bodies safely: size and nesting limits, and errors that name the field."""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeAlias

from shared.errors import ErrorCode, UserError

# Requests carry policies and lists of instances: 1 MiB is far above any honest body.
MAX_BODY_BYTES = 1024 * 1024
MAX_JSON_DEPTH = 32


def _depth(value: Any, limit: int) -> int:
    # Iterative, so a hostile body cannot exhaust the stack.
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)
    return deepest


def parse_json_body(body: bytes, *, required: bool = True) -> Any:
    """The JSON document in ``body``; ``InvalidRequest`` (or ``PayloadTooLarge``) otherwise."""
    if len(body) > MAX_BODY_BYTES:
        raise UserError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"the request body is {len(body)} bytes; the limit is {MAX_BODY_BYTES} bytes",
        )
    if not body.strip():
        if required:
            raise UserError(ErrorCode.INVALID_REQUEST, "the request needs a JSON body", target="body")
        return None
    try:
        doc = json.loads(body)
    except RecursionError as exc:
        raise UserError(
            ErrorCode.INVALID_REQUEST, f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels", target="body"
        ) from exc
    except (UnicodeDecodeError, ValueError) as exc:
        raise UserError(ErrorCode.INVALID_REQUEST, f"the body is not valid JSON: {exc}", target="body") from exc
    if _depth(doc, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise UserError(
            ErrorCode.INVALID_REQUEST, f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels", target="body"
        )
    return doc


def require_object(doc: Any, target: str = "body") -> dict[str, Any]:
    """``doc`` if it is a JSON object; ``InvalidRequest`` naming ``target`` otherwise."""
    if not isinstance(doc, dict):
        raise UserError(ErrorCode.INVALID_REQUEST, f"{target} must be a JSON object", target=target)
    return doc


def whole_number(value: Any, target: str, low: int, high: int) -> int:
    """``value`` as an int in ``[low, high]`` (a JSON number or a string of ASCII digits).

    ``InvalidRequest`` naming ``target`` otherwise; never an overflow, whatever the size of the number.
    """
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= len(str(high)):
        number = int(value)
    if number is None or not low <= number <= high:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise UserError(
            ErrorCode.INVALID_REQUEST,
            f"{target} must be a whole number from {low} to {high}, got {shown}",
            target=target,
        )
    return number


def parse_instant(value: Any, target: str) -> datetime:
    """An ISO 8601 date or date-time as an aware UTC datetime (a bare date is midnight UTC)."""
    if not isinstance(value, str) or not value.strip():
        raise UserError(
            ErrorCode.INVALID_REQUEST,
            f"{target} must be an ISO 8601 date or date-time such as 2025-01-01 or 2025-01-01T00:00:00Z",
            target=target,
        )
    try:
        parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError as exc:
        raise UserError(
            ErrorCode.INVALID_REQUEST,
            f"{target} is not an ISO 8601 date or date-time: {value!r} (example: 2025-01-01T00:00:00Z)",
            target=target,
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError as exc:  # 9999-12-31T23:00-05:00 is past the last instant a datetime holds
        raise UserError(
            ErrorCode.INVALID_REQUEST, f"{target} {value!r} is outside the years 1 to 9999 in UTC", target=target
        ) from exc


# ---------------------------------------------------------------------------------------------
# Known fields: a body's shape, and the refusal of every field outside it (docs/rules.md: "Unknown
# fields in a request body are refused (400 naming them), never dropped").
#
# A shape is plain data: a dict ``{field: shape}`` for an object, ``ListOf(shape)`` for an array,
# ``OneOf(key, {value: shape})`` for an object whose discriminator picks its fields, ``ANY`` for
# a value whose inside is not checked. Only field names are checked here; types and values are
# the parser's. The API's bodies get their shape from their wire model (``shared.wire.check.shape_of``);
# the policy parser (``shared.policy.parse``) writes its own, its rules and messages being the product.

ANY: None = None


@dataclass(frozen=True)
class ListOf:
    """An array of ``item``; a lone object in its place is checked as an item (Azure writes both)."""

    item: Shape


@dataclass(frozen=True)
class OneOf:
    """An object whose ``key`` (Azure's ``objectType``) decides its fields; an unknown key allows the union."""

    key: str
    shapes: Mapping[str, Mapping[str, Shape]]


Shape: TypeAlias = "Mapping[str, Shape] | ListOf | OneOf | None"
NO_FIELDS: Shape = {}
"""The shape of a body that must be empty or ``{}`` (``:validate``, ``:resumeProtection``)."""
_MAX_LISTED = 5
_MAX_NAME = 80  # an unknown field's name is shown up to this long: errors stay small whatever the body


def _path(parent: str, key: str) -> str:
    return f"{parent}.{key}" if parent else key


def _fields_of(doc: Mapping[str, Any], shape: Mapping[str, Shape] | OneOf) -> Mapping[str, Shape]:
    if not isinstance(shape, OneOf):
        return shape
    kind = doc.get(shape.key)
    chosen = shape.shapes.get(kind) if isinstance(kind, str) else None
    if chosen is not None:
        return chosen
    union: dict[str, Shape] = {}
    for fields in shape.shapes.values():
        union.update(fields)
    return union


def unknown_fields(doc: Any, shape: Shape, root: str = "") -> list[tuple[str, str | None, tuple[str, ...]]]:
    """Every field of ``doc`` outside ``shape``, in document order: (dotted path, close known name, known names)."""
    found: list[tuple[str, str | None, tuple[str, ...]]] = []
    stack: list[tuple[Any, Shape, str]] = [(doc, shape, root)]
    while stack:
        value, expected, path = stack.pop()
        if expected is None:
            continue
        if isinstance(expected, ListOf):
            if isinstance(value, list):
                stack.extend((item, expected.item, f"{path}[{i}]") for i, item in reversed(list(enumerate(value))))
            elif isinstance(value, dict):
                stack.append((value, expected.item, path))
            continue
        if not isinstance(value, dict):
            continue  # the parser says what type it must be
        fields = _fields_of(value, expected)
        children = []
        for key, child in value.items():
            if key in fields:
                children.append((child, fields[key], _path(path, key)))
                continue
            known = tuple(sorted(fields))
            name = str(key) if len(str(key)) <= _MAX_NAME else str(key)[:_MAX_NAME] + "..."
            found.append((_path(path, name), _closest(name, known), known))
        stack.extend(reversed(children))
    return found


def _closest(name: str, known: Sequence[str]) -> str | None:
    by_case = [k for k in known if k.lower() == name.lower()]
    if by_case:
        return by_case[0]
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return close[0] if close else None


def check_fields(doc: Any, shape: Shape, *, code: ErrorCode = ErrorCode.INVALID_REQUEST, root: str = "") -> None:
    """Refuse ``doc`` when it has a field outside ``shape``: ``UserError(code)`` whose target is its dotted path.

    The message names every unknown field (the first few), with "did you mean ...?" when a known
    name is close, and the fields allowed where the first one was found.
    """
    found = unknown_fields(doc, shape, root)
    if not found:
        return
    path, hint, known = found[0]
    message = f"{path}: unknown field" + (f"; did you mean {hint}?" if hint is not None else ".")
    message += f" Fields allowed here: {', '.join(known) if known else 'none'}."
    if len(found) > 1:
        others = [p + (f" (did you mean {h}?)" if h else "") for p, h, _ in found[1 : 1 + _MAX_LISTED]]
        more = len(found) - 1 - len(others)
        message += f" Also unknown: {', '.join(others)}" + (f" and {more} more" if more else "") + "."
    raise UserError(
        code,
        message,
        target=path,
        recommended_action="Remove or correct the unknown field(s): pgvault refuses what it would otherwise ignore.",
    )
