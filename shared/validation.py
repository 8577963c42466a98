"""Validation of a backup instance: can this vault back up that database, and if not, why.

Checks, in order, each a step of the job: the secret is readable and well-formed, the server
answers and the login works, the user holds the backup privileges on the database, and a
``pg_dump`` at least as new as the server is available. The instance's readiness becomes
``Success`` or ``Failed`` with the first problem's code and recommended action.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from shared.alerts.events import DRIFT_DETAIL
from shared.errors import UserError
from shared.instances import Instance, InstanceService, InstanceStore, ProtectionStatus, Readiness, RetainData
from shared.jobs import Job, JobError, JobStatus, JobStore, Operation, Step, StepStatus, end_steps, job_time
from shared.jobs.runner import JobRun, JobRunner, Work
from shared.pg.connect import connect
from shared.pg.connstring import ConnectionParams, parse_connection_string
from shared.pg.privileges import check_backup_privileges, to_user_error
from shared.pg.tools import Tool, pick_tool
from shared.secrets import SecretProvider
from shared.storage import layout
from shared.storage.queues import QueueSender
from shared.storage.tables import ETagMismatch, StateStore
from shared.validate_for_backup import candidate_of, record_candidate, would_be

log = logging.getLogger(__name__)


def enqueue_validation(queues: QueueSender) -> Callable[[Job, Instance], None]:
    """The callback that puts a validation job's message on the validation queue."""

    def send(job: Job, instance: Instance) -> None:
        queues.send(layout.VALIDATE_QUEUE, {"jobId": job.job_id, "instance": instance.spec.name})

    return send


def revalidate(state: StateStore, queues: QueueSender, name: str, now: datetime) -> Job:
    """Start a new validation of instance ``name``; returns its job."""
    return InstanceService(state, enqueue_validation(queues)).revalidate(name, now)


def credentials(secrets: SecretProvider, instance: Instance) -> ConnectionParams:
    """The connection parameters in the instance's secret (``UserError`` if unreadable or malformed)."""
    return parse_connection_string(secrets.get_secret(instance.spec.secret_uri))


def libpq_for(instance: Instance, params: ConnectionParams, allowed_servers: Sequence[str] = ()) -> dict[str, Any]:
    """libpq parameters for the instance's database: its server, port and database, the secret's login.

    ``UserError`` (InvalidRequest) when the secret may not be used for the instance's server
    (``shared.pg.connstring.check_server``): checked at every run, since a secret can change.
    """
    return params.libpq_kwargs(
        host=instance.spec.server,
        port=instance.spec.port,
        dbname=instance.spec.database,
        allowed_servers=allowed_servers,
    )


def dump_env_for(
    instance: Instance, params: ConnectionParams, tool: Tool, allowed_servers: Sequence[str] = ()
) -> dict[str, str]:
    """The ``PG*`` environment of a ``pg_dump`` of the instance's database with the secret's login (the
    password only there), bound to the instance's server as ``libpq_for`` is."""
    spec = instance.spec
    return params.child_env(
        host=spec.server,
        port=spec.port,
        dbname=spec.database,
        refuses_cleartext=tool.refuses_cleartext,
        allowed_servers=allowed_servers,
    )


# A job record is one table entity: the full list is capped (the count says how many there were).
MAX_LISTED_PRIVILEGES = 200


class ValidationService:
    """Runs validation jobs (the queue worker calls ``run``) through the one job runner (no lock:
    a validation only reads, and the instance's ``readiness_job_id`` says which one counts)."""

    def __init__(
        self,
        state: StateStore,
        secrets: SecretProvider,
        clock: Callable[[], datetime],
        *,
        pg_bin_dir: Path | None = None,
        allowed_servers: Sequence[str] = (),
    ) -> None:
        self._allowed_servers = tuple(allowed_servers)
        self._state = state
        self._runner = JobRunner(state, clock)
        self._jobs = self._runner.jobs
        self._instances = InstanceStore(state)
        self._secrets = secrets
        self._clock = clock
        self._pg_bin_dir = pg_bin_dir

    def run(self, job_id: str, *, last_try: bool, attempt: int = 1) -> Job | None:
        """Validate the job's instance and record the outcome on the job and the instance.

        A repeated delivery of a finished job changes nothing. A ``TransientError`` is raised
        for the queue to retry, except on the ``last_try``, where it fails the job instead.
        """
        return self._runner.run(job_id, _Validation(self), last_try=last_try, attempt=attempt)

    def _check(
        self, instance: Instance, run: JobRun, found: dict[str, Any], *, script: str | None = None
    ) -> dict[str, Any]:
        """Run the checks, each a step of ``run``; ``found`` gets what a failed check found (``script``:
        where the grant script is, when not at the instance's)."""
        run.begin("ReadSecret")
        params = credentials(self._secrets, instance)
        run.done()
        run.begin("Connect")
        kwargs = libpq_for(instance, params, self._allowed_servers)
        with connect(kwargs) as conn:
            server_num = int(conn.info.server_version)
            run.done()
            run.begin("CheckPrivileges")
            report = check_backup_privileges(conn, params.user)
            if not report.ok:
                # The message names the first few; the job keeps the whole list for "View details".
                found["missingPrivileges"] = report.to_dict()["missing"][:MAX_LISTED_PRIVILEGES]
                found["missingPrivilegesCount"] = len(report.missing)
                raise to_user_error(report, script=script)
            run.done(warnings=tuple(report.warnings)[:20])
        run.begin("FindPgDump")
        tool = pick_tool("pg_dump", server_num // 10000, self._pg_bin_dir)
        run.done()
        return {"serverVersion": server_num, "pgDump": tool.version_text}


class _Validation(Work):
    """One validation job, as the job runner runs it. It decides about the instance as it read it
    first: an instance changed meanwhile (reconfigured, stopped) keeps the change (the ETag)."""

    kind = "validation"

    def __init__(self, service: ValidationService) -> None:
        self._service = service
        self._instance: Instance | None = None
        self._found: dict[str, Any] = {}  # what a failed check found, kept on the failed job
        self._candidate = False  # a validate-for-backup job: nothing but the job is written

    def ready(self, run: JobRun) -> Job | None:
        s = self._service
        candidate = candidate_of(run.job)
        if candidate is not None:  # validate for backup: the would-be instance, never stored
            self._candidate = True
            self._instance = would_be(candidate, run.job.job_id, run.job.created)
            return None
        instance = s._instances.get(run.job.instance)  # gone: the job fails with NotFound
        if instance.readiness_job_id != run.job.job_id:
            # A newer validation was asked for: its job decides the readiness, not this one.
            details = {**run.job.details, "supersededBy": instance.readiness_job_id}
            return s._jobs.finish(run.job, JobStatus.CANCELLED, s._clock(), details=details)
        self._instance = instance
        return None

    def __call__(self, run: JobRun) -> Job:
        s, instance = self._service, self._instance
        assert instance is not None
        script = run.job.links().get("grantScript") if self._candidate else None
        details = s._check(instance, run, self._found, script=script)
        if self._candidate:
            return record_candidate(
                s._jobs, run.job, steps=run.steps, failure=None, details={**run.job.details, **details}, now=s._clock()
            )
        return record_validation(
            s._jobs, s._instances, run.job, instance, steps=run.steps, failure=None, details=details, now=s._clock()
        )

    def fail(self, jobs: JobStore, job: Job, error: UserError, steps: tuple[Step, ...], now: datetime) -> Job:
        if self._instance is None or job.status.finished:  # not read (gone, or storage failed): as the sweep does
            return fail_validation(self._service._state, job, error, now, steps)
        if self._candidate:
            return record_candidate(
                jobs, job, steps=steps, failure=error, details={**job.details, **self._found}, now=now
            )
        return record_validation(
            jobs,
            self._service._instances,
            job,
            self._instance,
            steps=steps,
            failure=error,
            details={**job.details, **self._found},
            now=now,
        )


def fail_validation(state: StateStore, job: Job, failure: UserError, now: datetime, steps: Sequence[Step] = ()) -> Job:
    """Fail validation ``job`` with ``failure`` and, when it is its instance's current validation,
    set the instance's readiness Failed with it (as a validation that found ``failure`` does)."""
    jobs, instances = JobStore(state), InstanceStore(state)
    if job.status.finished:
        return job
    if candidate_of(job) is not None:  # validate for backup: its instance does not exist, whatever has that name
        return record_candidate(
            jobs, job, steps=steps or job.steps, failure=failure, details=dict(job.details), now=now
        )
    try:
        instance = instances.get(job.instance)
    except UserError:
        return jobs.fail(job, failure, now, steps)
    if instance.readiness_job_id != job.job_id:
        return jobs.fail(job, failure, now, steps)
    return record_validation(
        jobs, instances, job, instance, steps=steps or job.steps, failure=failure, details={**job.details}, now=now
    )


def previous_validation(jobs: JobStore, instance: str, job_id: str) -> Job | None:
    """The newest validation of ``instance`` before ``job_id`` that came to a result (Completed or Failed;
    a Cancelled one was superseded and says nothing), or None."""
    for earlier in jobs.history(instance):
        if earlier.job_id == job_id or earlier.operation is not Operation.VALIDATE:
            continue
        if earlier.status in (JobStatus.COMPLETED, JobStatus.FAILED) and earlier.created <= job_time(job_id):
            return earlier
    return None


def record_validation(
    jobs: JobStore,
    instances: InstanceStore,
    job: Job,
    instance: Instance,
    *,
    steps: Sequence[Step],
    failure: UserError | None,
    details: dict[str, Any],
    now: datetime,
) -> Job:
    """Record a validation's outcome: the instance's readiness (and protection), then the job."""
    ended = end_steps(steps, StepStatus.FAILED if failure else StepStatus.COMPLETED, now)
    error = JobError.from_user_error(failure) if failure else None
    readiness = Readiness.FAILED if failure else Readiness.SUCCESS
    # A stopped instance stays stopped, and a failed re-validation does not unprotect a protected
    # one (its readiness says Failed, so the scheduler skips it until it validates again).
    was = instance.protection_status
    protection: ProtectionStatus
    if was is ProtectionStatus.STOPPED or (failure is not None and was is ProtectionStatus.PROTECTED):
        protection = was
    elif failure is None:
        protection = ProtectionStatus.PROTECTED
    else:
        protection = ProtectionStatus.CONFIGURING_FAILED
    updated = replace(
        instance,
        readiness=readiness,
        readiness_error=error.to_dict() if error else None,
        protection_status=protection,
    )
    try:
        if instance.retain_data is RetainData.DELETE:
            # Being deleted (stop with delete): its readiness means nothing now, and the purge that
            # deletes it holds its ETag.
            log.info("instance %s is being deleted; validation job %s leaves it", instance.spec.name, job.job_id)
        else:
            instances.save(instance, updated)
    except ETagMismatch:
        # Reconfigured meanwhile: the newer validation decides; this job still says what it found.
        log.info("instance %s changed during validation job %s", instance.spec.name, job.job_id)
    status = JobStatus.FAILED if failure else JobStatus.COMPLETED
    if failure is not None:
        previous = previous_validation(jobs, instance.spec.name, job.job_id)
        if previous is not None and previous.status is JobStatus.COMPLETED:
            # Privilege drift: it worked before and fails now (the job's alert says so, shared.alerts).
            details = {**details, DRIFT_DETAIL: {"previousJobId": previous.job_id}}
    log.info(
        "validation job %s instance %s: %s%s",
        job.job_id,
        instance.spec.name,
        status,
        f" ({failure.code})" if failure else "",
    )
    return jobs.finish(job, status, now, error=error, steps=ended, details=details)
