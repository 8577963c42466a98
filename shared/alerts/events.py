"""The events that raise alerts, and raising one: record it in the outbox, log it once.

Each event gives the alert its id (``alert_id``: kind, subject, time), so raising the same event
twice changes nothing. The log record of a newly raised alert is also an Application Insights custom
event (``PgVaultAlert``) with the alert's fields as custom dimensions, which the scheduled-query alert
rule of infra/main.bicep counts. Nothing here carries a secret: the alert holds the job's public error
(which never holds one, docs/rules.md), names and ids, never a secret reference's value.
"""

from __future__ import annotations

import logging
from datetime import datetime

from shared.alerts.model import Alert, AlertKind, alert_id
from shared.alerts.store import AlertStore
from shared.jobs.model import Job, JobStatus, Operation
from shared.storage.tables import StateStore
from shared.telemetry import redact_keys
from shared.wire.common import iso_z

log = logging.getLogger(__name__)

CUSTOM_EVENT = "PgVaultAlert"
"""The Application Insights custom event name of every alert (``AppEvents | where Name == 'PgVaultAlert'``)."""
_CUSTOM_EVENT_ATTRIBUTE = "microsoft.custom_event.name"  # azure-monitor-opentelemetry: a log record -> customEvents

DRIFT_DETAIL = "privilegeDrift"
"""The job detail a validation sets when it failed where the previous one succeeded (``shared.validation``)."""


def for_job(job: Job) -> Alert | None:
    """The alert of a finished job: Failed or CompletedWithWarnings (a validation that turned from Success to
    Failed is PrivilegeDrift); None for any other outcome."""
    if job.status is JobStatus.FAILED:
        drift = job.operation is Operation.VALIDATE and bool(job.details.get(DRIFT_DETAIL))
        kind = AlertKind.PRIVILEGE_DRIFT if drift else AlertKind.JOB_FAILED
    elif job.status is JobStatus.COMPLETED_WITH_WARNINGS:
        kind = AlertKind.JOB_COMPLETED_WITH_WARNINGS
    else:
        return None
    at = job.end_time or job.created
    error = job.error
    if kind is AlertKind.PRIVILEGE_DRIFT:
        message = (
            f"privilege drift on {job.instance}: its validation succeeded before and fails now"
            f"{': ' + error.message if error else ''}"
        )
    elif error is not None:
        message = f"{job.operation.value} job of {job.instance} {job.status.value}: {error.message}"
    else:
        warnings = [w for s in job.steps for w in s.warnings]
        message = f"{job.operation.value} job of {job.instance} {job.status.value}" + (
            f": {'; '.join(warnings[:3])}" if warnings else ""
        )
    return Alert(
        alert_id(kind, job.job_id, at),
        kind,
        at,
        job.instance,
        message,
        job_id=job.job_id,
        operation=job.operation.value,
        status=job.status.value,
        error_code=error.code if error else None,
        recommended_action=error.recommended_action if error else None,
        recovery_point_id=job.recovery_point_id,
    )


def for_corrupted_point(
    instance: str, recovery_point_id: str, reason: str | None, at: datetime, job_id: str | None = None
) -> Alert:
    """The alert of a recovery point marked Corrupted at ``at`` (the first mark: it stays)."""
    return Alert(
        alert_id(AlertKind.RECOVERY_POINT_CORRUPTED, f"{instance.lower()}/{recovery_point_id}", at),
        AlertKind.RECOVERY_POINT_CORRUPTED,
        at,
        instance,
        f"recovery point {recovery_point_id} of {instance} is Corrupted: {reason or 'its blob fails its checksum'}",
        job_id=job_id,
        status="Corrupted",
        error_code="RecoveryPointCorrupted",
        recommended_action=(
            "Restore another recovery point, take a new backup now, and check the storage account for changes "
            "to the vault's container."
        ),
        recovery_point_id=recovery_point_id,
    )


def for_missed_backup(instance: str, policy: str, slot: datetime, deadline: datetime) -> Alert:
    """The alert of ``instance``'s ``slot`` that had no successful backup by ``deadline`` (slot + grace)."""
    return Alert(
        alert_id(AlertKind.MISSED_BACKUP, f"{instance.lower()}@{iso_z(slot)}", deadline),
        AlertKind.MISSED_BACKUP,
        deadline,
        instance,
        f"no successful backup of {instance} for its scheduled slot {iso_z(slot)} (policy {policy}) by "
        f"{iso_z(deadline)}",
        status="Missed",
        error_code="MissedBackup",
        recommended_action=(
            "Look at the instance's jobs of that day (a failed or missing backup job), check that the vault's "
            "timers run, then take an on-demand backup."
        ),
        slot=slot,
    )


def raise_alert(state: StateStore, alert: Alert, now: datetime) -> tuple[Alert, bool]:
    """Record ``alert`` (once per event) and, when it is new, log it as one structured record and custom event."""
    recorded, created = AlertStore(state).record(alert, now)
    if created:
        log.warning(
            "alert %s %s instance %s job %s: %s",
            recorded.kind,
            recorded.alert_id,
            recorded.instance,
            recorded.job_id or "-",
            redact_keys(recorded.message),
            extra=custom_dimensions(recorded),
        )
    return recorded, created


def custom_dimensions(alert: Alert) -> dict[str, str]:
    """The attributes of an alert's log record: Application Insights keeps them as custom dimensions."""
    dims = {
        _CUSTOM_EVENT_ATTRIBUTE: CUSTOM_EVENT,
        "alert_id": alert.alert_id,
        "alert_kind": alert.kind.value,
        "alert_severity": alert.severity.value,
        "alert_instance": alert.instance,
        "alert_job_id": alert.job_id or "",
        "alert_operation": alert.operation or "",
        "alert_status": alert.status or "",
        "alert_error_code": alert.error_code or "",
        "alert_time": iso_z(alert.time),
    }
    return dims


def raise_for_job(state: StateStore, job: Job, now: datetime) -> None:
    """The hook where jobs end (``JobStore.finish``): raise the job's alert, if its outcome has one.

    Never fails the job's own write: a failure to record is logged, and the alert timer's sweep of ended
    jobs (``shared.alerts.service``) raises it later.
    """
    alert = for_job(job)
    if alert is None:
        return
    try:
        raise_alert(state, alert, now)
    except Exception as exc:  # the job's outcome is written; its alert is the sweep's to catch up
        log.warning("job %s: its alert could not be recorded now (%s); the alert sweep retries", job.job_id, exc)
