"""Stop and resume protection of a backup instance (docs/rules.md C9), as Azure Backup does it.

``:stopProtection`` with ``retainData``:

* ``forever`` (Azure's StopProtection, retain data): no more backups (the scheduler skips the
  instance, on-demand backups are refused), and the retention sweep leaves its points alone.
* ``asPerPolicy`` (Azure's SuspendBackups): no more backups; the sweep goes on deleting and
  archiving its points by their lifecycle, except the latest point, which is kept forever.
* ``delete`` (soft delete, as Azure Backup's): the instance goes ``SoftDeleted``: no backups, no
  restores, its points kept as they are (listed with ``state: SoftDeleted`` and their purge time)
  for ``PGVAULT_SOFT_DELETE_DAYS``. The request answers 202 with the (completed) Delete job that
  soft-deleted it. ``:undelete`` before the purge time brings it back as ProtectionStopped (retain
  data forever) with every point. After it, the retention sweep purges: each point a Delete job
  (blob first, then the record), then the instance record and its uniqueness claim, so the
  database can be protected again (until then configuring it is refused, naming the soft-deleted
  instance). While the vault is immutable, ``delete`` is refused.

``:resumeProtection`` brings scheduling back from ``now`` on (the slots of the stopped period are
neither backed up nor listed as skipped) and gives retained points back to their policy: any
whose expiry passed meanwhile goes at the next sweep.

Stopping does not interrupt a restore (restores only read points), nor a backup already running;
its point follows the instance's retention like any other.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from shared.errors import ErrorCode, UserError
from shared.immutability import Immutability, refuse_early_deletion
from shared.instances import (
    Instance,
    InstanceStore,
    ProtectionStatus,
    Readiness,
    RetainData,
    soft_deleted_error,
    when_text,
)
from shared.jobs import Job, JobStatus, JobStore, Operation, new_job_id
from shared.request_body import check_fields
from shared.settings import DEFAULT_SOFT_DELETE_DAYS
from shared.storage import layout
from shared.storage.ports import BlobContainer
from shared.storage.tables import ETagMismatch, StateStore
from shared.wire.check import parse, shape_of
from shared.wire.common import EmptyBody
from shared.wire.instances import StopProtectionRequest

log = logging.getLogger(__name__)


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
    """Stops, resumes and undeletes protection of instances."""

    def __init__(
        self,
        state: StateStore,
        blobs: BlobContainer,
        *,
        soft_delete_days: int = DEFAULT_SOFT_DELETE_DAYS,
        immutability: Immutability = Immutability.DISABLED,
    ) -> None:
        self._state = state
        self._blobs = blobs
        self._instances = InstanceStore(state)
        self._jobs = JobStore(state)
        self._soft_delete = timedelta(days=soft_delete_days)
        self._immutability = immutability

    def stop(self, name: str, body: Any, now: datetime) -> tuple[Instance, Job | None]:
        """Stop protection of ``name``; with ``delete``, soft-delete it and return the Delete job that did.

        ``delete`` is refused while the vault is immutable (``UserErrorOperationBlockedByImmutability``).
        """
        retain = parse_stop(body)
        for _ in range(3):
            instance = self._instances.get(name)
            if instance.soft_deleted:
                if retain is RetainData.DELETE:
                    return instance, self._soft_delete_job(instance)  # a repeated request
                raise soft_deleted_error(instance, "its protection cannot be changed", target="retainData")
            job: Job | None = None
            changes: dict[str, Any] = {
                "protection_status": ProtectionStatus.STOPPED,
                "retain_data": retain,
                "stopped_at": instance.stopped_at or now,
            }
            if retain is RetainData.DELETE:
                refuse_early_deletion(self._immutability, "stop protection with retainData delete", "retainData")
                changes.update(
                    protection_status=ProtectionStatus.SOFT_DELETED,
                    delete_job_id=new_job_id(now, key=f"softdelete/{layout.row_key(name)}/{now.isoformat()}"),
                    deleted_at=now,
                    purge_at=now + self._soft_delete,
                    purge_job_id=None,
                )
            try:
                stopped = self._instances.save(instance, replace(instance, **changes))
            except ETagMismatch:
                continue
            log.info("instance %s: protection stopped (retainData %s)", instance.spec.name, retain.value)
            if retain is RetainData.DELETE:
                job = self._soft_delete_job(stopped)
                log.info("instance %s: soft-deleted, purge at %s", instance.spec.name, stopped.purge_at)
            return stopped, job
        raise UserError(ErrorCode.CONFLICT, f"backup instance {name!r} is being changed by other requests; retry")

    def _soft_delete_job(self, instance: Instance) -> Job:
        """The completed Delete job that soft-deleted ``instance`` (recorded now if a crash left it unrecorded)."""
        assert instance.delete_job_id is not None and instance.deleted_at is not None
        try:
            return self._jobs.get(instance.delete_job_id)
        except UserError:
            pass
        at = instance.deleted_at
        job, _ = self._jobs.create(
            Job(
                instance.delete_job_id,
                Operation.DELETE,
                instance.spec.name,
                JobStatus.COMPLETED,
                at,
                start_time=at,
                end_time=at,
                progress=1.0,
                details={
                    "scope": "BackupInstance",
                    "trigger": "StopProtection",
                    "retainData": RetainData.DELETE.value,
                    "softDeleted": True,
                    "scheduledPurgeTime": instance.purge_at.isoformat() if instance.purge_at else None,
                },
            )
        )
        return job

    def undelete(self, name: str, body: Any, now: datetime) -> Instance:
        """Bring soft-deleted ``name`` back as ProtectionStopped (retain data forever) with every point.

        ``Conflict`` when it is not soft-deleted, or when its purge has begun.
        """
        if body is not None and not isinstance(body, dict):
            raise UserError(ErrorCode.INVALID_REQUEST, ":undelete takes no body (or {})", target="body")
        if body is not None:
            parse(EmptyBody, body)
        for _ in range(3):
            instance = self._instances.get(name)
            if not instance.soft_deleted:
                raise UserError(
                    ErrorCode.CONFLICT,
                    f"backup instance {name!r} is not soft-deleted (protectionStatus "
                    f"{instance.protection_status.value}); there is nothing to undelete",
                    target="name",
                    recommended_action="Only an instance stopped with retainData delete can be undeleted.",
                )
            if instance.purge_job_id is not None:
                raise UserError(
                    ErrorCode.CONFLICT,
                    f"backup instance {name!r} is being purged (job {instance.purge_job_id}, scheduled purge time "
                    f"{when_text(instance.purge_at)}): its points are being deleted and it cannot be undeleted",
                    target="name",
                    recommended_action="Wait until the purge has finished, then configure the database again.",
                )
            back = replace(
                instance,
                protection_status=ProtectionStatus.STOPPED,
                retain_data=RetainData.FOREVER,
                delete_job_id=None,
                deleted_at=None,
                purge_at=None,
                purge_job_id=None,
            )
            try:
                undeleted = self._instances.save(instance, back)
            except ETagMismatch:
                continue  # the sweep may have begun the purge: read again and decide again
            log.info("instance %s: undeleted (ProtectionStopped, retainData forever)", instance.spec.name)
            return undeleted
        raise UserError(ErrorCode.CONFLICT, f"backup instance {name!r} is being changed by other requests; retry")

    def resume(self, name: str, body: Any, now: datetime) -> Instance:
        """Resume protection of a stopped instance: scheduled backups from ``now`` on, retention as per policy."""
        if body is not None and not isinstance(body, dict):
            raise UserError(ErrorCode.INVALID_REQUEST, ":resumeProtection takes no body (or {})", target="body")
        if body is not None:
            parse(EmptyBody, body)
        for _ in range(3):
            instance = self._instances.get(name)
            if instance.soft_deleted:
                raise soft_deleted_error(instance, "it cannot be resumed before it is undeleted")
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
