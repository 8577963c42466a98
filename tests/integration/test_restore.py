"""Restores on real PostgreSQL and Azurite: as a database, as files, partial, verified, rehydrated."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import psycopg
import pytest
from azure.storage.blob import BlobBlock, BlobProperties, BlobServiceClient, StandardBlobTier
from psycopg import sql

from devhost.services import Azurite, Postgres
from shared.backup_runner import BackupRunner
from shared.backups import BackupStarter
from shared.errors import TransientError, UserError
from shared.jobs import Job, JobStatus, JobStore, new_job_id
from shared.locks import Heartbeat, InstanceLocks
from shared.pg.digests import table_digests
from shared.pg.grants import grant_sql
from shared.recovery_points import Integrity, RecoveryPoint, RecoveryPointStore
from shared.restore.files import ExportRules
from shared.restore.rehydration import RehydrationStore
from shared.restore.service import RestoreService
from shared.secrets import EnvSecretProvider
from shared.settings import load_settings
from shared.storage import layout
from shared.storage.blobs import BlobInfo, BlobStore, blob_info
from shared.storage.clients import StorageAccount
from shared.storage.queues import QueueSender, queue_client
from shared.storage.tables import StateTable
from tests.integration.world import Storage, host_sends, open_storage

pytestmark = pytest.mark.integration
ODD = 'Odd "Schema"'


@dataclass
class World:
    pg: Postgres
    u: str
    db: str
    state: StateTable
    backups: BlobStore
    queues: QueueSender
    blob_service: BlobServiceClient
    queue_service: Any
    env: dict[str, str]
    exports: ExportRules
    account: StorageAccount | None = None
    storage: Storage | None = None

    def service(self, clock: Any = None, probe: Any = None, exports: ExportRules | None = None) -> RestoreService:
        return RestoreService(
            self.state,
            self.backups,
            EnvSecretProvider(True, self.env),
            clock or (lambda: datetime.now(UTC)),
            queues=self.queues,
            vault_account=self.account,
            probe=probe,
            allow_env_secrets=True,
            exports=exports or self.exports,
        )

    def backup(self, instance: str, *, manifest_from_stream: bool = False) -> RecoveryPoint:
        body = {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTagOverride": "Weekly"}}}
        job_id = BackupStarter(self.state, self.queues).on_demand(instance, body, datetime.now(UTC)).job.job_id
        secrets = EnvSecretProvider(True, self.env)
        clock = lambda: datetime.now(UTC)  # noqa: E731
        runner = BackupRunner(self.state, self.backups, secrets, clock, manifest_from_stream=manifest_from_stream)
        job = runner.run(job_id, last_try=True)
        assert job is not None and job.status is JobStatus.COMPLETED, job
        return RecoveryPointStore(self.state).get(instance, str(job.recovery_point_id))

    def connect(self, db: str) -> psycopg.Connection[Any]:
        return psycopg.connect(host="127.0.0.1", port=self.pg.port, dbname=db, user="postgres", autocommit=True)

    def exists(self, db: str) -> bool:
        with self.connect("postgres") as c:
            return c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone() is not None

    def drop(self, db: str) -> None:
        with self.connect("postgres") as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))

    def digests(self, db: str) -> dict[str, Any]:
        with psycopg.connect(host="127.0.0.1", port=self.pg.port, dbname=db, user="postgres") as c:
            return table_digests(c)

    def request(
        self,
        point: RecoveryPoint,
        database: str,
        secret: str = "env:PGVAULT_SECRET_TARGET_CS",  # noqa: S107 - a secret reference, not a secret
        **extra: Any,
    ) -> dict[str, Any]:
        return {
            "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
            "recoveryPointId": point.recovery_point_id,
            "sourceDataStoreType": "VaultStore",
            "restoreTargetInfo": {
                "objectType": "RestoreTargetInfo",
                "recoveryOption": "FailIfExists",
                "datasourceInfo": {"objectType": "Datasource", "resourceName": database},
                "datasourceAuthCredentials": {
                    "objectType": "SecretStoreBasedAuthCredentials",
                    "secretStoreResource": {"uri": secret, "secretStoreType": "AzureKeyVault"},
                },
            },
            **extra,
        }

    def restore(self, instance: str, body: dict[str, Any], **kw: Any) -> Job:
        service = self.service(**kw)
        job = service.start(instance, body, datetime.now(UTC)).job
        done = service.run(job.job_id, last_try=True)
        assert done is not None
        return done


def _protect(world: World, name: str, db: str) -> None:
    world.pg.psql(grant_sql(db, f"rb_{world.u}"), db)
    spec = {
        "server": "127.0.0.1",
        "port": world.pg.port,
        "database": db,
        "secretUri": "env:PGVAULT_SECRET_SRC_CS",
        "policyName": "mwf",
    }
    assert world.storage is not None
    world.storage.protect(name, spec, datetime.now(UTC))


@pytest.fixture(scope="module")
def world(postgres: Postgres, azurite: Azurite) -> Iterator[World]:
    u = uuid.uuid4().hex[:8]
    db = f"rsrc_{u}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(f"rb_{u}")))
        c.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB").format(sql.Identifier(f"rr_{u}")))
        c.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(f"rn_{u}")))
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    with psycopg.connect(host="127.0.0.1", port=postgres.port, dbname=db, user="postgres", autocommit=True) as c:
        c.execute("CREATE TABLE orders (id int PRIMARY KEY, item text, paid numeric, at timestamptz, f float8)")
        c.execute(
            "INSERT INTO orders SELECT g, md5(g::text) || repeat('é', g % 7), g * 1.5, "
            "'2026-01-01'::timestamptz + g * interval '1 minute', g / 3.0 FROM generate_series(1, 30000) g"
        )
        c.execute("CREATE SCHEMA sales")
        c.execute("CREATE TABLE sales.invoices (id int PRIMARY KEY, order_id int, total numeric, data bytea)")
        c.execute(
            "INSERT INTO sales.invoices SELECT g, g, g * 2, decode(md5(g::text), 'hex') FROM generate_series(1, 5000) g"
        )
        c.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(ODD)))
        c.execute(sql.SQL("CREATE TABLE {} (k text)").format(sql.Identifier(ODD, "Ta ble")))
        c.execute(sql.SQL("INSERT INTO {} VALUES ('a'), ('b'), (NULL)").format(sql.Identifier(ODD, "Ta ble")))
    storage = open_storage(azurite, "rst", queues=[layout.BACKUP_QUEUE, layout.RESTORE_QUEUE])
    state, backups, queues, account = storage.state, storage.backups, storage.queues, storage.account
    storage.put_policy("mwf", "weekly-mon-wed-fri-with-archive", datetime.now(UTC))
    server = f"Server=127.0.0.1;Port={postgres.port};Password=unused;Ssl Mode=Disable"
    env = {
        "PGVAULT_SECRET_SRC_CS": f"{server};User Id=rb_{u}",
        "PGVAULT_SECRET_TARGET_CS": f"{server};User Id=rr_{u}",
        "PGVAULT_SECRET_NOCREATE_CS": f"{server};User Id=rn_{u}",
        "PGVAULT_SECRET_NOSERVER_CS": f"User Id=rr_{u};Password=unused",
        "PGVAULT_SECRET_OTHER_ACCOUNT_CS": azurite.connection_string,
    }
    settings = load_settings(
        {
            "AzureWebJobsStorage": azurite.connection_string,
            "PGVAULT_BACKUP_CONTAINER": backups.container,
            "PGVAULT_EXPORT_ACCOUNTS": "devstoreaccount1",
            "PGVAULT_SCHEDULER_SCHEDULE": "0 */5 * * * *",
            "PGVAULT_RETENTION_SCHEDULE": "0 17 * * * *",
        }
    )
    exports = ExportRules.from_settings(settings)
    w = World(
        postgres,
        u,
        db,
        state,
        backups,
        queues,
        account.blob_service(),
        account.queue_service(),
        env,
        exports,
        account,
        storage,
    )
    _protect(w, "src", db)
    yield w
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        for (name,) in c.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (f"%{u}%",)).fetchall():
            c.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        for role in (f"rb_{u}", f"rr_{u}", f"rn_{u}"):
            c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def point(world: World) -> RecoveryPoint:
    return world.backup("src")


def test_restore_as_database_gives_equal_rows_and_hashes_in_every_table(world: World, point: RecoveryPoint) -> None:
    # A name libpq would read as a connection string, with quotes and a backslash: it must stay a name.
    target = f'copy=1 "it\'s" \\ {world.u}'
    job = world.restore("src", world.request(point, target))
    assert job.status is JobStatus.COMPLETED, job.error
    assert [s.name for s in job.steps] == ["CheckTarget", "CreateDatabase", "Restore"]
    source, restored = world.digests(world.db), world.digests(target)
    assert source == restored
    assert source["public.orders"]["rows"] == 30000 and source[f"{ODD}.Ta ble"]["rows"] == 3
    assert job.details["target"] == {"server": "127.0.0.1", "port": world.pg.port, "database": target}
    # Post-data too (here from a file of the archive's head, with pg_restore --jobs): the keys are there.
    with world.connect(target) as c:
        keys = c.execute(
            "SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'p' "
            "AND connamespace::regnamespace::text NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
        ).fetchall()
    assert keys == [("orders",), ("sales.invoices",)]
    # The manifest taken at dump time says the same.
    manifest = world.backups.get_json(point.blob_name + ".manifest.json")
    assert manifest["tables"] == source
    # A second delivery of the finished job changes nothing.
    again = world.service().run(job.job_id, last_try=False)
    assert again is not None and again.end_time == job.end_time and again.status is JobStatus.COMPLETED


def test_two_workers_on_one_restore_job_restore_once(world: World, point: RecoveryPoint) -> None:
    target = f"twice_{world.u}"
    service = world.service()
    job = service.start("src", world.request(point, target), datetime.now(UTC)).job
    outcomes: list[object] = []

    def work() -> None:
        try:
            outcomes.append(world.service().run(job.job_id, last_try=False))
        except Exception as exc:  # a retry asked of the queue counts as an outcome too
            outcomes.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = JobStore(world.state).get(job.job_id)
    assert done.status is JobStatus.COMPLETED, (done.error, outcomes)
    assert world.digests(target) == world.digests(world.db)


def test_a_retry_after_a_worker_died_mid_restore_starts_over_in_its_own_database(
    world: World, point: RecoveryPoint
) -> None:
    target = f"resumed_{world.u}"
    job = world.service().start("src", world.request(point, target), datetime.now(UTC)).job
    # What a worker killed mid-restore leaves: its marked database, half restored, and its lock.
    with world.connect("postgres") as c:
        c.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(target), sql.Identifier(f"rr_{world.u}"))
        )
        c.execute(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(target), sql.Literal(f"pgvault restore job {job.job_id}")
            )
        )
    with world.connect(target) as c:
        c.execute("CREATE TABLE half_done (x int)")
    key = world.service().lock_key(JobStore(world.state).get(job.job_id))
    assert InstanceLocks(world.state).acquire(key, job.job_id, datetime.now(UTC)) is not None
    # Another delivery while the lock is fresh does nothing; the retry after it went stale starts over.
    assert world.service().run(job.job_id, last_try=False).status is JobStatus.IN_PROGRESS  # type: ignore[union-attr]
    # (Its second delivery: a lock's staleness is judged by storage's clock, not this host's.)
    later = world.service(clock=lambda: datetime.now(UTC) + timedelta(minutes=3))
    done = later.run(job.job_id, last_try=False, attempt=2)
    assert done is not None and done.status is JobStatus.COMPLETED, done.error
    assert world.digests(target) == world.digests(world.db)  # half_done is gone with the old database


def test_a_restore_records_each_attempt_and_why_the_failed_ones_failed(world: World, point: RecoveryPoint) -> None:
    target = f"retried_{world.u}"
    with socket.socket() as s:  # a port nothing listens on: the target server is down
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    target_cs = world.env["PGVAULT_SECRET_TARGET_CS"]
    world.env["PGVAULT_SECRET_FLAKY_CS"] = target_cs.replace(f"Port={world.pg.port}", f"Port={closed}")
    service = world.service()
    flaky = world.request(point, target, secret="env:PGVAULT_SECRET_FLAKY_CS")
    job = service.start("src", flaky, datetime.now(UTC)).job
    with pytest.raises(TransientError):
        service.run(job.job_id, last_try=False, attempt=1)
    tried = JobStore(world.state).get(job.job_id)
    assert tried.status is JobStatus.IN_PROGRESS and tried.details["attempt"]["number"] == 1
    assert [(r["attempt"], r["code"]) for r in tried.details["retries"]] == [(1, "UserErrorServerConnectionClosed")]

    world.env["PGVAULT_SECRET_FLAKY_CS"] = target_cs  # the server is back for the queue's retry
    done = service.run(job.job_id, last_try=False, attempt=2)
    assert done is not None and done.status is JobStatus.COMPLETED, done.error
    assert done.details["attempt"]["number"] == 2
    assert [r["attempt"] for r in done.details["retries"]] == [1]  # the failed try stays visible
    assert world.digests(target) == world.digests(world.db)


def test_a_running_restore_keeps_its_lock_alive_and_gives_it_back(world: World) -> None:
    locks = InstanceLocks(world.state)
    start = datetime.now(UTC)
    minutes = iter(range(1, 10_000))
    lock = locks.acquire("restore-heartbeat-test", "job", start)
    assert lock is not None
    with Heartbeat(
        locks, lock, lambda: start + timedelta(minutes=next(minutes)), every=timedelta(milliseconds=5)
    ) as hb:
        # pg_restore building indexes sends no bytes for minutes: the lock must not go stale meanwhile.
        while (holder := locks.holder("restore-heartbeat-test")) is not None and holder.heartbeat == start:
            time.sleep(0.01)
    assert holder is not None and holder.heartbeat > start and not hb.lost
    locks.release(hb.lock)  # the latest lock, renewed many times: released for real
    assert locks.holder("restore-heartbeat-test") is None


def test_restore_into_an_existing_name_is_refused_and_the_database_is_untouched(
    world: World, point: RecoveryPoint
) -> None:
    taken = f"taken_{world.u}"
    with world.connect("postgres") as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(taken)))
    with world.connect(taken) as c:
        c.execute("CREATE TABLE mine (v text)")
        c.execute("INSERT INTO mine VALUES ('precious')")
    with pytest.raises(UserError) as refused:
        world.service().start("src", world.request(point, taken), datetime.now(UTC))
    assert refused.value.code.value == "UserErrorDatabaseNameAlreadyInUse"
    assert refused.value.target == "restoreTargetInfo.datasourceInfo.resourceName"

    # Created between the request and the worker: the worker refuses too, and touches nothing.
    late = f"late_{world.u}"
    service = world.service()
    job = service.start("src", world.request(point, late), datetime.now(UTC)).job
    with world.connect("postgres") as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(late)))
    with world.connect(late) as c:
        c.execute("CREATE TABLE mine (v text)")
        c.execute("INSERT INTO mine VALUES ('also precious')")
    done = service.run(job.job_id, last_try=True)
    assert done is not None and done.status is JobStatus.FAILED and done.error is not None
    assert done.error.code == "UserErrorDatabaseNameAlreadyInUse"
    for db, value in ((taken, "precious"), (late, "also precious")):
        with world.connect(db) as c:
            assert c.execute("SELECT v FROM mine").fetchall() == [(value,)]
            assert c.execute("SELECT count(*) FROM pg_tables WHERE tablename = 'orders'").fetchone() == (0,)


def test_a_target_user_without_createdb_is_refused_with_the_grant_to_run(world: World, point: RecoveryPoint) -> None:
    with pytest.raises(UserError) as refused:
        world.service().start(
            "src", world.request(point, f"nope_{world.u}", "env:PGVAULT_SECRET_NOCREATE_CS"), datetime.now(UTC)
        )
    assert refused.value.code.value == "UserErrorMissingDBPermissions"
    assert "CREATEDB" in refused.value.recommended_action
    assert not world.exists(f"nope_{world.u}")


@pytest.mark.parametrize(
    ("change", "target"),
    [
        ({"objectType": "SomethingElse"}, "objectType"),
        ({"sourceDataStoreType": "Snapshot"}, "sourceDataStoreType"),
        ({"recoveryPointId": ""}, "recoveryPointId"),
        ({"restoreOptions": {"noOwner": "yes"}}, "restoreOptions.noOwner"),
        ({"restoreOptions": {"tables": ["a.t", "b.t"]}}, "restoreOptions.tables"),
        ({"rehydrationPriority": "High"}, "objectType"),
    ],
)
def test_a_malformed_request_is_refused_naming_the_field(
    world: World, point: RecoveryPoint, change: dict[str, Any], target: str
) -> None:
    with pytest.raises(UserError) as refused:
        world.service().start("src", {**world.request(point, "whatever"), **change}, datetime.now(UTC))
    assert refused.value.code.value == "InvalidRequest" and refused.value.target == target


def test_a_target_secret_without_a_server_is_refused(world: World, point: RecoveryPoint) -> None:
    with pytest.raises(UserError) as refused:
        world.service().start("src", world.request(point, "x", "env:PGVAULT_SECRET_NOSERVER_CS"), datetime.now(UTC))
    assert refused.value.code.value == "UserErrorSecretValueInUnsupportedFormat"


def test_partial_restore_of_tables_restores_only_those(world: World, point: RecoveryPoint) -> None:
    target = f"tables_{world.u}"
    job = world.restore("src", world.request(point, target, restoreOptions={"tables": ["public.orders"]}))
    assert job.status is JobStatus.COMPLETED, job.error
    assert world.digests(target) == {"public.orders": world.digests(world.db)["public.orders"]}


def test_partial_restore_of_one_schema_restores_only_that_schema(world: World, point: RecoveryPoint) -> None:
    target = f"part_{world.u}"
    job = world.restore("src", world.request(point, target, restoreOptions={"schemas": ["sales"]}))
    assert job.status is JobStatus.COMPLETED, job.error
    restored = world.digests(target)
    assert set(restored) == {"sales.invoices"}
    assert restored["sales.invoices"] == world.digests(world.db)["sales.invoices"]


def test_owners_kept_by_a_user_who_cannot_set_them_complete_with_warnings(world: World, point: RecoveryPoint) -> None:
    target = f"owners_{world.u}"
    job = world.restore("src", world.request(point, target, restoreOptions={"noOwner": False}))
    assert job.status is JobStatus.COMPLETED_WITH_WARNINGS, job.error
    assert job.details["warnings"] and all("member of role" in w for w in job.details["warnings"])
    assert world.digests(target) == world.digests(world.db)  # the data is whole


def _files_request(point: RecoveryPoint, url: str, prefix: str, **details: Any) -> dict[str, Any]:
    return {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": point.recovery_point_id,
        "sourceDataStoreType": "VaultStore",
        "restoreTargetInfo": {
            "objectType": "RestoreFilesTargetInfo",
            "recoveryOption": "FailIfExists",
            "targetDetails": {"url": url, "filePrefix": prefix, "restoreTargetLocationType": "AzureBlobs", **details},
        },
    }


def test_restore_as_files_gives_a_dump_that_plain_pg_restore_restores(
    world: World, point: RecoveryPoint, tmp_path: Path
) -> None:
    container = world.blob_service.get_container_client(f"files-{world.u}")
    container.create_container()
    url = f"{container.url}"
    job = world.restore("src", _files_request(point, url, "exports/src"))
    assert job.status is JobStatus.COMPLETED, job.error
    manifest = json.loads(container.download_blob("exports/src.manifest.json").readall())
    dump = tmp_path / "exports" / "src.dump"
    dump.parent.mkdir()
    dump.write_bytes(container.download_blob("exports/src.dump").readall())
    assert hashlib.sha256(dump.read_bytes()).hexdigest() == manifest["sha256"]
    assert manifest["source"]["database"] == world.db and manifest["pgDumpVersion"] == point.pg_dump_version
    assert manifest["restoreCommand"] == 'pg_restore --no-owner --no-acl --dbname "$PGDATABASE" exports/src.dump'
    # Plain pg_restore, run exactly as the manifest says, in the folder the file was downloaded to.
    target = f"fromfile_{world.u}"
    with world.connect("postgres") as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
    pg_env = {"PGHOST": "127.0.0.1", "PGPORT": str(world.pg.port), "PGUSER": "postgres", "PGDATABASE": target}
    subprocess.run(
        ["bash", "-c", manifest["restoreCommand"]],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], **pg_env},
        check=True,
        capture_output=True,
    )
    assert world.digests(target) == world.digests(world.db)
    # FailIfExists holds for files too.
    again = world.restore("src", _files_request(point, url, "exports/src"))
    assert again.status is JobStatus.FAILED and again.error is not None and again.error.code == "Conflict"


def test_restore_as_files_in_zstd_form_restores_with_the_manifests_command(
    world: World, point: RecoveryPoint, tmp_path: Path
) -> None:
    container = world.blob_service.get_container_client(f"zfiles-{world.u}")
    container.create_container()
    body = _files_request(point, container.url, "src")
    body["restoreOptions"] = {"fileFormat": "zstd", "schemas": ["sales"]}
    job = world.restore("src", body)
    assert job.status is JobStatus.COMPLETED, job.error
    stored = container.download_blob("src.dump.zst").readall()
    assert hashlib.sha256(stored).hexdigest() == point.sha256  # exactly what the vault keeps
    (tmp_path / "src.dump.zst").write_bytes(stored)
    manifest = json.loads(container.download_blob("src.manifest.json").readall())
    command = manifest["restoreCommand"]
    assert command == 'zstd -dc src.dump.zst | pg_restore --no-owner --no-acl --schema=sales --dbname "$PGDATABASE"'
    target = f"fromzst_{world.u}"
    with world.connect("postgres") as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
    assert manifest["beforeRestore"] == ['CREATE SCHEMA IF NOT EXISTS "sales";']
    with world.connect(target) as c:
        c.execute(manifest["beforeRestore"][0])
    pg_env = {"PGHOST": "127.0.0.1", "PGPORT": str(world.pg.port), "PGUSER": "postgres", "PGDATABASE": target}
    subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], **pg_env},
        check=True,
        capture_output=True,
    )
    assert world.digests(target) == {"sales.invoices": world.digests(world.db)["sales.invoices"]}


def test_restore_as_files_into_another_account_by_connection_string_and_a_missing_container(
    world: World, point: RecoveryPoint
) -> None:
    other = world.blob_service.get_container_client(f"other-{world.u}")
    other.create_container()
    # Seen from the vault as another account: reached with the connection string in a secret.
    url = other.url.replace("127.0.0.1", "localhost")
    job = world.restore(
        "src",
        _files_request(point, url, "z/src", connectionStringSecretUri="env:PGVAULT_SECRET_OTHER_ACCOUNT_CS"),
    )
    assert job.status is JobStatus.COMPLETED, job.error
    assert other.get_blob_client("z/src.dump").exists() and other.get_blob_client("z/src.manifest.json").exists()
    missing = world.restore(
        "src",
        _files_request(
            point,
            url.replace(f"other-{world.u}", f"gone-{world.u}"),
            "p",
            connectionStringSecretUri="env:PGVAULT_SECRET_OTHER_ACCOUNT_CS",
        ),
    )
    assert missing.status is JobStatus.FAILED and missing.error is not None
    assert missing.error.code == "UserErrorContainerNotAccessible"


def test_restore_as_files_is_checked_again_by_the_worker_when_the_settings_changed(
    world: World, point: RecoveryPoint
) -> None:
    container = world.blob_service.get_container_client(f"later-{world.u}")
    container.create_container()
    job = world.service().start("src", _files_request(point, container.url, "later"), datetime.now(UTC)).job
    # Before the worker runs, the account is taken off PGVAULT_EXPORT_ACCOUNTS.
    done = world.service(exports=replace(world.exports, accounts=())).run(job.job_id, last_try=True)
    assert done is not None and done.status is JobStatus.FAILED and done.error is not None
    assert done.error.code == "InvalidRequest" and "devstoreaccount1" in done.error.message, done.error
    assert list(container.list_blobs()) == []


def test_a_retry_keeps_the_dump_an_earlier_try_of_its_job_committed_and_writes_the_manifest(
    world: World, point: RecoveryPoint
) -> None:
    container = world.blob_service.get_container_client(f"retry-{world.u}")
    container.create_container()
    service = world.service()
    job = service.start("src", _files_request(point, container.url, "again"), datetime.now(UTC)).job
    # What a try that committed the dump, then died before the manifest, leaves.
    data = b"the dump as an earlier try committed it"
    sha = hashlib.sha256(data).hexdigest()
    meta = {"jobid": job.job_id, "recoverypointid": point.recovery_point_id, "sha256": sha, "storedbytes": "39"}
    container.upload_blob("again.dump", data, metadata=meta)
    etag = container.get_blob_client("again.dump").get_blob_properties().etag
    done = service.run(job.job_id, last_try=True)
    assert done is not None and done.status is JobStatus.COMPLETED, done
    assert container.get_blob_client("again.dump").get_blob_properties().etag == etag  # not rewritten
    manifest = json.loads(container.download_blob("again.manifest.json").readall())
    assert manifest["sha256"] == sha and manifest["bytes"] == 39 and manifest["restoredBy"] == job.job_id


def test_restore_as_files_into_the_backup_container_is_refused_before_anything_is_recorded(
    world: World, point: RecoveryPoint
) -> None:
    before = {(b.name, b.etag) for b in world.backups.client.list_blobs()}
    with pytest.raises(UserError) as refused:
        world.service().start("src", _files_request(point, world.backups.client.url, "x"), datetime.now(UTC))
    assert refused.value.code.value == "InvalidRequest"
    assert refused.value.target == "restoreTargetInfo.targetDetails.url"
    assert {(b.name, b.etag) for b in world.backups.client.list_blobs()} == before


def _verify(world: World, point: RecoveryPoint) -> Job:
    service = world.service()
    body = {"recoveryPointId": point.recovery_point_id, "secretUri": "env:PGVAULT_SECRET_TARGET_CS"}
    job = service.start_verify("src", body, datetime.now(UTC)).job
    done = service.run(job.job_id, last_try=True)
    assert done is not None
    return done


def _scratch_left(world: World) -> list[str]:
    with world.connect("postgres") as c:
        return [r[0] for r in c.execute("SELECT datname FROM pg_database WHERE datname LIKE 'pgvault_verify_%'")]


def test_verify_restore_passes_on_a_good_point_and_fails_on_a_corrupted_one(world: World) -> None:
    point = world.backup("src")
    good = _verify(world, point)
    assert good.status is JobStatus.COMPLETED, good.error
    assert good.details["verification"] == {"tablesCompared": 3, "mismatches": []}
    assert _scratch_left(world) == []

    blob = world.backups.client.get_blob_client(point.blob_name)
    data = bytearray(blob.download_blob().readall())
    data[len(data) // 2] ^= 0xFF
    blob.upload_blob(bytes(data), overwrite=True)
    bad = _verify(world, point)
    assert bad.status is JobStatus.FAILED and bad.error is not None
    assert bad.error.code in ("RecoveryPointCorrupted", "RestoreVerificationFailed")
    assert bad.error.code == "RecoveryPointCorrupted", bad.error.message
    assert _scratch_left(world) == []
    # The verification marked the point Corrupted: a restore from it is refused before anything runs.
    with pytest.raises(UserError) as refused:
        world.service().start("src", world.request(point, f"corrupt_{world.u}"), datetime.now(UTC))
    assert refused.value.code.value == "RecoveryPointCorrupted"
    assert not world.exists(f"corrupt_{world.u}")


def test_verify_restore_of_a_point_with_a_stream_manifest_passes_and_names_a_table_that_differs(world: World) -> None:
    point = world.backup("src", manifest_from_stream=True)
    name = point.blob_name + ".manifest.json"
    manifest = world.backups.get_json(name)
    tables = manifest["tables"]
    assert {d["method"] for d in tables.values()} == {"copy-sha256"}
    assert {t: d["rows"] for t, d in tables.items()} == {
        "public.orders": 30000,
        "sales.invoices": 5000,
        f"{ODD}.Ta ble": 3,
    }
    good = _verify(world, point)
    assert good.status is JobStatus.COMPLETED, good.error
    assert good.details["verification"] == {"tablesCompared": 3, "mismatches": []}
    # One row of sales.invoices differs between the backup and its restore: as the manifest now says.
    with world.connect(world.db) as c, c.cursor().copy("COPY sales.invoices TO STDOUT") as copy:
        text = b"".join(bytes(part) for part in copy)
    tampered = text.replace(b"\n4999\t4999\t9998\t", b"\n4999\t4999\t9999\t", 1)
    assert tampered != text
    lines = [*tampered.splitlines(keepends=True), b"\\.\n\n\n"]
    block = b"".join(b"\x00" + len(line).to_bytes(4, "little") + line for line in lines) + bytes(5)
    tables["sales.invoices"]["hash"] = hashlib.sha256(block).hexdigest()
    world.backups.client.get_blob_client(name).upload_blob(json.dumps(manifest).encode(), overwrite=True)
    bad = _verify(world, point)
    assert bad.status is JobStatus.FAILED and bad.error is not None
    assert bad.error.code == "RestoreVerificationFailed", bad.error.message
    assert bad.details["verification"]["mismatches"] == [
        {"table": "sales.invoices", "problem": "rows differ", "expectedRows": 5000, "restoredRows": 5000}
    ]
    assert _scratch_left(world) == []


def _rewrite_a_block(world: World, point: RecoveryPoint) -> None:
    """Rot one committed block of the point's blob in place: same block list, one block's bytes changed."""
    blob = world.backups.client.get_blob_client(point.blob_name)
    committed, _ = blob.get_block_list("committed")
    assert len(committed) >= 1
    victim = committed[len(committed) // 2]
    offset = sum(b.size for b in committed[: len(committed) // 2])
    data = bytearray(blob.download_blob(offset=offset, length=victim.size).readall())
    data[len(data) // 2] ^= 0x01
    blob.stage_block(victim.id, bytes(data))
    blob.commit_block_list([BlobBlock(block_id=b.id) for b in committed])


def test_a_point_whose_blob_fails_its_checksum_is_marked_corrupted_and_never_restored_again(
    world: World, point: RecoveryPoint
) -> None:
    rotten = world.backup("src")
    _rewrite_a_block(world, rotten)
    target = f"rot_{world.u}"
    failed = world.restore("src", world.request(rotten, target))
    assert failed.status is JobStatus.FAILED and failed.error is not None
    assert failed.error.code == "RecoveryPointCorrupted"
    assert not world.exists(target)  # the half-restored database is dropped
    points = {p.recovery_point_id: p for p in RecoveryPointStore(world.state).of("src")}
    marked = points[rotten.recovery_point_id]
    assert marked.integrity is Integrity.CORRUPTED and failed.job_id in str(marked.corruption)
    listed = marked.to_dict()
    assert listed["integrity"] == "Corrupted" and listed["corruption"]["detectedTime"]
    assert points[point.recovery_point_id].to_dict()["integrity"] == "Available"  # the others are untouched
    # Never offered as a source again: refused up front (409), naming the point and why; nothing queued.
    service = world.service()
    for start in (
        lambda: service.start("src", world.request(rotten, f"{target}2"), datetime.now(UTC)),
        lambda: service.start_verify(
            "src",
            {"recoveryPointId": rotten.recovery_point_id, "secretUri": "env:PGVAULT_SECRET_TARGET_CS"},
            datetime.now(UTC),
        ),
    ):
        with pytest.raises(UserError) as refused:
            start()
        assert refused.value.code.value == "RecoveryPointCorrupted" and refused.value.http_status == 409
        assert refused.value.target == "recoveryPointId"
        assert rotten.recovery_point_id in refused.value.message and "Corrupted" in refused.value.message
    assert not world.exists(f"{target}2")
    # A restore queued before the point was marked fails at once when it runs, reading nothing.
    fresh = {"status": JobStatus.IN_PROGRESS, "error": None, "end_time": None, "start_time": None, "steps": ()}
    queued, _ = JobStore(world.state).create(replace(failed, job_id=new_job_id(datetime.now(UTC)), etag=None, **fresh))
    ran = service.run(queued.job_id, last_try=True)
    assert ran is not None and ran.status is JobStatus.FAILED and ran.error is not None
    assert ran.error.code == "RecoveryPointCorrupted" and ran.start_time is None


def test_a_failing_pg_restore_fails_the_job_and_drops_the_database_it_created(world: World) -> None:
    # An extension only a superuser may create: the (non-superuser) target user cannot restore it.
    db = f"fdw_{world.u}"
    with world.connect("postgres") as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    with world.connect(db) as c:
        c.execute("CREATE EXTENSION file_fdw")
        c.execute("CREATE SERVER files FOREIGN DATA WRAPPER file_fdw")
        c.execute("CREATE TABLE t (id int)")
    _protect(world, "fdw", db)
    point = world.backup("fdw")
    target = f"fdwcopy_{world.u}"
    job = world.restore("fdw", world.request(point, target))
    assert job.status is JobStatus.FAILED and job.error is not None
    assert "file_fdw" in job.error.message
    assert not world.exists(target)


def _archive(world: World, point: RecoveryPoint) -> RecoveryPoint:
    """What the retention sweep does on an archive move: tier Archive, then the record's datastore."""
    world.backups.client.get_blob_client(point.blob_name).set_standard_blob_tier(StandardBlobTier.ARCHIVE)
    entity = world.state.get(layout.recovery_points(point.instance), point.recovery_point_id)
    assert entity is not None
    world.state.update(entity, {**entity.data, "datastore": "ArchiveStore"})
    return RecoveryPointStore(world.state).get(point.instance, point.recovery_point_id)


class RecordedPending:
    """Azure's answer while it rehydrates (recorded headers), ``pending`` times; then the real blob's."""

    HEADERS: ClassVar[dict[str, str]] = {
        "x-ms-blob-type": "BlockBlob",
        "x-ms-access-tier": "Archive",
        "x-ms-archive-status": "rehydrate-pending-to-hot",
        "x-ms-rehydrate-priority": "Standard",
        "x-ms-copy-status": "pending",
        "x-ms-copy-progress": "0/1048576",
    }

    def __init__(self, real: BlobStore, pending: int) -> None:
        self.real, self.pending, self.calls = real, pending, 0

    def info(self, name: str) -> BlobInfo | None:
        self.calls += 1
        if self.calls <= self.pending:
            return blob_info(name, BlobProperties(name=name, **self.HEADERS))
        return self.real.info(name)


def _restore_messages(world: World) -> list[str]:
    client = queue_client(world.queue_service, layout.RESTORE_QUEUE)
    found = []
    for msg in client.receive_messages(max_messages=32, visibility_timeout=1):
        found.append(json.loads(msg.content)["jobId"])
        client.delete_message(msg)
    return found


def test_restore_of_an_archived_point_waits_for_rehydration_then_completes(world: World) -> None:
    point = _archive(world, world.backup("src"))
    _restore_messages(world)  # start from an empty queue
    body = world.request(point, f"arch_{world.u}")
    body["sourceDataStoreType"] = "ArchiveStore"
    with pytest.raises(UserError) as refused:
        world.service().start("src", body, datetime.now(UTC))
    assert refused.value.target == "rehydrationPriority"
    body = {
        **body,
        "objectType": "AzureBackupRestoreWithRehydrationRequest",
        "rehydrationPriority": "High",
        "rehydrationRetentionDuration": "P12D",
    }
    now = datetime.now(UTC)
    probe = RecordedPending(world.backups, pending=2)
    service = world.service(probe=probe)
    restore = host_sends(world.queues, service.start("src", body, now))
    rehydrate_id = restore.details["rehydrationJobId"]
    assert _restore_messages(world) == [rehydrate_id]  # only the rehydration is queued
    # Its message lost before any worker started the copy: the timer sends it again.
    assert service.tick(now) == {"pending": 1, "ready": 0, "deleted": 0}
    assert _restore_messages(world) == [rehydrate_id]

    # The worker starts the copy; Azure says pending: both jobs wait, nobody sleeps.
    jobs = JobStore(world.state)
    assert service.run(rehydrate_id, last_try=False).status is JobStatus.IN_PROGRESS  # type: ignore[union-attr]
    assert service.tick(now + timedelta(minutes=1)) == {"pending": 1, "ready": 0, "deleted": 0}
    assert jobs.get(restore.job_id).status is JobStatus.IN_PROGRESS and _restore_messages(world) == []
    # A stray delivery of the restore while the copy is pending changes nothing.
    assert service.run(restore.job_id, last_try=False).status is JobStatus.IN_PROGRESS  # type: ignore[union-attr]

    # Rehydrated: the rehydration completes and releases the restore, which then runs.
    ready_at = now + timedelta(minutes=2)
    assert service.tick(ready_at) == {"pending": 0, "ready": 1, "deleted": 0}
    assert jobs.get(rehydrate_id).status is JobStatus.COMPLETED
    assert _restore_messages(world) == [restore.job_id]
    done = service.run(restore.job_id, last_try=False)
    assert done is not None and done.status is JobStatus.COMPLETED, done.error
    assert world.digests(f"arch_{world.u}") == world.digests(world.db)

    # The copy stays for its retention (P12D from when it became readable), then goes.
    record = RehydrationStore(world.state).get(point.recovery_point_id)
    assert record is not None and record.expiry == ready_at + timedelta(days=12)
    assert service.tick(ready_at + timedelta(days=11)) == {"pending": 0, "ready": 0, "deleted": 0}
    assert service.tick(ready_at + timedelta(days=12)) == {"pending": 0, "ready": 0, "deleted": 1}
    assert not world.backups.client.get_blob_client(record.copy_blob).exists()
    assert world.backups.client.get_blob_client(point.blob_name).exists()  # the archived original stays
    assert RehydrationStore(world.state).get(point.recovery_point_id) is None


def test_the_manifest_describes_exactly_the_dump_while_writes_go_on(world: World) -> None:
    # Rows arrive all through the backup: only a manifest read from pg_dump's own snapshot matches.
    with world.connect(world.db) as c:
        c.execute("CREATE TABLE live (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())")
    world.pg.psql(grant_sql(world.db, f"rb_{world.u}"), world.db)
    stop = threading.Event()

    def write() -> None:
        with world.connect(world.db) as c:
            while not stop.is_set():
                c.execute("INSERT INTO live DEFAULT VALUES")

    writer = threading.Thread(target=write)
    writer.start()
    try:
        point = world.backup("src")
    finally:
        stop.set()
        writer.join()
    try:
        manifest = world.backups.get_json(point.blob_name + ".manifest.json")
        with world.connect(world.db) as c:
            now_rows = c.execute("SELECT count(*) FROM live").fetchone()
        assert 0 < manifest["tables"]["public.live"]["rows"] < now_rows[0]  # type: ignore[index]
        verified = _verify(world, point)
        assert verified.status is JobStatus.COMPLETED, verified.error
        assert verified.details["verification"]["mismatches"] == []
    finally:
        with world.connect(world.db) as c:
            c.execute("DROP TABLE live")


# --- partial restores naming what the backup does not hold --------------------------------------


@pytest.mark.parametrize(
    ("options", "target", "hint"),
    [
        ({"tables": ["public.ordrs"]}, "restoreOptions.tables[0]", "public.orders"),
        ({"tables": ["public.orders", "nothere"]}, "restoreOptions.tables[1]", None),
        ({"schemas": ["sale"]}, "restoreOptions.schemas[0]", "sales"),
        ({"schemas": ["sales"], "tables": ["orders"]}, "restoreOptions.tables[0]", None),
    ],
)
def test_partial_restore_naming_what_the_backup_lacks_is_refused_400_before_any_job(
    world: World, point: RecoveryPoint, options: dict[str, Any], target: str, hint: str | None
) -> None:
    database = f"never_{world.u}"
    with pytest.raises(UserError) as refused:
        world.service().start("src", world.request(point, database, restoreOptions=options), datetime.now(UTC))
    assert refused.value.code.value == "InvalidRequest" and refused.value.http_status == 400
    assert refused.value.target == target
    assert point.recovery_point_id in refused.value.message and "public" in refused.value.message  # what it has
    assert (f"did you mean {hint}?" in refused.value.message) is (hint is not None), refused.value.message
    assert not world.exists(database)


def test_a_table_given_without_its_schema_is_resolved_from_the_backups_list(world: World, point: RecoveryPoint) -> None:
    target = f"bare_{world.u}"
    job = world.restore("src", world.request(point, target, restoreOptions={"tables": ["invoices"]}))
    assert job.status is JobStatus.COMPLETED, job.error
    assert job.details["request"]["restoreOptions"]["tables"] == ["sales.invoices"]
    assert world.digests(target) == {"sales.invoices": world.digests(world.db)["sales.invoices"]}


def test_without_a_manifest_a_missing_table_is_named_in_warnings_or_fails_when_nothing_is_there(
    world: World,
) -> None:
    bare = world.backup("src")
    world.backups.delete(bare.blob_name + ".manifest.json")  # a point from before manifests
    some = f"some_{world.u}"
    job = world.restore("src", world.request(bare, some, restoreOptions={"tables": ["public.orders", "public.gone"]}))
    assert job.status is JobStatus.COMPLETED_WITH_WARNINGS, job.error
    assert "not in the backup, so not restored: table public.gone" in job.details["warnings"]
    assert set(world.digests(some)) == {"public.orders"}
    none = f"none_{world.u}"
    job = world.restore("src", world.request(bare, none, restoreOptions={"schemas": ["nowhere"]}))
    assert job.status is JobStatus.FAILED and job.error is not None
    assert job.error.code == "InvalidRequest" and "schema nowhere" in job.error.message
    assert not world.exists(none)  # never a "Completed" empty database


def test_a_point_stores_the_roles_its_objects_need_and_restores_create_or_map_them(world: World) -> None:
    u = world.u
    owner, reader, group, admin = f"ra_{u}", f"rg_{u}", f"rq_{u}", f"rc_{u}"
    db = f"roles_{u}"
    with world.connect("postgres") as c:
        c.execute(sql.SQL("CREATE ROLE {} NOLOGIN CREATEDB CONNECTION LIMIT 3").format(sql.Identifier(owner)))
        c.execute(sql.SQL("CREATE ROLE {} LOGIN BYPASSRLS").format(sql.Identifier(reader)))
        c.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(group)))
        # The target's admin as on a managed server: no superuser, CREATEROLE and CREATEDB.
        c.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE CREATEDB").format(sql.Identifier(admin)))
        c.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(group), sql.Identifier(reader)))
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    try:
        with world.connect(db) as c:
            # The owner's own schema: a role may own tables only where it may create them (CREATE on the schema).
            c.execute(sql.SQL("CREATE SCHEMA books AUTHORIZATION {}").format(sql.Identifier(owner)))
            c.execute("CREATE TABLE books.ledger AS SELECT g AS id FROM generate_series(1, 100) g")
            c.execute(sql.SQL("ALTER TABLE books.ledger OWNER TO {}").format(sql.Identifier(owner)))
            c.execute(sql.SQL("GRANT USAGE ON SCHEMA books TO {}").format(sql.Identifier(reader)))
            c.execute(sql.SQL("GRANT SELECT ON books.ledger TO {}").format(sql.Identifier(reader)))
        _protect(world, "roles", db)
        point = world.backup("roles")
        # Stored beside the dump, checksummed, counted in the point: owner, grantee, its group (never postgres).
        assert point.roles_blob_name == point.blob_name + ".roles.json" and point.roles_sha256
        stored = world.backups.get_json(point.roles_blob_name)
        names = {r["name"] for r in stored["roles"]}
        assert {owner, reader, group, f"rb_{u}"} <= names and "postgres" not in names, names
        assert point.role_count == len(names) and point.to_dict()["roleCount"] == len(names)
        assert {"role": group, "member": reader, "adminOption": False} in stored["memberships"]

        # As files: roles.sql beside the dump, a script psql runs.
        container = world.blob_service.get_container_client(f"roles-{u}")
        container.create_container()
        files_job = world.restore("roles", _files_request(point, container.url, "r/ledger"))
        assert files_job.status is JobStatus.COMPLETED, files_job.error
        assert files_job.details["files"] == ["r/ledger.dump", "r/ledger.roles.sql", "r/ledger.manifest.json"]
        script = container.download_blob("r/ledger.roles.sql").readall().decode()
        assert f'CREATE ROLE "{owner}" WITH' in script and f'GRANT "{group}" TO "{reader}";' in script
        assert "CONNECTION LIMIT 3" in script and "PASSWORD" not in script
        manifest = json.loads(container.download_blob("r/ledger.manifest.json").readall())
        assert manifest["rolesFile"] == "r/ledger.roles.sql"

        # MapToTargetUser (the default): the target user owns what is restored, and the job says so.
        mapped = world.restore("roles", world.request(point, f"mapped_{u}"))
        assert mapped.status is JobStatus.COMPLETED, mapped.error
        assert mapped.details["roles"] == {"mode": "MapToTargetUser", "owner": f"rr_{u}"}
        with world.connect(f"mapped_{u}") as c:
            assert c.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'ledger'").fetchone() == (f"rr_{u}",)

        # The roles gone from the cluster (as on a fresh server); the script runs there, leaving existing ones be.
        for gone in (db, f"mapped_{u}"):
            world.drop(gone)
        with world.connect("postgres") as c:
            for role in (owner, reader, group):
                c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
            c.execute("BEGIN")
            c.execute(script)  # type: ignore[call-overload]  # the file as psql would run it
            assert c.execute("SELECT count(*) FROM pg_roles WHERE rolname IN (%s, %s, %s)",
                             (owner, reader, group)).fetchone() == (3,)  # fmt: skip
            c.execute("ROLLBACK")

        # CreateMissing by the non-superuser admin: the roles come back first (less what it may not give),
        # ownership and grants are kept.
        world.env["PGVAULT_SECRET_ADMIN_CS"] = f"Server=127.0.0.1;Port={world.pg.port};User Id={admin};Password=unused"
        kept = world.restore(
            "roles",
            world.request(point, f"kept_{u}", "env:PGVAULT_SECRET_ADMIN_CS", restoreOptions={"roles": "CreateMissing"}),
        )
        # The one thing a non-superuser cannot do is give schema public back to pg_database_owner: a warning.
        done = (JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_WARNINGS)
        assert kept.status in done, (kept.error and kept.error.message, kept.details)
        assert all("pg_database_owner" in w for w in kept.details["warnings"]), kept.details["warnings"]
        assert [s.name for s in kept.steps] == ["CheckTarget", "CreateDatabase", "CreateRoles", "Restore"]
        roles = kept.details["roles"]
        assert roles["mode"] == "CreateMissing" and set(roles["created"]) == {owner, reader, group}, roles
        assert f"rb_{u}" in roles["existing"] and roles["skippedAttributes"] == {reader: ["BYPASSRLS"]}, roles
        assert set(roles["grantedToTargetUser"]) == {owner, reader, group}
        with world.connect(f"kept_{u}") as c:
            assert c.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'ledger'").fetchone() == (owner,)
            granted = c.execute("SELECT has_table_privilege(%s, 'books.ledger', 'SELECT')", (reader,)).fetchone()
            assert granted == (True,)
            assert c.execute("SELECT rolconnlimit, rolcreatedb, rolcanlogin FROM pg_roles WHERE rolname = %s",
                             (owner,)).fetchone() == (3, True, False)  # fmt: skip
            assert c.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (reader, group)).fetchone() == (True,)
    finally:
        with world.connect("postgres") as c:
            for name in (db, f"mapped_{u}", f"kept_{u}"):
                c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            for role in (owner, reader, group, admin):
                c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
