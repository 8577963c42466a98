"""A try that committed its blob and recorded its point, then failed before finishing the job.

Storage failing between the point's insert and the job's end leaves the job InProgress with its
point recorded. The retry must finish the job with that point, not dump again: a second dump would
overwrite the committed blob with other bytes (a dump holds its own time) than the point's
recorded checksum, and the point would no longer read back.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from factories import Databases
from vault_views import record_protected

from devhost.services import Azurite
from shared.backup_runner import BackupRunner, blob_name_for
from shared.backups import BackupStarter
from shared.jobs import Job, JobStatus, JobStore, Operation, new_job_id
from shared.policies import PolicyService
from shared.recovery_points import RecoveryPointStore, recovery_point_id
from shared.secrets import EnvSecretProvider
from shared.storage import layout
from shared.storage.blobs import BlobStore
from shared.storage.blockstream import read_verified
from shared.storage.clients import StorageAccount
from shared.storage.queues import QueueSender
from shared.storage.tables import StateTable
from tests.examples import EXAMPLES

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TRIGGER = {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTagOverride": "Default"}}}


@pytest.fixture
def world(make_database: Databases, azurite: Azurite) -> tuple[StateTable, BlobStore, QueueSender, BackupRunner]:
    db = make_database("ac", tables="CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 5000) g;")
    s = uuid.uuid4().hex[:8]
    account = StorageAccount.from_connection_setting(
        "AzureWebJobsStorage", {"AzureWebJobsStorage": azurite.connection_string}
    )
    state = StateTable(account.table_service(), f"ac{s}")
    state.ensure()
    backups = BlobStore(account.blob_service(), f"ac-{s}")
    backups.ensure()
    queues = QueueSender(account.queue_service())
    queues.ensure(layout.BACKUP_QUEUE)
    now = datetime.now(UTC)
    PolicyService(state).put("weekly", json.loads((EXAMPLES / "sunday-default-only.json").read_text()), now)
    spec = {
        "server": "127.0.0.1",
        "port": db.port,
        "database": db.name,
        "secretUri": "env:PGVAULT_SECRET_AC_CS",
        "policyName": "weekly",
    }
    record_protected(state, "orders", spec, now)
    secrets = EnvSecretProvider(True, {"PGVAULT_SECRET_AC_CS": db.connection_string(with_server=True)})
    runner = BackupRunner(state, backups, secrets, lambda: datetime.now(UTC))
    return state, backups, queues, runner


def test_a_retry_after_the_point_was_recorded_finishes_the_job_with_it_and_leaves_the_blob_alone(
    world: tuple[StateTable, BlobStore, QueueSender, BackupRunner],
) -> None:
    state, backups, queues, runner = world
    points = RecoveryPointStore(state)
    # A real backup gives a committed blob and its point.
    first = BackupStarter(state, queues).on_demand("orders", TRIGGER, datetime.now(UTC)).job
    done = runner.run(first.job_id, last_try=False)
    assert done is not None and done.status is JobStatus.COMPLETED
    made = points.get("orders", recovery_point_id(first.job_id))

    # The state an interrupted try of a second job leaves: its blob committed, its point recorded,
    # the job still InProgress.
    now = datetime.now(UTC)
    job, _ = JobStore(state).create(
        Job(
            new_job_id(now),
            Operation.BACKUP,
            "orders",
            JobStatus.IN_PROGRESS,
            now,
            retention_tag="Default",
            details={"trigger": "OnDemand"},
        )
    )
    rp_id = recovery_point_id(job.job_id)
    blob = blob_name_for("orders", rp_id, "earliertry")
    data = b"".join(read_verified(backups.client, made.blob_name, made.sha256))
    stored = backups.client.get_blob_client(made.blob_name).download_blob().readall()
    backups.client.get_blob_client(blob).upload_blob(stored)
    points.add(replace(made, recovery_point_id=rp_id, blob_name=blob, job_id=job.job_id, etag=None))
    etag = backups.client.get_blob_client(blob).get_blob_properties().etag

    retried = runner.run(job.job_id, last_try=False, attempt=2)
    assert retried is not None and retried.status is JobStatus.COMPLETED
    assert retried.recovery_point_id == rp_id and retried.bytes == made.raw_bytes
    assert backups.client.get_blob_client(blob).get_blob_properties().etag == etag, "the committed blob was rewritten"
    point = points.get("orders", rp_id)
    assert b"".join(read_verified(backups.client, point.blob_name, point.sha256)) == data
    assert len(list(points.of("orders"))) == 2
    assert list(state.partition(layout.LOCK)) == []
