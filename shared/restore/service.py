"""Restores: starting them (HTTP), running them (the queue worker), rehydrating (the timer).

``RestoreService.start`` / ``start_verify`` check the request completely and the target as far
as a request can (the secret reads, the user may create databases, the name is free), record a
job and queue it; an archived point gets a Rehydrate job first and its restore waits. ``run``
takes the target's lock (one restore per target at a time; a second delivery of a message, or a
second worker, changes nothing) and hands the work to ``shared.restore.work``. ``tick`` moves
rehydrations on (see ``shared.restore.rehydration``): pending copies polled, waiting restores
released, expired copies deleted.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from shared.errors import ErrorCode, PgVaultError, TransientError, UserError
from shared.instances import InstanceStore, soft_deleted_error
from shared.jobs import Job, JobError, JobStatus, Operation, new_job_id
from shared.jobs.messages import JobMessage, Started
from shared.jobs.runner import JobRun, JobRunner, Work
from shared.pg.connect import connect, server_gone
from shared.policy import DataStore
from shared.recovery_points import RecoveryPoint, RecoveryPointStore
from shared.restore.files import ExportRules, check_destination
from shared.restore.rehydration import (
    BlobProbe,
    CopyState,
    Rehydration,
    RehydrationStore,
    copies_state,
    copy_name_for,
    expiry_after,
    start_copy,
)
from shared.restore.request import RestoreRequest, TargetKind, parse_restore_request, parse_verify_request
from shared.restore.selection import resolve_selection
from shared.restore.work import (
    MAINTENANCE_DB,
    Context,
    RestoreWork,
    check_target,
    target_params,
    target_server,
)
from shared.secrets import SecretProvider
from shared.storage import layout
from shared.storage.blobs import BlobStore
from shared.storage.clients import StorageAccount
from shared.storage.layout import manifest_name_for
from shared.storage.queues import QueueSender
from shared.storage.tables import ETagMismatch, StateStore

log = logging.getLogger(__name__)

# Seconds a request waits for the target server before leaving the checks to the worker.
REQUEST_CONNECT_TIMEOUT = 5


def _pg_error(exc: psycopg.Error) -> UserError | TransientError:
    """A failure of the target server mid-restore: retried when the server went away."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if server_gone(exc):
        return TransientError(f"the target server failed: {first}", code=ErrorCode.SERVER_CONNECTION_CLOSED)
    return UserError(ErrorCode.INTERNAL, f"the target server refused a step of the restore: {first}")


def refuse_corrupted(point: RecoveryPoint) -> None:
    """``RecoveryPointCorrupted`` (409) naming the point and why, for a point marked Corrupted."""
    if point.corrupted_at is None:
        return
    raise UserError(
        ErrorCode.RECOVERY_POINT_CORRUPTED,
        f"recovery point {point.recovery_point_id} of {point.instance} is Corrupted: a read on "
        f"{point.corrupted_at.isoformat()} found {point.corruption or 'its blob failing its checksum'}; "
        "it is not restored",
        target="recoveryPointId",
        recommended_action="Restore another recovery point (GET .../recoveryPoints lists each one's integrity), "
        "and check the storage account for changes to the vault's container.",
    )


def _lock_key(*parts: object) -> str:
    """A lock row key for a restore target (hashed: hosts and names may hold any character)."""
    return "restore-" + hashlib.sha256("\x00".join(str(p) for p in parts).encode()).hexdigest()[:40]


class _RestoreJob(Work):
    """One restore or verification job, as the job runner runs it (under its target's lock)."""

    kind = "restore"

    def __init__(
        self,
        job: Job,
        points: RecoveryPointStore,
        source_blob: Callable[[RecoveryPoint], str | None],
        context: Callable[[], Context],
    ) -> None:
        self._request = RestoreRequest.from_dict(job.details["request"])
        self._points, self._source_blob, self._context = points, source_blob, context
        self._source: tuple[RecoveryPoint, str] | None = None

    def lock_key(self, job: Job) -> str:
        request = self._request
        target = job.details.get("target") or {}
        if request.kind is TargetKind.DATABASE:
            return _lock_key(str(target.get("server", "")).lower(), target.get("port"), request.database)
        if request.kind is TargetKind.FILES:
            return _lock_key(request.container_url, request.file_prefix)
        return _lock_key(job.job_id)

    def busy(self, job: Job) -> UserError:
        return UserError(ErrorCode.MAX_CONCURRENT_OPERATION_LIMIT_REACHED, "another restore into the target ran")

    def ready(self, run: JobRun) -> Job | None:
        """The point to read (never a Corrupted one) and its blob; the job as it is while its
        rehydrated copy is not ready."""
        point = self._points.get(run.job.instance, self._request.recovery_point_id)
        refuse_corrupted(point)  # marked after this job was queued: never read it again
        source = self._source_blob(point)
        if source is None:
            log.info("restore job %s waits for the rehydration of %s", run.job.job_id, point.recovery_point_id)
            return run.job
        self._source = (point, source)
        return None

    def __call__(self, run: JobRun) -> Job:
        assert self._source is not None
        point, source = self._source
        work = RestoreWork(self._context(), run)
        if self._request.kind is TargetKind.FILES:
            return work.files(self._request, point, source)
        return work.database(self._request, point, source)

    def translate(self, exc: Exception, run: JobRun) -> PgVaultError | None:
        if not isinstance(exc, psycopg.Error):
            return None
        run.check()  # the query failed because the work was stopped
        return _pg_error(exc)


class RestoreService:
    """Starts and runs restore, verification and rehydration jobs."""

    def __init__(
        self,
        state: StateStore,
        backups: BlobStore,
        secrets: SecretProvider,
        clock: Callable[[], datetime],
        *,
        queues: QueueSender | None = None,
        vault_account: StorageAccount | None = None,
        pg_bin_dir: Path | None = None,
        probe: BlobProbe | None = None,
        allow_env_secrets: bool = False,
        exports: ExportRules | None = None,
        parallelism: int = 2,
    ) -> None:
        self._parallelism = parallelism
        self._state = state
        self._runner = JobRunner(state, clock)
        self._jobs = self._runner.jobs
        self._instances = InstanceStore(state)
        self._points = RecoveryPointStore(state)
        self._locks = self._runner.locks
        self._rehydrations = RehydrationStore(state)
        self._backups = backups
        self._secrets = secrets
        self._clock = clock
        self._queues = queues
        self._vault_account = vault_account
        self._pg_bin_dir = pg_bin_dir
        self._probe: BlobProbe = probe or backups
        self._allow_env = allow_env_secrets
        # Where restores as files may write; without rules, nowhere.
        self._exports = exports or ExportRules()

    # --- requests ---------------------------------------------------------------------------

    def start(self, name: str, body: Any, now: datetime) -> Started:
        """``:restore``: check the request and the target, record the job; it and the message to send (the
        restore's, or its rehydration's), which the caller sends (the HTTP handler: its output binding)."""
        instance = self._instances.get(name)
        if instance.soft_deleted:  # Azure: a soft-deleted item is restored only after it is undeleted
            raise soft_deleted_error(instance, "its recovery points cannot be restored before it is undeleted")
        request = parse_restore_request(body, allow_env=self._allow_env)
        if request.kind is TargetKind.FILES:
            check_destination(request, self._exports, self._secrets)  # before anything is read or sent
        return self._start(instance.spec.name, request, Operation.RESTORE, now)

    def start_verify(self, name: str, body: Any, now: datetime) -> Started:
        """``:verifyRestore``: record a restore of a point into a scratch database, compared with its
        manifest; the job and the message to send, as ``start``."""
        instance = self._instances.get(name)
        if instance.soft_deleted:
            raise soft_deleted_error(instance, "its recovery points cannot be restored before it is undeleted")
        request = parse_verify_request(body, allow_env=self._allow_env)
        return self._start(instance.spec.name, request, Operation.VERIFY_RESTORE, now)

    def _start(self, instance: str, request: RestoreRequest, operation: Operation, now: datetime) -> Started:
        point = self._points.get(instance, request.recovery_point_id)
        refuse_corrupted(point)
        request = self._check_selection(request, point)
        if point.datastore is not request.source_datastore:
            raise UserError(
                ErrorCode.INVALID_REQUEST,
                f"sourceDataStoreType: recovery point {point.recovery_point_id} is in {point.datastore.value}",
                target="sourceDataStoreType",
            )
        rehydration = self._rehydrations.get(point.recovery_point_id)
        archived = point.datastore is DataStore.ARCHIVE_STORE
        usable_copy = rehydration is not None and rehydration.state is not CopyState.FAILED
        if archived and not usable_copy and request.rehydration_priority is None:
            raise UserError(
                ErrorCode.INVALID_REQUEST,
                "rehydrationPriority: the recovery point is archived; send objectType "
                "'AzureBackupRestoreWithRehydrationRequest' with rehydrationPriority (Standard or High) and "
                "rehydrationRetentionDuration (P10D..P30D)",
                target="rehydrationPriority",
            )
        target = self._check_target(request, now)
        job = Job(
            new_job_id(now),
            operation,
            instance,
            JobStatus.IN_PROGRESS,
            now,
            recovery_point_id=point.recovery_point_id,
            details={"request": request.to_dict(), "target": target},
        )
        if not archived:
            # The job first, then its message (sent by the host once the handler returns): no worker
            # meets a message whose job is not recorded. One the host fails to send leaves the job
            # without one (the request answers 500): the hung-jobs timer sends it again (NEVER_TAKEN).
            job, _ = self._jobs.create(job)
            return Started(job, self._message(job))
        return self._start_archived(job, point, request, rehydration, now)

    def _check_selection(self, request: RestoreRequest, point: RecoveryPoint) -> RestoreRequest:
        """The request with its partial selection checked against the point's manifest (when it has one)."""
        if not (request.options.schemas or request.options.tables):
            return request
        try:
            manifest = self._backups.get_json(manifest_name_for(point.blob_name))
        except TransientError:
            manifest = None  # unreadable now: the worker's check of the restored database still applies
        if not isinstance(manifest, dict) or not isinstance(manifest.get("tables"), dict):
            return request  # no manifest: the worker checks the restored database instead
        options = resolve_selection(request.options, set(manifest["tables"]), point.recovery_point_id)
        return replace(request, options=options)

    def _start_archived(
        self, job: Job, point: RecoveryPoint, request: RestoreRequest, rehydration: Rehydration | None, now: datetime
    ) -> Started:
        if rehydration is not None and rehydration.state is CopyState.READY:
            job, _ = self._jobs.create(job)
            return Started(job, self._message(job))
        job, _ = self._jobs.create(job)
        if rehydration is None or rehydration.state is CopyState.FAILED:
            if rehydration is not None:
                self._rehydrations.delete(rehydration)
            rehydrate = Job(
                new_job_id(now),
                Operation.REHYDRATE,
                point.instance,
                JobStatus.IN_PROGRESS,
                now,
                recovery_point_id=point.recovery_point_id,
                details={"priority": request.rehydration_priority, "duration": request.rehydration_duration},
            )
            record, created = self._rehydrations.create(
                Rehydration(
                    point.recovery_point_id,
                    point.instance,
                    point.blob_name,
                    copy_name_for(point.blob_name),
                    str(request.rehydration_priority),
                    str(request.rehydration_duration),
                    rehydrate.job_id,
                    waiting=(job.job_id,),
                    parts=len(point.parts),
                )
            )
            if created:
                # The rehydration's message is the one to send; lost, the rehydration timer sends it
                # again within a minute (``_unstarted``).
                self._jobs.create(rehydrate)
                job = self._jobs.save(job, details={**job.details, "rehydrationJobId": rehydrate.job_id})
                return Started(job, self._message(rehydrate))
            rehydration = record
        # Someone else's rehydration of this point is under way: wait for the same copy.
        message: JobMessage | None = None
        for _ in range(5):
            try:
                self._rehydrations.save(rehydration, waiting=(*rehydration.waiting, job.job_id))
                break
            except ETagMismatch:
                rehydration = self._rehydrations.get(point.recovery_point_id)
                assert rehydration is not None
                if rehydration.state is CopyState.READY:
                    message = self._message(job)
                    break
        job = self._jobs.save(job, details={**job.details, "rehydrationJobId": rehydration.job_id})
        return Started(job, message)

    @staticmethod
    def _message(job: Job) -> JobMessage:
        return JobMessage.of(layout.RESTORE_QUEUE, job)

    def _send(self, job: Job) -> None:
        """Send ``job``'s message now (the timers' way: they have no output binding)."""
        if self._queues is None:
            raise RuntimeError("RestoreService needs queues to start jobs")
        message = self._message(job)
        self._queues.send(message.queue, message.payload())

    def _check_target(self, request: RestoreRequest, now: datetime) -> dict[str, Any]:
        """What a request can check about its target quickly; the worker checks again."""
        if request.kind is TargetKind.FILES:
            return {"containerUrl": request.container_url, "file": request.file_name}
        assert request.secret_uri is not None
        field = (
            "secretUri"
            if request.kind is TargetKind.VERIFY
            else "restoreTargetInfo.datasourceAuthCredentials.secretStoreResource.uri"
        )
        params = target_params(self._secrets, request.secret_uri, field)
        host, port = target_server(params, field)
        target: dict[str, Any] = {"server": host, "port": port}
        if request.kind is TargetKind.DATABASE:
            target["database"] = request.database
            holder = self._locks.holder(_lock_key(host.lower(), port, request.database))
            if holder is not None and not holder.stale() and not self._finished(holder.job_id):
                raise UserError(
                    ErrorCode.MAX_CONCURRENT_OPERATION_LIMIT_REACHED,
                    f"a restore into {request.database!r} on {host}:{port} is running (job {holder.job_id})",
                    target="restoreTargetInfo.datasourceInfo.resourceName",
                )
        kwargs = params.libpq_kwargs(host=host, port=port, dbname=params.database or MAINTENANCE_DB)
        kwargs["connect_timeout"] = REQUEST_CONNECT_TIMEOUT
        try:
            with connect(kwargs) as conn:
                check_target(conn, params, request.database if request.kind is TargetKind.DATABASE else None)
        except TransientError as exc:
            log.info("restore request: target %s:%s not reachable now (%s); the worker will check", host, port, exc)
        return target

    def _finished(self, job_id: str) -> bool:
        try:
            return self._jobs.get(job_id).status.finished
        except UserError:
            return True

    # --- the worker -------------------------------------------------------------------------

    def run(self, job_id: str, *, last_try: bool, attempt: int = 1) -> Job | None:
        """Run restore, verification or rehydration job ``job_id``; ``TransientError`` to be retried.

        ``attempt`` is the delivery number of the job's message (its dequeue count): a later
        delivery of a job whose worker died takes its lock over instead of being dropped.
        """
        job = self._jobs.for_delivery(job_id, last_try=last_try)
        if job is None or job.status.finished:
            return job
        if job.operation is Operation.REHYDRATE:
            return self._rehydrate(job, last_try)
        return self._runner.run_job(job, self._work(job), last_try=last_try, attempt=attempt)

    def lock_key(self, job: Job) -> str:
        """The lock restore job ``job`` runs under: its target (a database, a file prefix)."""
        return self._work(job).lock_key(job)

    def _work(self, job: Job) -> _RestoreJob:
        return _RestoreJob(job, self._points, self._source_blob, self._context)

    def _context(self) -> Context:
        return Context(
            self._instances,
            self._backups,
            self._secrets,
            self._clock,
            self._pg_bin_dir,
            self._vault_account,
            self._exports,
            self._points,
            self._parallelism,
        )

    def _source_blob(self, point: RecoveryPoint) -> str | None:
        """The blob to read a point from: its own, or its rehydrated copy (None while not ready)."""
        if point.datastore is not DataStore.ARCHIVE_STORE:
            return point.blob_name
        record = self._rehydrations.get(point.recovery_point_id)
        if record is None or record.state is CopyState.FAILED:
            raise UserError(
                ErrorCode.CONFLICT,
                f"recovery point {point.recovery_point_id} is archived and has no rehydrated copy",
                recommended_action="Send the restore again with rehydrationPriority and rehydrationRetentionDuration.",
            )
        return record.copy_blob if record.state is CopyState.READY else None

    # --- rehydration --------------------------------------------------------------------------

    def _rehydrate(self, job: Job, last_try: bool) -> Job:
        record = self._rehydrations.get(job.recovery_point_id or "")
        if record is None or record.job_id != job.job_id:
            return self._jobs.finish(
                job, JobStatus.CANCELLED, self._clock(), details={**job.details, "why": "superseded"}
            )
        try:
            start_copy(self._backups, record)
        except UserError as exc:
            self._finish_rehydration(record, CopyState.FAILED, exc)
            return self._jobs.get(job.job_id)
        except TransientError:
            if not last_try:
                raise
            self._finish_rehydration(record, CopyState.FAILED, UserError(ErrorCode.INTERNAL, "could not start"))
            return self._jobs.get(job.job_id)
        if job.start_time is None:
            job = self._jobs.save(job, start_time=self._clock(), details={**job.details, "copyBlob": record.copy_blob})
        if not record.started:
            try:
                record = self._rehydrations.save(record, started=True)
            except ETagMismatch:
                record = self._rehydrations.get(record.recovery_point_id) or record
        self._poll(record, self._clock())
        return self._jobs.get(job.job_id)

    def tick(self, now: datetime) -> dict[str, int]:
        """The timer: poll pending copies, release their restores, delete copies past their retention."""
        counts = {"pending": 0, "ready": 0, "deleted": 0}
        for record in self._rehydrations.all():
            try:
                if record.state is CopyState.PENDING and record.started:
                    state = self._poll(record, now)
                    counts["ready" if state is CopyState.READY else "pending"] += 1
                elif record.state is CopyState.PENDING:
                    self._unstarted(record, now)
                    counts["pending"] += 1
                elif record.state is CopyState.READY and record.expiry is not None and record.expiry <= now:
                    for _, copy in record.copies():
                        self._backups.delete(copy)
                    self._rehydrations.delete(record)
                    counts["deleted"] += 1
            except (ETagMismatch, TransientError) as exc:
                log.info("rehydration of %s: %s; next tick", record.recovery_point_id, exc)
        return counts

    def _unstarted(self, record: Rehydration, now: datetime) -> None:
        """A rehydration whose copy was never started: its message was lost, or its job ended early."""
        try:
            job: Job | None = self._jobs.get(record.job_id)
        except UserError:
            job = None  # the request died between the record and the job
        if job is not None and not job.status.finished:
            self._send(job)  # again: the worker's start is idempotent
            return
        why = UserError(ErrorCode.INTERNAL, "the rehydration never started; send the restore again")
        self._finish_rehydration(record, CopyState.FAILED, why, now)

    def _poll(self, record: Rehydration, now: datetime) -> CopyState:
        state = copies_state(self._probe, record)
        if state is CopyState.PENDING:
            return state
        error = None if state is CopyState.READY else UserError(ErrorCode.INTERNAL, "storage could not rehydrate")
        self._finish_rehydration(record, state, error, now)
        return state

    def _finish_rehydration(
        self, record: Rehydration, state: CopyState, error: UserError | None, now: datetime | None = None
    ) -> None:
        now = now or self._clock()
        expiry = expiry_after(now, record.duration) if state is CopyState.READY else None
        record = self._rehydrations.save(record, state=state, ready_at=now, expiry=expiry)
        job = self._jobs.get(record.job_id) if self._jobs.exists(record.job_id) else None
        if job is not None and not job.status.finished:
            if error is None:
                self._jobs.finish(
                    job,
                    JobStatus.COMPLETED,
                    now,
                    progress=1.0,
                    details={**job.details, "rehydration": record.to_dict()},
                )
            else:
                self._jobs.finish(job, JobStatus.FAILED, now, error=JobError.from_user_error(error))
        for waiting in record.waiting:
            restore = self._jobs.get(waiting)
            if restore.status.finished:
                continue
            if error is None:
                self._send(restore)
            else:
                self._jobs.finish(restore, JobStatus.FAILED, now, error=JobError.from_user_error(error))
