"""HTTP API of who may do what: ``/api/me``, ``/api/auditLog``, ``/api/approvals``."""

from __future__ import annotations

import azure.functions as func

from functions.http import CONTINUATION_PARAMS, api, json_response, next_link
from shared.access import ROUTE_ROLES, Open, current_principal
from shared.audit import DEFAULT_PAGE, MAX_DAYS, MAX_PAGE, AuditCursor
from shared.request_body import parse_json_body, whole_number
from shared.settings import load_access_settings
from shared.vault import current_vault
from shared.wire.access import ApprovalRequestList, AuditLog, Me
from shared.wire.check import parse
from shared.wire.common import EmptyBody

bp = func.Blueprint()


@bp.route(route="me", methods=["GET"])
@api
def me(req: func.HttpRequest) -> func.HttpResponse:
    """The caller, its roles and every route it may call (the dashboard shows only those)."""
    who = current_principal()
    settings = load_access_settings()
    allowed = sorted(
        f"{method} {route}"
        for (method, route), need in ROUTE_ROLES.items()
        if need is not Open.ANONYMOUS and who.may(need)
    )
    return json_response(
        Me(
            name=who.label,
            id=who.id,
            functionKey=who.function_key,
            roles=sorted(r.value for r in who.roles),
            authMode=settings.auth_mode.value,
            multiUserAuthorization=settings.multi_user_authorization,
            allowed=allowed,
        )
    )


@bp.route(route="auditLog", methods=["GET"])
@api
def audit_log(req: func.HttpRequest) -> func.HttpResponse:
    """Mutating calls of the last ``days`` days (default 7), newest first, ``top`` per page, ``nextLink``."""
    days = whole_number(req.params.get("days", "7"), "days", 1, MAX_DAYS)
    top = whole_number(req.params.get("top", str(DEFAULT_PAGE)), "top", 1, MAX_PAGE)
    cursor = None
    for name in CONTINUATION_PARAMS:
        if req.params.get(name):
            cursor = AuditCursor.decode(req.params[name], target=name)
    vault = current_vault()
    records, nxt = vault.audit().page(vault.clock(), days=days, top=top, cursor=cursor)
    more = {} if nxt is None else {"nextLink": next_link(req, nxt.encode())}
    return json_response(AuditLog(value=records, **more))


@bp.route(route="approvals", methods=["GET"])
@api
def list_approvals(req: func.HttpRequest) -> func.HttpResponse:
    """Approval requests of critical operations of the last ``days`` days (default 7), newest first."""
    days = whole_number(req.params.get("days", "7"), "days", 1, 90)
    vault = current_vault()
    items = vault.approvals().recent(vault.clock(), days)
    return json_response(ApprovalRequestList(value=[a.to_wire() for a in items]))


@bp.route(route="approvals/{id}", methods=["GET"])
@api
def get_approval(req: func.HttpRequest) -> func.HttpResponse:
    """One approval request."""
    vault = current_vault()
    return json_response(vault.approvals().get(req.route_params["id"], vault.clock()).to_wire())


@bp.route(route="approvals/{id}:approve", methods=["POST"])
@api
def approve(req: func.HttpRequest) -> func.HttpResponse:
    """Approve a pending critical operation (Backup Guard, not its requester): it runs now, once."""
    body = parse_json_body(req.get_body(), required=False)
    if body is not None:
        parse(EmptyBody, body)
    vault = current_vault()
    done = vault.approvals().approve(req.route_params["id"], current_principal(), vault.clock())
    return json_response(done.to_wire())
