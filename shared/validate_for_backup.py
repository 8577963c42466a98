"""Validate for backup: would this database back up, without configuring it (Azure's ``validateForBackup``).

``POST /api/backupInstances:validateForBackup`` takes the fields of one configure entry and runs
the same checks as an instance's validation (secret, connection, privileges, pg_dump) as a
``Validate`` job, but stores no instance and claims no database: a wizard left half-way leaves
nothing behind but finished jobs. What configure would refuse at once (a malformed entry, a
secret written for another server, a missing policy, a database already protected, a name
taken) is refused here the same way. The job records the would-be instance under
``details.backupInstance``; when it ends, ``details.backupReadiness`` is ``Success`` or
``Failed`` (with the error, its recommended action and, for missing privileges, the full list),
and ``links.grantScript`` / ``links.roleAssignmentTemplate`` give what an administrator needs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

from shared.errors import ErrorCode, UserError
from shared.instances import (
    Enqueue,
    Instance,
    InstanceSpec,
    InstanceStore,
    ProtectionStatus,
    Readiness,
    check_secret_server,
    parse_spec,
)
from shared.jobs import Job, JobError, JobStatus, JobStore, Operation, Step, StepStatus, end_steps, new_job_id
from shared.jobs.model import CANDIDATE_DETAIL
from shared.pg.connstring import parse_connection_string
from shared.pg.grants import ScriptFormat, grant_script
from shared.policies import PolicyService
from shared.role_template import role_assignment_template
from shared.secrets import SecretProvider
from shared.storage.tables import StateStore

log = logging.getLogger(__name__)

CANDIDATE = CANDIDATE_DETAIL
"""The key of a validate-for-backup job's details that holds the would-be instance."""
READINESS = "backupReadiness"
"""The key of its details that holds the outcome once it ended: Success or Failed."""

_SPEC_KEYS = {
    "name": "name",
    "server": "server",
    "port": "port",
    "database": "database",
    "secretUri": "secret_uri",
    "policyName": "policy_name",
    "serverRegion": "server_region",
}


def candidate_of(job: Job) -> InstanceSpec | None:
    """The would-be instance a validate-for-backup job checks; None for an instance's own validation."""
    raw = job.details.get(CANDIDATE) if job.operation is Operation.VALIDATE else None
    if not isinstance(raw, dict):
        return None
    region = raw.get("serverRegion")
    return InstanceSpec(
        str(raw["name"]),
        str(raw["server"]),
        int(raw["port"]),
        str(raw["database"]),
        str(raw["secretUri"]),
        str(raw["policyName"]),
        None if region is None else str(region),
    )


def _candidate_details(spec: InstanceSpec) -> dict[str, Any]:
    values = asdict(spec)
    return {key: values[attr] for key, attr in _SPEC_KEYS.items() if values[attr] is not None}


def would_be(spec: InstanceSpec, job_id: str, now: datetime) -> Instance:
    """The instance ``spec`` would become (never stored): what the validation checks run against."""
    return Instance(spec, ProtectionStatus.CONFIGURING, Readiness.VALIDATING, job_id, None, now)


class ValidateForBackup:
    """Starts validations of would-be instances and answers for their grant scripts and role templates."""

    def __init__(self, state: StateStore, enqueue_validation: Enqueue) -> None:
        self._instances = InstanceStore(state)
        self._jobs = JobStore(state)
        self._policies = PolicyService(state)
        self._enqueue = enqueue_validation

    def start(
        self,
        body: Any,
        now: datetime,
        *,
        allow_env_secrets: bool,
        vault_region: str | None,
        secrets: SecretProvider | None = None,
        allowed_servers: Sequence[str] = (),
    ) -> Job:
        """Check ``body`` (one configure entry) as configure would, then queue its validation job.

        Nothing but the job is written. ``UserError`` for what configure would refuse at once.
        """
        spec = parse_spec(body, "body", allow_env_secrets=allow_env_secrets, vault_region=vault_region)
        check_secret_server(spec, secrets, allowed_servers, "body")
        try:
            self._policies.get(spec.policy_name)
        except UserError as exc:
            raise UserError(ErrorCode.NOT_FOUND, exc.message, target="body.policyName") from exc
        self._refuse_taken(spec)
        job = Job(
            new_job_id(now),
            Operation.VALIDATE,
            spec.name,
            JobStatus.IN_PROGRESS,
            now,
            details={CANDIDATE: _candidate_details(spec)},
        )
        job, _ = self._jobs.create(job)
        self._enqueue(job, would_be(spec, job.job_id, now))
        log.info("validate for backup job %s: %s on %s:%s", job.job_id, spec.database, spec.server, spec.port)
        return job

    def _refuse_taken(self, spec: InstanceSpec) -> None:
        """What configuring ``spec`` would be refused for by the vault's records: the database held (by an
        instance, a soft-deleted one included, or a protected server) or the name taken."""
        from shared.protected_servers import refuse_if_covered

        refuse_if_covered(self._instances, spec, "body")
        refusal = self._instances.refusal(spec, "body")
        if refusal is not None:
            raise refusal
        if self._instances.find(spec.name) is not None:
            raise UserError(
                ErrorCode.CONFLICT,
                f"a backup instance named {spec.name!r} exists already",
                target="body.name",
                recommended_action="Choose another name for this database.",
            )

    def _candidate(self, job_id: str) -> InstanceSpec:
        job = self._jobs.get(job_id)
        spec = candidate_of(job)
        if spec is None:
            raise UserError(
                ErrorCode.NOT_FOUND,
                f"job {job_id!r} is not a validation for backup",
                target="jobId",
                recommended_action="Use GET /api/backupInstances/{name}/grantScript for a configured instance.",
            )
        return spec

    def grant_script(self, job_id: str, fmt: str, secrets: SecretProvider) -> tuple[str, str]:
        """The grant script for the job's would-be instance (its database, its secret's user): (name, script)."""
        try:
            script_format = ScriptFormat(fmt)
        except ValueError as exc:
            raise UserError(ErrorCode.INVALID_REQUEST, "format must be sql, sh or ps1", target="format") from exc
        spec = self._candidate(job_id)
        user = parse_connection_string(secrets.get_secret(spec.secret_uri)).user
        return spec.name, grant_script(spec.database, user, spec.server, spec.port, script_format)

    def role_assignment_template(self, job_id: str) -> dict[str, Any]:
        """The ARM template granting the app's identity the Azure roles the would-be instance needs."""
        spec = self._candidate(job_id)
        return role_assignment_template(spec.secret_uri, spec.server)


def record_candidate(
    jobs: JobStore,
    job: Job,
    *,
    steps: Sequence[Step],
    failure: UserError | None,
    details: dict[str, Any],
    now: datetime,
) -> Job:
    """End a validate-for-backup job: Completed (readiness Success) or Failed with ``failure``; no instance
    is written."""
    ended = end_steps(steps, StepStatus.FAILED if failure else StepStatus.COMPLETED, now)
    readiness = Readiness.FAILED if failure else Readiness.SUCCESS
    status = JobStatus.FAILED if failure else JobStatus.COMPLETED
    log.info("validate for backup job %s: %s%s", job.job_id, readiness, f" ({failure.code})" if failure else "")
    return jobs.finish(
        job,
        status,
        now,
        error=JobError.from_user_error(failure) if failure else None,
        steps=ended,
        details={**details, CANDIDATE: job.details.get(CANDIDATE), READINESS: readiness.value},
    )
