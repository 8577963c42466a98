"""Jobs: one record per operation (validation, backup, restore, archive move, deletion).

The status is a string Enum and every legal transition is listed in ``TRANSITIONS``: a finished
job never runs again. Every write is guarded by the ETag read before it, so a message delivered
twice or two workers on one job change nothing twice.

Layout (see ``shared.storage.layout``): a job lives in the partition of the UTC day it was
created (``jobs-YYYYMMDD``) under its id; ids begin with the inverted creation time, so a
partition reads newest first and the id alone says where the job is. The 7-day list reads seven
partitions; one instance's history reads its index partition (a summary row per job, written when
the job is created and when it finishes).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.errors import ErrorCode, UserError
from shared.storage import layout
from shared.storage.tables import Entity, EntityExists, StateTable

log = logging.getLogger(__name__)

# Inverted milliseconds count down from here, so later jobs sort first (good until year 5138).
_MAX_MS = 0xFFFFFFFFFFFF
_JOB_ID = re.compile(r"^[0-9a-f]{12}-[0-9a-f]{20}$")


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
    """Stopped before it finished, on request or because its subject went away."""

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


class Operation(StrEnum):
    """What a job does."""

    VALIDATE = "Validate"
    BACKUP = "Backup"
    RESTORE = "Restore"
    VERIFY_RESTORE = "VerifyRestore"
    REHYDRATE = "Rehydrate"
    ARCHIVE_MOVE = "ArchiveMove"
    DELETE = "Delete"


class IllegalTransition(Exception):
    """A status change that ``TRANSITIONS`` does not allow (a bug, or a late duplicate)."""


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
    return datetime.fromtimestamp((_MAX_MS - int(job_id[:12], 16)) / 1000, UTC)


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
        return {"code": self.code, "message": self.message, "recommendedAction": self.recommended_action}

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
    steps: tuple[dict[str, Any], ...] = ()
    details: dict[str, Any] = field(default_factory=dict)
    etag: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The public job shape of DESIGN.md §3."""
        duration = None
        if self.start_time is not None:
            duration = ((self.end_time or self.start_time) - self.start_time).total_seconds()
        return {
            "jobId": self.job_id,
            "operation": self.operation.value,
            "status": self.status.value,
            "instance": self.instance,
            "createdTime": _iso(self.created),
            "startTime": _iso(self.start_time),
            "endTime": _iso(self.end_time),
            "durationSeconds": duration,
            "bytes": self.bytes,
            "progress": self.progress,
            "retentionTag": self.retention_tag,
            "ruleName": self.rule_name,
            "recoveryPointId": self.recovery_point_id,
            "steps": list(self.steps),
            "details": self.details,
            "error": self.error.to_dict() if self.error else None,
        }

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
            "steps": json.dumps(list(self.steps)),
            "details": json.dumps(self.details),
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
            steps=tuple(json.loads(entity.get("steps") or "[]")),
            details=json.loads(entity.get("details") or "{}"),
            etag=entity.etag,
        )


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


class JobStore:
    """Jobs in the state table, with transitions checked and writes ETag-guarded."""

    def __init__(self, state: StateTable) -> None:
        self._state = state

    def create(self, job: Job) -> tuple[Job, bool]:
        """Store a new job; if its id exists already (a repeated request), return that one and False."""
        pk = partition_for(job_time(job.job_id))
        try:
            entity = self._state.insert(pk, job.job_id, job._data())
        except EntityExists:
            existing = self.get(job.job_id)
            self._index(existing)  # in case the first create died between its two writes
            return existing, False
        self._index(job)
        return replace(job, etag=entity.etag), True

    def _index(self, job: Job) -> None:
        """The job's row in its instance's index: a summary (no steps or details), so an instance's
        history is one partition query. Written when the job is created and when it finishes; the
        job's own row is the truth in between (progress is not copied)."""
        summary = {k: v for k, v in job._data().items() if k not in ("steps", "details")}
        self._state.upsert(layout.instance_jobs(job.instance), job.job_id, summary)

    def get(self, job_id: str) -> Job:
        """Job ``job_id``; ``NotFound`` if there is none."""
        entity = self._state.get(partition_for(job_time(job_id)), job_id)
        if entity is None:
            raise UserError(ErrorCode.NOT_FOUND, f"job {job_id!r} does not exist", target="jobId")
        return Job._from(entity)

    def exists(self, job_id: str) -> bool:
        """Whether job ``job_id`` has been recorded."""
        return self._state.get(partition_for(job_time(job_id)), job_id) is not None

    def save(self, job: Job, **changes: Any) -> Job:
        """Write ``changes`` to ``job`` if nobody changed it since it was read.

        A status change must be legal (``IllegalTransition`` otherwise); ``ETagMismatch`` when
        another writer got there first — re-read and decide again.
        """
        new = replace(job, **changes)
        if new.status is not job.status and new.status not in TRANSITIONS[job.status]:
            raise IllegalTransition(f"job {job.job_id}: {job.status} -> {new.status} is not allowed")
        entity = Entity(partition_for(job_time(job.job_id)), job.job_id, {}, job.etag)
        written = self._state.update(entity, new._data())
        return replace(new, etag=written.etag)

    def finish(
        self, job: Job, status: JobStatus, now: datetime, *, error: JobError | None = None, **changes: Any
    ) -> Job:
        """Move ``job`` to a finished ``status`` at ``now`` (with its error when it failed)."""
        if not status.finished:
            raise IllegalTransition(f"{status} is not a finished status")
        finished = self.save(job, status=status, end_time=now, error=error, **changes)
        self._index(finished)
        return finished

    def recent(
        self,
        now: datetime,
        *,
        days: int = 7,
        instance: str | None = None,
        status: JobStatus | None = None,
        operation: Operation | None = None,
    ) -> Iterator[Job]:
        """Jobs created in the last ``days`` days, newest first, filtered on the server side."""
        clauses = ["PartitionKey eq @pk"]
        params: dict[str, Any] = {}
        if instance is not None:
            clauses.append("instanceKey eq @instance")
            params["instance"] = layout.row_key(instance)
        if status is not None:
            clauses.append("status eq @status")
            params["status"] = status.value
        if operation is not None:
            clauses.append("operation eq @operation")
            params["operation"] = operation.value
        since = now - timedelta(days=days)
        day = now.astimezone(UTC).date()
        while day >= since.date():
            params["pk"] = f"{layout.JOBS_PREFIX}{day:%Y%m%d}"
            for entity in self._state.query(" and ".join(clauses), params):
                job = Job._from(entity)
                if job.created >= since:
                    yield job
            day -= timedelta(days=1)

    def history(self, instance: str) -> Iterator[Job]:
        """Every job of one instance, newest first, as summaries (steps and details left out).

        One partition query whatever the table holds; a running job shows its state at start.
        """
        return (Job._from(entry) for entry in self._state.partition(layout.instance_jobs(instance)))
