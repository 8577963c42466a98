"""Queue workers: validation and backup jobs, backup parts; the poison queues of every worker queue and the timer
that finds jobs whose message was lost. Each parses its input and runs one service."""

from __future__ import annotations

import logging
from typing import Any

import azure.functions as func

from shared.hung_jobs import MAX_DEQUEUE_COUNT, POISON_SUFFIX, SCHEDULE
from shared.jobs.messages import read_payload
from shared.storage import layout
from shared.telemetry import job_context
from shared.vault import current_vault

log = logging.getLogger(__name__)
bp = func.Blueprint()

__all__ = ["MAX_DEQUEUE_COUNT", "bp", "job_payload"]


def job_payload(msg: func.QueueMessage) -> dict[str, Any]:
    """The JSON body of a job message (``shared.jobs.messages``); ValueError, so the host retries then poisons it."""
    try:
        return read_payload(msg.get_body())
    except ValueError as exc:
        raise ValueError(f"message {msg.id}: {exc}") from exc


@bp.queue_trigger(arg_name="msg", queue_name=layout.VALIDATE_QUEUE, connection="AzureWebJobsStorage")
def validation_worker(msg: func.QueueMessage) -> None:
    """Run one validation job."""
    payload = job_payload(msg)
    with job_context(payload["jobId"], payload.get("instance")):
        vault = current_vault()
        vault.validation().run(payload["jobId"], last_try=(msg.dequeue_count or 1) >= MAX_DEQUEUE_COUNT)


@bp.queue_trigger(arg_name="msg", queue_name=layout.BACKUP_QUEUE, connection="AzureWebJobsStorage")
def backup_worker(msg: func.QueueMessage) -> None:
    """Run one backup job."""
    payload = job_payload(msg)
    with job_context(payload["jobId"], payload.get("instance")):
        vault = current_vault()
        attempt = msg.dequeue_count or 1
        vault.backup_runner().run(payload["jobId"], last_try=attempt >= MAX_DEQUEUE_COUNT, attempt=attempt)


@bp.queue_trigger(arg_name="msg", queue_name=layout.BACKUP_PART_QUEUE, connection="AzureWebJobsStorage")
def backup_part_worker(msg: func.QueueMessage) -> None:
    """Dump one data part of a backup whose parts run across instances (shared/backup_parts/)."""
    payload = job_payload(msg)
    with job_context(payload["jobId"], payload.get("instance")):
        attempt = msg.dequeue_count or 1
        current_vault().backup_parts().run(payload, delivery=attempt, last_try=attempt >= MAX_DEQUEUE_COUNT)


def _fail_poisoned(msg: func.QueueMessage, queue: str) -> None:
    """Fail the job a poisoned message names. A message without a job id is logged and dropped: a
    poison queue's own poison queue would only hide it further."""
    try:
        payload = job_payload(msg)
    except ValueError as exc:
        log.error("poison message of %s dropped: %s", queue, exc)
        return
    with job_context(payload["jobId"], payload.get("instance")):
        vault = current_vault()
        vault.hung_jobs().fail_poisoned(payload["jobId"], queue, vault.clock())


@bp.queue_trigger(arg_name="msg", queue_name=layout.VALIDATE_QUEUE + POISON_SUFFIX, connection="AzureWebJobsStorage")
def validation_poison(msg: func.QueueMessage) -> None:
    """A validation message that failed every try: its job ends Failed, the instance's readiness too."""
    _fail_poisoned(msg, layout.VALIDATE_QUEUE)


@bp.queue_trigger(arg_name="msg", queue_name=layout.BACKUP_QUEUE + POISON_SUFFIX, connection="AzureWebJobsStorage")
def backup_poison(msg: func.QueueMessage) -> None:
    """A backup message that failed every try: its job ends Failed and the instance's lock is freed."""
    _fail_poisoned(msg, layout.BACKUP_QUEUE)


@bp.queue_trigger(
    arg_name="msg", queue_name=layout.BACKUP_PART_QUEUE + POISON_SUFFIX, connection="AzureWebJobsStorage"
)
def backup_part_poison(msg: func.QueueMessage) -> None:
    """A part message that failed every try: the part is failed, so its backup's attempt fails at once."""
    try:
        payload = job_payload(msg)
    except ValueError as exc:
        log.error("poison message of %s dropped: %s", layout.BACKUP_PART_QUEUE, exc)
        return
    with job_context(payload["jobId"], payload.get("instance")):
        current_vault().backup_parts().poisoned(payload)


@bp.queue_trigger(arg_name="msg", queue_name=layout.RESTORE_QUEUE + POISON_SUFFIX, connection="AzureWebJobsStorage")
def restore_poison(msg: func.QueueMessage) -> None:
    """A restore, verification or rehydration message that failed every try: its job ends Failed."""
    _fail_poisoned(msg, layout.RESTORE_QUEUE)


@bp.timer_trigger(arg_name="timer", schedule=SCHEDULE, run_on_startup=False)
def hung_jobs(timer: func.TimerRequest) -> None:
    """Every 5 minutes: re-queue once, then fail, the jobs whose queue message was lost."""
    vault = current_vault()
    report = vault.hung_jobs().sweep_on_time(vault.clock())
    if report.requeued or report.failed or report.refused:
        log.info("hung jobs: %s", report.to_dict())
