"""The API's JSON shapes, each defined once as a pydantic model (issue 14 §1).

Responses are built from these models and serialised through them (``dump``); requests are
checked against them (``shared.wire.check.parse``); the OpenAPI components are generated from
them (``shared.openapi``); the CLI builds its request bodies from them. Every model forbids
fields it does not declare, so a drift between code and document is an error, not a surprise.

Split by concern: ``common`` (time format, error body, bases), ``jobs``, ``instances``,
``recovery_points``, ``policies``, ``backups``, ``restore``, ``servers``, ``health``.
"""

from __future__ import annotations

from shared.wire.common import Request, Response, dump, iso_z

__all__ = ["Request", "Response", "dump", "iso_z"]
