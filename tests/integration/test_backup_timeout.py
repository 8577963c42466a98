"""The backup worker on Azurite: a retry after the host's function timeout fails the job, once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from shared.backup_runner import BackupRunner
from shared.jobs import Job, JobStatus, JobStore, Operation, new_job_id
from shared.secrets import EnvSecretProvider
from shared.storage.blobs import BlobStore
from shared.storage.clients import StorageAccount
from shared.storage.tables import StateTable
from shared.timeouts import with_attempt_started

pytestmark = pytest.mark.integration
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LIMIT = timedelta(hours=2)


@pytest.fixture
def stores(state_table: StateTable, account: StorageAccount, unique: str) -> Iterator[tuple[StateTable, BlobStore]]:
    yield state_table, BlobStore(account.blob_service(), f"tmo-{unique}")


def _runner(stores: tuple[StateTable, BlobStore], now: datetime) -> BackupRunner:
    state, blobs = stores
    return BackupRunner(state, blobs, EnvSecretProvider(True, {}), lambda: now, function_timeout=LIMIT)


def _job(state: StateTable, attempt_started: datetime | None) -> Job:
    created = NOW - timedelta(hours=3)
    job = Job(new_job_id(created), Operation.BACKUP, "orders", JobStatus.IN_PROGRESS, created)
    if attempt_started is not None:
        job = Job(
            job.job_id,
            job.operation,
            job.instance,
            job.status,
            created,
            details=with_attempt_started(job, attempt_started),
        )
    return JobStore(state).create(job)[0]


def test_a_retry_after_the_last_attempt_ran_into_the_timeout_fails_the_job_with_advice(
    stores: tuple[StateTable, BlobStore],
) -> None:
    state, _ = stores
    job = _job(state, NOW - LIMIT - timedelta(seconds=30))
    done = _runner(stores, NOW).run(job.job_id, last_try=False)  # no TransientError: not retried again
    assert done is not None and done.status is JobStatus.FAILED
    stored = JobStore(state).get(job.job_id)
    assert stored.error is not None and stored.error.code == "UserErrorFunctionTimeoutExceeded"
    assert "PGVAULT_FUNCTION_TIMEOUT" in stored.error.recommended_action
    assert stored.details["attempt"]["number"] == 1  # the record shows which attempt and when it began
    # A further delivery of the same message changes nothing.
    again = _runner(stores, NOW + timedelta(minutes=5)).run(job.job_id, last_try=True)
    assert again is not None and again.etag == stored.etag


def test_each_attempt_records_when_it_started_in_the_job(stores: tuple[StateTable, BlobStore]) -> None:
    state, _ = stores
    job = _job(state, None)
    # The instance does not exist: the attempt starts, is recorded, and fails with NotFound.
    done = _runner(stores, NOW).run(job.job_id, last_try=False)
    assert done is not None and done.status is JobStatus.FAILED and done.error is not None
    assert done.error.code == "NotFound"
    stored = JobStore(state).get(job.job_id)
    assert stored.details["attempt"] == {"number": 1, "started": NOW.isoformat().replace("+00:00", "Z")}
