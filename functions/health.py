"""``GET /api/health``: liveness, anonymous. Says whether the settings are complete."""

from __future__ import annotations

import azure.functions as func

from functions.http import json_response
from shared.errors import SettingsError
from shared.settings import load_settings
from shared.wire.health import Health

bp = func.Blueprint()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """200 when the app can serve; 503 listing the settings to fix when it cannot."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        return json_response(Health(status="Unhealthy", settings=exc.problems), 503)
    return json_response(Health(status="Healthy", vault=settings.vault_name, region=settings.region))
