"""Reading request bodies safely: size and nesting limits, and errors that name the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

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
    return parsed.astimezone(UTC)
