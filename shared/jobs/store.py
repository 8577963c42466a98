"""The job store: jobs in the state table, with transitions checked and writes ETag-guarded.

Every write is guarded by the ETag read before it, so a message delivered twice or two workers on
one job change nothing twice. The 7-day list and the pages of ``GET /backupJobs`` read the day
partitions with one filter, built in one place (``JobFilter.where``); one instance's history reads
its index partition (a summary row per job, written when the job is created, or for a scheduled
backup waiting in line when it is sent, and when it finishes).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shared.errors import ErrorCode, TransientError, UserError
from shared.jobs.model import (
    IllegalTransition,
    Job,
    JobError,
    JobStatus,
    Operation,
    Step,
    StepStatus,
    check_transition,
    end_steps,
    job_time,
    partition_for,
)
from shared.storage import layout
from shared.storage.limits import MAX_TABLE_BATCH_ENTITIES
from shared.storage.tables import Entity, EntityExists, ETagMismatch, StateStore

if TYPE_CHECKING:
    from shared.jobs.paging import Cursor, JobPage, JobQuery

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_LIST_DAYS = 90  # the jobs list looks this far back at most
MAX_PAGE_SIZE = 1000  # Azure Table Storage's own page size: one request per page at most


@dataclass(frozen=True)
class JobFilter:
    """The filters of a jobs list: one instance, status, operation (each optional)."""

    instance: str | None = None
    status: JobStatus | None = None
    operation: Operation | None = None

    def where(self, *clauses: str) -> tuple[str, dict[str, Any]]:
        """The table filter of one day partition (``@pk``) with these filters and ``clauses``, and its
        parameters (``pk`` and the clauses' own parameters are the caller's to add)."""
        parts = ["PartitionKey eq @pk", *clauses]
        params: dict[str, Any] = {}
        if self.instance is not None:
            parts.append("instanceKey eq @instance")
            params["instance"] = layout.row_key(self.instance)
        if self.status is not None:
            parts.append("status eq @status")
            params["status"] = self.status.value
        if self.operation is not None:
            parts.append("operation eq @operation")
            params["operation"] = self.operation.value
        return " and ".join(parts), params


# Finished backups that count as an instance's last backup: a Cancelled one (a skipped slot) never ran.
LAST_BACKUP_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_WARNINGS, JobStatus.FAILED})


def _summary(job: Job) -> dict[str, Any]:
    """A job's row in its instance's index: the job without its steps and details."""
    return {k: v for k, v in job._data().items() if k not in ("steps", "details")}


class JobStore:
    """Jobs in the state table, with transitions checked and writes ETag-guarded."""

    def __init__(self, state: StateStore) -> None:
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

    def create_many(
        self,
        jobs: Sequence[Job],
        run: Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]] | None = None,
        *,
        defer: Callable[[Job], bool] | None = None,
    ) -> list[tuple[Job, bool]]:
        """``create`` for many jobs: the rows of one day partition inserted 100 to a transaction, then
        each one's index summary. ``run(f, items)`` is ``[f(i) for i in items]``, or the same done a
        few at a time (the transactions, then the summaries: each job's row before its summary). A
        transaction refused (one of its jobs exists: a repeated tick) falls back to ``create`` per job.
        ``defer``: jobs whose summary is left to whoever moves them next (``summarise``, or ``finish``)."""
        each = run or (lambda f, items: [f(i) for i in items])
        chunks: list[tuple[str, list[Job]]] = []
        by_day: dict[str, list[Job]] = {}
        for job in jobs:
            by_day.setdefault(partition_for(job_time(job.job_id)), []).append(job)
        for pk, group in by_day.items():
            chunks.extend(
                (pk, group[start : start + MAX_TABLE_BATCH_ENTITIES])
                for start in range(0, len(group), MAX_TABLE_BATCH_ENTITIES)
            )

        def insert(chunk: tuple[str, list[Job]]) -> list[tuple[Job, bool, bool]]:
            """(job, new, summary still to write) for each job of the chunk."""
            pk, group = chunk
            if self._state.insert_batch(pk, [(j.job_id, j._data()) for j in group]):
                return [(j, True, True) for j in group]
            return [(*self.create(j), False) for j in group]  # create writes the summary itself

        results: dict[str, tuple[Job, bool]] = {}
        fresh: list[Job] = []
        for outcome in each(insert, chunks):
            for job, new, pending in outcome:
                results[job.job_id] = (job, new)
                if pending and (defer is None or not defer(job)):
                    fresh.append(job)
        each(self._index, fresh)
        return [results[j.job_id] for j in jobs]

    def summarise(self, job_id: str) -> None:
        """Write job ``job_id``'s summary in its instance's index if it has none (``create_many`` left
        it to the caller: a scheduled backup waiting in line gets it when it is sent)."""
        self._index(self.get(job_id))

    def _index(self, job: Job) -> None:
        """The job's row in its instance's index: a summary (no steps or details), so an instance's
        history is one partition query. Written when the job is created and when it finishes; the
        job's own row is the truth in between (progress is not copied). An unfinished summary never
        replaces one already there (it may be a finished one). When storage fails between the job's
        write and this one, ``history`` repairs the summary from the job's row."""
        pk = layout.instance_jobs(job.instance)
        if job.status.finished:
            self._state.upsert(pk, job.job_id, _summary(job))
            if job.operation is Operation.BACKUP and job.status in LAST_BACKUP_STATUSES:
                self._note_last_backup(job)
        else:
            with contextlib.suppress(EntityExists):
                self._state.insert(pk, job.job_id, _summary(job))

    def _note_last_backup(self, job: Job) -> None:
        """Keep ``job`` as its instance's last backup (``layout.LAST_BACKUP``: the instances list reads one
        partition, not every instance's history) unless a later one is there; ETag-guarded."""
        key, summary = layout.row_key(job.instance), {**_summary(job), "jobId": job.job_id}
        ended = job.end_time or job.created
        for _ in range(3):
            current = self._state.get(layout.LAST_BACKUP, key)
            try:
                if current is None:
                    self._state.insert(layout.LAST_BACKUP, key, summary)
                elif current.get("operation") is None or (current.get("endTime") or current["created"]) <= ended:
                    self._state.update(current, summary)
                return
            except (EntityExists, ETagMismatch):
                continue

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
        check_transition(job.job_id, job.status, new.status)
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
        # Where every job ends: a Failed or CompletedWithWarnings job raises its alert (once per job).
        from shared.alerts.events import raise_for_job  # alerts build on jobs

        raise_for_job(self._state, finished, now)
        return finished

    def for_delivery(self, job_id: str, *, last_try: bool) -> Job | None:
        """The job a queue message names, for a worker to run.

        Every sender records the job before its message goes out; a job not there all the same (a
        message naming a job whose record was lost) is a ``TransientError`` (the queue retries)
        until the last try, when the message is dropped (None).
        A finished job is returned as it is: the worker then has nothing to do.
        """
        try:
            job = self.get(job_id)
        except UserError as exc:
            if not last_try:
                raise TransientError(f"job {job_id} is not recorded yet") from exc
            log.warning("job %s was never recorded; its message is dropped", job_id)
            return None
        if job.status.finished:
            log.info("%s job %s already %s; nothing to do", job.operation, job_id, job.status)
        return job

    def fail(self, job: Job, error: UserError, now: datetime, steps: Sequence[Step] = ()) -> Job:
        """Finish ``job`` as Failed with ``error``, its running steps Failed (a finished job stays).

        ``steps`` are the steps as the failing worker knows them; without, the job's own.
        """
        if job.status.finished:
            return job
        log.info("%s job %s instance %s failed: %s", job.operation, job.job_id, job.instance, error.code)
        ended = end_steps(steps or job.steps, StepStatus.FAILED, now)
        return self.finish(job, JobStatus.FAILED, now, error=JobError.from_user_error(error), steps=ended)

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
        where, params = JobFilter(instance, status, operation).where()
        since = now - timedelta(days=days)
        day = now.astimezone(UTC).date()
        while day >= since.date():
            for entity in self._state.query(where, {**params, "pk": f"{layout.JOBS_PREFIX}{day:%Y%m%d}"}):
                job = Job._from(entity)
                if job.created >= since:
                    yield job
            day -= timedelta(days=1)

    def history(self, instance: str) -> Iterator[Job]:
        """Every job of one instance, newest first, as summaries (steps and details left out).

        One partition query whatever the table holds; a running job shows its state at start. A
        summary that still says InProgress is checked against its job's row (one read each), and
        repaired when the job has finished since: the summary's write was lost to a storage failure.
        """
        for entry in self._state.partition(layout.instance_jobs(instance)):
            summary = Job._from(entry)
            yield self._repaired(entry, summary) if not summary.status.finished else summary

    def _repaired(self, entry: Entity, summary: Job) -> Job:
        """The truth about an unfinished summary: its job's row, written back over the summary
        (guarded by the summary's ETag: a writer that got there first wrote the same truth)."""
        try:
            job = self.get(summary.job_id)
        except UserError:
            return summary  # its create died before the job's row: nothing truer to show
        if not job.status.finished:
            return summary
        log.warning("job %s: its summary said %s, its row %s; summary repaired", job.job_id, summary.status, job.status)
        with contextlib.suppress(ETagMismatch):
            self._state.update(entry, _summary(job))
        return replace(job, steps=(), details={})

    def page(self, query: JobQuery, *, top: int = DEFAULT_PAGE_SIZE, cursor: Cursor | None = None) -> JobPage:
        """One page of ``query`` (see ``shared.jobs.paging.list_page``): up to ``top`` jobs and where
        the next page starts."""
        from shared.jobs.paging import list_page  # paging builds on this module

        return list_page(self._state, query, top=top, cursor=cursor)
