"""The web dashboard: ``GET /api/dashboard`` and its files under ``/api/dashboard/...``.

These routes are anonymous on purpose. They serve only the page's fixed HTML, JavaScript and CSS,
which hold no data; every piece of data the page shows comes from the function-level API, called
by the page with the key the user types in (kept in sessionStorage, sent as ``x-functions-key``).
A browser cannot attach that header when it navigates to a page, so a keyed page would need the
key in the URL (``?code=``), where it ends up in history, logs and Referer headers.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import azure.functions as func

from functions.http import api
from shared.web_assets import Asset, AssetDirectory

bp = func.Blueprint()

# Found next to this module, not from the working directory (the host's cwd is not ours to choose).
WEB_ROOT = Path(__file__).resolve().parent / "web"


@cache
def _assets() -> AssetDirectory:
    # Listed on first request, not at import: function_app does no I/O when it is loaded.
    return AssetDirectory(WEB_ROOT)


# No inline script or style, no plugins, no framing, no posting forms elsewhere; fetch only to this app.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
_COMMON = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def _serve(asset: Asset) -> func.HttpResponse:
    headers = dict(_COMMON)
    headers["Content-Type"] = asset.content_type
    if asset.is_html:
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        headers["X-Frame-Options"] = "DENY"
    # The mimetype as well as the header, so both agree whichever one the worker answers with.
    return func.HttpResponse(
        asset.body, status_code=200, headers=headers, mimetype=asset.content_type.split(";")[0], charset="utf-8"
    )


@bp.route(route="dashboard", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@api
def dashboard(req: func.HttpRequest) -> func.HttpResponse:
    """The dashboard page (no data in it: the page asks for the function key and calls the API)."""
    return _serve(_assets().get("index.html"))


@bp.route(route="dashboard/{*path}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@api
def dashboard_asset(req: func.HttpRequest) -> func.HttpResponse:
    """One of the dashboard's scripts or stylesheets; ``/api/dashboard/`` goes back to the page."""
    path = req.route_params.get("path") or ""
    if path in ("", "index.html"):
        # The page loads its files relative to /api/dashboard, so it must be served from there.
        return func.HttpResponse(status_code=302, headers={**_COMMON, "Location": "../dashboard"})
    return _serve(_assets().get(path))
