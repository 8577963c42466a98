"""The retention sweep timer and the stop/resume/undelete protection API."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.http import accepted, api, json_response
from shared.request_body import parse_json_body
from shared.vault import current_vault
from shared.wire.instances import DeletionAccepted

log = logging.getLogger(__name__)
bp = func.Blueprint()


@bp.timer_trigger(arg_name="timer", schedule="%PGVAULT_RETENTION_SCHEDULE%", run_on_startup=False)
def retention_sweep(timer: func.TimerRequest) -> None:
    """Delete expired recovery points, move those due to the archive, purge soft-deleted instances past their time."""
    vault = current_vault()
    report = vault.retention().sweep_on_time(vault.clock())
    log.info("retention sweep: %s%s", report.to_dict(), " (past due)" if timer.past_due else "")


@bp.route(route="backupInstances/{name}:stopProtection", methods=["POST"])
@api
def stop_protection(req: func.HttpRequest) -> func.HttpResponse:
    """Stop protection: 200 with the instance (forever, asPerPolicy), or 202 + the Delete job that soft-deleted it."""
    vault = current_vault()
    body = parse_json_body(req.get_body())
    instance, job = vault.protection().stop(req.route_params["name"], body, vault.clock())
    if job is None:
        return json_response(instance.to_wire())
    return accepted(DeletionAccepted(jobId=job.job_id, instance=instance.to_wire()), job.job_id)


@bp.route(route="backupInstances/{name}:undelete", methods=["POST"])
@api
def undelete(req: func.HttpRequest) -> func.HttpResponse:
    """Bring a soft-deleted instance back (ProtectionStopped, retain data forever, every point): 200."""
    vault = current_vault()
    body = parse_json_body(req.get_body(), required=False)
    instance = vault.protection().undelete(req.route_params["name"], body, vault.clock())
    return json_response(instance.to_wire())


@bp.route(route="backupInstances/{name}:resumeProtection", methods=["POST"])
@api
def resume_protection(req: func.HttpRequest) -> func.HttpResponse:
    """Resume protection of a stopped instance: 200 with the instance."""
    vault = current_vault()
    body = parse_json_body(req.get_body(), required=False)
    instance = vault.protection().resume(req.route_params["name"], body, vault.clock())
    return json_response(instance.to_wire())
