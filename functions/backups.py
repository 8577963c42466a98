"""HTTP API of backups and recovery points, and the scheduler timer."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.http import accepted, api, hand_to_host, json_response
from shared.recovery_points import shown
from shared.request_body import parse_json_body
from shared.storage import layout
from shared.vault import current_vault
from shared.wire.common import Accepted
from shared.wire.recovery_points import RecoveryPointList

log = logging.getLogger(__name__)
bp = func.Blueprint()


@bp.route(route="backupInstances/{name}:backup", methods=["POST"])
@bp.queue_output(arg_name="message", queue_name=layout.BACKUP_QUEUE, connection="AzureWebJobsStorage")
@api
def backup_now(req: func.HttpRequest, message: func.Out[str]) -> func.HttpResponse:
    """On-demand backup (Azure's TriggerBackupRequest): 202 with the job's Location; the job's message
    goes out through the output binding, so this host's backup worker takes it at once."""
    vault = current_vault()
    body = parse_json_body(req.get_body(), required=False)
    started = vault.backup_starter().on_demand(req.route_params["name"], body, vault.clock())
    job_id = hand_to_host(message, layout.BACKUP_QUEUE, started)
    return accepted(Accepted(jobId=job_id), job_id)


@bp.route(route="backupInstances/{name}/recoveryPoints", methods=["GET"])
@api
def list_recovery_points(req: func.HttpRequest) -> func.HttpResponse:
    """The instance's recovery points, newest first."""
    vault = current_vault()
    return json_response(RecoveryPointList(value=shown(vault.state, req.route_params["name"])))


@bp.route(route="backupInstances/{name}/recoveryPoints/{recoveryPointId}", methods=["GET"])
@api
def get_recovery_point(req: func.HttpRequest) -> func.HttpResponse:
    """One recovery point (404 for an unknown instance too)."""
    vault = current_vault()
    return json_response(shown(vault.state, req.route_params["name"], req.route_params["recoveryPointId"])[0])


@bp.timer_trigger(arg_name="timer", schedule="%PGVAULT_SCHEDULER_SCHEDULE%", run_on_startup=False)
def scheduler(timer: func.TimerRequest) -> None:
    """Queue a backup for every slot that came due (idempotent per instance and slot)."""
    vault = current_vault()
    started = vault.backup_starter().schedule(vault.clock())
    log.info("scheduler queued %d backup(s)%s", len(started), " (past due)" if timer.past_due else "")
