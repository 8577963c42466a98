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

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from shared.backup_parts import DEFAULT_PART_BYTES, INLINE_LIMIT, PART_TIMEOUT, PartCoordinator, PartsJob
from shared.errors import ErrorCode, PgVaultError, TransientError, UserError
from shared.fanout import WAITING, BackupLimits, FanOut
from shared.instances import Instance, InstanceStore, Readiness
from shared.jobs import Job, JobStatus, JobStore, Step, StepStatus, end_steps
from shared.jobs.runner import JobRun, JobRunner, Work
from shared.locks import Heartbeat
from shared.pg.connect import connect
from shared.pg.connstring import ConnectionParams
from shared.pg.dump import DumpResult, dump_with_manifest
from shared.pg.parts import DEFAULT_PARALLEL_MIN_BYTES, NoSnapshot, PartedDump, dump_in_parts
from shared.pg.privileges import check_backup_privileges, to_user_error
from shared.pg.roles import Roles, read_needed_roles
from shared.pg.tools import Tool, pick_tool
from shared.policies import PolicyService
from shared.policy import Policy, lifecycle, tag_backup
from shared.recovery_points import Part, RecoveryPoint, RecoveryPointStore, recovery_point_id
from shared.secrets import SecretProvider
from shared.storage import layout
from shared.storage.blobs import BlobStore
from shared.storage.layout import manifest_name_for, part_blob_name, roles_name_for, sidecar_names
from shared.storage.queues import QueueSender
from shared.storage.tables import ETagMismatch, StateStore
from shared.timeouts import attempt_limit, last_attempt_started
from shared.validation import credentials, dump_env_for, libpq_for

log = logging.getLogger(__name__)


def blob_name_for(instance: str, rp_id: str, attempt: str) -> str:
    """Where attempt ``attempt`` (its lock token) of the backup making point ``rp_id`` writes its dump.

    Every attempt has a blob of its own: two attempts of one job never commit over each other.
    """
    return f"{layout.row_key(instance)}/{rp_id}.{attempt}{layout.DUMP_SUFFIX}"


def complete_with_point(
    jobs: JobStore,
    job: Job,
    point: RecoveryPoint,
    clock: Callable[[], datetime],
    *,
    steps: tuple[Step, ...],
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
                    "roleCount": point.role_count,
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
    at = clock()
    commit = Step("Commit", StepStatus.COMPLETED, at, at, by_earlier_try=True)
    return complete_with_point(jobs, job, point, clock, steps=(commit,), manifest=manifest)


@dataclass(frozen=True)
class _Source:
    """What the CheckPrivileges step learnt of the instance's server, for the dump."""

    instance: Instance
    policy: Policy
    params: ConnectionParams
    kwargs: dict[str, Any]
    server_text: str
    size: int
    tool: Tool
    roles: Roles | None = None
    server_major: int = 0


@dataclass(frozen=True)
class _Dumped:
    """What the Dump step committed: this attempt's blob (and parts), its stream's figures and its manifest."""

    blob_name: str
    result: DumpResult
    manifest: str | None
    started: datetime
    roles: tuple[str, str, int] | None = None  # (blob, SHA-256, how many roles)
    parts: tuple[Part, ...] = ()

    @property
    def stored_bytes(self) -> int:
        return self.result.stream.stored_bytes + sum(p.stored_bytes for p in self.parts)

    @property
    def raw_bytes(self) -> int:
        return self.result.raw_bytes + sum(p.raw_bytes for p in self.parts)


class BackupRunner(Work):
    """Runs backup jobs (the queue worker calls ``run``) through the one job runner."""

    kind = "backup"

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
        parallelism: int = 1,
        parallel_min_bytes: int = DEFAULT_PARALLEL_MIN_BYTES,
        queues: QueueSender | None = None,
        limits: BackupLimits | None = None,
        manifest_from_stream: bool = True,
        parts_across_instances: bool = False,
        part_bytes: int = DEFAULT_PART_BYTES,
        part_timeout: timedelta = PART_TIMEOUT,
        part_message_limit: int = INLINE_LIMIT,
    ) -> None:
        if parts_across_instances and queues is None:
            raise ValueError("parts across instances need the queues to send them on")
        self._coordinator = (
            PartCoordinator(
                state,
                backups,
                queues,
                clock,
                part_bytes=part_bytes,
                part_timeout=part_timeout,
                inline_limit=part_message_limit,
            )
            if parts_across_instances and queues is not None
            else None
        )
        self._parallelism = parallelism
        self._parallel_min_bytes = parallel_min_bytes
        self._allowed_servers = tuple(allowed_servers)
        self._fanout = FanOut(state, queues, limits)
        self._dispatch = queues is not None
        self._runner = JobRunner(state, clock, function_timeout=function_timeout)
        self._jobs = self._runner.jobs
        self._instances = InstanceStore(state)
        self._policies = PolicyService(state)
        self._points = RecoveryPointStore(state)
        self._backups = backups
        self._secrets = secrets
        self._clock = clock
        self._pg_bin_dir = pg_bin_dir
        self._function_timeout = function_timeout
        self._manifest = manifest
        self._manifest_from_stream = manifest_from_stream

    def run(self, job_id: str, *, last_try: bool, attempt: int = 1) -> Job | None:
        """Run backup job ``job_id`` to its end, or raise ``TransientError`` for the queue to retry.

        ``attempt`` is the delivery number of the job's message (its dequeue count). None when
        the job was never recorded (its message outlived a failed request).
        """
        try:
            job = self._runner.run(job_id, self, last_try=last_try, attempt=attempt)
        except BaseException:
            self._hand_on(job_id)  # the retry takes its seats again (or waits in line)
            raise
        if job is None or job.status.finished:
            self._hand_on(job_id)
        return job

    def _hand_on(self, job_id: str) -> None:
        """Give back the seats of ``job_id`` and let the next backups in line start (best effort:
        seats left behind expire, and every tick dispatches)."""
        try:
            now = self._clock()
            self._fanout.release(job_id, now)
            if self._dispatch:
                self._fanout.dispatch(now)
        except PgVaultError as exc:
            log.warning("backup job %s: seats not handed on (%s); they expire", job_id, exc)

    # --- the work, as the runner calls it -------------------------------------------------------

    def lock_key(self, job: Job) -> str:
        return job.instance

    def ready(self, run: JobRun) -> Job | None:
        """Take this backup's seats (``shared.fanout``: per server, in the vault), or put it in line."""
        job = run.job
        instance = self._instances.find(job.instance)
        if instance is None:
            return None  # the attempt starts, is recorded, and fails NotFound like any other
        server = layout.server_key(instance.spec.server, instance.spec.port)
        now = self._clock()
        busy = self._fanout.reserve(job.job_id, job.instance, server, now, state="running")
        if busy is None:
            if WAITING in job.details:
                run.save(details={k: v for k, v in job.details.items() if k != WAITING})
            return None
        order = job.created if job.details.get("trigger") == "Schedule" else now
        key, entry = self._fanout.entry(job, server, order)
        self._fanout.enqueue([(key, entry)])
        log.info("backup job %s instance %s waits: %s", job.job_id, job.instance, busy)
        return run.save(details={**job.details, WAITING: FanOut.waiting(key, f"waiting: {busy}", now)})

    def busy(self, job: Job) -> UserError:
        return UserError(
            ErrorCode.MAX_CONCURRENT_OPERATION_LIMIT_REACHED,
            f"another backup of {job.instance} ran during every try of this one",
        )

    def __call__(self, run: JobRun) -> Job:
        attempt_started = last_attempt_started(run.job) or self._clock()
        recorded = self._point_of_earlier_try(run.job)
        if recorded is not None:
            # Dumping again would overwrite that committed blob with other bytes than its recorded checksum.
            return finish_with_point(self._jobs, run.job, recorded, self._clock, manifest=self._manifest_of(recorded))
        source = self._check(run)
        dumped = self._dump(run, source)
        return self._commit(run, source, dumped, attempt_started)

    def _point_of_earlier_try(self, job: Job) -> RecoveryPoint | None:
        """The point an earlier try of ``job`` recorded before it could finish the job, if any."""
        try:
            return self._points.get(job.instance, recovery_point_id(job.job_id))
        except UserError:
            return None

    def _manifest_of(self, point: RecoveryPoint) -> str | None:
        if not self._manifest:
            return None
        name = manifest_name_for(point.blob_name)
        try:
            return name if self._backups.exists(name) else None
        except PgVaultError:
            return name

    def _check(self, run: JobRun) -> _Source:
        """Step CheckPrivileges: the instance is ready, the secret's user may back its database up."""
        instance = self._instances.get(run.job.instance)
        if instance.readiness is not Readiness.SUCCESS:
            raise UserError(
                ErrorCode.CONFLICT,
                f"backup instance {instance.spec.name} is not ready (readiness {instance.readiness.value})",
                recommended_action="Re-validate the instance and fix what its validation job reports.",
            )
        policy = self._policies.get(instance.spec.policy_name).policy
        run.begin("CheckPrivileges")
        params = credentials(self._secrets, instance)
        kwargs = libpq_for(instance, params, self._allowed_servers)
        with connect(kwargs) as conn:
            server_num = int(conn.info.server_version)
            server_text = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
            size = int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])  # type: ignore[index]
            report = check_backup_privileges(conn, params.user)
            roles = read_needed_roles(conn) if report.ok else None
        if not report.ok:
            raise to_user_error(report, instance.spec.name)
        run.done()
        tool = pick_tool("pg_dump", server_num // 10000, self._pg_bin_dir)
        return _Source(instance, policy, params, kwargs, server_text, size, tool, roles, server_num // 10000)

    def _dump(self, run: JobRun, source: _Source) -> _Dumped:
        """Step Dump: pg_dump streamed into this attempt's own blob, committed with its checksum."""
        spec, tool = source.instance.spec, source.tool
        blob_name = blob_name_for(spec.name, recovery_point_id(run.job.job_id), self._token(run))
        # The blob this attempt writes, on the job before a byte is staged (tests and people find it there).
        run.begin("Dump", details={**run.job.details, "blobName": blob_name})
        dump_started = self._clock()
        assert run.heartbeat is not None  # a backup always runs under its instance's lock
        env = dump_env_for(source.instance, source.params, tool, self._allowed_servers)
        metadata = {
            "instance": layout.row_key(spec.name),
            "jobid": run.job.job_id,
            "serverversion": source.server_text,
            "pgdumpversion": tool.version_text.split()[-1],
        }
        parts: tuple[Part, ...] = ()
        parted: PartedDump | None = None
        in_parts = self._parallelism > 1 or self._coordinator is not None
        if in_parts and source.size >= self._parallel_min_bytes:
            try:
                parted = self._dump_parts(run, source, env, blob_name, metadata=metadata, at=dump_started)
            except NoSnapshot as exc:
                log.warning("backup job %s instance %s: %s; one stream instead", run.job.job_id, spec.name, exc)
        if parted is not None:
            result, tables, parts = parted.schema, parted.tables, parted.parts
        else:
            result, tables = dump_with_manifest(
                tool.path,
                source.kwargs,
                env,
                self._backups,
                blob_name,
                metadata=metadata,
                on_progress=lambda raw: run.progress(raw, source.size),
                expected_bytes=source.size,
                digests=self._manifest,
                from_stream=self._manifest_from_stream,
                stop=run.heartbeat.signal,
                before_commit=run.heartbeat.confirm,
            )
        try:
            about = {
                "instance": spec.name,
                "time": dump_started.isoformat(),
                "serverVersion": source.server_text,
                "pgDumpVersion": tool.version_text,
                **({"parts": [p.to_dict() for p in parts]} if parts else {}),
            }
            manifest = self._write_manifest(blob_name, tables, about)
            roles = self._write_roles(blob_name, source.roles)
            run.done()
        except BaseException:
            self._discard(blob_name, len(parts))  # committed, but no point will ever name it
            raise
        return _Dumped(blob_name, result, manifest, dump_started, roles, parts)

    def _dump_parts(
        self,
        run: JobRun,
        source: _Source,
        env: dict[str, str],
        blob_name: str,
        *,
        metadata: dict[str, str],
        at: datetime,
    ) -> PartedDump:
        """The multi-part dump: on this invocation's threads, or (across instances) as queue messages."""
        assert run.heartbeat is not None
        common: dict[str, Any] = {
            "parallelism": self._parallelism,
            "metadata": metadata,
            "on_progress": lambda raw: run.progress(raw, source.size),
            "digests": self._manifest,
            "stop": run.heartbeat.signal,
            "before_commit": run.heartbeat.confirm,
        }
        if self._coordinator is None:
            return dump_in_parts(
                source.tool.path,
                source.kwargs,
                env,
                self._backups,
                blob_name,
                from_stream=self._manifest_from_stream,
                **common,
            )
        # Across instances too the stream manifest costs the server no second read: each part worker
        # digests its own part's stream and keeps the digests beside its blob, the coordinator digests
        # the schema part and merges them. With the stream manifest off it digests the snapshot's tables.
        about = PartsJob(
            run.job.job_id, source.instance.spec.name, self._token(run), source.server_major, source.tool.version_text
        )
        deadline = (last_attempt_started(run.job) or at) + attempt_limit(self._function_timeout)
        return self._coordinator.dump(
            about,
            source.tool.path,
            source.kwargs,
            env,
            blob_name,
            deadline=deadline,
            from_stream=self._manifest_from_stream,
            **common,
        )

    @staticmethod
    def _token(run: JobRun) -> str:
        assert run.heartbeat is not None
        return run.heartbeat.lock.token

    def _commit(self, run: JobRun, source: _Source, dumped: _Dumped, attempt_started: datetime) -> Job:
        """Step Commit: the recovery point recorded (the insert decides which attempt's blob is the backup)."""
        job, blob_name = run.job, dumped.blob_name
        try:
            run.begin("Commit")
            life = lifecycle(source.policy, self._tag(job, source.policy, dumped.started), dumped.started)
            assert run.heartbeat is not None
            self._before_point(attempt_started, run.heartbeat)
        except BaseException:
            self._discard(blob_name, len(dumped.parts))  # committed, but no point will ever name it
            raise
        # From here the blob may be referenced (an insert that failed on the way back may have
        # happened): only a point naming another blob proves this one unreferenced.
        point, created = self._points.add(
            RecoveryPoint.from_lifecycle(
                recovery_point_id(job.job_id),
                source.instance.spec.name,
                life,
                blob_name=blob_name,
                size_in_bytes=dumped.stored_bytes,
                raw_bytes=dumped.raw_bytes,
                sha256=dumped.result.stream.sha256,
                server_version=source.server_text,
                pg_dump_version=source.tool.version_text,
                job_id=job.job_id,
                on_demand=job.details.get("trigger") == "OnDemand",
                roles_blob_name=dumped.roles[0] if dumped.roles else None,
                roles_sha256=dumped.roles[1] if dumped.roles else None,
                role_count=dumped.roles[2] if dumped.roles else None,
                parts=dumped.parts,
            )
        )
        manifest = dumped.manifest
        if not created and point.blob_name != blob_name:
            # Another attempt of this job recorded its point first: that one is the backup.
            log.warning(
                "backup job %s instance %s: another attempt recorded point %s first; this attempt's blob goes",
                job.job_id,
                job.instance,
                point.recovery_point_id,
            )
            self._discard(blob_name, len(dumped.parts))
            manifest = self._manifest_of(point)
        log.info(
            "backup job %s instance %s: recovery point %s (%s, %s bytes)",
            job.job_id,
            job.instance,
            point.recovery_point_id,
            point.retention_tag,
            point.size_in_bytes,
        )
        steps = end_steps(run.steps, StepStatus.COMPLETED, self._clock())
        return complete_with_point(self._jobs, run.job, point, self._clock, steps=steps, manifest=manifest)

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

    def _discard(self, blob_name: str, parts: int = 0) -> None:
        """Delete a blob, its parts, its manifest and roles, which no point references (best effort: the sweep
        collects leftovers)."""
        names = [blob_name, *(part_blob_name(blob_name, i) for i in range(1, parts + 1)), *sidecar_names(blob_name)]
        for name in names:
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

    def _write_roles(self, blob_name: str, roles: Roles | None) -> tuple[str, str, int] | None:
        """Store the roles the database needs beside the blob (this attempt's own name): (blob, SHA-256, count)."""
        if roles is None:
            return None
        name, body = roles_name_for(blob_name), roles.to_bytes()
        self._backups.put(name, body, content_type="application/json")
        return name, hashlib.sha256(body).hexdigest(), len(roles.roles)
