"""Restores: as a new database, as files, as a verification; archived points rehydrated first.

``RestoreService.start`` (HTTP) checks the request completely, checks the target as far as a
request can (the secret reads, the user may create databases, the name is free), records a
job and queues it. ``run`` (the queue worker) does the work under a lock per target, so one
restore per target runs at a time and a message delivered twice changes nothing twice:

- database: ``CREATE DATABASE`` (marked with the job's id, so a retry knows it is its own), then
  blob → zstd → ``pg_restore`` stdin, checksum checked as it streams. Ignorable pg_restore
  errors end ``CompletedWithWarnings`` listing them; anything else, a checksum mismatch
  included, ends ``Failed`` and drops the database the job created. An existing database is
  ``UserErrorDatabaseNameAlreadyInUse`` and is never touched.
- files: ``<prefix>.dump`` (or ``.dump.zst``) staged block by block and committed only after the
  checksum matched, then ``<prefix>.manifest.json`` with the exact pg_restore command.
- verify: a scratch database restored, its per-table row counts and hashes compared with the
  manifest taken at dump time, the result in the job, the scratch database dropped.

``tick`` (a timer) moves rehydrations on: see ``shared.restore.rehydration``.
"""

from __future__ import annotations

import hashlib
import logging
import shlex
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from azure.core.exceptions import AzureError
from azure.storage.blob import BlobServiceClient, ContainerClient

from shared.backup_runner import manifest_name_for
from shared.errors import ErrorCode, PgVaultError, TransientError, UserError
from shared.instances import InstanceService
from shared.jobs import Job, JobError, JobStatus, JobStore, Operation, new_job_id
from shared.locks import HEARTBEAT, InstanceLocks, Lock
from shared.pg.connect import connect, server_gone
from shared.pg.connstring import ConnectionParams, parse_connection_string
from shared.pg.privileges import check_create_db, quote_ident
from shared.pg.restore import (
    MARKER,
    compare_digests,
    create_database,
    create_schemas,
    database_exists,
    database_marker,
    drop_database,
    error_for,
    restore_blob,
    table_digests,
)
from shared.pg.tools import Tool, pick_tool
from shared.policy import DataStore
from shared.recovery_points import RecoveryPoint, RecoveryPointStore
from shared.restore import files
from shared.restore.rehydration import (
    BlobProbe,
    ContainerProbe,
    CopyState,
    Rehydration,
    RehydrationStore,
    copy_name_for,
    copy_state,
    expiry_after,
    start_copy,
)
from shared.restore.request import RestoreRequest, TargetKind, parse_restore_request, parse_verify_request
from shared.secrets import SecretProvider
from shared.storage import layout
from shared.storage.blobs import BlobStore
from shared.storage.blockstream import BlockWriter, IntegrityError, read_verified
from shared.storage.queues import QueueSender
from shared.storage.tables import ETagMismatch, StateTable

log = logging.getLogger(__name__)

DEFAULT_PORT = 5432
# The database a target login connects to in order to create or drop others.
MAINTENANCE_DB = "postgres"
# Seconds a request waits for the target server before leaving the checks to the worker.
REQUEST_CONNECT_TIMEOUT = 5
_VERIFY_PREFIX = "pgvault_verify_"


def _pg_dump_major(version_text: str) -> int:
    """The major version in ``pg_dump (PostgreSQL) 15.8 ...``."""
    for word in version_text.split():
        head = word.split(".")[0]
        if head.isdigit() and "." in word:
            return int(head)
    for word in version_text.split():
        if word.isdigit():
            return int(word)
    return 0


def target_server(params: ConnectionParams, target: str) -> tuple[str, int]:
    """The server a restore target secret names (its Server and Port)."""
    if not params.host:
        raise UserError(
            ErrorCode.SECRET_VALUE_IN_UNSUPPORTED_FORMAT,
            "the target secret names no server: a restore goes to the server in its connection string",
            target=target,
            recommended_action="Put Server=<host>;Port=<port> in the target's connection string.",
        )
    return params.host, params.port or DEFAULT_PORT


def _pg_error(exc: psycopg.Error) -> UserError | TransientError:
    """A failure of the target server mid-restore: retried when the server went away."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if server_gone(exc):
        return TransientError(f"the target server failed: {first}", code=ErrorCode.SERVER_CONNECTION_CLOSED)
    return UserError(ErrorCode.INTERNAL, f"the target server refused a step of the restore: {first}")


def _lock_key(*parts: object) -> str:
    """A lock row key for a restore target (hashed: hosts and names may hold any character)."""
    return "restore-" + hashlib.sha256("\x00".join(str(p) for p in parts).encode()).hexdigest()[:40]


class RestoreService:
    """Starts and runs restore, verification and rehydration jobs."""

    def __init__(
        self,
        state: StateTable,
        backups: BlobStore,
        secrets: SecretProvider,
        clock: Callable[[], datetime],
        *,
        queues: QueueSender | None = None,
        vault_blobs: BlobServiceClient | None = None,
        pg_bin_dir: Path | None = None,
        probe: BlobProbe | None = None,
        allow_env_secrets: bool = False,
    ) -> None:
        self._state = state
        self._jobs = JobStore(state)
        self._instances = InstanceService(state, lambda job, instance: None)
        self._points = RecoveryPointStore(state)
        self._locks = InstanceLocks(state)
        self._rehydrations = RehydrationStore(state)
        self._backups = backups
        self._secrets = secrets
        self._clock = clock
        self._queues = queues
        self._vault_blobs = vault_blobs
        self._pg_bin_dir = pg_bin_dir
        self._probe = probe or ContainerProbe(backups.client)
        self._allow_env = allow_env_secrets

    # --- requests ---------------------------------------------------------------------------

    def start(self, name: str, body: Any, now: datetime) -> Job:
        """``:restore``: check the request and the target, record the job, queue it (or its rehydration)."""
        instance = self._instances.get(name)
        request = parse_restore_request(body, allow_env=self._allow_env)
        return self._start(instance.spec.name, request, Operation.RESTORE, now)

    def start_verify(self, name: str, body: Any, now: datetime) -> Job:
        """``:verifyRestore``: restore a point into a scratch database and compare it with its manifest."""
        instance = self._instances.get(name)
        request = parse_verify_request(body, allow_env=self._allow_env)
        return self._start(instance.spec.name, request, Operation.VERIFY_RESTORE, now)

    def _start(self, instance: str, request: RestoreRequest, operation: Operation, now: datetime) -> Job:
        point = self._points.get(instance, request.recovery_point_id)
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
            self._send(job)
            job, _ = self._jobs.create(job)
            return job
        return self._start_archived(job, point, request, rehydration, now)

    def _start_archived(
        self, job: Job, point: RecoveryPoint, request: RestoreRequest, rehydration: Rehydration | None, now: datetime
    ) -> Job:
        if rehydration is not None and rehydration.state is CopyState.READY:
            self._send(job)
            job, _ = self._jobs.create(job)
            return job
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
                )
            )
            if created:
                self._send(rehydrate)
                self._jobs.create(rehydrate)
                return self._jobs.save(job, details={**job.details, "rehydrationJobId": rehydrate.job_id})
            rehydration = record
        # Someone else's rehydration of this point is under way: wait for the same copy.
        for _ in range(5):
            try:
                self._rehydrations.save(rehydration, waiting=(*rehydration.waiting, job.job_id))
                break
            except ETagMismatch:
                rehydration = self._rehydrations.get(point.recovery_point_id)
                assert rehydration is not None
                if rehydration.state is CopyState.READY:
                    self._send(job)
                    break
        return self._jobs.save(job, details={**job.details, "rehydrationJobId": rehydration.job_id})

    def _send(self, job: Job) -> None:
        if self._queues is None:
            raise RuntimeError("RestoreService needs queues to start jobs")
        self._queues.send(layout.RESTORE_QUEUE, {"jobId": job.job_id, "instance": job.instance})

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
        params = self._target_params(request.secret_uri, field)
        host, port = target_server(params, field)
        target: dict[str, Any] = {"server": host, "port": port}
        if request.kind is TargetKind.DATABASE:
            target["database"] = request.database
            holder = self._locks.holder(_lock_key(host.lower(), port, request.database))
            if holder is not None and not holder.stale(now) and not self._finished(holder.job_id):
                raise UserError(
                    ErrorCode.MAX_CONCURRENT_OPERATION_LIMIT_REACHED,
                    f"a restore into {request.database!r} on {host}:{port} is running (job {holder.job_id})",
                    target="restoreTargetInfo.datasourceInfo.resourceName",
                )
        kwargs = params.libpq_kwargs(host=host, port=port, dbname=params.database or MAINTENANCE_DB)
        kwargs["connect_timeout"] = REQUEST_CONNECT_TIMEOUT
        try:
            with connect(kwargs) as conn:
                self._check_conn(conn, params, request.database if request.kind is TargetKind.DATABASE else None)
        except TransientError as exc:
            log.info("restore request: target %s:%s not reachable now (%s); the worker will check", host, port, exc)
        return target

    def _finished(self, job_id: str) -> bool:
        try:
            return self._jobs.get(job_id).status.finished
        except UserError:
            return True

    def _target_params(self, secret_uri: str, field: str) -> ConnectionParams:
        try:
            return parse_connection_string(self._secrets.get_secret(secret_uri))
        except UserError as exc:
            raise UserError(exc.code, exc.message, target=field, recommended_action=exc.recommended_action) from exc

    @staticmethod
    def _check_conn(conn: psycopg.Connection[Any], params: ConnectionParams, database: str | None) -> None:
        if not check_create_db(conn, params.user):
            raise UserError(
                ErrorCode.MISSING_DB_PERMISSIONS,
                f"{params.user} may not create databases on the target server (restore needs CREATEDB)",
                recommended_action=f"Have an administrator run: ALTER ROLE {quote_ident(params.user)} CREATEDB; "
                "or use a target secret whose user has CREATEDB.",
            )
        if database is not None and database_exists(conn, database):
            raise UserError(
                ErrorCode.DATABASE_NAME_ALREADY_IN_USE,
                f"database {database!r} exists on the target server; a restore never overwrites a database",
                target="restoreTargetInfo.datasourceInfo.resourceName",
            )

    # --- the worker -------------------------------------------------------------------------

    def run(self, job_id: str, *, last_try: bool) -> Job | None:
        """Run restore, verification or rehydration job ``job_id``; ``TransientError`` to be retried."""
        job = self._recorded(job_id, last_try)
        if job is None or job.status.finished:
            return job
        if job.operation is Operation.REHYDRATE:
            return self._rehydrate(job, last_try)
        request = RestoreRequest.from_dict(job.details["request"])
        key = self._job_lock_key(job, request)
        lock = self._locks.acquire(key, job.job_id, self._clock())
        if lock is None:
            return self._busy(job, key, last_try)
        steps: list[dict[str, Any]] = []
        heartbeat = Heartbeat(self._locks, lock, self._clock)
        try:
            with heartbeat:
                try:
                    return self._run_locked(job, request, heartbeat, steps)
                except psycopg.Error as exc:
                    raise _pg_error(exc) from exc
        except UserError as exc:
            return self._fail(self._jobs.get(job_id), exc, steps)
        except TransientError as exc:
            if not last_try:
                log.warning("restore job %s instance %s: %s; will retry", job_id, job.instance, exc.message)
                raise
            return self._fail(self._jobs.get(job_id), UserError(exc.code, exc.message), steps)
        finally:
            self._locks.release(heartbeat.lock)

    def _recorded(self, job_id: str, last_try: bool) -> Job | None:
        try:
            job = self._jobs.get(job_id)
        except UserError as exc:
            # The message is sent just before its job is recorded: give the job a moment to appear.
            if not last_try:
                raise TransientError(f"restore job {job_id} is not recorded yet") from exc
            log.warning("restore job %s was never recorded; its message is dropped", job_id)
            return None
        if job.status.finished:
            log.info("restore job %s already %s; nothing to do", job_id, job.status)
        return job

    def _busy(self, job: Job, key: str, last_try: bool) -> Job:
        """The target's lock is taken: by this job elsewhere (drop this delivery) or by another restore."""
        holder = self._locks.holder(key)
        if holder is not None and holder.job_id == job.job_id:
            log.info("restore job %s runs elsewhere; this delivery is dropped", job.job_id)
            return job
        if not last_try:
            raise TransientError("another restore into the same target runs; retrying later")
        error = UserError(ErrorCode.MAX_CONCURRENT_OPERATION_LIMIT_REACHED, "another restore into the target ran")
        return self._fail(job, error, [])

    def _job_lock_key(self, job: Job, request: RestoreRequest) -> str:
        target = job.details.get("target") or {}
        if request.kind is TargetKind.DATABASE:
            return _lock_key(str(target.get("server", "")).lower(), target.get("port"), request.database)
        if request.kind is TargetKind.FILES:
            return _lock_key(request.container_url, request.file_prefix)
        return _lock_key(job.job_id)

    def _fail(self, job: Job, error: UserError, steps: list[dict[str, Any]]) -> Job:
        if job.status.finished:
            return job
        for step in steps:
            if step["status"] == "InProgress":
                step["status"] = "Failed"
        log.info("restore job %s instance %s failed: %s", job.job_id, job.instance, error.code)
        return self._jobs.finish(
            job, JobStatus.FAILED, self._clock(), error=JobError.from_user_error(error), steps=tuple(steps) or job.steps
        )

    def _run_locked(self, job: Job, request: RestoreRequest, heartbeat: Heartbeat, steps: list[dict[str, Any]]) -> Job:
        point = self._points.get(job.instance, request.recovery_point_id)
        source = self._source_blob(point)
        if source is None:
            log.info("restore job %s waits for the rehydration of %s", job.job_id, point.recovery_point_id)
            return job
        job = self._jobs.save(job, start_time=job.start_time or self._clock(), steps=())
        run = _Run(self, job, heartbeat, steps)
        if request.kind is TargetKind.FILES:
            return run.files(request, point, source)
        return run.database(request, point, source)

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
            start_copy(self._backups.client, record)
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
                    self._backups.delete(record.copy_blob)
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
        props = self._probe.properties(record.copy_blob)
        state = CopyState.PENDING if props is None else copy_state(props)
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


class Heartbeat:
    """Keeps a running job's lock alive from a thread of its own, every ``HEARTBEAT``, also while
    pg_restore builds indexes and no bytes flow. ``lost`` when another worker took the lock over."""

    def __init__(
        self, locks: InstanceLocks, lock: Lock, clock: Callable[[], datetime], every: timedelta = HEARTBEAT
    ) -> None:
        self.lock, self.lost = lock, False
        self._locks, self._clock, self._every = locks, clock, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="restore-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(self._every.total_seconds()):
            try:
                self.lock = self._locks.renew(self.lock, self._clock())
            except ETagMismatch:
                self.lost = True
                return
            except Exception as exc:  # storage hiccup: the next beat tries again (the lock lasts STALE_AFTER)
                log.warning("restore lock %s: heartbeat failed: %s", self.lock.instance, exc)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class _Run:
    """One restore job's work, with its steps and progress."""

    def __init__(self, service: RestoreService, job: Job, heartbeat: Heartbeat, steps: list[dict[str, Any]]) -> None:
        self.s, self.job, self.heartbeat, self.steps = service, job, heartbeat, steps

    def step(self, name: str) -> dict[str, Any]:
        entry = {"name": name, "status": "InProgress", "startTime": self.s._clock().isoformat()}
        self.steps.append(entry)
        return entry

    def done(self, entry: dict[str, Any]) -> None:
        entry["status"] = "Completed"
        entry["endTime"] = self.s._clock().isoformat()

    def progress(self, total: int) -> Callable[[int], None]:
        last = [0]

        def report(read: int) -> None:
            if self.heartbeat.lost:
                raise TransientError(f"restore job {self.job.job_id} lost its lock to another worker")
            if read < total and read - last[0] < total / 20:
                return
            last[0] = read
            try:
                self.job = self.s._jobs.save(self.job, bytes=read, progress=min(0.99, read / max(total, 1)))
            except ETagMismatch as exc:
                raise TransientError(f"restore job {self.job.job_id} was taken over by another worker") from exc

        return report

    def chunks(self, point: RecoveryPoint, blob: str, *, decompress: bool = True) -> Iterator[bytes]:
        return read_verified(
            self.s._backups.client,
            blob,
            point.sha256,
            decompress=decompress,
            on_bytes=self.progress(point.size_in_bytes),
        )

    # --- into a database --------------------------------------------------------------------

    def database(self, request: RestoreRequest, point: RecoveryPoint, blob: str) -> Job:
        verify = request.kind is TargetKind.VERIFY
        current = self.step("CheckTarget")
        assert request.secret_uri is not None
        params = self.s._target_params(request.secret_uri, "secretUri")
        host, port = target_server(params, "secretUri")
        name = request.database if not verify else f"{_VERIFY_PREFIX}{self.job.job_id[-12:]}"
        assert name is not None
        admin = params.libpq_kwargs(host=host, port=port, dbname=params.database or MAINTENANCE_DB)
        tool = pick_tool("pg_restore", _pg_dump_major(point.pg_dump_version), self.s._pg_bin_dir)
        expected: dict[str, Any] | None = self._manifest(point) if verify else None
        with connect(admin) as conn:
            self.s._check_conn(conn, params, None)
            marker = database_marker(conn, name) if database_exists(conn, name) else None
            if marker == MARKER.format(job_id=self.job.job_id):
                # An earlier try of this very job died mid-restore: its database goes, and we start over.
                drop_database(conn, name)
            elif marker is not None or database_exists(conn, name):
                raise UserError(
                    ErrorCode.DATABASE_NAME_ALREADY_IN_USE,
                    f"database {name!r} exists on {host}:{port}; a restore never overwrites a database",
                    target="restoreTargetInfo.datasourceInfo.resourceName",
                )
        self.done(current)
        current = self.step("CreateDatabase")
        with connect(admin) as conn:
            if not create_database(conn, name, self.job.job_id):
                raise UserError(
                    ErrorCode.DATABASE_NAME_ALREADY_IN_USE,
                    f"database {name!r} was created on {host}:{port} by someone else meanwhile",
                    target="restoreTargetInfo.datasourceInfo.resourceName",
                )
        self.done(current)
        try:
            return self._restore_into(
                request=request,
                point=point,
                blob=blob,
                params=params,
                where=(host, port, name),
                tool=tool,
                expected=expected,
            )
        except BaseException:
            self._drop(admin, name)
            raise

    def _drop(self, admin: dict[str, Any], name: str) -> None:
        try:
            with connect(admin) as conn:
                drop_database(conn, name)
            log.info("restore job %s: dropped database %s", self.job.job_id, name)
        except (PgVaultError, psycopg.Error) as exc:
            log.error("restore job %s: could not drop database %s: %s", self.job.job_id, name, exc)

    def _restore_into(
        self,
        *,
        request: RestoreRequest,
        point: RecoveryPoint,
        blob: str,
        params: ConnectionParams,
        where: tuple[str, int, str],
        tool: Tool,
        expected: dict[str, Any] | None,
    ) -> Job:
        host, port, name = where
        current = self.step("Restore")
        options = request.options
        schemas = [*options.schemas, *{t.rpartition(".")[0] for t in options.tables if "." in t}]
        if schemas:
            with connect(params.libpq_kwargs(host=host, port=port, dbname=name)) as conn:
                create_schemas(conn, schemas)
        try:
            report = restore_blob(
                tool.path,
                params.child_env(host=host, port=port, dbname=name),
                self.s._backups.client,
                blob,
                point.sha256,
                options=options,
                on_bytes=self.progress(point.size_in_bytes),
            )
        except IntegrityError as exc:
            raise UserError(
                ErrorCode.RECOVERY_POINT_CORRUPTED,
                f"recovery point {point.recovery_point_id} failed its checksum while restoring: {exc}",
            ) from exc
        if not report.ok:
            raise error_for(report)
        self.done(current)
        details: dict[str, Any] = {
            **self.job.details,
            "target": {"server": host, "port": port, "database": name},
            "pgRestoreVersion": tool.version_text,
            "warnings": list(report.warnings),
        }
        if expected is not None:
            current = self.step("Compare")
            with connect(params.libpq_kwargs(host=host, port=port, dbname=name), autocommit=False) as conn:
                actual = table_digests(conn)
            problems = compare_digests(expected, actual)
            details["verification"] = {"tablesCompared": len(expected), "mismatches": problems}
            self._drop(params.libpq_kwargs(host=host, port=port, dbname=params.database or MAINTENANCE_DB), name)
            details["scratchDatabaseDropped"] = True
            if problems:
                self.job = self.s._jobs.save(self.job, details=details)
                first = problems[0]
                raise UserError(
                    ErrorCode.RESTORE_VERIFICATION_FAILED,
                    f"{len(problems)} table(s) differ from the backup's manifest, first {first['table']}: "
                    f"{first['problem']}",
                )
            self.done(current)
        status = JobStatus.COMPLETED_WITH_WARNINGS if report.warnings else JobStatus.COMPLETED
        log.info("restore job %s into %s:%s/%s: %s", self.job.job_id, host, port, name, status)
        return self.s._jobs.finish(
            self.job,
            status,
            self.s._clock(),
            progress=1.0,
            bytes=point.size_in_bytes,
            steps=tuple(self.steps),
            details=details,
        )

    def _manifest(self, point: RecoveryPoint) -> dict[str, Any]:
        doc = self.s._backups.get_json(manifest_name_for(point.blob_name))
        if not isinstance(doc, dict) or not isinstance(doc.get("tables"), dict):
            raise UserError(
                ErrorCode.RESTORE_VERIFICATION_FAILED,
                f"recovery point {point.recovery_point_id} has no manifest to compare with "
                "(taken before pgvault recorded manifests)",
                recommended_action="Verify a newer recovery point.",
            )
        return dict(doc["tables"])

    # --- as files -----------------------------------------------------------------------------

    def files(self, request: RestoreRequest, point: RecoveryPoint, blob: str) -> Job:
        assert request.container_url is not None and request.file_prefix is not None
        if self.s._vault_blobs is None:
            raise RuntimeError("RestoreService needs the vault's blob service for restores as files")
        current = self.step("CheckTarget")
        container = files.target_container(request, self.s._vault_blobs, self.s._secrets)
        files.probe_writable(container, request.file_prefix, request.container_url)
        self._refuse_foreign(container, request.file_name)
        self.done(current)

        current = self.step("Write")
        decompress = request.file_format == "dump"
        writer = BlockWriter(container, request.file_name, expected_bytes=point.raw_bytes)
        try:
            for chunk in self.chunks(point, blob, decompress=decompress):
                writer.write(chunk)
        except IntegrityError as exc:
            writer.close()  # nothing committed: a corrupted point never appears as a file
            raise UserError(
                ErrorCode.RECOVERY_POINT_CORRUPTED,
                f"recovery point {point.recovery_point_id} failed its checksum: {exc}",
            ) from exc
        except BaseException:
            writer.close()
            raise
        written = writer.commit(
            {"jobid": self.job.job_id, "recoverypointid": point.recovery_point_id},
            content_type="application/octet-stream" if decompress else "application/zstd",
        )
        self.done(current)

        current = self.step("Manifest")
        path = request.file_name
        restore_cmd = request.options.command(path if decompress else None)
        if not decompress:
            restore_cmd = f"zstd -dc {shlex.quote(path)} | {restore_cmd}"
        manifest = {
            "source": {
                "instance": point.instance,
                "recoveryPointId": point.recovery_point_id,
                "backupTime": point.time.isoformat(),
                **self._instance_source(point.instance),
            },
            "serverVersion": point.server_version,
            "pgDumpVersion": point.pg_dump_version,
            "file": path,
            "format": "pg_dump custom" + (" (zstd-compressed)" if not decompress else ""),
            "bytes": written.stored_bytes,
            "sha256": written.sha256,
            "restoreCommand": restore_cmd,
            "restoredBy": self.job.job_id,
        }
        schemas = [*request.options.schemas, *{t.rpartition(".")[0] for t in request.options.tables if "." in t}]
        if schemas:
            # pg_restore --schema restores a schema's objects, not the schema itself.
            manifest["beforeRestore"] = [f"CREATE SCHEMA IF NOT EXISTS {quote_ident(n)};" for n in schemas]
        files.write_manifest(container, request.manifest_file_name, manifest)
        self.done(current)
        return self.s._jobs.finish(
            self.job,
            JobStatus.COMPLETED,
            self.s._clock(),
            progress=1.0,
            bytes=written.stored_bytes,
            steps=tuple(self.steps),
            details={
                **self.job.details,
                "files": [request.file_name, request.manifest_file_name],
                "sha256": written.sha256,
                "restoreCommand": restore_cmd,
            },
        )

    def _instance_source(self, instance: str) -> dict[str, Any]:
        try:
            spec = self.s._instances.get(instance).spec
        except UserError:
            return {}
        return {"server": spec.server, "port": spec.port, "database": spec.database}

    def _refuse_foreign(self, container: ContainerClient, name: str) -> None:
        """FailIfExists for files: an existing file is refused unless an earlier try of this job wrote it."""
        try:
            client = container.get_blob_client(name)
            if not client.exists():
                return
            owner = (client.get_blob_properties().metadata or {}).get("jobid")
        except AzureError as exc:
            raise TransientError(f"storage failed reading {name}: {type(exc).__name__}") from exc
        if owner != self.job.job_id:
            raise UserError(
                ErrorCode.CONFLICT,
                f"{name} exists in the target container; a restore never overwrites a file",
                target="restoreTargetInfo.targetDetails.filePrefix",
                recommended_action="Choose another filePrefix.",
            )
