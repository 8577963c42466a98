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

from shared.errors import TransientError, UserError
from shared.instances import Instance, InstanceService, ProtectionStatus, Readiness
from shared.jobs import Job, JobError, JobStatus, JobStore
from shared.pg.connect import connect
from shared.pg.connstring import ConnectionParams, parse_connection_string
from shared.pg.privileges import check_backup_privileges, to_user_error
from shared.pg.tools import pick_tool
from shared.secrets import SecretProvider
from shared.storage import layout
from shared.storage.queues import QueueSender
from shared.storage.tables import ETagMismatch, StateTable

log = logging.getLogger(__name__)


def enqueue_validation(queues: QueueSender) -> Callable[[Job, Instance], None]:
    """The callback that puts a validation job's message on the validation queue."""

    def send(job: Job, instance: Instance) -> None:
        queues.send(layout.VALIDATE_QUEUE, {"jobId": job.job_id, "instance": instance.spec.name})

    return send


def revalidate(state: StateTable, queues: QueueSender, name: str, now: datetime) -> Job:
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


# A job record is one table entity: the full list is capped (the count says how many there were).
MAX_LISTED_PRIVILEGES = 200


class ValidationService:
    """Runs validation jobs (the queue worker calls ``run``)."""

    def __init__(
        self,
        state: StateTable,
        secrets: SecretProvider,
        clock: Callable[[], datetime],
        *,
        pg_bin_dir: Path | None = None,
        allowed_servers: Sequence[str] = (),
    ) -> None:
        self._allowed_servers = tuple(allowed_servers)
        self._state = state
        self._jobs = JobStore(state)
        self._instances = InstanceService(state, lambda job, instance: None)
        self._secrets = secrets
        self._clock = clock
        self._pg_bin_dir = pg_bin_dir

    def run(self, job_id: str, *, last_try: bool) -> Job:
        """Validate the job's instance and record the outcome on the job and the instance.

        A repeated delivery of a finished job changes nothing. A ``TransientError`` is raised
        for the queue to retry, except on the ``last_try``, where it fails the job instead.
        """
        job = self._jobs.get(job_id)
        if job.status.finished:
            log.info("validation job %s already %s; nothing to do", job_id, job.status)
            return job
        try:
            instance = self._instances.get(job.instance)
        except UserError as exc:
            return self._jobs.finish(job, JobStatus.FAILED, self._clock(), error=JobError.from_user_error(exc))
        if instance.readiness_job_id != job.job_id:
            # A newer validation was asked for: its job decides the readiness, not this one.
            return self._jobs.finish(
                job, JobStatus.CANCELLED, self._clock(), details={"supersededBy": instance.readiness_job_id}
            )
        if job.start_time is None:
            job = self._jobs.save(job, start_time=self._clock())
        steps: list[dict[str, Any]] = []
        found: dict[str, Any] = {}
        try:
            details = self._check(instance, steps, found)
        except UserError as exc:
            return self._record(job, instance, steps, exc, found)
        except TransientError as exc:
            if not last_try:
                log.warning("validation job %s instance %s: %s; will retry", job_id, instance.spec.name, exc.message)
                raise
            failure = UserError(exc.code, exc.message)
            return self._record(job, instance, steps, failure, {})
        return self._record(job, instance, steps, None, details)

    def _check(self, instance: Instance, steps: list[dict[str, Any]], found: dict[str, Any]) -> dict[str, Any]:
        """Run the checks, appending each as a step; ``found`` gets what a failed check found."""

        def step(name: str) -> dict[str, Any]:
            entry = {"name": name, "status": "InProgress", "startTime": self._clock().isoformat()}
            steps.append(entry)
            return entry

        current = step("ReadSecret")
        params = credentials(self._secrets, instance)
        current["status"] = "Completed"
        current = step("Connect")
        kwargs = libpq_for(instance, params, self._allowed_servers)
        with connect(kwargs) as conn:
            server_num = int(conn.info.server_version)
            current["status"] = "Completed"
            current = step("CheckPrivileges")
            report = check_backup_privileges(conn, params.user)
            if not report.ok:
                # The message names the first few; the job keeps the whole list for "View details".
                found["missingPrivileges"] = report.to_dict()["missing"][:MAX_LISTED_PRIVILEGES]
                found["missingPrivilegesCount"] = len(report.missing)
                raise to_user_error(report)
            current["status"] = "Completed"
            if report.warnings:
                current["warnings"] = list(report.warnings)[:20]
        current = step("FindPgDump")
        tool = pick_tool("pg_dump", server_num // 10000, self._pg_bin_dir)
        current["status"] = "Completed"
        return {"serverVersion": server_num, "pgDump": tool.version_text}

    def _record(
        self,
        job: Job,
        instance: Instance,
        steps: list[dict[str, Any]],
        failure: UserError | None,
        details: dict[str, Any],
    ) -> Job:
        return record_validation(
            self._jobs, self._instances, job, instance, steps=steps, failure=failure, details=details, now=self._clock()
        )


def fail_validation(state: StateTable, job: Job, failure: UserError, now: datetime) -> Job:
    """Fail validation ``job`` with ``failure`` and, when it is its instance's current validation,
    set the instance's readiness Failed with it (as a validation that found ``failure`` does)."""
    jobs, instances = JobStore(state), InstanceService(state, lambda job, instance: None)
    try:
        instance = instances.get(job.instance)
    except UserError:
        return jobs.fail(job, failure, now, [])
    if instance.readiness_job_id != job.job_id:
        return jobs.fail(job, failure, now, [])
    return record_validation(
        jobs, instances, job, instance, steps=[], failure=failure, details={**job.details}, now=now
    )


def record_validation(
    jobs: JobStore,
    instances: InstanceService,
    job: Job,
    instance: Instance,
    *,
    steps: list[dict[str, Any]],
    failure: UserError | None,
    details: dict[str, Any],
    now: datetime,
) -> Job:
    """Record a validation's outcome: the instance's readiness (and protection), then the job."""
    for entry in steps:
        if entry["status"] == "InProgress":
            entry["status"] = "Failed" if failure else "Completed"
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
        instances.save(instance, updated)
    except ETagMismatch:
        # Reconfigured meanwhile: the newer validation decides; this job still says what it found.
        log.info("instance %s changed during validation job %s", instance.spec.name, job.job_id)
    status = JobStatus.FAILED if failure else JobStatus.COMPLETED
    log.info(
        "validation job %s instance %s: %s%s",
        job.job_id,
        instance.spec.name,
        status,
        f" ({failure.code})" if failure else "",
    )
    return jobs.finish(job, status, now, error=error, steps=tuple(steps), details=details)
