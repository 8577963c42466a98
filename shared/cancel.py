"""Cancelling a running backup or restore (``POST /api/backupJobs/{jobId}:cancel``).

The request only marks the job (``cancel_requested``, an ETag-guarded write); the worker running it
notices through the heartbeat that keeps its lock (``cancel_watch``: it re-reads the job every
``WATCH_EVERY``), stops its ``pg_dump``/``pg_restore`` at once, commits nothing (no blob, no point;
a half-restored database is dropped, an unfinished file never appears) and ends the job
``Cancelled``. A job that has not started yet (still queued, or waiting for a rehydration) is
ended ``Cancelled`` by the request itself; its worker, if a delivery comes, finds it finished.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from shared.errors import ErrorCode, PgVaultError, TransientError, UserError
from shared.jobs.model import Job, JobStatus, Operation, Step, StepStatus, end_steps
from shared.jobs.store import JobStore
from shared.stopping import WorkCancelled
from shared.storage.tables import ETagMismatch, StateStore

log = logging.getLogger(__name__)

# The operations a user may cancel: the long ones that run pg_dump or pg_restore.
CANCELLABLE = frozenset({Operation.BACKUP, Operation.RESTORE, Operation.VERIFY_RESTORE})
NOT_STARTED = "cancelled before it started"


def _cancelled(job: Job) -> WorkCancelled:
    return WorkCancelled(f"{job.operation.value.lower()} job {job.job_id} was cancelled on request")


def request_cancel(state: StateStore, job_id: str, now: datetime) -> tuple[Job, bool]:
    """Ask for job ``job_id`` to be cancelled: (the job as it is now, whether the request was taken).

    False when the job had finished already (it is returned as it ended). ``Conflict`` for an
    operation that cannot be cancelled, ``NotFound`` for an unknown job.
    """
    jobs = JobStore(state)
    for _ in range(5):
        job = jobs.get(job_id)
        if job.operation not in CANCELLABLE:
            raise UserError(
                ErrorCode.CONFLICT,
                f"job {job_id} is a {job.operation.value} job; only Backup, Restore and VerifyRestore jobs can be "
                "cancelled",
                target="jobId",
                recommended_action="Let the job finish; it ends on its own.",
            )
        if job.status.finished:
            return job, False
        if job.cancel_requested is not None:
            return job, True
        try:
            if job.start_time is None:  # no worker has started it: nothing to stop
                log.info("%s job %s instance %s cancelled before it started", job.operation, job_id, job.instance)
                finished = jobs.finish(
                    job,
                    JobStatus.CANCELLED,
                    now,
                    cancel_requested=now,
                    details={**job.details, "cancelled": NOT_STARTED},
                )
                return finished, True
            log.info("%s job %s instance %s: cancel requested", job.operation, job_id, job.instance)
            return jobs.save(job, cancel_requested=now), True
        except ETagMismatch:
            continue  # its worker wrote progress meanwhile: read again
    raise TransientError(f"job {job_id} kept changing while its cancel was requested; send the request again")


def cancel_watch(jobs: JobStore, job_id: str) -> Callable[[], PgVaultError | None]:
    """What a worker's heartbeat watches: its job's row, for a cancel request."""

    def look() -> PgVaultError | None:
        job = jobs.get(job_id)
        if job.cancel_requested is not None or job.status is JobStatus.CANCELLED:
            return _cancelled(job)
        return None

    return look


def job_changed(jobs: JobStore, job: Job) -> PgVaultError:
    """Why a worker's ETag-guarded write of ``job`` failed: a cancel, or another worker took the job over."""
    try:
        fresh = jobs.get(job.job_id)
    except UserError:
        fresh = None
    if fresh is not None and (fresh.cancel_requested is not None or fresh.status is JobStatus.CANCELLED):
        return _cancelled(fresh)
    return TransientError(f"job {job.job_id} was taken over by another worker")


def end_cancelled(jobs: JobStore, job_id: str, now: datetime, steps: Sequence[Step], why: str) -> Job:
    """Finish job ``job_id`` as Cancelled, its running steps too; a job finished already stays as it is."""
    for _ in range(5):
        job = jobs.get(job_id)
        if job.status.finished:
            return job
        try:
            log.info("%s job %s instance %s cancelled: %s", job.operation, job_id, job.instance, why)
            return jobs.finish(
                job,
                JobStatus.CANCELLED,
                now,
                steps=end_steps(steps or job.steps, StepStatus.CANCELLED, now),
                details={**job.details, "cancelled": why},
            )
        except ETagMismatch:
            continue
    return jobs.get(job_id)
