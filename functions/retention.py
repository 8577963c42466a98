"""The retention sweep timer and the stop/resume/undelete protection API."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import azure.functions as func

from functions.http import accepted, api, json_response
from shared.approvals import CriticalOperation, executor
from shared.instances import Instance, RetainData
from shared.jobs import Job
from shared.protection import parse_stop
from shared.request_body import parse_json_body
from shared.vault import Vault, current_vault
from shared.wire import dump
from shared.wire.instances import DeletionAccepted

log = logging.getLogger(__name__)
bp = func.Blueprint()


@bp.timer_trigger(arg_name="timer", schedule="%PGVAULT_RETENTION_SCHEDULE%", run_on_startup=False)
def retention_sweep(timer: func.TimerRequest) -> None:
    """Delete expired recovery points, move those due to the archive, purge soft-deleted instances past their time."""
    vault = current_vault()
    report = vault.retention().sweep_on_time(vault.clock())
    vault.audit().expire(vault.clock())
    log.info("retention sweep: %s%s", report.to_dict(), " (past due)" if timer.past_due else "")


@bp.route(route="backupInstances/{name}:stopProtection", methods=["POST"])
@api
def stop_protection(req: func.HttpRequest) -> func.HttpResponse:
    """Stop protection: 200 with the instance (forever, asPerPolicy), or 202 + the Delete job that soft-deleted it."""
    vault = current_vault()
    body = parse_json_body(req.get_body())
    critical = (
        "stop protection with retainData delete soft-deletes the instance: its recovery points are purged once "
        "the soft-delete days are over"
    )
    pending = vault.approvals().gate(
        CriticalOperation.STOP_PROTECTION_WITH_DELETE,
        "POST",
        STOP_ROUTE,
        req.route_params,
        body,
        critical if parse_stop(body) is RetainData.DELETE else None,
        vault.clock(),
    )
    if pending is not None:
        return json_response(pending, 202)
    instance, job = _stop(vault, req.route_params["name"], body, vault.clock())
    if job is None:
        return json_response(instance.to_wire())
    return accepted(DeletionAccepted(jobId=job.job_id, instance=instance.to_wire()), job.job_id)


STOP_ROUTE = "backupInstances/{name}:stopProtection"


def _stop(vault: Vault, name: str, body: Any, now: datetime) -> tuple[Instance, Job | None]:
    return vault.protection().stop(name, body, now)


@executor(CriticalOperation.STOP_PROTECTION_WITH_DELETE)
def stop_approved(params: Mapping[str, str], body: Any, now: datetime) -> tuple[int, Any]:
    """Stop protection with delete, approved by a Backup Guard: the answer the request would have had."""
    instance, job = _stop(current_vault(), params["name"], body, now)
    if job is None:
        return 200, dump(instance.to_wire())
    return 202, dump(DeletionAccepted(jobId=job.job_id, instance=instance.to_wire()))


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
