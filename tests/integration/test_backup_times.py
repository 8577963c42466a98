"""An instance's last backup and next scheduled one, on a real Azurite table."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.backup_times import BackupTimesReader
from shared.instances import Instance, InstanceService, ProtectionStatus, Readiness
from shared.jobs import Job, JobError, JobStatus, JobStore, Operation, new_job_id
from shared.policies import PolicyService
from shared.storage.tables import StateTable
from tests.examples import EXAMPLES

pytestmark = pytest.mark.integration
CREATED = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def state(state_table: StateTable) -> StateTable:
    table = state_table
    # Sundays 03:30 in W. Europe Standard Time (Europe/Berlin).
    PolicyService(table).put("weekly", json.loads((EXAMPLES / "sunday-default-only.json").read_text()), CREATED)
    return table


def _instance(state: StateTable, protected: bool) -> Instance:
    service = InstanceService(state, lambda job, instance: None)
    entry = {"name": "orders", "server": "db1.example.com", "database": "orders", "policyName": "weekly",
             "secretUri": "https://kv1.vault.azure.net/secrets/orders"}  # fmt: skip
    configured = service.configure_many({"instances": [entry]}, CREATED, allow_env_secrets=False, vault_region=None)
    assert configured[0].error is None
    instance = service.get("orders")
    if not protected:
        return instance
    ready = replace(instance, protection_status=ProtectionStatus.PROTECTED, readiness=Readiness.SUCCESS)
    return service.save(instance, ready)


def _job(store: JobStore, at: datetime, operation: Operation, status: JobStatus) -> Job:
    job, _ = store.create(Job(new_job_id(at), operation, "orders", JobStatus.IN_PROGRESS, at, start_time=at))
    if status is JobStatus.IN_PROGRESS:
        return job
    error = (
        JobError("UserErrorDBUserAuthFailed", "login failed", "Fix the password") if status.value == "Failed" else None
    )
    return store.finish(job, status, at + timedelta(minutes=2), error=error, recovery_point_id=None)


def test_last_backup_is_the_newest_backup_that_ran_whatever_its_outcome(state: StateTable) -> None:
    instance = _instance(state, protected=True)
    reader = BackupTimesReader(state)
    assert reader.of(instance, CREATED).last_backup is None
    store = JobStore(state)
    day = timedelta(days=1)
    _job(store, CREATED + day, Operation.BACKUP, JobStatus.COMPLETED)
    failed = _job(store, CREATED + 2 * day, Operation.BACKUP, JobStatus.FAILED)
    _job(store, CREATED + 3 * day, Operation.BACKUP, JobStatus.CANCELLED)  # a skipped slot never ran
    _job(store, CREATED + 4 * day, Operation.VALIDATE, JobStatus.COMPLETED)
    _job(store, CREATED + 5 * day, Operation.BACKUP, JobStatus.IN_PROGRESS)

    shown = BackupTimesReader(state).of(instance, CREATED + 6 * day).to_dict()["lastBackup"]
    assert shown == {
        "time": "2026-03-03T09:02:00Z",
        "status": "Failed",
        "jobId": failed.job_id,
        "recoveryPointId": None,
        "retentionTag": None,
    }


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        # Sunday after the slot: next Sunday, 03:30 CET = 02:30 UTC.
        (datetime(2026, 3, 1, 12, 0, tzinfo=UTC), "2026-03-08T02:30:00Z"),
        # The Saturday before summer time starts: 03:30 CEST = 01:30 UTC.
        (datetime(2026, 3, 28, 12, 0, tzinfo=UTC), "2026-03-29T01:30:00Z"),
        # A second before the slot, the slot itself.
        (datetime(2026, 3, 8, 2, 29, 59, tzinfo=UTC), "2026-03-08T02:30:00Z"),
    ],
)
def test_next_scheduled_backup_follows_the_policy_in_its_time_zone(
    state: StateTable, now: datetime, expected: str
) -> None:
    instance = _instance(state, protected=True)
    assert BackupTimesReader(state).of(instance, now).to_dict()["nextScheduledBackup"] == expected


def test_no_next_backup_while_the_scheduler_would_skip_the_instance(state: StateTable) -> None:
    instance = _instance(state, protected=False)  # still validating
    assert BackupTimesReader(state).of(instance, CREATED).next_scheduled is None
    failed = replace(instance, protection_status=ProtectionStatus.PROTECTED, readiness=Readiness.FAILED)
    assert BackupTimesReader(state).of(failed, CREATED).next_scheduled is None
    stopped = replace(instance, protection_status=ProtectionStatus.STOPPED, readiness=Readiness.SUCCESS)
    assert BackupTimesReader(state).of(stopped, CREATED).next_scheduled is None
