"""Running a backup job: re-check, dump, stream, commit, record the recovery point.

One job of one instance at a time (the instance's lock); a second delivery of a job that is
running elsewhere is dropped, a delivery of a finished job changes nothing, and a retry after a
worker died takes the abandoned lock over and starts clean. The recovery point is written only
after its blob is committed with its checksum, under an id derived from the job, so a job that
runs twice leaves one point.

Two attempts of one job may still run at once (a worker frozen past its lock's takeover wakes
up). Each attempt writes a blob of its own (its lock token is in the name), so neither commits
over the other; the point's insert-only write decides which attempt wins, and the job always
records the winning point's blob and checksum. An attempt whose lock is lost, or whose job's
cancel is requested, stops before its commit and before its point (``Heartbeat.confirm``); a
loser deletes the blob it committed, and the retention sweep collects any such blob left behind
once it is older than ``MAX_JOB_LIFETIME``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from shared.cancel import NOT_STARTED, cancel_watch, end_cancelled, job_changed
from shared.errors import ErrorCode, PgVaultError, TransientError, UserError
from shared.instances import InstanceStore, Readiness
from shared.jobs import Job, JobStatus, JobStore
from shared.locks import Heartbeat, InstanceLocks
from shared.pg.connect import connect
from shared.pg.dump import dump_with_manifest
from shared.pg.privileges import check_backup_privileges, to_user_error
from shared.pg.tools import pick_tool
from shared.policies import PolicyService
from shared.policy import Policy, lifecycle, tag_backup
from shared.recovery_points import RecoveryPoint, RecoveryPointStore, recovery_point_id
from shared.secrets import SecretProvider
from shared.stopping import WorkCancelled
from shared.storage import layout
from shared.storage.blobs import BlobStore
from shared.storage.layout import manifest_name_for
from shared.storage.tables import ETagMismatch, StateStore
from shared.timeouts import attempt_limit, note_retry, overran, with_attempt_started
from shared.validation import credentials, libpq_for

log = logging.getLogger(__name__)


def blob_name_for(instance: str, rp_id: str, attempt: str) -> str:
    """Where attempt ``attempt`` (its lock token) of the backup making point ``rp_id`` writes its dump.

    Every attempt has a blob of its own: two attempts of one job never commit over each other.
    """
    return f"{layout.row_key(instance)}/{rp_id}.{attempt}{layout.DUMP_SUFFIX}"


class _Progress:
    """Writes a running backup's progress to its job (every few seconds); stops the dump if another
    worker took the job or the instance's lock over, or the job's cancel was requested."""

    def __init__(self, runner: BackupRunner, job: Job, heartbeat: Heartbeat, size: int) -> None:
        self.runner, self.job, self.heartbeat, self.size = runner, job, heartbeat, size

    def __call__(self, raw: int) -> None:
        self.heartbeat.signal.check()
        try:
            self.job = self.runner._jobs.save(self.job, bytes=raw, progress=min(0.99, raw / max(self.size, 1)))
        except ETagMismatch as exc:
            raise job_changed(self.runner._jobs, self.job) from exc


def complete_with_point(
    jobs: JobStore,
    job: Job,
    point: RecoveryPoint,
    clock: Callable[[], datetime],
    *,
    steps: tuple[dict[str, Any], ...],
    manifest: str | None,
) -> Job:
    """Finish ``job`` Completed with exactly ``point``'s blob and checksum (whichever attempt made it).

    The point's insert already decided the outcome, so a job row changed meanwhile (a cancel
    that came too late, another attempt's progress) is re-read and finished the same way.
    """
    for _ in range(5):
        try:
            return jobs.finish(
                job,
                JobStatus.COMPLETED,
                clock(),
                bytes=point.raw_bytes,
                progress=1.0,
                retention_tag=point.retention_tag,
                recovery_point_id=point.recovery_point_id,
                steps=steps,
                details={
                    **job.details,
                    "blobName": point.blob_name,
                    "storedBytes": point.size_in_bytes,
                    "sha256": point.sha256,
                    "serverVersion": point.server_version,
                    "pgDumpVersion": point.pg_dump_version,
                    "manifest": manifest,
                },
            )
        except ETagMismatch:
            job = jobs.get(job.job_id)
            if job.status.finished:
                return job
    return jobs.get(job.job_id)


def finish_with_point(
    jobs: JobStore, job: Job, point: RecoveryPoint, clock: Callable[[], datetime], *, manifest: str | None = None
) -> Job:
    """Complete backup ``job`` with ``point``, which an earlier try of it committed and recorded."""
    log.info(
        "backup job %s instance %s: point %s was recorded by an earlier try",
        job.job_id,
        job.instance,
        point.recovery_point_id,
    )
    at = clock().isoformat()
    commit = {"name": "Commit", "status": "Completed", "startTime": at, "endTime": at, "byEarlierTry": True}
    return complete_with_point(jobs, job, point, clock, steps=(commit,), manifest=manifest)


class BackupRunner:
    """Runs backup jobs (the queue worker calls ``run``)."""

    def __init__(
        self,
        state: StateStore,
        backups: BlobStore,
        secrets: SecretProvider,
        clock: Callable[[], datetime],
        *,
        pg_bin_dir: Path | None = None,
        function_timeout: timedelta | None = None,
        manifest: bool = True,
        allowed_servers: Sequence[str] = (),
    ) -> None:
        self._allowed_servers = tuple(allowed_servers)
        self._jobs = JobStore(state)
        self._instances = InstanceStore(state)
        self._policies = PolicyService(state)
        self._points = RecoveryPointStore(state)
        self._locks = InstanceLocks(state)
        self._backups = backups
        self._secrets = secrets
        self._clock = clock
        self._pg_bin_dir = pg_bin_dir
        self._function_timeout = function_timeout
        self._manifest = manifest

    def run(self, job_id: str, *, last_try: bool, attempt: int = 1) -> Job | None:
        """Run backup job ``job_id`` to its end, or raise ``TransientError`` for the queue to retry.

        ``attempt`` is the delivery number of the job's message (its dequeue count). None when
        the job was never recorded (its message outlived a failed request).
        """
        job = self._jobs.for_delivery(job_id, last_try=last_try)
        if job is None or job.status.finished:
            return job
        if job.cancel_requested is not None:  # cancelled while queued: never runs
            return end_cancelled(self._jobs, job_id, self._clock(), [], NOT_STARTED)
        timed_out = overran(job, self._clock(), self._function_timeout)
        if timed_out is not None:  # the host stopped the last attempt: never retried into the same wall
            return self._fail(job, timed_out, [])
        return self._run_locked(job, last_try=last_try, attempt=attempt)

    def _run_locked(self, job: Job, *, last_try: bool, attempt: int) -> Job:
        """Take the instance's lock for ``job`` and run it under its heartbeat."""
        job_id = job.job_id
        lock = self._locks.acquire(job.instance, job_id, self._clock(), attempt=attempt)
        if lock is None:
            return self._busy(job, last_try)
        steps: list[dict[str, Any]] = []
        heartbeat = Heartbeat(self._locks, lock, self._clock, watch=cancel_watch(self._jobs, job_id))
        try:
            with heartbeat:
                try:
                    return self._backup(job, heartbeat, steps)
                except ETagMismatch as exc:
                    raise job_changed(self._jobs, job) from exc
        except WorkCancelled as exc:
            return end_cancelled(self._jobs, job_id, self._clock(), steps, exc.args[0])
        except UserError as exc:
            return self._fail(self._jobs.get(job_id), exc, steps)
        except TransientError as exc:
            if not last_try:
                log.warning("backup job %s instance %s: %s; will retry", job_id, job.instance, exc.message)
                self._note_retry(job_id, exc, attempt)
                raise
            return self._fail(self._jobs.get(job_id), UserError(exc.code, exc.message), steps)
        finally:
            self._locks.release(heartbeat.lock)  # the latest: the first ETag is stale after a renewal

    def _note_retry(self, job_id: str, exc: TransientError, attempt: int) -> None:
        note_retry(self._jobs, job_id, exc, attempt, self._clock())

    def _busy(self, job: Job, last_try: bool) -> Job:
        """The instance's lock is taken: by this job elsewhere (drop this delivery) or by another."""
        holder = self._locks.holder(job.instance)
        if holder is not None and holder.job_id == job.job_id:
            log.info("backup job %s instance %s runs elsewhere; this delivery is dropped", job.job_id, job.instance)
            return job
        if not last_try:
            raise TransientError(f"another operation runs on {job.instance}; retrying later")
        error = UserError(
            ErrorCode.MAX_CONCURRENT_OPERATION_LIMIT_REACHED,
            f"another backup of {job.instance} ran during every try of this one",
        )
        return self._fail(job, error, [])

    def _fail(self, job: Job, error: UserError, steps: list[dict[str, Any]]) -> Job:
        return self._jobs.fail(job, error, self._clock(), steps)

    def _point_of_earlier_try(self, job: Job) -> RecoveryPoint | None:
        """The point an earlier try of ``job`` recorded before it could finish the job, if any."""
        try:
            return self._points.get(job.instance, recovery_point_id(job.job_id))
        except UserError:
            return None

    def _finish_with(self, job: Job, point: RecoveryPoint) -> Job:
        """Complete ``job`` with the point an earlier try committed and recorded.

        Dumping again would overwrite that committed blob with other bytes than its recorded checksum.
        """
        return finish_with_point(self._jobs, job, point, self._clock, manifest=self._manifest_of(point))

    def _complete(self, job: Job, point: RecoveryPoint, steps: tuple[dict[str, Any], ...], manifest: str | None) -> Job:
        return complete_with_point(self._jobs, job, point, self._clock, steps=steps, manifest=manifest)

    def _manifest_of(self, point: RecoveryPoint) -> str | None:
        if not self._manifest:
            return None
        name = manifest_name_for(point.blob_name)
        try:
            return name if self._backups.exists(name) else None
        except PgVaultError:
            return name

    def _backup(self, job: Job, heartbeat: Heartbeat, steps: list[dict[str, Any]]) -> Job:
        started = self._clock()
        job = self._jobs.save(
            job, start_time=job.start_time or started, steps=(), details=with_attempt_started(job, started)
        )
        recorded = self._point_of_earlier_try(job)
        if recorded is not None:
            return self._finish_with(job, recorded)
        instance = self._instances.get(job.instance)
        if instance.readiness is not Readiness.SUCCESS:
            raise UserError(
                ErrorCode.CONFLICT,
                f"backup instance {instance.spec.name} is not ready (readiness {instance.readiness.value})",
                recommended_action="Re-validate the instance and fix what its validation job reports.",
            )
        policy = self._policies.get(instance.spec.policy_name).policy

        def step(name: str) -> dict[str, Any]:
            entry = {"name": name, "status": "InProgress", "startTime": self._clock().isoformat()}
            steps.append(entry)
            return entry

        def done(entry: dict[str, Any]) -> None:
            entry["status"] = "Completed"
            entry["endTime"] = self._clock().isoformat()

        current = step("CheckPrivileges")
        params = credentials(self._secrets, instance)
        kwargs = libpq_for(instance, params, self._allowed_servers)
        with connect(kwargs) as conn:
            server_num = int(conn.info.server_version)
            server_text = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
            size = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]
            report = check_backup_privileges(conn, params.user)
        if not report.ok:
            raise to_user_error(report, instance.spec.name)
        done(current)
        tool = pick_tool("pg_dump", server_num // 10000, self._pg_bin_dir)

        current = step("Dump")
        rp_id = recovery_point_id(job.job_id)
        blob_name = blob_name_for(instance.spec.name, rp_id, heartbeat.lock.token)
        # The blob this attempt writes, on the job before a byte is staged (tests and people find it there).
        job = self._jobs.save(job, details={**job.details, "blobName": blob_name})
        progress = _Progress(self, job, heartbeat, size)
        dump_started = self._clock()
        result, tables = dump_with_manifest(
            tool.path,
            kwargs,
            params.child_env(
                host=instance.spec.server,
                port=instance.spec.port,
                dbname=instance.spec.database,
                refuses_cleartext=tool.refuses_cleartext,
                allowed_servers=self._allowed_servers,
            ),
            self._backups,
            blob_name,
            metadata={
                "instance": layout.row_key(instance.spec.name),
                "jobid": job.job_id,
                "serverversion": server_text,
                "pgdumpversion": tool.version_text.split()[-1],
            },
            on_progress=progress,
            expected_bytes=size,
            digests=self._manifest,
            stop=heartbeat.signal,
            before_commit=heartbeat.confirm,
        )
        job = progress.job
        try:
            manifest = self._write_manifest(
                blob_name,
                tables,
                {
                    "instance": instance.spec.name,
                    "time": dump_started.isoformat(),
                    "serverVersion": server_text,
                    "pgDumpVersion": tool.version_text,
                },
            )
            done(current)

            current = step("Commit")
            life = lifecycle(policy, self._tag(job, policy, dump_started), dump_started)
            self._before_point(started, heartbeat)
        except BaseException:
            self._discard(blob_name)  # committed, but no point will ever name it
            raise
        # From here the blob may be referenced (an insert that failed on the way back may have
        # happened): only a point naming another blob proves this one unreferenced.
        point, created = self._points.add(
            RecoveryPoint.from_lifecycle(
                rp_id,
                instance.spec.name,
                life,
                blob_name=blob_name,
                size_in_bytes=result.stream.stored_bytes,
                raw_bytes=result.raw_bytes,
                sha256=result.stream.sha256,
                server_version=server_text,
                pg_dump_version=tool.version_text,
                job_id=job.job_id,
                on_demand=job.details.get("trigger") == "OnDemand",
            )
        )
        if not created and point.blob_name != blob_name:
            # Another attempt of this job recorded its point first: that one is the backup.
            log.warning(
                "backup job %s instance %s: another attempt recorded point %s first; this attempt's blob goes",
                job.job_id,
                instance.spec.name,
                point.recovery_point_id,
            )
            self._discard(blob_name)
            manifest = self._manifest_of(point)
        done(current)
        log.info(
            "backup job %s instance %s: recovery point %s (%s, %s bytes)",
            job.job_id,
            instance.spec.name,
            point.recovery_point_id,
            point.retention_tag,
            point.size_in_bytes,
        )
        return self._complete(job, point, tuple(steps), manifest)

    def _tag(self, job: Job, policy: Policy, at: datetime) -> str:
        """The retention tag of the backup ``job`` makes at ``at``."""
        if job.details.get("trigger") == "OnDemand" and job.retention_tag is not None:
            return job.retention_tag
        # First of the week/month/year counts scheduled backups only: an on-demand one takes the
        # tag it asked for and does not take the place of the next scheduled one.
        rp_id = recovery_point_id(job.job_id)
        earlier = [p.time for p in self._points.of(job.instance) if not p.on_demand and p.recovery_point_id != rp_id]
        return tag_backup(policy, at, earlier)

    def _before_point(self, started: datetime, heartbeat: Heartbeat) -> None:
        """The last check before the point is recorded: the lock is still this attempt's, no cancel
        came, and the attempt is younger than ``attempt_limit`` (the retention sweep collects an
        unreferenced blob only once it is older than ``MAX_JOB_LIFETIME``, longer than that)."""
        heartbeat.confirm()
        limit = attempt_limit(self._function_timeout)
        if self._clock() - started > limit:
            raise TransientError(f"this attempt started more than {limit} ago; it records no point")

    def _discard(self, blob_name: str) -> None:
        """Delete a blob (and its manifest) that no point references; best effort (the sweep collects leftovers)."""
        for name in (blob_name, manifest_name_for(blob_name)):
            try:
                self._backups.delete(name)
            except PgVaultError as exc:
                log.warning("could not delete unreferenced blob %s: %s", name, type(exc).__name__)

    def _write_manifest(self, blob_name: str, tables: dict[str, Any] | None, about: dict[str, Any]) -> str | None:
        """Store the dump's manifest beside its blob (this attempt's own, like the blob)."""
        if tables is None:
            return None
        name = manifest_name_for(blob_name)
        doc = {"format": 1, **about, "tables": tables}
        # The name is this attempt's own, as its blob's is: overwriting replaces only a retry of this upload.
        self._backups.put(name, json.dumps(doc, sort_keys=True).encode(), content_type="application/json")
        return name
