"""``/health``: liveness and the settings to fix."""

from __future__ import annotations

from typing import Literal

from shared.wire.common import Response


class Health(Response):
    """Healthy with the vault's name and region, or Unhealthy with each setting to fix and why."""

    status: Literal["Healthy", "Unhealthy"]
    vault: str | None = None
    region: str | None = None
    settings: dict[str, str] | None = None
