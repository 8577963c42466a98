"""Restores: the HTTP API (restore, verify), the queue worker, and the rehydration timer."""

from __future__ import annotations

import logging

import azure.functions as func

from functions.http import accepted, api, hand_to_host
from functions.workers import MAX_DEQUEUE_COUNT, job_payload
from shared.request_body import parse_json_body
from shared.storage import layout
from shared.telemetry import job_context
from shared.vault import current_vault
from shared.wire.common import Accepted

log = logging.getLogger(__name__)
bp = func.Blueprint()


@bp.route(route="backupInstances/{name}:restore", methods=["POST"])
@bp.queue_output(arg_name="message", queue_name=layout.RESTORE_QUEUE, connection="AzureWebJobsStorage")
@api
def restore(req: func.HttpRequest, message: func.Out[str]) -> func.HttpResponse:
    """Azure's restore request (as a database or as files) → 202 with the job's Location; its message
    (or its rehydration's) goes out through the output binding, taken at once by this host."""
    vault = current_vault()
    started = vault.restore().start(req.route_params["name"], parse_json_body(req.get_body()), vault.clock())
    job_id = hand_to_host(message, layout.RESTORE_QUEUE, started)
    return accepted(Accepted(jobId=job_id), job_id)


@bp.route(route="backupInstances/{name}:verifyRestore", methods=["POST"])
@bp.queue_output(arg_name="message", queue_name=layout.RESTORE_QUEUE, connection="AzureWebJobsStorage")
@api
def verify_restore(req: func.HttpRequest, message: func.Out[str]) -> func.HttpResponse:
    """Restore a point into a scratch database, compare it with the backup's manifest → 202 + job."""
    vault = current_vault()
    started = vault.restore().start_verify(req.route_params["name"], parse_json_body(req.get_body()), vault.clock())
    job_id = hand_to_host(message, layout.RESTORE_QUEUE, started)
    return accepted(Accepted(jobId=job_id), job_id)


@bp.queue_trigger(arg_name="msg", queue_name=layout.RESTORE_QUEUE, connection="AzureWebJobsStorage")
def restore_worker(msg: func.QueueMessage) -> None:
    """Run one restore, verification or rehydration job."""
    payload = job_payload(msg)
    with job_context(payload["jobId"], payload.get("instance")):
        vault = current_vault()
        attempt = msg.dequeue_count or 1
        vault.restore().run(payload["jobId"], last_try=attempt >= MAX_DEQUEUE_COUNT, attempt=attempt)


@bp.timer_trigger(arg_name="timer", schedule="30 * * * * *", run_on_startup=False)
def rehydration_timer(timer: func.TimerRequest) -> None:
    """Every minute: poll pending rehydrations, release their restores, delete expired copies."""
    vault = current_vault()
    counts = vault.restore().tick(vault.clock())
    if any(counts.values()):
        log.info("rehydration timer: %s", counts)
