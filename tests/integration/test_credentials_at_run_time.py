"""Credentials at run time, on real PostgreSQL and Azurite: the secret's server is checked at every
run, a cleartext password goes only to a server verified by TLS, and a server that refuses for a
reason no retry changes fails the job at once (no TransientError, one attempt).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from devhost.services import CLEARTEXT_ROLE, PASSWORD_ROLE, Postgres
from shared.backup_runner import BackupRunner
from shared.backups import BackupStarter
from shared.errors import ErrorCode, UserError
from shared.instances import InstanceService, ProtectionStatus, Readiness
from shared.jobs import Job, JobStatus
from shared.pg.grants import grant_sql
from shared.policies import PolicyService
from shared.restore.service import RestoreService
from shared.secrets import EnvSecretProvider
from shared.servers import list_databases
from shared.storage.blobs import BlobStore
from shared.storage.queues import QueueSender
from shared.storage.tables import StateTable
from shared.validation import ValidationService
from tests.examples import EXAMPLES
from tests.fake_postgres import FakePostgres, self_signed
from tests.integration.world import Storage

pytestmark = pytest.mark.integration
PASSWORD = "Cl3artext-Bait-99"  # the one password in play: whoever records it, harvested it


@dataclass
class Vault:
    state: StateTable
    backups: BlobStore
    queues: QueueSender
    env: dict[str, str]

    @property
    def secrets(self) -> EnvSecretProvider:
        # Reads self.env at each call: a test can rotate a secret between runs.
        return EnvSecretProvider(True, self.env)

    def protect(self, name: str, port: int, database: str, secret: str, server: str = "127.0.0.1") -> Job:
        """Configure instance ``name`` on ``server``:``port``; its validation job (not run yet)."""
        PolicyService(self.state).put(
            "mwf", json.loads((EXAMPLES / "weekly-mon-wed-fri-with-archive.json").read_text()), datetime.now(UTC)
        )
        spec = {"server": server, "port": port, "database": database, "secretUri": secret, "policyName": "mwf"}
        instances = InstanceService(self.state, lambda job, instance: None)
        configured = instances.configure_one(name, spec, datetime.now(UTC), allow_env_secrets=True, vault_region=None)
        assert configured.job is not None
        return configured.job

    def ready(self, name: str) -> None:
        """Mark ``name`` validated, as an instance is that validated before its secret changed."""
        instances = InstanceService(self.state, lambda job, instance: None)
        current = instances.get(name)
        instances.save(
            current, replace(current, readiness=Readiness.SUCCESS, protection_status=ProtectionStatus.PROTECTED)
        )

    def validate(self, job: Job, allowed: tuple[str, ...] = ()) -> Job:
        service = ValidationService(self.state, self.secrets, lambda: datetime.now(UTC), allowed_servers=allowed)
        return service.run(job.job_id, last_try=False)  # a TransientError would escape: the test fails

    def backup(self, name: str, allowed: tuple[str, ...] = ()) -> Job:
        """Run an on-demand backup of ``name`` (marked ready first) to its end, on its first try."""
        """Run an on-demand backup of ``name`` (marked ready first) to its end, on its first try."""
        body = {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTagOverride": "Weekly"}}}
        self.ready(name)
        job_id = BackupStarter(self.state, self.queues).on_demand(name, body, datetime.now(UTC)).job.job_id
        clock = lambda: datetime.now(UTC)  # noqa: E731
        runner = BackupRunner(self.state, self.backups, self.secrets, clock, allowed_servers=allowed)
        done = runner.run(job_id, last_try=False)
        assert done is not None
        return done

    def restore(self, name: str, point_id: str, database: str, secret: str) -> Job:
        """Restore point ``point_id`` of ``name`` as ``database`` on the server of target ``secret``, to its end."""
        body = {
            "recoveryPointId": point_id,
            "restoreTargetInfo": {
                "objectType": "RestoreTargetInfo",
                "datasourceInfo": {"resourceName": database},
                "datasourceAuthCredentials": {"secretStoreResource": {"uri": secret}},
            },
        }
        service = RestoreService(
            self.state, self.backups, self.secrets, lambda: datetime.now(UTC), queues=self.queues,
            allow_env_secrets=True,
        )  # fmt: skip
        done = service.run(service.start(name, body, datetime.now(UTC)).job.job_id, last_try=False)
        assert done is not None
        return done


@pytest.fixture
def vault(storage: Storage) -> Vault:
    return Vault(storage.state, storage.backups, storage.queues, {})


@pytest.fixture
def tls_rogue(tmp_path: Path) -> Iterator[FakePostgres]:
    """The impostor with TLS (a certificate nobody can verify), for Ssl Mode=Require."""
    fake = FakePostgres(tls=self_signed(tmp_path)).start()
    yield fake
    fake.stop()


def _failed_once(job: Job, code: ErrorCode) -> dict[str, Any]:
    assert job.status is JobStatus.FAILED, job
    assert job.error is not None and job.error.code == code.value, job.error
    assert "retries" not in job.details
    return job.error.to_dict()


# --- the secret's own server, at every run ------------------------------------------------------


def test_a_secret_rotated_to_name_another_server_is_refused_by_the_next_validation_and_backup(
    vault: Vault, rogue: FakePostgres, postgres: Postgres
) -> None:
    # Configured while the secret named the rogue's address (so nothing refused it then) ...
    vault.env["PGVAULT_SECRET_ROT"] = f"Server=127.0.0.1;Port={rogue.port};User Id=u;Password={PASSWORD}"
    job = vault.protect(
        "rot",
        rogue.port,
        "orders",
        "env:PGVAULT_SECRET_ROT",
    )
    # ... then the secret is rewritten for the real server: its password must not go to the old one.
    vault.env["PGVAULT_SECRET_ROT"] = f"Server=127.0.0.1;Port={postgres.port};User Id=u;Password={PASSWORD}"
    error = _failed_once(vault.validate(job), ErrorCode.INVALID_REQUEST)
    assert f"127.0.0.1:{rogue.port}" in error["message"] and f"127.0.0.1:{postgres.port}" in error["message"]
    backup = vault.backup("rot")
    _failed_once(backup, ErrorCode.INVALID_REQUEST)
    assert rogue.connections == 0 and rogue.passwords == []
    assert PASSWORD not in json.dumps(error) and PASSWORD not in json.dumps(backup.to_dict())


# --- no cleartext password to an unverified server (require_auth) -----------------------------


@pytest.mark.parametrize("mode", ["Prefer", "Disable", "Allow"])
def test_an_allowed_server_asking_for_a_cleartext_password_gets_none(
    vault: Vault, rogue: FakePostgres, mode: str
) -> None:
    vault.env["PGVAULT_SECRET_PLAIN"] = f"User Id=u;Password={PASSWORD};Ssl Mode={mode}"
    job = vault.protect("plain", rogue.port, "orders", "env:PGVAULT_SECRET_PLAIN")
    error = _failed_once(vault.validate(job, allowed=("127.0.0.1",)), ErrorCode.SERVER_REFUSED_CONNECTION)
    assert "cleartext" in error["message"] and "VerifyFull" in error["recommendedAction"]
    assert rogue.connections >= 1 and rogue.startups  # it was reached and asked ...
    assert rogue.passwords == []  # ... and was given nothing


def test_a_tls_server_that_nobody_verified_gets_no_cleartext_password_either(
    vault: Vault, tls_rogue: FakePostgres
) -> None:
    vault.env["PGVAULT_SECRET_TLS"] = f"User Id=u;Password={PASSWORD};Ssl Mode=Require"
    job = vault.protect("tls", tls_rogue.port, "orders", "env:PGVAULT_SECRET_TLS")
    _failed_once(vault.validate(job, allowed=("127.0.0.1",)), ErrorCode.SERVER_REFUSED_CONNECTION)
    assert tls_rogue.startups and tls_rogue.passwords == []
    with pytest.raises(UserError) as err:
        list_databases(
            vault.state,
            vault.secrets,
            {"secretUri": "env:PGVAULT_SECRET_TLS", "server": "127.0.0.1", "port": tls_rogue.port},
            allow_env=True,
            allowed_servers=("127.0.0.1",),
        )
    assert err.value.code is ErrorCode.SERVER_REFUSED_CONNECTION
    assert tls_rogue.passwords == []


# --- a TLS-only server ------------------------------------------------------------------------


@pytest.fixture
def tls_db(tls_postgres: Postgres, unique: str) -> Iterator[dict[str, str]]:
    """A database on the TLS-only cluster and a user the server asks for a cleartext password."""
    db, user = f"t_{unique}", f"tu_{unique}"
    with psycopg.connect(tls_postgres.dsn(), autocommit=True) as c:
        c.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                sql.Identifier(user), sql.Literal(PASSWORD), sql.Identifier(CLEARTEXT_ROLE)
            )
        )
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    with psycopg.connect(tls_postgres.dsn(db), autocommit=True) as c:
        c.execute("CREATE TABLE t AS SELECT g AS id FROM generate_series(1, 1000) g")
    tls_postgres.psql(grant_sql(db, user), db)
    yield {"db": db, "user": user, "server": f"Server=127.0.0.1;Port={tls_postgres.port}"}
    with psycopg.connect(tls_postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(user)))
        c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(user)))


def test_a_tls_only_server_with_ssl_mode_disable_fails_validation_and_backup_at_once_with_advice(
    vault: Vault, tls_postgres: Postgres, tls_db: dict[str, str]
) -> None:
    login = f"{tls_db['server']};User Id={tls_db['user']};Password={PASSWORD}"
    vault.env["PGVAULT_SECRET_NOTLS"] = f"{login};Ssl Mode=Disable"
    job = vault.protect(
        "notls",
        tls_postgres.port,
        tls_db["db"],
        "env:PGVAULT_SECRET_NOTLS",
    )
    error = _failed_once(vault.validate(job), ErrorCode.SERVER_REFUSED_CONNECTION)
    assert "Ssl Mode=Require" in error["recommendedAction"] and "TLS" in error["message"]
    assert PASSWORD not in json.dumps(error)
    backup = vault.backup("notls")
    error = _failed_once(backup, ErrorCode.SERVER_REFUSED_CONNECTION)
    assert backup.details["attempt"]["number"] == 1 and "Ssl Mode=Require" in error["recommendedAction"]


def test_on_a_tls_server_the_cleartext_password_goes_only_with_verify_full(
    vault: Vault, tls_postgres: Postgres, tls_db: dict[str, str]
) -> None:
    login = f"{tls_db['server']};User Id={tls_db['user']};Password={PASSWORD}"
    # Require encrypts but verifies nobody: the server's request for the cleartext password is refused.
    vault.env["PGVAULT_SECRET_REQ"] = f"{login};Ssl Mode=Require"
    job = vault.protect("req", tls_postgres.port, tls_db["db"], "env:PGVAULT_SECRET_REQ")
    error = _failed_once(vault.validate(job), ErrorCode.SERVER_REFUSED_CONNECTION)
    assert "cleartext" in error["message"]
    # VerifyFull with the server's CA: the server is who it says, the password may go (psycopg and pg_dump).
    vault.env["PGVAULT_SECRET_REQ"] = f"{login};Ssl Mode=VerifyFull;Root Certificate={tls_postgres.cert_file}"
    revalidated = InstanceService(vault.state, lambda j, i: None).revalidate("req", datetime.now(UTC))
    assert vault.validate(revalidated).status is JobStatus.COMPLETED
    backup = vault.backup("req")
    assert backup.status is JobStatus.COMPLETED, backup.error
    # A Root Certificate that did not sign the server's certificate: refused at once, with advice.
    vault.env["PGVAULT_SECRET_REQ"] = f"{login};Ssl Mode=VerifyFull;Root Certificate=/etc/ssl/certs/ca-certificates.crt"
    revalidated = InstanceService(vault.state, lambda j, i: None).revalidate("req", datetime.now(UTC))
    error = _failed_once(vault.validate(revalidated), ErrorCode.SERVER_CERTIFICATE_NOT_TRUSTED)
    assert "Root Certificate" in error["recommendedAction"]


def test_on_a_tls_server_scram_works_under_require_and_verify_full_checks_the_ca_and_the_name(
    vault: Vault, tls_postgres: Postgres, unique: str
) -> None:
    db, user = f"ts_{unique}", f"tsu_{unique}"
    with psycopg.connect(tls_postgres.dsn(), autocommit=True) as c:
        c.execute(
            sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {} IN ROLE {}").format(
                sql.Identifier(user), sql.Literal(PASSWORD), sql.Identifier(PASSWORD_ROLE)
            )
        )
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    try:
        with psycopg.connect(tls_postgres.dsn(db), autocommit=True) as c:
            c.execute("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 2000) g")
        tls_postgres.psql(grant_sql(db, user), db)
        login = f"User Id={user};Password={PASSWORD}"
        here = f"Server=127.0.0.1;Port={tls_postgres.port}"
        verify = f"Ssl Mode=VerifyFull;Root Certificate={tls_postgres.cert_file}"
        # Require: encrypted, SCRAM, nothing verified: validation (psycopg), backup (pg_dump), restore (pg_restore).
        vault.env["PGVAULT_SECRET_SCRAM"] = f"{here};{login};Ssl Mode=Require"
        job = vault.protect("scram", tls_postgres.port, db, "env:PGVAULT_SECRET_SCRAM")
        assert vault.validate(job).status is JobStatus.COMPLETED
        backup = vault.backup("scram")
        assert backup.status is JobStatus.COMPLETED, backup.error
        assert backup.recovery_point_id is not None
        restored = vault.restore("scram", backup.recovery_point_id, f"{db}_req", "env:PGVAULT_SECRET_SCRAM")
        assert restored.status is JobStatus.COMPLETED, restored.error
        # VerifyFull with the server's CA: pg_restore with the server verified (pg_dump's turn: the test above).
        vault.env["PGVAULT_SECRET_SCRAM"] = f"{here};{login};{verify}"
        restored = vault.restore("scram", backup.recovery_point_id, f"{db}_full", "env:PGVAULT_SECRET_SCRAM")
        assert restored.status is JobStatus.COMPLETED, restored.error
        digest = "SELECT count(*), md5(string_agg(v, ',' ORDER BY id)) FROM t"
        with psycopg.connect(tls_postgres.dsn(db)) as c, psycopg.connect(tls_postgres.dsn(f"{db}_full")) as r:
            assert r.execute(digest).fetchone() == c.execute(digest).fetchone()
        # A CA that did not sign the server's certificate: refused at once, its own code, for restores too.
        wrong_ca = "Ssl Mode=VerifyFull;Root Certificate=/etc/ssl/certs/ca-certificates.crt"
        vault.env["PGVAULT_SECRET_WRONG_CA"] = f"{here};{login};{wrong_ca}"
        vault.env["PGVAULT_SECRET_SCRAM"] = vault.env["PGVAULT_SECRET_WRONG_CA"]
        job = InstanceService(vault.state, lambda j, i: None).revalidate("scram", datetime.now(UTC))
        error = _failed_once(vault.validate(job), ErrorCode.SERVER_CERTIFICATE_NOT_TRUSTED)
        assert "certificate" in error["message"] and "Root Certificate" in error["recommendedAction"]
        with pytest.raises(UserError) as err:  # the restore request's own probe of the target refuses it
            vault.restore("scram", backup.recovery_point_id, f"{db}_ca", "env:PGVAULT_SECRET_WRONG_CA")
        assert err.value.code is ErrorCode.SERVER_CERTIFICATE_NOT_TRUSTED and PASSWORD not in err.value.message
        # The right CA, but a name the certificate does not hold (it names 127.0.0.1, not localhost).
        vault.env["PGVAULT_SECRET_NAME"] = f"Server=localhost;Port={tls_postgres.port};{login};{verify}"
        job = vault.protect("byname", tls_postgres.port, db, "env:PGVAULT_SECRET_NAME", server="localhost")
        error = _failed_once(vault.validate(job), ErrorCode.SERVER_CERTIFICATE_NOT_TRUSTED)
        assert "host name" in error["message"] and PASSWORD not in json.dumps(error)
    finally:
        with psycopg.connect(tls_postgres.dsn(), autocommit=True) as c:
            for name in (db, f"{db}_req", f"{db}_full", f"{db}_ca"):
                c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(user)))
            c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(user)))
