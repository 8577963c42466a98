"""Queue workers: validation and backup jobs. Each parses its message and runs one service."""

from __future__ import annotations

import json
import logging
from typing import Any

import azure.functions as func

from shared.backup_runner import BackupRunner
from shared.storage import layout
from shared.telemetry import job_context
from shared.validation import ValidationService
from shared.vault import current_vault

log = logging.getLogger(__name__)
bp = func.Blueprint()

# host.json extensions.queues.maxDequeueCount: the try after which the host poisons a message.
MAX_DEQUEUE_COUNT = 5


def job_payload(msg: func.QueueMessage) -> dict[str, Any]:
    """The JSON body of a job message (``{"jobId", ...}``); ValueError, so the host retries then poisons it."""
    try:
        payload = json.loads(msg.get_body())
    except ValueError as exc:
        raise ValueError(f"message {msg.id} is not JSON") from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("jobId"), str):
        raise ValueError(f"message {msg.id} has no jobId")
    return payload


@bp.queue_trigger(arg_name="msg", queue_name=layout.VALIDATE_QUEUE, connection="AzureWebJobsStorage")
def validation_worker(msg: func.QueueMessage) -> None:
    """Run one validation job."""
    payload = job_payload(msg)
    with job_context(payload["jobId"], payload.get("instance")):
        vault = current_vault()
        service = ValidationService(
            vault.state,
            vault.secrets,
            vault.clock,
            pg_bin_dir=vault.settings.pg_bin_dir,
            allowed_servers=vault.settings.allowed_servers,
        )
        service.run(payload["jobId"], last_try=(msg.dequeue_count or 1) >= MAX_DEQUEUE_COUNT)


@bp.queue_trigger(arg_name="msg", queue_name=layout.BACKUP_QUEUE, connection="AzureWebJobsStorage")
def backup_worker(msg: func.QueueMessage) -> None:
    """Run one backup job."""
    payload = job_payload(msg)
    with job_context(payload["jobId"], payload.get("instance")):
        vault = current_vault()
        runner = BackupRunner(
            vault.state,
            vault.backups,
            vault.secrets,
            vault.clock,
            pg_bin_dir=vault.settings.pg_bin_dir,
            function_timeout=vault.settings.function_timeout,
            manifest=vault.settings.backup_manifest,
            allowed_servers=vault.settings.allowed_servers,
        )
        attempt = msg.dequeue_count or 1
        runner.run(payload["jobId"], last_try=attempt >= MAX_DEQUEUE_COUNT, attempt=attempt)
