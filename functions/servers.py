"""Protected servers (``/api/protectedServers``) and the discovery timer."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.http import api, json_response
from shared.request_body import parse_json_body
from shared.vault import current_vault
from shared.wire.check import parse
from shared.wire.common import EmptyBody
from shared.wire.servers import Discovery, ProtectedServerList, ServerUnprotected

log = logging.getLogger(__name__)
bp = func.Blueprint()

# The timer only ticks: which servers are due is PGVAULT_DISCOVERY_SCHEDULE's to say (a setting with
# a default cannot be a %SETTING% binding: the host refuses a binding whose setting is unset).
DISCOVERY_TICK = "0 */5 * * * *"


@bp.timer_trigger(arg_name="timer", schedule=DISCOVERY_TICK, run_on_startup=False)
def discovery(timer: func.TimerRequest) -> None:
    """Discover the protected servers due by PGVAULT_DISCOVERY_SCHEDULE: new databases protected, dropped marked."""
    vault = current_vault()
    found = vault.protected_servers().discover_due(vault.clock())
    for name, discovered in found.items():
        log.info("discovery of %s: %s", name, discovered.status)


@bp.route(route="protectedServers/{name}", methods=["PUT"])
@api
def put_protected_server(req: func.HttpRequest) -> func.HttpResponse:
    """Protect every database of a server (201) or change it (200); the first discovery runs at once."""
    vault = current_vault()
    service = vault.protected_servers()
    name = req.route_params["name"]
    record, _, created = service.put(name, parse_json_body(req.get_body()), vault.clock())
    return json_response(record.to_wire(service.members(record.spec.name)), 201 if created else 200)


@bp.route(route="protectedServers", methods=["GET"])
@api
def list_protected_servers(req: func.HttpRequest) -> func.HttpResponse:
    """Every protected server with its last discovery."""
    service = current_vault().protected_servers()
    return json_response(ProtectedServerList(value=[s.to_wire() for s in service.all()]))


@bp.route(route="protectedServers/{name}", methods=["GET"])
@api
def get_protected_server(req: func.HttpRequest) -> func.HttpResponse:
    """One protected server with each of its databases and what protects it."""
    service = current_vault().protected_servers()
    record = service.get(req.route_params["name"])
    return json_response(record.to_wire(service.members(record.spec.name)))


@bp.route(route="protectedServers/{name}", methods=["DELETE"])
@api
def delete_protected_server(req: func.HttpRequest) -> func.HttpResponse:
    """Stop protecting a server: its instances stop (``?retainData=asPerPolicy|forever``) and stay, with their data."""
    vault = current_vault()
    name = req.route_params["name"]
    retain, stopped = vault.protected_servers().delete(name, req.params.get("retainData"), vault.clock())
    return json_response(ServerUnprotected(name=name, deleted=True, retainData=retain.value, stoppedInstances=stopped))


@bp.route(route="protectedServers/{name}:discover", methods=["POST"])
@api
def discover_protected_server(req: func.HttpRequest) -> func.HttpResponse:
    """Discover a protected server now: what was added, dropped, skipped."""
    vault = current_vault()
    body = parse_json_body(req.get_body(), required=False)
    if body is not None:
        parse(EmptyBody, body)
    found = vault.protected_servers().discover(req.route_params["name"], vault.clock())
    return json_response(Discovery.model_validate(found.to_dict()))
