"""The job record: its status and the one table of legal moves, its typed steps, its ids.

A job lives in the partition of the UTC day it was created (``jobs-YYYYMMDD``) under its id; ids
begin with the inverted creation time, so a partition reads newest first and the id alone says
where the job is (``partition_for(job_time(id))``).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shared.errors import ErrorCode, UserError
from shared.storage import layout
from shared.storage.tables import Entity
from shared.wire.common import iso_z

if TYPE_CHECKING:  # the wire models import this module's enums
    from shared.wire import common as wire_common
    from shared.wire import jobs as wire_jobs

# Inverted milliseconds count down from here, so later jobs sort first (good until year 5138).
_MAX_MS = 0xFFFFFFFFFFFF
_JOB_ID = re.compile(r"^[0-9a-f]{12}-[0-9a-f]{20}$")
CANDIDATE_DETAIL = "backupInstance"
"""The details key of a validate-for-backup job: the would-be instance it checks (shared.validate_for_backup)."""


class JobStatus(StrEnum):
    """Where a job is in its life (Azure Backup's job statuses)."""

    IN_PROGRESS = "InProgress"
    """Accepted and queued, or running: not finished yet."""
    COMPLETED = "Completed"
    """Finished and did what it was asked."""
    COMPLETED_WITH_WARNINGS = "CompletedWithWarnings"
    """Finished; something ignorable went wrong and is listed in the job's warnings."""
    FAILED = "Failed"
    """Finished without doing what it was asked; ``error`` says why and what to do."""
    CANCELLED = "Cancelled"
    """Stopped before it finished, on request (``:cancel``) or because its subject went away; terminal."""

    @property
    def finished(self) -> bool:
        """Whether the job can change no more."""
        return self is not JobStatus.IN_PROGRESS


# Every legal change of status, in one place. Anything else is refused.
TRANSITIONS: Mapping[JobStatus, frozenset[JobStatus]] = {
    JobStatus.IN_PROGRESS: frozenset(
        {JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_WARNINGS, JobStatus.FAILED, JobStatus.CANCELLED}
    ),
    JobStatus.COMPLETED: frozenset(),
    JobStatus.COMPLETED_WITH_WARNINGS: frozenset(),
    JobStatus.FAILED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


class IllegalTransition(Exception):
    """A status change that ``TRANSITIONS`` does not allow (a bug, or a late duplicate)."""


def check_transition(job_id: str, old: JobStatus, new: JobStatus) -> None:
    """``IllegalTransition`` unless ``old`` -> ``new`` is in ``TRANSITIONS`` (staying is always legal)."""
    if new is not old and new not in TRANSITIONS[old]:
        raise IllegalTransition(f"job {job_id}: {old} -> {new} is not allowed")


class Operation(StrEnum):
    """What a job does."""

    VALIDATE = "Validate"
    BACKUP = "Backup"
    RESTORE = "Restore"
    VERIFY_RESTORE = "VerifyRestore"
    REHYDRATE = "Rehydrate"
    ARCHIVE_MOVE = "ArchiveMove"
    DELETE = "Delete"
    DISCOVER = "Discover"
    """A protected server's discovery changed this instance: protected, stopped (database dropped), skipped."""


class StepStatus(StrEnum):
    """Where one step of a job is."""

    IN_PROGRESS = "InProgress"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELLED = "Cancelled"


@dataclass(frozen=True)
class Step:
    """One step of a job, written when it starts (InProgress, its start time) and when it ends."""

    name: str
    status: StepStatus = StepStatus.IN_PROGRESS
    start_time: datetime | None = None
    end_time: datetime | None = None
    warnings: tuple[str, ...] = ()
    by_earlier_try: bool = False
    """The step was done by an earlier try of the job (a backup's point recorded before it died)."""

    @property
    def running(self) -> bool:
        return self.status is StepStatus.IN_PROGRESS

    def ended(self, status: StepStatus, at: datetime) -> Step:
        """This step ended with ``status`` at ``at`` (a step that ended already stays as it is)."""
        if not self.running:
            return self
        return replace(self, status=status, end_time=at)

    def to_dict(self) -> dict[str, Any]:
        """The public step shape: name, status, startTime, endTime (and warnings, byEarlierTry when set)."""
        out: dict[str, Any] = {
            "name": self.name,
            "status": self.status.value,
            "startTime": iso(self.start_time),
            "endTime": iso(self.end_time),
        }
        if self.warnings:
            out["warnings"] = list(self.warnings)
        if self.by_earlier_try:
            out["byEarlierTry"] = True
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Step:
        return cls(
            name=str(raw["name"]),
            status=StepStatus(raw.get("status") or StepStatus.IN_PROGRESS),
            start_time=_parse(raw.get("startTime")),
            end_time=_parse(raw.get("endTime")),
            warnings=tuple(str(w) for w in raw.get("warnings") or ()),
            by_earlier_try=bool(raw.get("byEarlierTry")),
        )


def end_steps(steps: Iterable[Step], status: StepStatus, at: datetime) -> tuple[Step, ...]:
    """``steps`` with every running one ended with ``status`` at ``at``."""
    return tuple(step.ended(status, at) for step in steps)


def _parse(value: object) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    """A time as the job record keeps it: ``iso_z``, the API's one format (None stays None)."""
    return iso_z(value) if value else None


def _inverted(at: datetime) -> str:
    return f"{_MAX_MS - int(at.timestamp() * 1000):012x}"


def new_job_id(at: datetime, key: str | None = None) -> str:
    """A job id that sorts newest first and says its creation day.

    With ``key`` (e.g. instance + schedule slot) the id is derived from it, so the same request
    twice gives the same job; without, the tail is random.
    """
    tail = hashlib.sha256(key.encode()).hexdigest()[:20] if key is not None else secrets.token_hex(10)
    return f"{_inverted(at)}-{tail}"


def job_time(job_id: str) -> datetime:
    """The creation time encoded in a job id (``NotFound`` for ids pgvault never makes)."""
    if not _JOB_ID.match(job_id):
        raise UserError(ErrorCode.NOT_FOUND, f"job {job_id!r} does not exist", target="jobId")
    try:
        return datetime.fromtimestamp((_MAX_MS - int(job_id[:12], 16)) / 1000, UTC)
    except (ValueError, OverflowError, OSError) as exc:
        # Well formed, but its time is outside what datetime holds (year 10,000 and more).
        raise UserError(ErrorCode.NOT_FOUND, f"job {job_id!r} does not exist", target="jobId") from exc


def partition_for(at: datetime) -> str:
    """The partition of jobs created on ``at``'s UTC day."""
    return f"{layout.JOBS_PREFIX}{at.astimezone(UTC):%Y%m%d}"


@dataclass(frozen=True)
class JobError:
    """Why a job failed: the public error code, a message and what to do."""

    code: str
    message: str
    recommended_action: str

    def to_dict(self) -> dict[str, str]:
        """The error as a job record keeps it and the API shows it."""
        return {"code": self.code, "message": self.message, "recommendedAction": self.recommended_action}

    def to_wire(self) -> wire_common.ErrorDetail:
        """The error as the API shows it (``shared.wire.common.ErrorDetail``, without a target)."""
        from shared.wire.common import ErrorDetail

        return ErrorDetail.model_validate(self.to_dict())

    @classmethod
    def from_user_error(cls, error: UserError) -> JobError:
        return cls(error.code.value, error.message, error.recommended_action)


@dataclass(frozen=True)
class Job:
    """One job as stored. Frozen: a change is a new record written with the old one's ETag."""

    job_id: str
    operation: Operation
    instance: str
    status: JobStatus
    created: datetime
    start_time: datetime | None = None
    end_time: datetime | None = None
    bytes: int = 0
    progress: float = 0.0
    retention_tag: str | None = None
    rule_name: str | None = None
    recovery_point_id: str | None = None
    error: JobError | None = None
    steps: tuple[Step, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)
    etag: str | None = None
    cancel_requested: datetime | None = None
    """When a user asked to cancel the job (``:cancel``); its worker stops and ends it Cancelled."""

    @property
    def current_step(self) -> Step | None:
        """The step running now, if any."""
        return next((s for s in reversed(self.steps) if s.running), None)

    def duration(self, now: datetime | None = None) -> float | None:
        """Seconds from start to end; for a running job, to ``now`` (this host's clock when not given)."""
        if self.start_time is None:
            return None
        end = self.end_time
        if end is None and self.status is JobStatus.IN_PROGRESS:
            end = now or datetime.now(UTC)
        return max(0.0, ((end or self.start_time) - self.start_time).total_seconds())

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        """The public job shape (``shared.wire.jobs.Job``); a running job's duration and rate are as of ``now``."""
        from shared.wire import dump

        return dump(self.to_wire(now))

    def to_wire(self, now: datetime | None = None) -> wire_jobs.Job:
        """The job as the API answers it; a running job's duration and rate are as of ``now``."""
        from shared.wire import jobs as wire

        duration, current = self.duration(now), self.current_step
        return wire.Job(
            jobId=self.job_id,
            operation=self.operation,
            status=self.status,
            instance=self.instance,
            createdTime=self.created,
            startTime=self.start_time,
            endTime=self.end_time,
            durationSeconds=duration,
            bytes=self.bytes,
            progress=self.progress,
            retentionTag=self.retention_tag,
            ruleName=self.rule_name,
            recoveryPointId=self.recovery_point_id,
            throughputBytesPerSecond=round(self.bytes / duration) if duration and self.bytes else None,
            steps=[wire.JobStep.model_validate(s.to_dict()) for s in self.steps],
            currentStep=current.name if current is not None else None,
            details=self.details,
            error=self.error.to_wire() if self.error else None,
            cancelRequestedTime=self.cancel_requested,
            links=wire.JobLinks.model_validate(self.links()),
        )

    def links(self) -> dict[str, str | None]:
        """API paths of this job, its instance and its recovery point (None until there is one); a
        validation for backup's also its grant script and role assignment template (its instance
        is the one it would be, which does not exist unless it was configured since)."""
        instance = f"/api/backupInstances/{quote(self.instance, safe='')}"
        point = self.recovery_point_id
        links = {
            "self": f"/api/backupJobs/{self.job_id}",
            "instance": instance,
            "recoveryPoint": f"{instance}/recoveryPoints/{quote(point, safe='')}" if point else None,
        }
        if self.operation is Operation.VALIDATE and isinstance(self.details.get(CANDIDATE_DETAIL), dict):
            links["grantScript"] = f"/api/backupJobs/{self.job_id}/grantScript"
            links["roleAssignmentTemplate"] = f"/api/backupJobs/{self.job_id}/roleAssignmentTemplate"
        return links

    def _data(self) -> dict[str, Any]:
        return {
            "operation": self.operation.value,
            "instance": self.instance,
            "instanceKey": layout.row_key(self.instance),
            "status": self.status.value,
            "created": self.created,
            "startTime": self.start_time,
            "endTime": self.end_time,
            "bytes": self.bytes,
            "progress": self.progress,
            "retentionTag": self.retention_tag,
            "ruleName": self.rule_name,
            "recoveryPointId": self.recovery_point_id,
            "error": json.dumps(self.error.to_dict()) if self.error else None,
            "steps": json.dumps([s.to_dict() for s in self.steps]),
            "details": json.dumps(self.details),
            "cancelRequested": self.cancel_requested,
        }

    @classmethod
    def _from(cls, entity: Entity) -> Job:
        err = json.loads(entity["error"]) if entity.get("error") else None
        return cls(
            job_id=entity.row_key,
            operation=Operation(entity["operation"]),
            instance=str(entity["instance"]),
            status=JobStatus(entity["status"]),
            created=entity["created"],
            start_time=entity.get("startTime"),
            end_time=entity.get("endTime"),
            bytes=int(entity.get("bytes", 0) or 0),
            progress=float(entity.get("progress", 0.0) or 0.0),
            retention_tag=entity.get("retentionTag"),
            rule_name=entity.get("ruleName"),
            recovery_point_id=entity.get("recoveryPointId"),
            error=JobError(err["code"], err["message"], err["recommendedAction"]) if err else None,
            steps=tuple(Step.from_dict(s) for s in json.loads(entity.get("steps") or "[]")),
            details=json.loads(entity.get("details") or "{}"),
            etag=entity.etag,
            cancel_requested=entity.get("cancelRequested"),
        )
