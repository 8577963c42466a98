"""Privilege drift on real PostgreSQL: an instance validated with its grants, a grant revoked, the
re-validation fails and raises one PrivilegeDrift alert (not a plain JobFailed)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from devhost.services import Postgres
from shared.alerts.model import AlertKind
from shared.alerts.store import AlertStore
from shared.instances import InstanceService
from shared.jobs import JobStatus
from shared.pg.grants import grant_sql
from shared.policies import PolicyService
from shared.secrets import EnvSecretProvider
from shared.storage.tables import StateTable
from shared.validation import ValidationService
from tests.examples import EXAMPLES


def test_a_revoked_grant_turns_validation_from_success_to_failed_and_raises_privilege_drift(
    state_table: StateTable, postgres: Postgres
) -> None:
    s = uuid.uuid4().hex[:6]
    user, database = f"drift_{s}", f"drift_{s}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(user)))
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database)))
    try:
        postgres.psql("CREATE TABLE orders (id int); CREATE TABLE lines (id int);", database)
        postgres.psql(grant_sql(database, user), database)
        env = {"PGVAULT_SECRET_DRIFT": f"User Id={user};Password=unused;Ssl Mode=Disable"}
        now = datetime.now(UTC)
        PolicyService(state_table).put("p", json.loads((EXAMPLES / "sunday-default-only.json").read_text()), now)
        instances = InstanceService(state_table, lambda job, instance: None)
        spec = {"server": "127.0.0.1", "port": postgres.port, "database": database,
                "secretUri": "env:PGVAULT_SECRET_DRIFT", "policyName": "p"}  # fmt: skip
        first = instances.configure_one("drift", spec, now, allow_env_secrets=True, vault_region=None).job
        assert first is not None
        service = ValidationService(
            state_table, EnvSecretProvider(True, env), lambda: datetime.now(UTC), allowed_servers=("127.0.0.1",)
        )
        assert service.run(first.job_id, last_try=False).status is JobStatus.COMPLETED  # type: ignore[union-attr]

        postgres.psql(sql.SQL("REVOKE SELECT ON lines FROM {}").format(sql.Identifier(user)).as_string(), database)
        again = instances.revalidate("drift", datetime.now(UTC))
        failed = service.run(again.job_id, last_try=False)
        assert failed is not None and failed.status is JobStatus.FAILED
        assert failed.error is not None and failed.error.code == "UserErrorMissingDBPermissions"

        alerts, _ = AlertStore(state_table).page(now - timedelta(hours=1))
        (alert,) = alerts
        assert alert.kind is AlertKind.PRIVILEGE_DRIFT and alert.job_id == again.job_id
        assert alert.error_code == "UserErrorMissingDBPermissions" and "lines" in alert.message
        assert failed.details["privilegeDrift"] == {"previousJobId": first.job_id}
    finally:
        with psycopg.connect(postgres.dsn(), autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database)))
            c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user)))
