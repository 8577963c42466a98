"""The one job runner: the skeleton every queue-run job (backup, restore, verification, validation) shares.

``JobRunner.run`` takes one delivery of a job's message through the same steps whatever the job
does: look up the job (``for_delivery``: a finished job is left as it is), end it Cancelled if its
cancel came while it was queued, fail it if its last attempt ran into the function timeout, take
its lock (``Work.lock_key``; a second delivery of a running job is dropped, another job's lock is
retried and, on the last try, fails the job), keep the lock alive and watch for a cancel from the
heartbeat's thread, start the attempt, run the work, then classify what it raised: a cancel ends
the job Cancelled, a ``UserError`` fails it, a ``TransientError`` is noted on the job and raised for
the queue to retry (on the last try it fails the job); the lock is always released.

The work sees its job through a ``JobRun``: the latest record (every write ETag-guarded with the
one before it), and its steps, typed and immutable, each written when it starts (InProgress, with
its start time) and again when it ends, so a reader of the job sees what runs now.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from shared.cancel import NOT_STARTED, cancel_watch, end_cancelled, job_changed
from shared.errors import ErrorCode, PgVaultError, TransientError, UserError
from shared.jobs.model import Job, JobStatus, Step, StepStatus
from shared.jobs.store import JobStore
from shared.locks import Heartbeat, InstanceLocks, Lock
from shared.stopping import WorkCancelled
from shared.storage.tables import ETagMismatch, StateStore
from shared.timeouts import note_retry, overran, with_attempt_started

log = logging.getLogger(__name__)


class JobRun:
    """One attempt of one job as it runs: its latest record, its steps, its heartbeat (if it holds a lock)."""

    def __init__(
        self, jobs: JobStore, job: Job, clock: Callable[[], datetime], heartbeat: Heartbeat | None = None
    ) -> None:
        self.jobs, self.job, self.clock, self.heartbeat = jobs, job, clock, heartbeat
        self.steps: tuple[Step, ...] = ()

    def check(self) -> None:
        """Raise why the work must stop (a cancel, the lock taken over), if it must."""
        if self.heartbeat is not None:
            self.heartbeat.signal.check()

    def save(self, **changes: Any) -> Job:
        """Write ``changes`` to the job (ETag-guarded with the record before).

        When someone else wrote the job meanwhile: a cancel stops the work (``WorkCancelled``); a
        worker that took the lock over stops this one (``LockLost``); anything else (a try that lost
        the lock noting its retry, a sweep's note) is read and the write made again over it.
        """
        for _ in range(5):
            try:
                self.job = self.jobs.save(self.job, **changes)
                return self.job
            except ETagMismatch as exc:
                fresh = self._changed(exc)
            details = changes.get("details")
            if isinstance(details, dict):  # what the other writer added stays
                changes = {**changes, "details": {**fresh.details, **details}}
            self.job = fresh
        raise TransientError(f"job {self.job.job_id} kept changing under its worker")

    def _changed(self, exc: ETagMismatch) -> Job:
        """The job as another writer left it, if this work may go on; else why it must stop."""
        reason = job_changed(self.jobs, self.job)
        if isinstance(reason, WorkCancelled) or self.heartbeat is None:
            raise reason from exc
        self.heartbeat.confirm()  # LockLost when another worker holds the job's lock now
        fresh = self.jobs.get(self.job.job_id)
        if fresh.status.finished:
            raise reason from exc
        return fresh

    def start(self) -> Job:
        """Start this attempt: the job's start time (kept from an earlier try), no steps, the attempt recorded."""
        now = self.clock()
        self.steps = ()
        return self.save(start_time=self.job.start_time or now, steps=(), details=with_attempt_started(self.job, now))

    def begin(self, name: str, **changes: Any) -> None:
        """Start step ``name``: written at once, InProgress with its start time (and ``changes`` with it)."""
        self._write_steps((*self.steps, Step(name, StepStatus.IN_PROGRESS, self.clock())), changes)

    def done(self, *, warnings: tuple[str, ...] = (), **changes: Any) -> None:
        """End the running step Completed (with its ``warnings``), written at once."""
        now = self.clock()
        steps = tuple(
            replace(s.ended(StepStatus.COMPLETED, now), warnings=warnings or s.warnings) if s.running else s
            for s in self.steps
        )
        self._write_steps(steps, changes)

    def _write_steps(self, steps: tuple[Step, ...], changes: dict[str, Any]) -> None:
        """Write ``steps`` (and ``changes``); they are this run's steps once written, not before (a
        step whose end could not be written did not end as it would have said)."""
        self.save(steps=steps, **changes)
        self.steps = steps

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        """``begin(name)``, the block, ``done()`` (a block that raises leaves the step for the runner to end)."""
        self.begin(name)
        yield
        self.done()

    def progress(self, done: int, total: int) -> None:
        """Record ``done`` of ``total`` bytes (stopping first if the work must stop)."""
        self.check()
        self.save(bytes=done, progress=min(0.99, done / max(total, 1)))

    def finish(self, status: JobStatus, **changes: Any) -> Job:
        """End the job with ``status`` and its steps as they are now."""
        self.job = self.jobs.finish(self.job, status, self.clock(), steps=self.steps, **changes)
        return self.job


class Work:
    """What one kind of job does under the runner. Override what differs; the defaults hold no lock."""

    kind = "job"
    """For the log: backup, restore, validation."""

    def lock_key(self, job: Job) -> str | None:
        """The lock the job runs under (one job per key at a time); None: no lock, no heartbeat."""
        return None

    def ready(self, run: JobRun) -> Job | None:
        """Before the attempt starts (under the lock): None to go on, or the job to return as it is."""
        return None

    def __call__(self, run: JobRun) -> Job:
        """Do the job's work and finish it (``run.finish``)."""
        raise NotImplementedError

    def translate(self, exc: Exception, run: JobRun) -> PgVaultError | None:
        """What a foreign exception of the work means (a driver's error): None lets it through."""
        return None

    def busy(self, job: Job) -> UserError:
        """The error that fails ``job`` when its lock was taken by another job during every try."""
        return UserError(
            ErrorCode.MAX_CONCURRENT_OPERATION_LIMIT_REACHED,
            f"another operation on {job.instance} ran during every try of this {self.kind}",
        )

    def fail(self, jobs: JobStore, job: Job, error: UserError, steps: tuple[Step, ...], now: datetime) -> Job:
        """Fail ``job`` with ``error`` (its running ``steps`` Failed)."""
        return jobs.fail(job, error, now, steps)


class JobRunner:
    """Runs one delivery of a job's message through ``Work`` (see the module's doc)."""

    def __init__(
        self,
        state: StateStore,
        clock: Callable[[], datetime],
        *,
        function_timeout: timedelta | None = None,
        jobs: JobStore | None = None,
        locks: InstanceLocks | None = None,
    ) -> None:
        self.jobs = jobs or JobStore(state)
        self.locks = locks or InstanceLocks(state)
        self._clock = clock
        self._function_timeout = function_timeout

    def run(self, job_id: str, work: Work, *, last_try: bool, attempt: int = 1) -> Job | None:
        """Run job ``job_id``'s delivery number ``attempt``; ``TransientError`` for the queue to retry.

        None when the job was never recorded (its message outlived a failed request).
        """
        job = self.jobs.for_delivery(job_id, last_try=last_try)
        if job is None or job.status.finished:
            return job
        return self.run_job(job, work, last_try=last_try, attempt=attempt)

    def run_job(self, job: Job, work: Work, *, last_try: bool, attempt: int = 1) -> Job:
        """``run`` for an unfinished job already read (by a service that looked at it first)."""
        job_id = job.job_id
        if job.cancel_requested is not None:  # cancelled while queued: never runs
            return end_cancelled(self.jobs, job_id, self._clock(), (), NOT_STARTED)
        timed_out = overran(job, self._clock(), self._function_timeout)
        if timed_out is not None:  # the host stopped the last attempt: never retried into the same wall
            return work.fail(self.jobs, job, timed_out, (), self._clock())
        key = work.lock_key(job)
        lock = None if key is None else self.locks.acquire(key, job_id, self._clock(), attempt=attempt)
        if key is not None and lock is None:
            return self._busy(job, key, work, last_try)
        return self._attempt(job, work, lock, last_try=last_try, attempt=attempt)

    def _attempt(self, job: Job, work: Work, lock: Lock | None, *, last_try: bool, attempt: int) -> Job:
        """Run the work under the lock's heartbeat; classify what it raised; release the lock."""
        heartbeat = None
        if lock is not None:
            heartbeat = Heartbeat(self.locks, lock, self._clock, watch=cancel_watch(self.jobs, job.job_id))
        run = JobRun(self.jobs, job, self._clock, heartbeat)
        try:
            with heartbeat or contextlib.nullcontext():
                return self._work(run, work)
        except WorkCancelled as exc:
            return end_cancelled(self.jobs, job.job_id, self._clock(), run.steps, exc.args[0])
        except UserError as exc:
            return work.fail(self.jobs, self.jobs.get(job.job_id), exc, run.steps, self._clock())
        except TransientError as exc:
            if not last_try:
                log.warning("%s job %s instance %s: %s; will retry", work.kind, job.job_id, job.instance, exc.message)
                note_retry(self.jobs, job.job_id, exc, attempt, self._clock())
                raise
            failure = UserError(exc.code, exc.message)
            return work.fail(self.jobs, self.jobs.get(job.job_id), failure, run.steps, self._clock())
        finally:
            if heartbeat is not None:
                self.locks.release(heartbeat.lock)  # the latest: the first ETag is stale after a renewal

    def _work(self, run: JobRun, work: Work) -> Job:
        try:
            waiting = work.ready(run)
            if waiting is not None:
                return waiting
            run.start()
            return work(run)
        except ETagMismatch as exc:
            raise job_changed(self.jobs, run.job) from exc
        except PgVaultError:
            raise
        except Exception as exc:
            translated = work.translate(exc, run)
            if translated is None:
                raise
            raise translated from exc

    def _busy(self, job: Job, key: str, work: Work, last_try: bool) -> Job:
        """The lock is taken: by this job elsewhere (drop this delivery) or by another job."""
        holder = self.locks.holder(key)
        if holder is not None and holder.job_id == job.job_id:
            log.info("%s job %s runs elsewhere; this delivery is dropped", work.kind, job.job_id)
            return job
        if not last_try:
            raise TransientError(f"another operation holds the lock of this {work.kind}; retrying later")
        return work.fail(self.jobs, job, work.busy(job), (), self._clock())
