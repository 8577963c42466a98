"""Stop and resume protection of a backup instance (docs/rules.md C9), as Azure Backup does it.

``:stopProtection`` with ``retainData``:

* ``forever`` (Azure's StopProtection, retain data): no more backups (the scheduler skips the
  instance, on-demand backups are refused), and the retention sweep leaves its points alone.
* ``asPerPolicy`` (Azure's SuspendBackups): no more backups; the sweep goes on deleting and
  archiving its points by their lifecycle, except the latest point, which is kept forever.
* ``delete``: every point is deleted, each as a Delete job (blob first, then the record), then the
  instance record and its uniqueness claim, so the database can be protected again. The request
  answers 202 with the instance's Delete job; a few points go at once, the retention sweep
  finishes the rest.

``:resumeProtection`` brings scheduling back from ``now`` on (the slots of the stopped period are
neither backed up nor listed as skipped) and gives retained points back to their policy: any
whose expiry passed meanwhile goes at the next sweep.

Stopping does not interrupt a restore (restores only read points), nor a backup already running;
its point follows the instance's retention like any other.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from shared.errors import ErrorCode, UserError
from shared.instances import Instance, InstanceStore, ProtectionStatus, Readiness, RetainData
from shared.jobs import Job, JobStatus, JobStore, Operation, new_job_id
from shared.request_body import check_fields
from shared.retention import RetentionSweep
from shared.storage import layout
from shared.storage.ports import BlobContainer
from shared.storage.tables import ETagMismatch, StateStore
from shared.wire.check import parse, shape_of
from shared.wire.common import EmptyBody
from shared.wire.instances import StopProtectionRequest

log = logging.getLogger(__name__)

# Points a :stopProtection request with delete removes before it answers (HTTP must answer fast);
# the retention sweep removes the rest.
INLINE_DELETES = 20


def parse_stop(body: Any) -> RetainData:
    """``{"retainData": "forever"|"asPerPolicy"|"delete"}`` → RetainData; ``InvalidRequest`` naming the field."""
    allowed = ", ".join(r.value for r in RetainData)
    if not isinstance(body, dict):
        raise UserError(
            ErrorCode.INVALID_REQUEST, f'the body must be {{"retainData": one of {allowed}}}', target="retainData"
        )
    # The value is read here: any letter case, and a refusal that says what each option does.
    check_fields(body, shape_of(StopProtectionRequest))
    raw = body.get("retainData")
    for option in RetainData:
        if isinstance(raw, str) and raw.lower() == option.value.lower():
            return option
    raise UserError(
        ErrorCode.INVALID_REQUEST,
        f"retainData must be one of {allowed}, got {raw!r}",
        target="retainData",
        recommended_action="Send forever (keep every point), asPerPolicy (keep expiring, the latest forever) "
        "or delete (delete every point and the instance).",
    )


class ProtectionService:
    """Stops and resumes protection of instances."""

    def __init__(self, state: StateStore, blobs: BlobContainer) -> None:
        self._state = state
        self._blobs = blobs
        self._instances = InstanceStore(state)
        self._jobs = JobStore(state)

    def stop(self, name: str, body: Any, now: datetime) -> tuple[Instance, Job | None]:
        """Stop protection of ``name``; with ``delete``, also its Delete job (the work goes on in the sweep)."""
        retain = parse_stop(body)
        for _ in range(3):
            instance = self._instances.get(name)
            if instance.retain_data is RetainData.DELETE:
                if retain is RetainData.DELETE and instance.delete_job_id is not None:
                    return instance, self._jobs.get(instance.delete_job_id)  # a repeated request
                raise UserError(
                    ErrorCode.CONFLICT,
                    f"backup instance {name!r} is being deleted; its data cannot be kept any more",
                    target="retainData",
                    recommended_action="Wait until the instance is gone, then configure the database again.",
                )
            job: Job | None = None
            changes: dict[str, Any] = {
                "protection_status": ProtectionStatus.STOPPED,
                "retain_data": retain,
                "stopped_at": instance.stopped_at or now,
            }
            if retain is RetainData.DELETE:
                job = Job(
                    new_job_id(now),
                    Operation.DELETE,
                    instance.spec.name,
                    JobStatus.IN_PROGRESS,
                    now,
                    start_time=now,
                    details={"scope": "BackupInstance", "trigger": "StopProtection", "retainData": retain.value},
                )
                changes["delete_job_id"] = job.job_id
            try:
                stopped = self._instances.save(instance, replace(instance, **changes))
            except ETagMismatch:
                continue
            log.info("instance %s: protection stopped (retainData %s)", instance.spec.name, retain.value)
            if job is not None:
                job, _ = self._jobs.create(job)
                done, _ = RetentionSweep(self._state, self._blobs).purge_instance(stopped, now, budget=INLINE_DELETES)
                if done:
                    job = self._jobs.get(job.job_id)
            return stopped, job
        raise UserError(ErrorCode.CONFLICT, f"backup instance {name!r} is being changed by other requests; retry")

    def resume(self, name: str, body: Any, now: datetime) -> Instance:
        """Resume protection of a stopped instance: scheduled backups from ``now`` on, retention as per policy."""
        if body is not None and not isinstance(body, dict):
            raise UserError(ErrorCode.INVALID_REQUEST, ":resumeProtection takes no body (or {})", target="body")
        if body is not None:
            parse(EmptyBody, body)
        for _ in range(3):
            instance = self._instances.get(name)
            if instance.retain_data is RetainData.DELETE:
                raise UserError(
                    ErrorCode.CONFLICT,
                    f"backup instance {name!r} is being deleted and cannot be resumed",
                    target="name",
                    recommended_action="Wait until the instance is gone, then configure the database again.",
                )
            if instance.protection_status is not ProtectionStatus.STOPPED:
                raise UserError(
                    ErrorCode.CONFLICT,
                    f"protection of backup instance {name!r} is not stopped "
                    f"(protectionStatus {instance.protection_status.value})",
                    target="name",
                    recommended_action="Nothing to resume.",
                )
            # Schedule memory first: the scheduler evaluates from now, so the stopped period fires nothing.
            self._state.upsert(
                layout.SCHEDULE, layout.row_key(instance.spec.name), {"through": now, "instance": instance.spec.name}
            )
            status = (
                ProtectionStatus.PROTECTED if instance.readiness is Readiness.SUCCESS else ProtectionStatus.CONFIGURING
            )
            try:
                resumed = self._instances.save(
                    instance, replace(instance, protection_status=status, retain_data=None, stopped_at=None)
                )
            except ETagMismatch:
                continue
            log.info("instance %s: protection resumed", instance.spec.name)
            return resumed
        raise UserError(ErrorCode.CONFLICT, f"backup instance {name!r} is being changed by other requests; retry")
