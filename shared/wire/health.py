"""``/health``: liveness and the settings to fix."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from shared.wire.common import Response


class ToolsState(Response):
    """The PostgreSQL client tools: Healthy, or Degraded with the reason (backups then fail)."""

    name: Literal["tools"]
    status: Literal["Healthy", "Degraded"]
    pgDump: list[str]
    """The pg_dump versions found."""
    pgRestore: list[str]
    """The pg_restore versions found."""
    psql: list[str] = Field(default_factory=list)
    """The psql versions found (reported only: pgvault itself runs pg_dump and pg_restore)."""
    reason: str | None = None


class Health(Response):
    """Healthy with the vault's name, region and tools, or Unhealthy with each setting to fix and why.

    ``?deep=true`` answers an anonymous caller with ``status`` alone (every self-check passed or not).
    """

    status: Literal["Healthy", "Unhealthy"]
    vault: str | None = None
    region: str | None = None
    settings: dict[str, str] | None = None
    tools: ToolsState | None = None


class HealthCheck(Response):
    """One check of the self-check: its name, its outcome, why when not healthy, what it found."""

    name: str
    status: Literal["Healthy", "Degraded", "Unhealthy"]
    reason: str | None = None
    findings: dict[str, Any]
    """What the check found; by check: platform (os, glibc, python), tools (versions, paths, libpq,
    tls), settings (missing), a store or Key Vault (its target, the error code)."""


class HealthChecks(Response):
    """``/health/checks``: every check; ``status`` is the worst check's."""

    status: Literal["Healthy", "Degraded", "Unhealthy"]
    checks: list[HealthCheck]
