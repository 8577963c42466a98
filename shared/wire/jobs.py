"""A job as the API shows it (``/backupJobs``, a cancel's answer)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from shared.jobs import _JOB_ID, JobStatus, Operation
from shared.wire.common import ErrorDetail, Response, UtcTime


class JobStep(Response):
    """One step of a job, written as it starts and when it ends."""

    name: str
    status: str | None = None
    """InProgress, Completed, Failed or Cancelled."""
    startTime: UtcTime | None = None
    endTime: UtcTime | None = None


class JobLinks(Response):
    """API paths of the job, its instance and its recovery point (null until there is one)."""

    self: str
    instance: str
    recoveryPoint: str | None


class Job(Response):
    """One job: steps, bytes, duration, throughput, error, links."""

    jobId: str = Field(pattern=_JOB_ID.pattern)
    operation: Operation
    status: JobStatus
    instance: str
    createdTime: UtcTime
    startTime: UtcTime | None
    endTime: UtcTime | None
    durationSeconds: float | None
    bytes: int
    progress: float = Field(ge=0, le=1)
    retentionTag: str | None
    ruleName: str | None
    recoveryPointId: str | None
    throughputBytesPerSecond: int | None
    steps: list[JobStep]
    details: dict[str, Any]
    """What the operation recorded (its trigger, the request, the checks, the warnings)."""
    error: ErrorDetail | None
    cancelRequestedTime: UtcTime | None
    """When POST .../{jobId}:cancel was accepted; the job then ends Cancelled."""
    links: JobLinks


class JobList(Response):
    """A page of jobs, newest first."""

    value: list[Job]
    nextLink: str | None = None
    """URL of the next page; absent on the last page."""
