"""``GET /api/health`` (anonymous) and ``GET /api/health/checks`` (function key): the self-check.

``/api/health`` answers whether the settings are complete and whether the client tools are usable
(``tools.status`` Degraded with the reason when not: the rest of the API works without them).
``?deep=true`` runs every check of the first-run self-check but tells an anonymous caller only
``Healthy`` or ``Unhealthy`` (an answer at most 15 s old: anyone may ask). The checks themselves
(versions, paths, what failed and why) are at ``/api/health/checks``, which needs a function key:
an anonymous route cannot tell whether the host accepted a key, so the details live on a route
the host guards.
"""

from __future__ import annotations

import os

import azure.functions as func

from functions.http import api, json_response
from shared.errors import SettingsError
from shared.health import CheckStatus, anonymous_deep_status, deep_checks, tools_check, worst
from shared.settings import load_settings
from shared.wire.health import Health, HealthCheck, HealthChecks, ToolsState

bp = func.Blueprint()


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """200 when the app can serve (with the tools' state); 503 listing the settings to fix when it cannot."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        return json_response(Health(status="Unhealthy", settings=exc.problems), 503)
    if req.params.get("deep", "").lower() == "true":
        healthy = anonymous_deep_status(settings, os.environ) is CheckStatus.HEALTHY
        return json_response(Health(status="Healthy" if healthy else "Unhealthy"), 200 if healthy else 503)
    tools = tools_check(settings.pg_bin_dir)
    return json_response(
        Health(
            status="Healthy",
            vault=settings.vault_name,
            region=settings.region,
            tools=ToolsState.model_validate({"name": tools.name, "status": tools.status.value, **tools.detail}),
        )
    )


@bp.route(route="health/checks", methods=["GET"])
@api
def health_checks(req: func.HttpRequest) -> func.HttpResponse:
    """Every check of the self-check with its findings; ``status`` is the worst check's."""
    checks = deep_checks(load_settings(), os.environ)
    listed = [HealthCheck.model_validate(c.to_json()) for c in checks]
    return json_response(HealthChecks(status=worst(checks).value, checks=listed))
