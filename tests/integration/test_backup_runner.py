"""The backup worker on real PostgreSQL and Azurite: repeats, races, failures and a killed worker."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.core.pipeline.transport import RequestsTransport
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from psycopg import sql

from devhost.services import Azurite, Postgres
from shared.backup_runner import BackupRunner, manifest_name_for
from shared.backups import BackupStarter
from shared.errors import TransientError
from shared.jobs import Job, JobStatus, JobStore
from shared.pg.grants import grant_sql
from shared.pg.restore import restore_blob
from shared.pg.tools import pick_tool
from shared.recovery_points import RecoveryPointStore
from shared.secrets import EnvSecretProvider
from shared.storage import layout
from shared.storage.blobs import BlobStore
from shared.storage.blockstream import read_verified
from shared.storage.queues import QueueSender
from shared.storage.tables import StateTable
from tests.integration.world import open_storage
from tests.pausing import hold_when, resume

pytestmark = pytest.mark.integration
CHILD = Path(__file__).with_name("backup_child.py")


@dataclass
class World:
    pg: Postgres
    db: str
    user: str
    state: StateTable
    backups: BlobStore
    queues: QueueSender
    env: dict[str, str]
    names: dict[str, str]

    def runner(self, clock: object = None, *, manifest: bool = True) -> BackupRunner:
        secrets = EnvSecretProvider(True, self.env)
        now = clock or (lambda: datetime.now(UTC))
        return BackupRunner(self.state, self.backups, secrets, now, manifest=manifest)  # type: ignore[arg-type]

    def new_job(self) -> str:
        body = {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTagOverride": "Weekly"}}}
        return BackupStarter(self.state, self.queues).on_demand("orders", body, datetime.now(UTC)).job.job_id

    def points(self) -> list:  # type: ignore[type-arg]
        return list(RecoveryPointStore(self.state).of("orders"))


@pytest.fixture(scope="module")
def orders_template(postgres: Postgres) -> Iterator[str]:
    """The orders data, made once per module; each test's database is a copy of it (CREATE DATABASE ...
    TEMPLATE copies the files: a fraction of a second against about 5 s to generate the rows)."""
    template = f"wt_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(template)))
    with psycopg.connect(host="127.0.0.1", port=postgres.port, dbname=template, user="postgres", autocommit=True) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, payload text)")
        # Random hex, no piece repeated in another row: it compresses about 2x, so the dump stages
        # several blocks (md5(g) || md5(g + 1) ... repeats each piece in the next row: 8x, one block).
        c.execute(
            "INSERT INTO t SELECT g, md5(random()::text) || md5(random()::text) || md5(random()::text)"
            " || md5(random()::text) || md5(random()::text) || md5(random()::text) FROM generate_series(1, 400000) g"
        )
    yield template
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(template)))


@pytest.fixture
def world(postgres: Postgres, azurite: Azurite, unique: str, orders_template: str) -> Iterator[World]:
    db, user = f"w_{unique}", f"wb_{unique}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(user)))
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(db), sql.Identifier(orders_template)))
    postgres.psql(grant_sql(db, user), db)
    storage = open_storage(azurite, "run", queues=[layout.BACKUP_QUEUE])
    state, backups, queues = storage.state, storage.backups, storage.queues
    now = datetime.now(UTC)
    storage.put_policy("mwf", "weekly-mon-wed-fri-with-archive", now)
    env = {
        "PGVAULT_SECRET_ORDERS_CS": f"Server=127.0.0.1;Port={postgres.port};User Id={user};Password=unused;"
        "Ssl Mode=Disable"
    }
    spec = {
        "server": "127.0.0.1",
        "port": postgres.port,
        "database": db,
        "secretUri": "env:PGVAULT_SECRET_ORDERS_CS",
        "policyName": "mwf",
    }
    storage.protect("orders", spec, now)
    yield World(postgres, db, user, state, backups, queues, env, {"table": state.name, "container": backups.container})
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(user)))
        c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(user)))


def _readable(world: World) -> None:
    for point in world.points():
        data = b"".join(read_verified(world.backups.client, point.blob_name, point.sha256))
        assert data.startswith(b"PGDMP")


def test_a_backup_keeps_a_manifest_of_its_tables_unless_told_not_to(world: World) -> None:
    with_manifest = world.runner().run(world.new_job(), last_try=False)
    without = world.runner(manifest=False).run(world.new_job(), last_try=False)
    assert with_manifest is not None and without is not None
    assert with_manifest.status is without.status is JobStatus.COMPLETED
    manifest = world.backups.get_json(with_manifest.details["manifest"])
    assert manifest["tables"]["public.t"]["rows"] == 400000
    assert without.details["manifest"] is None
    point = RecoveryPointStore(world.state).get("orders", without.recovery_point_id or "")
    assert world.backups.get_json(manifest_name_for(point.blob_name)) is None


def test_a_second_delivery_of_a_finished_job_changes_nothing(world: World) -> None:
    job_id = world.new_job()
    first = world.runner().run(job_id, last_try=False)
    assert first is not None and first.status is JobStatus.COMPLETED
    again = world.runner().run(job_id, last_try=False)
    assert again is not None and again.status is JobStatus.COMPLETED and again.end_time == first.end_time
    assert len(world.points()) == 1
    _readable(world)


def test_two_workers_on_one_job_make_one_recovery_point(world: World) -> None:
    job_id = world.new_job()
    outcomes: list[object] = []

    def work() -> None:
        try:
            outcomes.append(world.runner().run(job_id, last_try=False))
        except TransientError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(world.points()) == 1
    assert JobStore(world.state).get(job_id).status is JobStatus.COMPLETED
    _readable(world)


def test_a_failing_pg_dump_leaves_no_point_and_the_job_says_why(world: World) -> None:
    job_id = world.new_job()
    with psycopg.connect(world.pg.dsn(), autocommit=True) as c:
        c.execute(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(world.db), sql.Identifier(world.db + "_gone")
            )
        )
    try:
        job = world.runner().run(job_id, last_try=False)
    finally:
        with psycopg.connect(world.pg.dsn(), autocommit=True) as c:
            c.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                    sql.Identifier(world.db + "_gone"), sql.Identifier(world.db)
                )
            )
    assert job is not None and job.status is JobStatus.FAILED
    assert job.error is not None and job.error.code == "UserErrorDBNotFound"
    assert world.points() == []
    assert list(world.backups.client.list_blobs()) == []


def test_a_table_created_without_grants_fails_the_backup_naming_it(world: World) -> None:
    # Created after validation by a role that has no default privileges for the backup user.
    other = world.user + "_other"
    with psycopg.connect(host="127.0.0.1", port=world.pg.port, dbname=world.db, user="postgres", autocommit=True) as c:
        c.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(other)))
        c.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(sql.Identifier(other)))
        c.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(other)))
        c.execute("CREATE TABLE secret_new_table (id int)")
    try:
        job = world.runner().run(world.new_job(), last_try=False)
    finally:
        with psycopg.connect(
            host="127.0.0.1", port=world.pg.port, dbname=world.db, user="postgres", autocommit=True
        ) as c:
            c.execute("DROP TABLE secret_new_table")
            c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(other)))
            c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(other)))
    assert job is not None and job.status is JobStatus.FAILED and job.error is not None
    assert job.error.code == "UserErrorMissingDBPermissions" and "secret_new_table" in job.error.message
    assert world.points() == []


def test_a_worker_killed_mid_backup_leaves_nothing_and_the_retry_finishes_with_one_point(
    world: World, azurite: Azurite
) -> None:
    job_id = world.new_job()
    env = {**os.environ, **world.env, "AzureWebJobsStorage": azurite.connection_string}
    # pg_dump waits at its start for this lock, so the test finds it running however fast the dump.
    gate = psycopg.connect(host="127.0.0.1", port=world.pg.port, dbname=world.db, user="postgres")
    gate.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
    child = subprocess.Popen(
        [sys.executable, str(CHILD), json.dumps({"job": job_id, **world.names})],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    jobs = JobStore(world.state)

    def staged() -> bool:
        name = jobs.get(job_id).details.get("blobName")  # the attempt's own blob, named before it stages
        if name is None:
            return False
        try:
            return len(world.backups.client.get_blob_client(name).get_block_list("uncommitted")[1]) > 0
        except ResourceNotFoundError:
            return False

    # pg_dump is held still (SIGSTOP) while the state is checked, so the backup cannot end between
    # the check and the kill, however busy the machine.
    try:
        dump = hold_when("pg_dump", world.db, staged, release=gate.rollback)
    finally:
        gate.close()
    assert child.poll() is None, "the backup finished before it could be killed: make the database bigger"
    child.send_signal(signal.SIGKILL)  # mid-dump: blocks are staged, nothing committed
    child.wait()
    resume(dump)  # orphaned: it ends on its closed pipe
    killed = jobs.get(job_id)
    assert killed.status is JobStatus.IN_PROGRESS  # the truth: it did not finish
    assert world.points() == []
    assert list(world.backups.client.list_blobs()) == []  # only uncommitted blocks, if any

    # Another delivery at once finds the job's lock fresh, as if the job ran elsewhere: it does nothing.
    dropped = world.runner().run(job_id, last_try=False)
    assert dropped is not None and dropped.status is JobStatus.IN_PROGRESS and world.points() == []
    # The dead worker's own message comes back once invisible no more (minutes), as its second
    # delivery: the retry takes the lock over and finishes. (A lock's staleness is judged by the
    # storage service's clock, so a host clock 3 minutes on does not make it look abandoned.)
    later = world.runner(lambda: datetime.now(UTC) + timedelta(minutes=3))
    job = later.run(job_id, last_try=False, attempt=2)
    assert job is not None and job.status is JobStatus.COMPLETED
    assert len(world.points()) == 1
    _readable(world)


class _PausingTransport(RequestsTransport):
    """A real HTTP transport to Azurite that holds the first request ``matches`` picks until released:
    the attempt using it is frozen right there, as a worker stopped by the OS would be."""

    def __init__(self, matches: Callable[[Any], bool]) -> None:
        super().__init__()
        self.matches = matches
        self.reached, self.release = threading.Event(), threading.Event()

    def send(self, request, **kwargs):  # type: ignore[no-untyped-def]
        if not self.reached.is_set() and self.matches(request):
            self.reached.set()
            assert self.release.wait(180), "the test never released the frozen request"
        return super().send(request, **kwargs)


def _blob_commit(request: Any) -> bool:
    return request.method == "PUT" and "comp=blocklist" in request.url


def _point_insert(request: Any) -> bool:
    body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
    return request.method == "POST" and b'"PartitionKey": "rp-' in body


@pytest.mark.parametrize("frozen_at", ["commit", "point"])
def test_an_attempt_frozen_and_woken_after_a_takeover_leaves_one_consistent_point(
    world: World, azurite: Azurite, frozen_at: str
) -> None:
    """The old worker is frozen right before its blob commit, or right before its point insert; a
    later delivery takes over and dumps; the old one wakes before the new one commits. Whatever
    the order, the job, the point and the blob agree, and the point restores."""
    job_id = world.new_job()
    threads: dict[int, tuple[_PausingTransport, threading.Thread]] = {}
    outcome: dict[int, object] = {}

    def start(attempt: int, matches: Callable[[Any], bool], on_table: bool) -> None:
        transport = _PausingTransport(matches)
        blobs = BlobServiceClient.from_connection_string(
            azurite.connection_string, **({} if on_table else {"transport": transport})
        )
        tables = TableServiceClient.from_connection_string(
            azurite.connection_string, **({"transport": transport} if on_table else {})
        )
        runner = BackupRunner(
            StateTable(tables, world.state.name),
            BlobStore(blobs, world.backups.container),
            EnvSecretProvider(True, world.env),
            lambda: datetime.now(UTC),
        )

        def run() -> None:
            try:
                outcome[attempt] = runner.run(job_id, last_try=False, attempt=attempt)
            except Exception as exc:
                outcome[attempt] = exc

        thread = threading.Thread(target=run)
        threads[attempt] = (transport, thread)
        thread.start()
        assert transport.reached.wait(120), f"attempt {attempt} never reached the frozen step"

    start(1, _blob_commit if frozen_at == "commit" else _point_insert, on_table=frozen_at == "point")
    start(2, _blob_commit, on_table=False)  # the message came back: a takeover, a dump of its own
    for attempt in (1, 2):  # the old one wakes and goes on; then the new one commits
        transport, thread = threads[attempt]
        transport.release.set()
        thread.join(180)
        assert not thread.is_alive()

    job = JobStore(world.state).get(job_id)
    assert job.status is JobStatus.COMPLETED
    [point] = world.points()
    stored = world.backups.client.get_blob_client(point.blob_name).download_blob().readall()
    assert job.details["sha256"] == point.sha256 == hashlib.sha256(stored).hexdigest()
    assert job.details["blobName"] == point.blob_name and job.recovery_point_id == point.recovery_point_id
    dumps = [b.name for b in world.backups.client.list_blobs() if b.name.endswith(".pgdump.zst")]
    assert dumps == [point.blob_name]  # the loser's committed blob is gone
    for result in outcome.values():  # each attempt either finished the job or stopped to be retried
        assert isinstance(result, (Job, TransientError)), outcome
    # And the point restores.
    target = f"{world.db}_copy"
    with psycopg.connect(world.pg.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
    try:
        tool = pick_tool("pg_restore", int(point.server_version.split(".")[0]), None)
        env = {"PGHOST": "127.0.0.1", "PGPORT": str(world.pg.port), "PGUSER": "postgres", "PGDATABASE": target}
        report = restore_blob(tool.path, env, world.backups, point.blob_name, point.sha256)
        assert report.ok, report
        with psycopg.connect(world.pg.dsn(target)) as c:
            assert c.execute("SELECT count(*) FROM t").fetchone() == (400000,)
    finally:
        with psycopg.connect(world.pg.dsn(), autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target)))


def _staged(world: World, jobs: JobStore, job_id: str) -> bool:
    """Whether the attempt's own blob (named on the job before it stages) has uncommitted blocks."""
    name = jobs.get(job_id).details.get("blobName")
    if name is None:
        return False
    try:
        return len(world.backups.client.get_blob_client(name).get_block_list("uncommitted")[1]) > 0
    except ResourceNotFoundError:
        return False


def test_a_running_backup_shows_its_current_step_and_a_duration_while_it_dumps(world: World) -> None:
    """Steps as they happen: held mid-dump (blocks staged, nothing committed), the job says Dump is
    running since when, CheckPrivileges is done, and its duration is a running job's (not 0 s)."""
    job_id = world.new_job()
    jobs = JobStore(world.state)
    # pg_dump waits at its start for this lock, so the test finds it running however fast the dump.
    gate = psycopg.connect(host="127.0.0.1", port=world.pg.port, dbname=world.db, user="postgres")
    gate.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(world.runner().run(job_id, last_try=False)))
    worker.start()
    try:
        dump = hold_when("pg_dump", world.db, lambda: _staged(world, jobs, job_id), release=gate.rollback)
    finally:
        gate.close()
    try:
        seen = jobs.get(job_id).to_dict()
    finally:
        resume(dump)
        worker.join(180)
    assert seen["status"] == "InProgress"
    assert [(s["name"], s["status"]) for s in seen["steps"]] == [
        ("CheckPrivileges", "Completed"),
        ("Dump", "InProgress"),
    ]
    check, current = seen["steps"]
    assert check["startTime"] and check["endTime"]
    assert current["startTime"] and current.get("endTime") is None
    assert seen["durationSeconds"] > 0
    done = jobs.get(job_id)
    assert outcome and done.status is JobStatus.COMPLETED
    assert [s["status"] for s in done.to_dict()["steps"]] == ["Completed"] * 3
