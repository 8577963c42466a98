"""Cancelling running backups and restores on real PostgreSQL and Azurite (``POST .../{jobId}:cancel``).

A running backup is held still by a lock on its table (pg_dump waits for it, as it would behind a
long migration); a running restore by holding its download half-way (a real HTTP transport that
keeps one request back). Neither depends on how fast this machine is.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import BlobServiceClient
from psycopg import sql

from devhost.services import Azurite, Postgres
from shared.backup_runner import BackupRunner
from shared.backups import BackupStarter
from shared.cancel import request_cancel
from shared.errors import UserError
from shared.jobs import Job, JobStatus, JobStore, Operation, StepStatus, new_job_id
from shared.pg.grants import grant_sql
from shared.recovery_points import RecoveryPoint, RecoveryPointStore
from shared.restore.files import ExportRules
from shared.restore.service import RestoreService
from shared.secrets import EnvSecretProvider
from shared.settings import load_settings
from shared.storage import layout
from shared.storage.blobs import BlobStore
from shared.storage.queues import QueueSender
from shared.storage.tables import StateTable
from tests.integration.world import account_of, open_storage
from tests.waiting import wait_until

pytestmark = pytest.mark.integration
TRIGGER = {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTagOverride": "Weekly"}}}


@dataclass
class World:
    pg: Postgres
    u: str
    db: str
    state: StateTable
    backups: BlobStore
    queues: QueueSender
    azurite: Azurite
    env: dict[str, str]

    def secrets(self) -> EnvSecretProvider:
        return EnvSecretProvider(True, self.env)

    def runner(self) -> BackupRunner:
        return BackupRunner(self.state, self.backups, self.secrets(), lambda: datetime.now(UTC))

    def connect(self, db: str = "postgres", **kw: Any) -> psycopg.Connection[Any]:
        return psycopg.connect(host="127.0.0.1", port=self.pg.port, dbname=db, user="postgres", **kw)

    def exists(self, db: str) -> bool:
        with self.connect(autocommit=True) as c:
            return c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone() is not None

    def restore_body(self, rp_id: str, database: str) -> dict[str, Any]:
        return {
            "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
            "recoveryPointId": rp_id,
            "sourceDataStoreType": "VaultStore",
            "restoreTargetInfo": {
                "objectType": "RestoreTargetInfo",
                "recoveryOption": "FailIfExists",
                "datasourceInfo": {"objectType": "Datasource", "resourceName": database},
                "datasourceAuthCredentials": {
                    "objectType": "SecretStoreBasedAuthCredentials",
                    "secretStoreResource": {"uri": "env:PGVAULT_SECRET_TARGET_CS", "secretStoreType": "AzureKeyVault"},
                },
            },
        }


@pytest.fixture(scope="module")
def world(postgres: Postgres, azurite: Azurite) -> Iterator[World]:
    u = uuid.uuid4().hex[:8]
    db = f"cx_{u}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(f"cb_{u}")))
        c.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB").format(sql.Identifier(f"cr_{u}")))
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    with psycopg.connect(host="127.0.0.1", port=postgres.port, dbname=db, user="postgres", autocommit=True) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, payload text)")
        # Distinct hex per row (compresses about 2x): a stored dump of several MiB, several downloads.
        c.execute(
            "INSERT INTO t SELECT g, md5(g::text) || md5((g + 1)::text) || md5((g + 2)::text) || md5((g + 3)::text)"
            " FROM generate_series(1, 200000) g"
        )
    postgres.psql(grant_sql(db, f"cb_{u}"), db)
    storage = open_storage(azurite, "cx", queues=[layout.BACKUP_QUEUE, layout.RESTORE_QUEUE])
    state, backups, queues = storage.state, storage.backups, storage.queues
    now = datetime.now(UTC)
    storage.put_policy("mwf", "weekly-mon-wed-fri-with-archive", now)
    server = f"Server=127.0.0.1;Port={postgres.port}"  # each secret names its server: it goes nowhere else
    env = {
        "PGVAULT_SECRET_SRC_CS": f"{server};User Id=cb_{u};Password=unused;Ssl Mode=Disable",
        "PGVAULT_SECRET_TARGET_CS": f"{server};User Id=cr_{u};Password=unused;Ssl Mode=Disable",
    }
    spec = {"server": "127.0.0.1", "port": postgres.port, "database": db, "secretUri": "env:PGVAULT_SECRET_SRC_CS"}
    storage.protect("src", {**spec, "policyName": "mwf"}, now)
    yield World(postgres, u, db, state, backups, queues, azurite, env)
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        for (name,) in c.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (f"%{u}%",)).fetchall():
            c.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        for role in (f"cb_{u}", f"cr_{u}"):
            c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def _in_thread(run: Callable[[], object]) -> tuple[threading.Thread, list[object]]:
    out: list[object] = []

    def target() -> None:
        try:
            out.append(run())
        except Exception as exc:  # asserted by the caller
            out.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, out


def test_a_running_backup_cancelled_ends_cancelled_with_no_point_and_no_blob(world: World) -> None:
    jobs = JobStore(world.state)
    job_id = BackupStarter(world.state, world.queues).on_demand("src", TRIGGER, datetime.now(UTC)).job.job_id
    with world.connect(world.db) as holder:  # pg_dump waits for this lock: the backup runs, and runs on
        holder.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        thread, out = _in_thread(lambda: world.runner().run(job_id, last_try=False))

        def dump_waiting() -> bool:
            with world.connect(autocommit=True) as c:
                row = c.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'"
                    " AND query LIKE 'LOCK TABLE public.t %%'",  # pg_dump's first step on each table
                    (world.db,),
                ).fetchone()
            return bool(row and row[0])

        wait_until(dump_waiting, 120, message="pg_dump never started waiting on the table")
        assert jobs.get(job_id).details.get("blobName"), "the dump step had not begun"
        job, taken = request_cancel(world.state, job_id, datetime.now(UTC))
        assert taken and job.status is JobStatus.IN_PROGRESS and job.cancel_requested is not None
        thread.join(120)  # the worker stops while the table is still locked: it never waits for the dump
        assert not thread.is_alive(), "the cancelled backup kept running"
        holder.rollback()
    assert isinstance(out[0], Job) and out[0].status is JobStatus.CANCELLED, out
    ended = jobs.get(job_id)
    assert ended.status is JobStatus.CANCELLED and ended.error is None and ended.end_time is not None
    assert [s.status for s in ended.steps if s.name == "Dump"] == [StepStatus.CANCELLED]
    assert list(RecoveryPointStore(world.state).of("src")) == []
    assert list(world.backups.client.list_blobs()) == []  # nothing committed (staged blocks are discarded)
    assert list(world.state.partition(layout.LOCK)) == []

    def sessions_left() -> bool:  # pg_dump and the manifest's snapshot session are gone too
        with world.connect(autocommit=True) as c:
            row = c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (world.db,)).fetchone()
        return row == (0,)

    wait_until(sessions_left, 30, message="a session of the cancelled backup is still connected")
    # A second cancel of the finished job changes nothing and says so.
    again, taken = request_cancel(world.state, job_id, datetime.now(UTC))
    assert not taken and again.status is JobStatus.CANCELLED and again.end_time == ended.end_time


def test_a_queued_backup_cancelled_ends_cancelled_without_running(world: World) -> None:
    job_id = BackupStarter(world.state, world.queues).on_demand("src", TRIGGER, datetime.now(UTC)).job.job_id
    job, taken = request_cancel(world.state, job_id, datetime.now(UTC))
    assert taken and job.status is JobStatus.CANCELLED and job.start_time is None
    delivered = world.runner().run(job_id, last_try=False)  # its message arrives later: nothing runs
    assert delivered is not None and delivered.status is JobStatus.CANCELLED and delivered.start_time is None
    assert list(RecoveryPointStore(world.state).of("src")) == []
    # The instance is free: the next backup is accepted and runs.
    assert BackupStarter(world.state, world.queues).running("src", datetime.now(UTC)) is None


def test_only_backup_and_restore_jobs_can_be_cancelled(world: World) -> None:
    now = datetime.now(UTC)
    job, _ = JobStore(world.state).create(Job(new_job_id(now), Operation.VALIDATE, "src", JobStatus.IN_PROGRESS, now))
    with pytest.raises(UserError) as refused:
        request_cancel(world.state, job.job_id, now)
    assert refused.value.code.value == "Conflict" and refused.value.target == "jobId"
    assert JobStore(world.state).get(job.job_id).status is JobStatus.IN_PROGRESS
    with pytest.raises(UserError) as missing:
        request_cancel(world.state, new_job_id(now), now)
    assert missing.value.code.value == "NotFound"


class _HoldingTransport(RequestsTransport):
    """A real transport that holds the first download of a blob past its start until released."""

    def __init__(self) -> None:
        super().__init__()
        self.reached, self.release = threading.Event(), threading.Event()

    def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
        ranged = str(request.headers.get("x-ms-range") or request.headers.get("Range") or "")
        later_part = request.method == "GET" and ranged.startswith("bytes=") and not ranged.startswith("bytes=0-")
        if later_part and not self.reached.is_set():
            self.reached.set()
            assert self.release.wait(180), "the test never released the download"
        return super().send(request, **kwargs)


@pytest.fixture(scope="module")
def point(world: World) -> RecoveryPoint:
    backup = world.runner().run(
        BackupStarter(world.state, world.queues).on_demand("src", TRIGGER, datetime.now(UTC)).job.job_id, last_try=True
    )
    assert backup is not None and backup.status is JobStatus.COMPLETED, backup
    made = RecoveryPointStore(world.state).get("src", str(backup.recovery_point_id))
    assert made.size_in_bytes > 3 * 1024 * 1024, "the dump is too small to be downloaded in parts"
    return made


def _held_service(world: World) -> tuple[RestoreService, _HoldingTransport]:
    """A restore service whose reads of the vault's blobs can be held half-way."""
    transport = _HoldingTransport()
    # ranges of 1 MiB (download_range_bytes below): several downloads, so the restore is held half-way
    held = BlobServiceClient.from_connection_string(world.azurite.connection_string, transport=transport)
    service = RestoreService(
        world.state,
        BlobStore(held, world.backups.container, download_range_bytes=1024 * 1024),
        world.secrets(),
        lambda: datetime.now(UTC),
        queues=world.queues,
        vault_account=account_of(world.azurite),
        allow_env_secrets=True,
        exports=ExportRules.from_settings(
            load_settings(
                {
                    "AzureWebJobsStorage": world.azurite.connection_string,
                    "PGVAULT_BACKUP_CONTAINER": world.backups.container,
                    "PGVAULT_EXPORT_ACCOUNTS": "devstoreaccount1",
                    "PGVAULT_SCHEDULER_SCHEDULE": "0 */5 * * * *",
                    "PGVAULT_RETENTION_SCHEDULE": "0 17 * * * *",
                }
            )
        ),
    )
    return service, transport


def test_a_running_restore_as_files_cancelled_ends_cancelled_and_leaves_no_file(
    world: World, point: RecoveryPoint
) -> None:
    service, transport = _held_service(world)
    container = BlobServiceClient.from_connection_string(world.azurite.connection_string).get_container_client(
        f"cxfiles-{world.u}"
    )
    container.create_container()
    body = {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": point.recovery_point_id,
        "sourceDataStoreType": "VaultStore",
        "restoreTargetInfo": {
            "objectType": "RestoreFilesTargetInfo",
            "recoveryOption": "FailIfExists",
            "targetDetails": {
                "url": container.url,
                "filePrefix": "exports/src",
                "restoreTargetLocationType": "AzureBlobs",
            },
        },
    }
    job = service.start("src", body, datetime.now(UTC)).job
    thread, out = _in_thread(lambda: service.run(job.job_id, last_try=False))
    try:
        assert transport.reached.wait(120), "the restore never got half-way"
        accepted, taken = request_cancel(world.state, job.job_id, datetime.now(UTC))
        assert taken and accepted.cancel_requested is not None
        # The worker notices through its heartbeat; the held download is let go once the cancel is seen.
        wait_until(lambda: JobStore(world.state).get(job.job_id).cancel_requested, 120, message="no cancel recorded")
    finally:
        transport.release.set()
    thread.join(120)
    assert not thread.is_alive()
    assert isinstance(out[0], Job) and out[0].status is JobStatus.CANCELLED, out
    assert list(container.list_blobs()) == []  # no dump, no manifest (staged blocks are never committed)
    assert list(world.state.partition(layout.LOCK)) == []


def test_a_running_restore_cancelled_ends_cancelled_and_drops_the_half_restored_database(
    world: World, point: RecoveryPoint
) -> None:
    service, transport = _held_service(world)
    target = f"cx_copy_{world.u}"
    job = service.start("src", world.restore_body(point.recovery_point_id, target), datetime.now(UTC)).job
    thread, out = _in_thread(lambda: service.run(job.job_id, last_try=False))
    try:
        assert transport.reached.wait(120), "the restore never got half-way"
        assert world.exists(target)  # created, and being written
        accepted, taken = request_cancel(world.state, job.job_id, datetime.now(UTC))
        assert taken and accepted.cancel_requested is not None

        def restore_gone() -> bool:
            with world.connect(autocommit=True) as c:
                row = c.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (target,)).fetchone()
            return row == (0,)

        wait_until(restore_gone, 120, message="pg_restore still connected after the cancel")
    finally:
        transport.release.set()
    thread.join(120)
    assert not thread.is_alive()
    assert isinstance(out[0], Job) and out[0].status is JobStatus.CANCELLED, out
    ended = JobStore(world.state).get(job.job_id)
    assert ended.status is JobStatus.CANCELLED and ended.error is None
    assert not world.exists(target)
    assert list(world.state.partition(layout.LOCK)) == []
