"""A job as the API shows it (``/backupJobs``, a cancel's answer)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from shared.jobs import _JOB_ID, JobStatus, Operation, StepStatus
from shared.wire.common import ErrorDetail, Response, UtcTime


class JobStep(Response):
    """One step of a job, written as it starts and when it ends."""

    name: str
    status: StepStatus
    """InProgress while it runs (written as it starts), then Completed, Failed or Cancelled."""
    startTime: UtcTime | None = None
    endTime: UtcTime | None = None
    warnings: list[str] | None = None
    """What the step found that does not fail it (for example default privileges missing)."""
    byEarlierTry: bool | None = None
    """The step was done by an earlier try of the job (a backup's point recorded before it died)."""


class JobLinks(Response):
    """API paths of the job, its instance and its recovery point (null until there is one); a validation
    for backup's also its grant script and role assignment template."""

    self: str
    instance: str
    recoveryPoint: str | None
    grantScript: str | None = None
    """A validation for backup's: its would-be instance's grant script (``?format=sql|sh|ps1``)."""
    roleAssignmentTemplate: str | None = None
    """A validation for backup's: the ARM template of the Azure roles its would-be instance needs."""


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
    """Start to end; for a running job, start to now."""
    bytes: int
    progress: float = Field(ge=0, le=1)
    retentionTag: str | None
    ruleName: str | None
    recoveryPointId: str | None
    throughputBytesPerSecond: int | None
    steps: list[JobStep]
    currentStep: str | None
    """The step running now (null when none is)."""
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
