"""Multi-part recovery points on real PostgreSQL and Azurite: dumped in parts on one snapshot,
restored in parallel, equal table by table; a part's pg_dump killed mid-dump is dumped again;
a tampered part is caught."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from azure.storage.blob import StandardBlobTier
from psycopg import sql

from devhost.services import Azurite, Postgres
from shared.backup_runner import BackupRunner
from shared.backups import BackupStarter
from shared.errors import UserError
from shared.jobs import Job, JobStatus
from shared.pg.archive import METHOD_COPY, stream_digests
from shared.pg.digests import table_digests
from shared.pg.grants import grant_sql
from shared.pg.tools import pick_tool
from shared.recovery_points import Integrity, RecoveryPoint, RecoveryPointStore
from shared.restore.files import ExportRules
from shared.restore.rehydration import CopyState, RehydrationStore
from shared.restore.service import RestoreService
from shared.secrets import EnvSecretProvider
from shared.settings import load_settings
from shared.storage import layout
from tests.integration.world import Storage, open_storage, restore_request

pytestmark = pytest.mark.integration
ODD = 'Odd "Schema"'
PARTS = 3


@dataclass
class World:
    pg: Postgres
    u: str
    db: str
    storage: Storage
    env: dict[str, str]
    emulator: str | None

    def now(self) -> datetime:
        return datetime.now(UTC)

    def backup(self, *, pg_bin_dir: Path | None = None) -> tuple[Job, RecoveryPoint]:
        body = {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTagOverride": "Weekly"}}}
        job_id = BackupStarter(self.storage.state, self.storage.queues).on_demand("psrc", body, self.now()).job.job_id
        runner = BackupRunner(
            self.storage.state,
            self.storage.backups,
            EnvSecretProvider(True, self.env),
            self.now,
            pg_bin_dir=pg_bin_dir,
            parallelism=PARTS,
            parallel_min_bytes=0,
        )
        job = runner.run(job_id, last_try=False)
        assert job is not None and job.status is JobStatus.COMPLETED, job
        return job, RecoveryPointStore(self.storage.state).get("psrc", str(job.recovery_point_id))

    def service(self) -> RestoreService:
        return RestoreService(
            self.storage.state,
            self.storage.backups,
            EnvSecretProvider(True, self.env),
            self.now,
            queues=self.storage.queues,
            allow_env_secrets=True,
            parallelism=PARTS,
            vault_account=self.storage.account,
            exports=ExportRules(accounts=("devstoreaccount1",), emulator_endpoint=self.emulator),
        )

    def restore(self, point: RecoveryPoint, database: str) -> Job:
        service = self.service()
        job = service.start("psrc", self.restore_body(point, database), self.now()).job
        done = service.run(job.job_id, last_try=True)
        assert done is not None
        return done

    def restore_body(self, point: RecoveryPoint, database: str) -> dict[str, Any]:
        return restore_request(point.recovery_point_id, database)

    def verify(self, point: RecoveryPoint) -> Job:
        service = self.service()
        body = {"recoveryPointId": point.recovery_point_id, "secretUri": "env:PGVAULT_SECRET_TARGET_CS"}
        job = service.start_verify("psrc", body, self.now()).job
        done = service.run(job.job_id, last_try=True)
        assert done is not None
        return done

    def connect(self, db: str, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        return psycopg.connect(host="127.0.0.1", port=self.pg.port, dbname=db, user="postgres", autocommit=autocommit)

    def digests(self, db: str) -> dict[str, Any]:
        with self.connect(db, autocommit=False) as c:
            return table_digests(c)

    def stream_digests(self, db: str) -> dict[str, Any]:
        """``db``'s digests as a stream manifest says them (``pg_dump --data-only`` through the parser)."""
        env = {"PGHOST": "127.0.0.1", "PGPORT": str(self.pg.port), "PGUSER": "postgres", "PGDATABASE": db}
        return stream_digests(pick_tool("pg_dump", 15).path, env)

    def manifest(self, point: RecoveryPoint) -> dict[str, Any]:
        return self.storage.backups.get_json(layout.manifest_name_for(point.blob_name))  # type: ignore[no-any-return]

    def exists(self, db: str) -> bool:
        with self.connect("postgres") as c:
            return c.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone() is not None


def _fill(c: psycopg.Connection[Any]) -> None:
    """23 tables of different sizes, a foreign key, a partitioned table, an odd name, a sequence, a large object."""
    c.execute("CREATE TABLE parent (id int PRIMARY KEY, label text)")
    c.execute("INSERT INTO parent SELECT g, md5(g::text) FROM generate_series(1, 2000) g")
    c.execute("CREATE TABLE child (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, parent_id int REFERENCES parent)")
    c.execute("INSERT INTO child (parent_id) SELECT 1 + g % 2000 FROM generate_series(1, 3000) g")
    for i in range(18):
        c.execute(sql.SQL("CREATE TABLE {} (id bigint, body text, data jsonb)").format(sql.Identifier(f"t{i:02d}")))
        c.execute(
            sql.SQL(
                "INSERT INTO {} SELECT g, repeat(md5(g::text), %s), jsonb_build_object('g', g) "
                "FROM generate_series(1, %s) g"
            ).format(sql.Identifier(f"t{i:02d}")),
            (1 + i % 4, 50 * (i + 1)),
        )
    c.execute("CREATE INDEX ON t05 (body)")
    c.execute("CREATE TABLE measures (at date NOT NULL, v int) PARTITION BY RANGE (at)")
    c.execute("CREATE TABLE measures_a PARTITION OF measures FOR VALUES FROM ('2026-01-01') TO ('2026-02-01')")
    c.execute("CREATE TABLE measures_b PARTITION OF measures FOR VALUES FROM ('2026-02-01') TO ('2026-03-01')")
    c.execute("INSERT INTO measures SELECT '2026-01-01'::date + g % 59, g FROM generate_series(1, 1000) g")
    c.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(ODD)))
    c.execute(sql.SQL("CREATE TABLE {} (k text)").format(sql.Identifier(ODD, 'Ta "ble*')))
    c.execute(sql.SQL("INSERT INTO {} VALUES ('a'), ('b'), (NULL)").format(sql.Identifier(ODD, 'Ta "ble*')))
    c.execute("CREATE SEQUENCE free_standing START 41")
    c.execute("SELECT nextval('free_standing')")
    c.execute("SELECT lo_from_bytea(0, 'a large object')")


@contextlib.contextmanager
def source_database(postgres: Postgres, prefix: str) -> Iterator[tuple[str, str, dict[str, str]]]:
    """A database ``<prefix>src_<tag>`` of ``_fill``'s tables with a backup login ``<prefix>b_<tag>`` (pgvault's
    grant script, and its large objects) and a restore login ``<prefix>r_<tag>`` (CREATEDB). Yields the tag, the
    database and the env secrets ``PGVAULT_SECRET_SRC_CS`` / ``PGVAULT_SECRET_TARGET_CS``; on exit every
    database named with the tag (restores too) and both logins are dropped."""
    u = uuid.uuid4().hex[:8]
    db, backup, restore = f"{prefix}src_{u}", f"{prefix}b_{u}", f"{prefix}r_{u}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(backup)))
        c.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEDB").format(sql.Identifier(restore)))
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    with psycopg.connect(host="127.0.0.1", port=postgres.port, dbname=db, user="postgres", autocommit=True) as c:
        _fill(c)
        for (oid,) in c.execute("SELECT oid FROM pg_largeobject_metadata").fetchall():
            c.execute(sql.SQL("GRANT SELECT ON LARGE OBJECT {} TO {}").format(sql.Literal(oid), sql.Identifier(backup)))
    postgres.psql(grant_sql(db, backup), db)
    server = f"Server=127.0.0.1;Port={postgres.port};Password=unused;Ssl Mode=Disable"
    env = {
        "PGVAULT_SECRET_SRC_CS": f"{server};User Id={backup}",
        "PGVAULT_SECRET_TARGET_CS": f"{server};User Id={restore}",
    }
    try:
        yield u, db, env
    finally:
        with psycopg.connect(postgres.dsn(), autocommit=True) as c:
            for (name,) in c.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (f"%{u}%",)).fetchall():
                c.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            for role in (backup, restore):
                c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


@pytest.fixture(scope="module")
def world(postgres: Postgres, azurite: Azurite) -> Iterator[World]:
    with source_database(postgres, "p") as (u, db, env):
        storage = open_storage(azurite, "parts", queues=[layout.BACKUP_QUEUE, layout.RESTORE_QUEUE])
        storage.put_policy("mwf", "weekly-mon-wed-fri-with-archive", datetime.now(UTC))
        spec = {
            "server": "127.0.0.1",
            "port": postgres.port,
            "database": db,
            "secretUri": "env:PGVAULT_SECRET_SRC_CS",
            "policyName": "mwf",
        }
        storage.protect("psrc", spec, datetime.now(UTC))
        settings = load_settings(
            {
                "AzureWebJobsStorage": azurite.connection_string,
                "PGVAULT_SCHEDULER_SCHEDULE": "0 */5 * * * *",
                "PGVAULT_RETENTION_SCHEDULE": "0 17 * * * *",
            }
        )
        yield World(postgres, u, db, storage, env, settings.storage_emulator_blob_endpoint)


@pytest.fixture(scope="module")
def point(world: World) -> RecoveryPoint:
    return world.backup()[1]


def test_a_multi_part_backup_of_many_tables_restores_equal_table_by_table(world: World, point: RecoveryPoint) -> None:
    assert len(point.parts) == PARTS
    tables = [t for p in point.parts for t in p.tables]
    assert len(tables) == len(set(tables)) == 23  # every table with rows in exactly one part
    assert f'{ODD}.Ta "ble*' in tables and "public.measures_a" in tables
    blobs = world.storage.backups
    assert all(blobs.exists(name) for name in point.blob_names())
    assert point.size_in_bytes > sum(p.stored_bytes for p in point.parts)
    manifest = blobs.get_json(layout.manifest_name_for(point.blob_name))
    assert [p["sha256"] for p in manifest["parts"]] == [p.sha256 for p in point.parts]

    target = f"prest_{world.u}"
    job = world.restore(point, target)
    assert job.status is JobStatus.COMPLETED, job.error
    source, restored = world.digests(world.db), world.digests(target)
    assert source == restored and len(source) == 23
    # The manifest is read from the parts' own streams (by default): each table's digest from the one
    # part that holds its rows, as a one-stream dump of the database gives them.
    assert {d["method"] for d in manifest["tables"].values()} == {METHOD_COPY}
    assert manifest["tables"] == world.stream_digests(world.db)
    assert manifest["tables"]["public.t00"]["rows"] == 50 and manifest["tables"]["public.measures_b"]["rows"] > 0
    with world.connect(target) as c:
        # What the schema part carries: a free-standing sequence, a large object, the indexes and foreign key.
        assert c.execute("SELECT last_value FROM free_standing").fetchone() == (41,)
        assert c.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone() == (1,)
        assert c.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f'").fetchone() == (1,)
        assert c.execute("SELECT count(*) FROM pg_indexes WHERE tablename = 't05'").fetchone() == (1,)
        assert c.execute("INSERT INTO child (parent_id) VALUES (1) RETURNING id").fetchone() == (3001,)

    verified = world.verify(point)
    assert verified.status is JobStatus.COMPLETED, verified.error
    assert verified.details["verification"] == {"tablesCompared": 23, "mismatches": []}


def _killing_pg_dump(tmp: Path, real: Path) -> Path:
    """A bin folder whose pg_dump is ``real``, except that the first data part it runs dies of SIGKILL mid-dump."""
    folder = tmp / "bin"
    folder.mkdir()
    script = folder / "pg_dump"
    script.write_text(
        "#!/bin/sh\n"
        'case " $* " in *" --data-only "*)\n'
        f'  if mkdir "{tmp}/killed" 2>/dev/null; then\n'
        f'    "{real}" "$@" | head -c 3000\n'
        "    kill -KILL $$\n"
        "  fi;;\n"
        "esac\n"
        f'exec "{real}" "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


def test_a_part_whose_pg_dump_is_killed_mid_dump_is_dumped_again_and_one_point_restores_equal(
    world: World, tmp_path: Path
) -> None:
    real = pick_tool("pg_dump", 15).path
    job, point = world.backup(pg_bin_dir=_killing_pg_dump(tmp_path, real))
    assert (tmp_path / "killed").is_dir()  # a part's pg_dump did die
    assert len(point.parts) == PARTS and job.recovery_point_id == point.recovery_point_id
    points = [p for p in RecoveryPointStore(world.storage.state).of("psrc") if p.job_id == job.job_id]
    assert len(points) == 1
    target = f"pkill_{world.u}"
    restored = world.restore(point, target)
    assert restored.status is JobStatus.COMPLETED, restored.error
    assert world.digests(target) == world.digests(world.db)
    # The part dumped again was digested afresh: its first try's bytes are not in the manifest.
    assert world.manifest(point)["tables"] == world.stream_digests(world.db)
    shutil.rmtree(tmp_path / "bin")


def test_a_tampered_part_fails_the_restore_as_corrupted_and_marks_the_point(world: World) -> None:
    _, point = world.backup()
    name, _ = point.part_blobs()[-1]
    blob = world.storage.backups.client.get_blob_client(name)
    data = bytearray(blob.download_blob().readall())
    data[len(data) // 2] ^= 0xFF
    blob.upload_blob(bytes(data), overwrite=True)
    target = f"ptamper_{world.u}"
    failed = world.restore(point, target)
    assert failed.status is JobStatus.FAILED and failed.error is not None
    assert failed.error.code == "RecoveryPointCorrupted", failed.error.message
    assert not world.exists(target)
    marked = RecoveryPointStore(world.storage.state).get("psrc", point.recovery_point_id)
    assert marked.integrity is Integrity.CORRUPTED
    with pytest.raises(UserError) as refused:
        world.verify(marked)
    assert refused.value.code.value == "RecoveryPointCorrupted"


def test_an_archived_multi_part_point_is_rehydrated_part_by_part_and_restores_equal(world: World) -> None:
    _, point = world.backup()
    for name in point.blob_names():  # what the sweep's archive move does to every blob of the point
        world.storage.backups.client.get_blob_client(name).set_standard_blob_tier(StandardBlobTier.ARCHIVE)
    entity = world.storage.state.get(layout.recovery_points(point.instance), point.recovery_point_id)
    assert entity is not None
    world.storage.state.update(entity, {**entity.data, "datastore": "ArchiveStore"})
    body = world.restore_body(point, f"parch_{world.u}")
    body |= {
        "objectType": "AzureBackupRestoreWithRehydrationRequest",
        "sourceDataStoreType": "ArchiveStore",
        "rehydrationPriority": "High",
        "rehydrationRetentionDuration": "P10D",
    }
    service, now = world.service(), world.now()
    restore = service.start("psrc", body, now).job
    assert service.run(restore.details["rehydrationJobId"], last_try=False) is not None
    service.tick(now)
    record = RehydrationStore(world.storage.state).get(point.recovery_point_id)
    assert record is not None and record.state is CopyState.READY and len(record.copies()) == PARTS + 1
    done = service.run(restore.job_id, last_try=False)
    assert done is not None and done.status is JobStatus.COMPLETED, done.error
    assert world.digests(f"parch_{world.u}") == world.digests(world.db)
    assert service.tick(now + timedelta(days=10, minutes=1))["deleted"] == 1
    assert not any(world.storage.backups.exists(copy) for _, copy in record.copies())


def test_a_multi_part_point_restored_as_files_gives_every_part_and_commands_that_restore_it(
    world: World, point: RecoveryPoint, tmp_path: Path
) -> None:
    container = world.storage.account.blob_service().get_container_client(f"pfiles-{world.u}")
    container.create_container()
    body = world.restore_body(point, "unused")
    body["restoreTargetInfo"] = {
        "objectType": "RestoreFilesTargetInfo",
        "recoveryOption": "FailIfExists",
        "targetDetails": {"url": container.url, "filePrefix": "x/src", "restoreTargetLocationType": "AzureBlobs"},
    }
    service = world.service()
    started = service.start("psrc", body, world.now()).job
    job = service.run(started.job_id, last_try=True)
    assert job is not None and job.status is JobStatus.COMPLETED, job.error
    assert point.roles_blob_name is not None  # so the roles the database needs are written too
    parts = [f"x/src.part{i:03d}.dump" for i in range(1, PARTS + 1)]
    names = ["x/src.dump", *parts, "x/src.roles.sql", "x/src.manifest.json"]
    assert job.details["files"] == names
    manifest = json.loads(container.download_blob("x/src.manifest.json").readall())
    (tmp_path / "x").mkdir()
    for name in names[:-1]:
        (tmp_path / name).write_bytes(container.download_blob(name).readall())
    assert [p["sha256"] for p in manifest["parts"]] == [
        hashlib.sha256((tmp_path / n).read_bytes()).hexdigest() for n in parts
    ]
    target = f"pfromfiles_{world.u}"
    with world.connect("postgres") as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
    pg_env = {"PGHOST": "127.0.0.1", "PGPORT": str(world.pg.port), "PGUSER": "postgres", "PGDATABASE": target}
    tool_dir = str(pick_tool("pg_restore", 15).path.parent)
    subprocess.run(
        ["bash", "-c", manifest["restoreCommand"]],
        cwd=tmp_path,
        env={"PATH": f"{tool_dir}:{os.environ['PATH']}", **pg_env},
        check=True,
        capture_output=True,
    )
    assert world.digests(target) == world.digests(world.db)
