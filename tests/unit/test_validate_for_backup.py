"""Validate for backup on the in-memory state table: a would-be instance is checked, never stored.

The checks against a real server (privileges, the grant script run, Success) are in
tests/e2e/test_instances_api.py; here what the service writes and refuses, and what the
validation worker records for a job whose instance does not exist.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.errors import ErrorCode, UserError
from shared.instances import Instance, InstanceService, Readiness
from shared.jobs import Job, JobStatus, JobStore
from shared.policies import PolicyService
from shared.secrets import EnvSecretProvider
from shared.storage import layout
from shared.storage.memory import MemoryStateTable
from shared.validate_for_backup import ValidateForBackup, candidate_of
from shared.validation import ValidationService, fail_validation
from tests.examples import EXAMPLES

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
ENTRY = {
    "server": "db1.example.com",
    "database": "orders",
    "secretUri": "env:PGVAULT_SECRET_ORDERS",
    "policyName": "weekly",
}
CS = "Server=db1.example.com;User Id=backup_user;Password=Unl1kely-pw-77"


@pytest.fixture
def state() -> MemoryStateTable:
    table = MemoryStateTable("state")
    PolicyService(table).put("weekly", json.loads((EXAMPLES / "sunday-default-only.json").read_text()), NOW)
    return table


def _start(state: MemoryStateTable, sent: list[tuple[Job, Instance]], body: dict[str, Any] = ENTRY) -> Job:
    return ValidateForBackup(state, lambda job, inst: sent.append((job, inst))).start(
        body, NOW, allow_env_secrets=True, vault_region=None
    )


def _rows(state: MemoryStateTable, pk: str) -> list[Any]:
    return list(state.partition(pk))


def test_it_queues_a_validate_job_and_writes_no_instance_nor_claim(state: MemoryStateTable) -> None:
    sent: list[tuple[Job, Instance]] = []
    job = _start(state, sent)
    assert job.operation.value == "Validate" and job.status is JobStatus.IN_PROGRESS
    assert job.instance == "db1-orders"  # the name configure would give it
    assert candidate_of(job) is not None and candidate_of(job).database == "orders"  # type: ignore[union-attr]
    assert [j.job_id for j, _ in sent] == [job.job_id] and sent[0][1].spec.server == "db1.example.com"
    assert _rows(state, layout.INSTANCE) == [] and _rows(state, layout.CLAIM) == []
    links = job.to_wire(NOW).links
    assert links.grantScript == f"/api/backupJobs/{job.job_id}/grantScript"
    assert links.roleAssignmentTemplate == f"/api/backupJobs/{job.job_id}/roleAssignmentTemplate"


def test_it_refuses_what_configure_would_refuse_at_once(state: MemoryStateTable) -> None:
    sent: list[tuple[Job, Instance]] = []

    def refused(body: dict[str, Any]) -> UserError:
        with pytest.raises(UserError) as err:
            _start(state, sent, body)
        return err.value

    assert refused({**ENTRY, "policyName": "absent"}).target == "body.policyName"
    assert refused({**ENTRY, "database": "template1"}).code is ErrorCode.DATABASE_NOT_SUPPORTED
    assert refused({**ENTRY, "deep": True}).target == "deep"
    InstanceService(state, lambda job, inst: None).configure_many(
        {"instances": [ENTRY]}, NOW, allow_env_secrets=True, vault_region=None
    )
    protected = refused({**ENTRY, "server": "DB1.example.com.", "name": "other"})
    assert protected.code is ErrorCode.DATABASE_ALREADY_PROTECTED and "db1-orders" in protected.message
    assert refused({**ENTRY, "database": "billing", "name": "db1-orders"}).code is ErrorCode.CONFLICT
    assert sent == []


def test_a_failed_check_fails_the_job_with_readiness_failed_and_stores_no_instance(state: MemoryStateTable) -> None:
    job = _start(state, [])
    secrets = EnvSecretProvider(True, {})  # the secret is not set: ReadSecret fails
    done = ValidationService(state, secrets, lambda: NOW + timedelta(seconds=1)).run(job.job_id, last_try=False)
    assert done is not None and done.status is JobStatus.FAILED
    assert done.error is not None and done.error.code == ErrorCode.INVALID_SECRET.value
    assert done.details["backupReadiness"] == Readiness.FAILED.value
    assert done.details["backupInstance"]["database"] == "orders"
    assert [(s.name, s.status.value) for s in done.steps] == [("ReadSecret", "Failed")]
    assert _rows(state, layout.INSTANCE) == []


def test_an_abandoned_validation_for_backup_never_touches_an_instance_of_that_name(state: MemoryStateTable) -> None:
    job = _start(state, [])
    # Meanwhile the database was configured under the name the validation used.
    configured = InstanceService(state, lambda j, i: None).configure_many(
        {"instances": [ENTRY]}, NOW, allow_env_secrets=True, vault_region=None
    )[0]
    assert configured.instance is not None
    failed = fail_validation(state, JobStore(state).get(job.job_id), UserError(ErrorCode.INTERNAL, "lost"), NOW)
    assert failed.status is JobStatus.FAILED and failed.details["backupReadiness"] == "Failed"
    instance = InstanceService(state, lambda j, i: None).get("db1-orders")
    assert instance.readiness is Readiness.VALIDATING and instance.readiness_job_id == configured.job.job_id  # type: ignore[union-attr]


def test_its_grant_script_is_for_the_would_be_database_and_the_secrets_user(state: MemoryStateTable) -> None:
    job = _start(state, [])
    service = ValidateForBackup(state, lambda j, i: None)
    name, script = service.grant_script(job.job_id, "sql", EnvSecretProvider(True, {"PGVAULT_SECRET_ORDERS": CS}))
    assert name == "db1-orders" and "backup_user" in script and "Unl1kely-pw-77" not in script
    with pytest.raises(UserError) as err:
        service.grant_script(job.job_id, "bat", EnvSecretProvider(True, {}))
    assert err.value.target == "format"
    assert service.role_assignment_template(job.job_id)["resources"] == []  # env: secret, not an Azure server


def test_it_refuses_a_database_held_by_a_soft_deleted_instance_as_configure_does(state: MemoryStateTable) -> None:
    from shared.protection import ProtectionService
    from shared.storage.memory import MemoryBlobStore

    InstanceService(state, lambda job, inst: None).configure_one(
        "orders", ENTRY, NOW, allow_env_secrets=True, vault_region=None
    )
    ProtectionService(state, MemoryBlobStore()).stop("orders", {"retainData": "delete"}, NOW)
    other = {**ENTRY, "name": "orders-again"}
    with pytest.raises(UserError) as configured:
        InstanceService(state, lambda job, inst: None).configure_one(
            "orders-again", ENTRY, NOW, allow_env_secrets=True, vault_region=None
        )
    with pytest.raises(UserError) as validated:
        _start(state, [], other)
    assert validated.value.code == configured.value.code == ErrorCode.BACKUP_INSTANCE_SOFT_DELETED
    assert "orders" in validated.value.message and "undelete" in (validated.value.recommended_action or "")
