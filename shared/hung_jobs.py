"""No job hangs: jobs whose queue message was poisoned or lost end Failed, and free their instance.

A job is run by the deliveries of its queue message. Two ways leave it ``InProgress`` forever:

- the message failed every try (storage down while the last try tried to fail the job) and the
  host moved it to ``<queue>-poison``: a trigger on each poison queue calls ``fail_poisoned``;
- the message is gone (deleted, expired, never sent, a queue lost): nobody will ever run the job.
  A timer calls ``HungJobs.sweep_on_time`` (at the storage service's time): a job of a queue-run
  operation that holds no live lock and has not been written for ``longest_delivery`` is re-queued
  once (a duplicate message changes nothing: the job's lock and status turn a second delivery
  away), and failed when it stays silent as long again after that. (A backup whose try recorded
  its point is completed with it instead, by the runner's own rule.)
  A job a request started (an on-demand backup, a restore, a verification) hands its message to
  the host's output binding, which sends it after the handler returned; when that send fails the
  request answers 500 and the job has no message. Such a job, never taken by a worker, is
  re-queued once after ``NEVER_TAKEN`` already, not after ``longest_delivery``: it runs minutes
  later, while an on-demand backup still counts as running (``shared.backups.QUEUED_WINDOW``), so
  no second backup of the instance starts beside it and none runs hours later.

Either way the job is failed with ``JobAbandoned`` and the reason, with its ETag; the locks it
holds are removed (each with the ETag read) and, for a validation, the instance's readiness says
Failed. Jobs the retention sweep runs itself (archive moves, deletions) and rehydrations (the
rehydration timer watches those) are not queue-run and are left alone.

Cost: the sweep reads the job day partitions from a marker (the oldest day that may still hold an
unfinished job) to today with one range query filtered on ``status``, plus the lock partition.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.clock_skew import ClockSkewed, service_now
from shared.errors import ErrorCode, UserError
from shared.jobs import Job, JobStatus, JobStore, Operation, partition_for
from shared.jobs.messages import JobMessage
from shared.locks import STALE_AFTER, InstanceLocks
from shared.recovery_points import RecoveryPointStore, recovery_point_id
from shared.storage import layout
from shared.storage.queues import QueueSender
from shared.storage.tables import Entity, ETagMismatch, StateStore
from shared.wire import iso_z

log = logging.getLogger(__name__)

# host.json extensions.queues (tests/unit/test_hung_jobs.py keeps these equal to the file's values).
MAX_DEQUEUE_COUNT = 5  # maxDequeueCount: tries before the host moves a message to <queue>-poison
VISIBILITY_TIMEOUT = timedelta(seconds=10)  # visibilityTimeout: a failed try's message is back after this
MAX_POLLING_INTERVAL = timedelta(seconds=2)  # maxPollingInterval: a visible message waits at most this
# The scheduler's latest slot is at most a week back (weekly schedules only, docs/rules.md C1): a job may be
# created in a day partition up to this far in the past, so the scan never starts later than this.
SLOT_LAG = timedelta(days=8)
# Every 5 minutes (NCRONTAB, UTC): a lost job is noticed within longest_delivery + 5 minutes.
SCHEDULE = "0 */5 * * * *"
# A job a request started that no worker took this long after it was recorded lost its message (the
# host's output binding failed after the handler returned): it is sent again once. With the sweep
# every 5 minutes that happens 5-10 minutes after the request, before an on-demand backup stops
# counting as running (QUEUED_WINDOW, 15 minutes; tests/unit/test_function_app.py keeps the order).
NEVER_TAKEN = timedelta(minutes=5)
# A try under functionTimeout -1 counts as long as one under the host's default (host.json, settings.py).
UNBOUNDED_TRY = timedelta(minutes=30)
POISON_SUFFIX = layout.POISON_SUFFIX

# The operations run by queue messages, and their queues.
QUEUE_OF: dict[Operation, str] = {
    Operation.VALIDATE: layout.VALIDATE_QUEUE,
    Operation.BACKUP: layout.BACKUP_QUEUE,
    Operation.RESTORE: layout.RESTORE_QUEUE,
    Operation.VERIFY_RESTORE: layout.RESTORE_QUEUE,
}
_MARKER = "scan-from"


def longest_delivery(function_timeout: timedelta | None) -> timedelta:
    """The longest a job's message can go on being delivered after the job's last write.

    Each of host.json's ``maxDequeueCount`` tries may run up to the function timeout (unbounded:
    the host's default, 30 min, since a try that runs longer holds a live lock), its lock then
    looks abandoned after ``STALE_AFTER``, and the message is visible again after
    ``visibilityTimeout`` and picked up within ``maxPollingInterval``. 5 x (30 min + 2 min + 12 s)
    = 2 h 41 min with the defaults.
    """
    per_try = function_timeout or UNBOUNDED_TRY
    return MAX_DEQUEUE_COUNT * (per_try + STALE_AFTER + VISIBILITY_TIMEOUT + MAX_POLLING_INTERVAL)


def _sent_by_its_request(job: Job) -> bool:
    """A job whose message its HTTP request handed to the host's output binding, and no worker took yet."""
    if job.start_time is not None:
        return False
    if job.operation in (Operation.RESTORE, Operation.VERIFY_RESTORE):
        return True
    return job.operation is Operation.BACKUP and job.details.get("trigger") == "OnDemand"


def abandoned(job: Job, why: str) -> UserError:
    """The error an abandoned job is failed with."""
    return UserError(ErrorCode.JOB_ABANDONED, f"{job.operation.value.lower()} job {job.job_id}: {why}")


@dataclass
class HungReport:
    """What one sweep did."""

    requeued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    waiting: int = 0
    """Unfinished jobs left alone: running (live lock), recently written, or waiting for a rehydration."""
    refused: str | None = None
    """Why the sweep did nothing (the host's clock is off the storage service's)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "requeued": list(self.requeued),
            "failed": list(self.failed),
            "waiting": self.waiting,
            **({"refused": self.refused} if self.refused else {}),
        }


class HungJobs:
    """Fails (or re-queues once) the jobs no queue message will ever finish."""

    def __init__(
        self, state: StateStore, queues: QueueSender | None = None, *, function_timeout: timedelta | None = None
    ) -> None:
        self._state = state
        self._queues = queues
        self._jobs = JobStore(state)
        self._locks = InstanceLocks(state)
        self.longest_delivery = longest_delivery(function_timeout)

    # --- the poison queues ----------------------------------------------------------------------

    def fail_poisoned(self, job_id: str, queue: str, now: datetime) -> Job | None:
        """Fail the job a message moved to ``queue``'s poison queue names; free its instance.

        None when no such job exists (the message was never valid). A finished job stays as it is;
        locks it left are removed all the same.
        """
        try:
            job = self._jobs.get(job_id)
        except UserError:
            log.error("poison message of %s names job %s, which does not exist; dropped", queue, job_id)
            return None
        why = (
            f"its message was retried {MAX_DEQUEUE_COUNT} times (host.json maxDequeueCount) and moved to the "
            f"poison queue {queue}{POISON_SUFFIX}"
        )
        return self._abandon(job, why, now)

    # --- the timer --------------------------------------------------------------------------------

    def sweep_on_time(self, host_now: datetime) -> HungReport:
        """The timer's sweep, at the storage service's time; nothing when this host's clock is off it."""
        try:
            now = service_now(self._state, host_now)
        except ClockSkewed as exc:
            log.error("hung jobs sweep refused: %s", exc.message)
            return HungReport(refused=exc.message)
        return self.sweep(now)

    def sweep(self, now: datetime) -> HungReport:
        """Re-queue once, then fail, every unfinished queue-run job silent for ``longest_delivery`` at ``now``."""
        report = HungReport()
        marker = self._state.get(layout.HOUSEKEEPING, _MARKER)
        start = str(marker["partition"]) if marker is not None else layout.JOBS_PREFIX
        live = self._locks.live(now)
        oldest_left: str | None = None
        for entity in self._state.query(
            "PartitionKey ge @lo and PartitionKey le @hi and status eq @status",
            {"lo": start, "hi": partition_for(now), "status": JobStatus.IN_PROGRESS.value},
        ):
            if not entity.partition_key.startswith(layout.JOBS_PREFIX):
                continue
            job = Job._from(entity)
            if not self._judge(job, entity, now, live, report):
                report.waiting += 1
                oldest_left = min(oldest_left or entity.partition_key, entity.partition_key)
        floor = partition_for(now - SLOT_LAG)
        resume_at = min(oldest_left or floor, floor)
        if marker is None or marker["partition"] != resume_at:  # an idle vault is not written to
            self._state.upsert(layout.HOUSEKEEPING, _MARKER, {"partition": resume_at})
        if report.requeued or report.failed:
            log.warning("hung jobs sweep at %s: %s", now.isoformat(), report.to_dict())
        return report

    def _judge(self, job: Job, entity: Entity, now: datetime, live: set[str], report: HungReport) -> bool:
        """Act on one unfinished job; False when it is left waiting."""
        if job.operation not in QUEUE_OF or job.job_id in live or self._waits_for_rehydration(job):
            return False
        if self._waits_in_line(job):
            return False
        silent_since = max(t for t in (entity.timestamp, job.created, self._released_at(job)) if t is not None)
        first_requeue = "requeued" not in job.details
        limit = NEVER_TAKEN if first_requeue and _sent_by_its_request(job) else self.longest_delivery
        if now - silent_since <= limit:
            return False
        try:
            if first_requeue and self._queues is not None:
                self._requeue(job, now)
                report.requeued.append(job.job_id)
                return False
            self._abandon(
                job,
                f"no try of it ran for {now - silent_since} (longer than a message can be delivered, "
                f"{self.longest_delivery}), also after it was queued again: its queue message was lost",
                now,
            )
        except ETagMismatch:
            return False  # a worker wrote it meanwhile: alive after all
        report.failed.append(job.job_id)
        return True

    def _requeue(self, job: Job, now: datetime) -> None:
        """Record the re-queue on the job (first: a crash after it leaves a job the next sweep fails), then send."""
        assert self._queues is not None
        self._jobs.save(job, details={**job.details, "requeued": {"at": iso_z(now), "why": "message lost"}})
        message = JobMessage.of(QUEUE_OF[job.operation], job)
        self._queues.send(message.queue, message.payload())
        log.warning("%s job %s instance %s: no try ran; queued again once", job.operation, job.job_id, job.instance)

    def _waits_for_rehydration(self, job: Job) -> bool:
        """A restore of an archived point waits (hours) for its rehydration job, which the rehydration timer watches."""
        rehydration = job.details.get("rehydrationJobId")
        if not rehydration:
            return False
        try:
            return not self._jobs.get(str(rehydration)).status.finished
        except UserError:
            return False

    def _waits_in_line(self, job: Job) -> bool:
        """A backup waiting for a seat (``shared.fanout``) has no message until the dispatcher sends one."""
        waiting = job.details.get("waiting")
        key = waiting.get("backlogKey") if isinstance(waiting, dict) else None
        return bool(key) and self._state.get(layout.BACKLOG, str(key)) is not None

    def _released_at(self, job: Job) -> datetime | None:
        """When a restore waiting for a rehydration was released (its message sent): the rehydration's end."""
        rehydration = job.details.get("rehydrationJobId")
        if not rehydration:
            return None
        with contextlib.suppress(UserError):
            return self._jobs.get(str(rehydration)).end_time
        return None

    # --- failing ------------------------------------------------------------------------------------

    def _abandon(self, job: Job, why: str, now: datetime) -> Job:
        """Remove the locks ``job`` holds, then fail it (ETag-guarded, re-read on a race).

        Locks first: whoever sees the job Failed finds its instance free at once. No worker runs
        it (its message is poisoned, or it holds no live lock); if the failing write is lost, the
        job holds no lock and the hung-jobs timer finds it again.
        """
        removed = self._locks.break_for(job.job_id)
        if removed:
            log.info("job %s: %d lock(s) it held removed", job.job_id, removed)
        for _ in range(3):
            if job.status.finished:
                break
            try:
                job = self._fail(job, abandoned(job, why), now)
                log.error(
                    "%s job %s instance %s abandoned (%s): %s", job.operation, job.job_id, job.instance, job.status, why
                )
                break
            except ETagMismatch:
                job = self._jobs.get(job.job_id)
        return job

    def _fail(self, job: Job, error: UserError, now: datetime) -> Job:
        if job.operation is Operation.BACKUP:
            from shared.backup_runner import finish_with_point  # the runner's own rule, not a copy of it

            point = RecoveryPointStore(self._state).find(job.instance, recovery_point_id(job.job_id))
            if point is not None:  # a try recorded its point, then could not finish the job: it did its work
                return finish_with_point(self._jobs, job, point, lambda: now)
        if job.operation is Operation.VALIDATE:
            from shared.validation import fail_validation  # validation needs the PostgreSQL tools; only here

            return fail_validation(self._state, job, error, now)
        return self._jobs.fail(job, error, now)
