"""What every wire model shares: the one time format, the bases, the error body."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, StrictBool, WithJsonSchema

from shared.errors import ErrorCode
from shared.storage import layout

NAME_PATTERN = layout._NAME.pattern
"""A policy's or an instance's name: 1-150 letters, digits, '-', '_', '.', starting with a letter or digit."""


def iso_z(instant: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``: ``2025-01-06T22:00:00Z`` (microseconds when there are any).

    The one format of every time in pgvault's answers; a naive datetime is taken as UTC.
    """
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


UtcTime = Annotated[
    datetime,
    PlainSerializer(iso_z, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": r"Z$"}),
]
"""A time in an answer: always serialised by ``iso_z``."""

def _digits(value: Any) -> Any:
    # A port may come as "5432" (a form, a query string): ASCII digits only, never 5432.0 or true.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 5:
        return int(value)
    return value


Port = Annotated[int, BeforeValidator(_digits), Field(strict=True, ge=1, le=65535)]
"""A TCP port: a JSON whole number (or a string of digits) from 1 to 65535."""

Bool = StrictBool
"""A JSON boolean (``"true"`` or ``1`` are refused, not read as true)."""


class Response(BaseModel):
    """A shape pgvault answers: every field declared, nothing else."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Request(BaseModel):
    """A shape pgvault accepts: an unknown field is refused (400 naming its dotted path)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def dump(model: BaseModel) -> dict[str, Any]:
    """``model`` as the JSON object it answers: aliases, times by ``iso_z``, unset optional fields left out."""
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True)


class ErrorDetail(Response):
    """The inner object of every error answer (and of a failed job's or entry's error)."""

    code: ErrorCode
    message: str
    target: str | None = None
    """The field, parameter or name at fault: a body field by its dotted JSON path."""
    recommendedAction: str


class Error(Response):
    """Every error answer: ``{"error": {...}}``."""

    error: ErrorDetail


class Deleted(Response):
    """The answer of a DELETE."""

    name: str
    deleted: bool


class EmptyBody(Request):
    """A body with no fields (``:validate``, ``:resumeProtection``): empty, or ``{}``."""


class Accepted(Response):
    """202 for long work: the job to poll (also in the ``Location`` header)."""

    jobId: str
