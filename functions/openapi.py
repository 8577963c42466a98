"""``GET /api/openapi.json``: the OpenAPI 3.1 description of the whole HTTP API (shared/openapi.py).

Function-level like the rest of the API: the description holds no data, but one auth rule for
every route but the health probe is simpler to reason about; tools send the key
(``x-functions-key``) as every client does.
"""

from __future__ import annotations

import azure.functions as func

from functions.http import api, json_response
from shared.openapi import openapi

bp = func.Blueprint()


@bp.route(route="openapi.json", methods=["GET"])
@api
def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    """The API description as JSON."""
    return json_response(openapi())
