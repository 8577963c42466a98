"""HTTP API of backup policies: ``/api/backupPolicies``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import azure.functions as func

from functions.http import api, json_response
from shared.approvals import CriticalOperation, executor
from shared.policies import PolicyService, parse_simulation_request
from shared.request_body import parse_json_body
from shared.vault import current_vault
from shared.wire import dump
from shared.wire.common import Deleted
from shared.wire.policies import PolicyList

bp = func.Blueprint()


def _service() -> PolicyService:
    return current_vault().policies


@bp.route(route="backupPolicies/{name}", methods=["PUT"])
@api
def put_policy(req: func.HttpRequest) -> func.HttpResponse:
    """Create or replace a policy: 201 when created, 200 when replaced."""
    vault = current_vault()
    name, document = req.route_params["name"], parse_json_body(req.get_body())
    pending = vault.approvals().gate(
        CriticalOperation.SHORTEN_POLICY_RETENTION,
        "PUT",
        "backupPolicies/{name}",
        req.route_params,
        document,
        vault.policies.shortening(name, document) if vault.approvals().enabled else None,
        vault.clock(),
    )
    if pending is not None:
        return json_response(pending, 202)
    status, answer = put_approved(req.route_params, document, vault.clock())
    return json_response(answer, status)


@executor(CriticalOperation.SHORTEN_POLICY_RETENTION)
def put_approved(params: Mapping[str, str], document: Any, now: datetime) -> tuple[int, Any]:
    """Store the policy (approved by a Backup Guard when it shortens retention): 201 created, 200 replaced."""
    stored, created = current_vault().policies.put(params["name"], document, now)
    return (201 if created else 200), dump(stored.to_wire())


@bp.route(route="backupPolicies/{name}", methods=["GET"])
@api
def get_policy(req: func.HttpRequest) -> func.HttpResponse:
    """One policy."""
    return json_response(_service().get(req.route_params["name"]).to_wire())


@bp.route(route="backupPolicies", methods=["GET"])
@api
def list_policies(req: func.HttpRequest) -> func.HttpResponse:
    """Every policy."""
    return json_response(PolicyList(value=[p.to_wire() for p in _service().all()]))


@bp.route(route="backupPolicies/{name}", methods=["DELETE"])
@api
def delete_policy(req: func.HttpRequest) -> func.HttpResponse:
    """Delete a policy: 200, 404 if absent, 409 while an instance uses it."""
    _service().delete(req.route_params["name"])
    return json_response(Deleted(name=req.route_params["name"], deleted=True))


@bp.route(route="backupPolicies/{name}:simulate", methods=["POST"])
@api
def simulate_policy(req: func.HttpRequest) -> func.HttpResponse:
    """Dry run of a stored policy for ``{"from", "to"}``: backups, tags, archive moves, deletions."""
    start, end = parse_simulation_request(parse_json_body(req.get_body()))
    return json_response(_service().simulate(req.route_params["name"], start, end))
