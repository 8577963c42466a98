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

import base64
import contextlib
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
from urllib.parse import quote

from shared.errors import ErrorCode, TransientError, UserError
from shared.storage import layout
from shared.storage.tables import Entity, EntityExists, ETagMismatch, StateTable

log = logging.getLogger(__name__)

# Inverted milliseconds count down from here, so later jobs sort first (good until year 5138).
_MAX_MS = 0xFFFFFFFFFFFF
_JOB_ID = re.compile(r"^[0-9a-f]{12}-[0-9a-f]{20}$")
DEFAULT_PAGE_SIZE = 100
MAX_LIST_DAYS = 90  # the jobs list looks this far back at most
_CLOCK_SKEW = timedelta(minutes=5)  # between the instances that wrote a token and read it
MAX_PAGE_SIZE = 1000  # Azure Table Storage's own page size: one request per page at most


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
    cancel_requested: datetime | None = None
    """When a user asked to cancel the job (``:cancel``); its worker stops and ends it Cancelled."""

    def to_dict(self) -> dict[str, Any]:
        """The public job shape (README, API)."""
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
            "throughputBytesPerSecond": round(self.bytes / duration) if duration and self.bytes else None,
            "steps": list(self.steps),
            "details": self.details,
            "error": self.error.to_dict() if self.error else None,
            "cancelRequestedTime": _iso(self.cancel_requested),
            "links": self.links(),
        }

    def links(self) -> dict[str, str | None]:
        """API paths of this job, its instance and its recovery point (None until there is one)."""
        instance = f"/api/backupInstances/{quote(self.instance, safe='')}"
        point = self.recovery_point_id
        return {
            "self": f"/api/backupJobs/{self.job_id}",
            "instance": instance,
            "recoveryPoint": f"{instance}/recoveryPoints/{quote(point, safe='')}" if point else None,
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
            steps=tuple(json.loads(entity.get("steps") or "[]")),
            details=json.loads(entity.get("details") or "{}"),
            etag=entity.etag,
            cancel_requested=entity.get("cancelRequested"),
        )


def _summary(job: Job) -> dict[str, Any]:
    """A job's row in its instance's index: the job without its steps and details."""
    return {k: v for k, v in job._data().items() if k not in ("steps", "details")}


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
        job's own row is the truth in between (progress is not copied). An unfinished summary never
        replaces one already there (it may be a finished one). When storage fails between the job's
        write and this one, ``history`` repairs the summary from the job's row."""
        pk = layout.instance_jobs(job.instance)
        if job.status.finished:
            self._state.upsert(pk, job.job_id, _summary(job))
        else:
            with contextlib.suppress(EntityExists):
                self._state.insert(pk, job.job_id, _summary(job))

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

    def for_delivery(self, job_id: str, *, last_try: bool) -> Job | None:
        """The job a queue message names, for a worker to run.

        The message is sent just before its job is recorded, so a job not there yet is a
        ``TransientError`` (the queue retries) until the last try, when the message is dropped (None).
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

    def fail(self, job: Job, error: UserError, now: datetime, steps: list[dict[str, Any]]) -> Job:
        """Finish ``job`` as Failed with ``error``, marking its running steps Failed (a finished job stays)."""
        if job.status.finished:
            return job
        for step in steps:
            if step["status"] == "InProgress":
                step["status"] = "Failed"
        log.info("%s job %s instance %s failed: %s", job.operation, job.job_id, job.instance, error.code)
        error_record = JobError.from_user_error(error)
        return self.finish(job, JobStatus.FAILED, now, error=error_record, steps=tuple(steps) or job.steps)

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
        """One page of ``query`` (see ``list_page``): up to ``top`` jobs and where the next page starts."""
        return list_page(self._state, query, top=top, cursor=cursor)


# --- Paging -------------------------------------------------------------------------------------
# A page of the jobs list ends where ``top`` jobs have been read; the continuation token says where
# the next page starts: the day partition and the last row key returned. Row keys are inverted
# creation times, so "RowKey gt <last>" resumes exactly after it, newest first, and a page costs
# one table request per partition it touches, whatever the table holds.

_TOKEN_VERSION = 1
_PARTITION = re.compile(rf"^{re.escape(layout.JOBS_PREFIX)}(\d{{8}})$")


class InvalidToken(UserError):
    """A continuation token that pgvault did not write for this query (tampered, truncated, stale)."""

    def __init__(self, target: str, why: str) -> None:
        super().__init__(
            ErrorCode.INVALID_REQUEST,
            f"{target} is not a continuation token of this query ({why})",
            target=target,
            recommended_action=f"Follow the nextLink of the previous page as it is, or start again without {target}.",
        )


@dataclass(frozen=True)
class JobQuery:
    """The jobs created in ``[since, until]``, optionally of one instance, status or operation."""

    since: datetime
    until: datetime
    instance: str | None = None
    status: JobStatus | None = None
    operation: Operation | None = None

    @classmethod
    def last_days(
        cls,
        now: datetime,
        days: int,
        *,
        instance: str | None = None,
        status: JobStatus | None = None,
        operation: Operation | None = None,
    ) -> JobQuery:
        """The jobs of the last ``days`` days before ``now``."""
        return cls(now - timedelta(days=days), now, instance, status, operation)

    def fingerprint(self) -> str:
        """What a continuation token must match: the filters (the window travels in the token)."""
        key = json.dumps(
            [
                layout.row_key(self.instance) if self.instance else None,
                self.status.value if self.status else None,
                self.operation.value if self.operation else None,
            ]
        )
        return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: a day partition, the row key after which to read, the query's window.

    The window (``since``, ``until``) is fixed by the first page so later pages neither skip nor
    repeat a job when the clock moves on between requests.
    """

    partition: str
    after: str
    since: datetime
    until: datetime
    fingerprint: str

    def encode(self) -> str:
        """An opaque, URL-safe token: base64url of the cursor and a checksum of it."""
        body = json.dumps(
            {
                "v": _TOKEN_VERSION,
                "p": self.partition,
                "r": self.after,
                "s": int(self.since.timestamp() * 1000),
                "u": int(self.until.timestamp() * 1000),
                "q": self.fingerprint,
            },
            separators=(",", ":"),
        ).encode()
        return base64.urlsafe_b64encode(body + b"." + _checksum(body).encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str, query: JobQuery, target: str = "continuationToken") -> Cursor:
        """The cursor in ``token``; ``InvalidToken`` (400 naming ``target``) unless pgvault wrote it for
        ``query``.

        The checksum catches edits and truncation; it is not a signature, so every field is also
        checked to lie inside the query the caller may ask anyway (a partition of its window, a row
        key of the job id form): a forged token can only move where a page starts.
        """
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            body, _, check = raw.rpartition(b".")
            if not body or check.decode() != _checksum(body):
                raise InvalidToken(target, "checksum does not match")
            fields = json.loads(body)
            if not isinstance(fields, dict) or fields.get("v") != _TOKEN_VERSION:
                raise InvalidToken(target, "unknown version")
            partition, after, fingerprint = fields["p"], fields["r"], fields["q"]
            since = datetime.fromtimestamp(int(fields["s"]) / 1000, UTC)
            until = datetime.fromtimestamp(int(fields["u"]) / 1000, UTC)
        except InvalidToken:
            raise
        except (ValueError, KeyError, TypeError, OverflowError, UnicodeDecodeError) as exc:
            raise InvalidToken(target, "not readable") from exc
        if fingerprint != query.fingerprint():
            raise InvalidToken(target, "it belongs to a query with other filters")
        match = _PARTITION.match(partition) if isinstance(partition, str) else None
        if match is None or not isinstance(after, str) or (after and not _JOB_ID.match(after)):
            raise InvalidToken(target, "malformed position")
        if not since <= until <= query.until + _CLOCK_SKEW or until - since > timedelta(days=MAX_LIST_DAYS):
            raise InvalidToken(target, "window not of this query")
        if not partition_for(since) <= partition <= partition_for(until):
            raise InvalidToken(target, "position outside the query's window")
        return cls(partition, after, since, until, fingerprint)


def _checksum(body: bytes) -> str:
    return hashlib.sha256(b"pgvault-jobs-page:" + body).hexdigest()[:16]


@dataclass(frozen=True)
class JobPage:
    """One page of jobs, newest first, and where the next page starts (None on the last)."""

    jobs: list[Job]
    next: Cursor | None
    requests: int = 0
    """Table queries this page took (for benchmarks and tests of cost)."""


def _day(partition: str) -> datetime:
    return datetime.strptime(partition[len(layout.JOBS_PREFIX) :], "%Y%m%d").replace(tzinfo=UTC)


def list_page(
    state: StateTable, query: JobQuery, *, top: int = DEFAULT_PAGE_SIZE, cursor: Cursor | None = None
) -> JobPage:
    """Up to ``top`` jobs of ``query``, newest first, starting at ``cursor`` (the first page without).

    Reads the day partitions from the cursor's back to the window's first day, each with one
    filtered query (more only when the service splits its answer), and stops as soon as the page is
    full: the first page of the 7-day list is usually one request.
    """
    if not 1 <= top <= MAX_PAGE_SIZE:
        raise ValueError(f"top must be 1-{MAX_PAGE_SIZE}")
    if cursor is None:
        cursor = Cursor(partition_for(query.until), "", query.since, query.until, query.fingerprint())
    clauses = ["PartitionKey eq @pk", "RowKey gt @after", "RowKey lt @before"]
    # Row keys are inverted times: a job older than ``since`` sorts after every id of
    # _inverted(since), and '.' sorts right after the '-' of an id.
    params: dict[str, Any] = {"before": f"{_inverted(cursor.since)}."}
    if query.instance is not None:
        clauses.append("instanceKey eq @instance")
        params["instance"] = layout.row_key(query.instance)
    if query.status is not None:
        clauses.append("status eq @status")
        params["status"] = query.status.value
    if query.operation is not None:
        clauses.append("operation eq @operation")
        params["operation"] = query.operation.value
    where = " and ".join(clauses)
    jobs: list[Job] = []
    requests = 0
    first_day = _day(partition_for(cursor.since))
    day, after = _day(cursor.partition), cursor.after
    while day >= first_day:
        pk = partition_for(day)
        continuation: Any = None
        while True:
            # One more than needed: it tells whether this partition goes on after the page.
            wanted = top - len(jobs) + 1
            items, continuation = state.page(
                where, {**params, "pk": pk, "after": after}, page_size=wanted, continuation=continuation
            )
            requests += 1
            for entity in items:
                if len(jobs) == top:
                    nxt = Cursor(pk, jobs[-1].job_id, cursor.since, cursor.until, cursor.fingerprint)
                    return JobPage(jobs, nxt, requests)
                jobs.append(Job._from(entity))
            if continuation is None:
                break
        day -= timedelta(days=1)
        after = ""
        if len(jobs) == top:
            more = Cursor(partition_for(day), "", cursor.since, cursor.until, cursor.fingerprint)
            return JobPage(jobs, more if day >= first_day else None, requests)
    return JobPage(jobs, None, requests)
