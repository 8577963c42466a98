"""A devhost killed with SIGKILL in the middle of a restore, end to end.

A database big enough for a restore of a second or two is backed up; a restore into a new
database starts; once the job reports bytes read (pg_restore is writing rows) the whole devhost
is killed and a new one started, whose restore message comes back after
PGVAULT_DEVHOST_MESSAGE_LEASE seconds. The job must end Completed (or Failed with an error), the
target must hold every row (per-table digests equal the source's) and no other database is left.
"""

from __future__ import annotations

import json
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from devhost_process import DevhostProcess, wait_until
from psycopg import sql

from devhost.services import Postgres
from shared.pg.digests import table_digests
from shared.pg.grants import grant_sql
from tests.examples import EXAMPLES

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
# Random hex: ~75 MB dumped, restored in a second or two on this machine.
ROWS = 250_000
LEASE = "5"


@pytest.fixture(scope="module")
def names(postgres: Postgres) -> Iterator[dict[str, str]]:
    s = uuid.uuid4().hex[:6]
    n = {"db": f"rfault_{s}", "user": f"rfault_{s}", "copy": f"rfault_copy_{s}"}
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(n["user"])))
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(n["db"])))
    with psycopg.connect(host="127.0.0.1", port=postgres.port, dbname=n["db"], user="postgres", autocommit=True) as c:
        c.execute("CREATE TABLE t (id int PRIMARY KEY, payload text)")
        c.execute("CREATE TABLE small (k text PRIMARY KEY)")
        pieces = " || ".join(["md5(random()::text)"] * 8)
        c.execute(f"INSERT INTO t SELECT g, {pieces} FROM generate_series(1, {ROWS}) g")
        c.execute("INSERT INTO small SELECT 'k' || g FROM generate_series(1, 100) g")
    postgres.psql(grant_sql(n["db"], n["user"]), n["db"])
    yield n
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        for db in (n["db"], n["copy"]):
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(n["user"])))
        c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(n["user"])))


def _databases(postgres: Postgres) -> set[str]:
    with psycopg.connect(postgres.dsn()) as c:
        return {r[0] for r in c.execute("SELECT datname FROM pg_database")}


def _digests(postgres: Postgres, db: str) -> dict[str, Any]:
    with psycopg.connect(host="127.0.0.1", port=postgres.port, dbname=db, user="postgres") as c:
        return table_digests(c)


class Host:
    """The devhost under test, replaced when killed."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs, self.starts = env, logs, 0
        self.host = self.start()

    def start(self) -> DevhostProcess:
        self.starts += 1
        self.host = DevhostProcess(self.env, self.logs / f"devhost-{self.starts}.log")
        self.host.headers = {"x-functions-key": self.env["PGVAULT_DEVHOST_KEY"]}
        return self.host

    def job(self, job_id: str) -> dict[str, Any]:
        r = self.host.get(f"/backupJobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()  # type: ignore[no-any-return]

    def finished(self, job_id: str, timeout: float = 120) -> dict[str, Any]:
        return wait_until(  # type: ignore[return-value]
            lambda: (j := self.job(job_id))["status"] != "InProgress" and j, timeout, interval=0.3
        )


@pytest.fixture(scope="module")
def vault(
    app_env: dict[str, str], names: dict[str, str], postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Host]:
    env = {
        **app_env,
        "PGVAULT_DEVHOST_MESSAGE_LEASE": LEASE,
        "PGVAULT_SECRET_RF_CS": f"User Id={names['user']};Password=unused;Ssl Mode=Disable",
        "PGVAULT_SECRET_RF_TARGET_CS": (
            f"Server=127.0.0.1;Port={postgres.port};User Id=postgres;Password=unused;Ssl Mode=Disable"
        ),
    }
    v = Host(env, tmp_path_factory.mktemp("faults-restore"))
    yield v
    assert v.host.stop() == 0, v.host.log()


def test_a_devhost_killed_mid_restore_ends_with_every_row_restored_and_no_stray_database(
    vault: Host, postgres: Postgres, names: dict[str, str]
) -> None:
    h = vault.host
    assert h.request("PUT", "/backupPolicies/p", data=(EXAMPLES / "sunday-default-only.json").read_bytes()).ok
    spec = {
        "server": "127.0.0.1",
        "port": postgres.port,
        "database": names["db"],
        "secretUri": "env:PGVAULT_SECRET_RF_CS",
    }
    r = h.request("PUT", "/backupInstances/rf", data=json.dumps({**spec, "policyName": "p"}))
    assert r.status_code == 202, r.text
    assert vault.finished(r.json()["validationJobId"])["status"] == "Completed"
    backup = vault.finished(h.request("POST", "/backupInstances/rf:backup").json()["jobId"])
    assert backup["status"] == "Completed", backup
    before = _databases(postgres)

    body = {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": backup["recoveryPointId"],
        "sourceDataStoreType": "VaultStore",
        "restoreTargetInfo": {
            "objectType": "RestoreTargetInfo",
            "recoveryOption": "FailIfExists",
            "datasourceInfo": {"resourceName": names["copy"]},
            "datasourceAuthCredentials": {
                "objectType": "SecretStoreBasedAuthCredentials",
                "secretStoreResource": {"uri": "env:PGVAULT_SECRET_RF_TARGET_CS", "secretStoreType": "AzureKeyVault"},
            },
        },
    }
    r = h.request("POST", "/backupInstances/rf:restore", data=json.dumps(body))
    assert r.status_code == 202, r.text
    job_id = r.json()["jobId"]

    def restoring() -> bool:
        job = vault.job(job_id)
        assert job["status"] == "InProgress", f"the restore ended before the fault (grow ROWS): {job}"
        return bool(job.get("bytes"))

    wait_until(restoring, 60, interval=0.02)
    h.stop(signal.SIGKILL)
    # Right after the crash: the half-restored target is there, under its own name only.
    assert _databases(postgres) - before == {names["copy"]}

    vault.start()  # the dead host's message comes back after its lease; the new host starts over
    job = vault.finished(job_id)
    assert job["status"] in {"Completed", "Failed"}, job
    if job["status"] == "Failed":
        assert job["error"]["code"] and job["error"]["message"], job
        assert _databases(postgres) == before, "a failed restore left a database behind"
    else:
        assert _databases(postgres) - before == {names["copy"]}, "another database was left behind"
        restored = _digests(postgres, names["copy"])
        assert restored == _digests(postgres, names["db"]) and len(restored) == 2, restored
    assert job["status"] == "Completed", f"the retry after the crash did not finish the restore: {job}"
    # No job left running, and the host's lock on the instance went with its job.
    assert [j for j in vault.host.get("/backupJobs").json()["value"] if j["status"] == "InProgress"] == []
