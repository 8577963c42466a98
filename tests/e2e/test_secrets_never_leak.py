"""Secrets never leak: a full story with passwords, then a scan of everything the session produced.

The story uses a password-protected role: list databases, configure, validate, back up, then the
password changes under the vault (backup and re-validation fail with the auth error). Then every
place a secret could land is read back: every HTTP answer of the story, every log file under the
session's temp folder (the devhost logs of every e2e module that ran before this one; this module's
name sorts after theirs), every entity of every table, the name and metadata of every blob of
every container and every message of every queue in the session's Azurite. None may hold the
passwords of this module or of the other e2e modules.
"""

from __future__ import annotations

import base64
import importlib
import json
import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import requests
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient
from devhost_process import DevhostProcess, wait_until
from psycopg import sql

from devhost.services import Azurite, Postgres
from shared.pg.grants import grant_sql
from tests.examples import EXAMPLES

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PASSWORD = "S3cret-Story-Pa55"
CHANGED = "Ch4nged-Under-The-Vault"
# Passwords other e2e modules give their roles (their modules may not have run: then they prove nothing).
OTHER_MODULES = ("test_backups_api", "test_faults", "test_concurrency", "test_hostile")


def _passwords() -> list[str]:
    found = [PASSWORD, CHANGED]
    for name in OTHER_MODULES:
        try:
            found.append(str(importlib.import_module(name).PASSWORD))
        except (ImportError, AttributeError):
            continue
    return found


def _forms(password: str) -> list[str]:
    """The password as text, URL-encoded and base64 (queue messages are base64)."""
    return [password, urllib.parse.quote(password), base64.b64encode(password.encode()).decode()]


@pytest.fixture(scope="module")
def role(postgres: Postgres) -> Iterator[dict[str, str]]:
    s = uuid.uuid4().hex[:6]
    names = {"db": f"secrets_{s}", "user": f"secrets_{s}"}
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(names["user"]), sql.Literal(PASSWORD))
        )
        c.execute(sql.SQL("GRANT password_required TO {}").format(sql.Identifier(names["user"])))
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(names["db"])))
    postgres.psql(
        "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g;\n" + grant_sql(names["db"], names["user"]),
        names["db"],
    )
    yield names
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(names["db"])))
        c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(names["user"])))
        c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(names["user"])))


class Recorder:
    """A devhost client that keeps every answer (status line, headers, body) for the scan."""

    def __init__(self, host: DevhostProcess) -> None:
        self.host = host
        self.answers: list[str] = []

    def __call__(self, method: str, path: str, body: Any = None) -> requests.Response:
        r = self.host.request(method, path, data=None if body is None else json.dumps(body))
        self.answers.append(f"{method} {path} {r.status_code} {dict(r.headers)} {r.text}")
        return r

    def finished(self, job_id: str) -> dict[str, Any]:
        return wait_until(  # type: ignore[return-value]
            lambda: (j := self("GET", f"/backupJobs/{job_id}").json())["status"] != "InProgress" and j, 60, 0.3
        )


def test_no_password_in_any_answer_log_entity_blob_metadata_or_message(
    app_env: dict[str, str],
    azurite: Azurite,
    postgres: Postgres,
    role: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    env = {
        **app_env,
        "PGVAULT_SECRET_SECRET_CS": (
            f"Server=127.0.0.1;Port={postgres.port};User Id={role['user']};Password={PASSWORD};Ssl Mode=Disable"
        ),
    }
    host = DevhostProcess(env, tmp_path_factory.mktemp("secrets") / "devhost.log")
    host.headers = {"x-functions-key": app_env["PGVAULT_DEVHOST_KEY"]}
    call = Recorder(host)
    try:
        assert call("PUT", "/backupPolicies/weekly", json.loads((EXAMPLES / "sunday-default-only.json").read_text())).ok
        listed = call("POST", "/servers:listDatabases", {"secretUri": "env:PGVAULT_SECRET_SECRET_CS"})
        assert listed.status_code == 200 and role["db"] in listed.text, listed.text
        instance = {
            "server": "127.0.0.1",
            "port": postgres.port,
            "database": role["db"],
            "secretUri": "env:PGVAULT_SECRET_SECRET_CS",
            "policyName": "weekly",
        }
        r = call("PUT", "/backupInstances/story", instance)
        assert call.finished(r.json()["validationJobId"])["status"] == "Completed"
        trigger = {
            "backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTagOverride": "Default"}}
        }
        assert (
            call.finished(call("POST", "/backupInstances/story:backup", trigger).json()["jobId"])["status"]
            == "Completed"
        )

        # The password changes under the vault: the next backup and re-validation fail, and say why.
        with psycopg.connect(postgres.dsn(), autocommit=True) as c:
            c.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role["user"]), sql.Literal(CHANGED)))
        failed = call.finished(call("POST", "/backupInstances/story:backup", trigger).json()["jobId"])
        assert failed["status"] == "Failed" and failed["error"]["code"] == "UserErrorDBUserAuthFailed", failed
        revalidated = call.finished(call("POST", "/backupInstances/story:validate").json()["jobId"])
        assert revalidated["status"] == "Failed", revalidated
        for path in (
            "/backupInstances",
            "/backupInstances/story",
            "/backupInstances/story/recoveryPoints",
            "/backupInstances/story/grantScript?format=sql",
            "/backupInstances/story/grantScript?format=sh",
            "/backupInstances/story/grantScript?format=ps1",
            "/backupInstances/story/roleAssignmentTemplate",
            "/backupJobs?days=1",
        ):
            assert call("GET", path).status_code == 200, path
    finally:
        assert host.stop() == 0

    places: dict[str, str] = {"http": "\n".join(call.answers)}
    for log in sorted(tmp_path_factory.getbasetemp().rglob("*.log")):
        places[f"log {log}"] = log.read_text(errors="replace")
    cs = azurite.connection_string
    tables = TableServiceClient.from_connection_string(cs)
    for table in tables.list_tables():
        entities = tables.get_table_client(table.name).list_entities()
        places[f"table {table.name}"] = "\n".join(json.dumps(dict(e), default=str) for e in entities)
    blobs = BlobServiceClient.from_connection_string(cs)
    for container in blobs.list_containers(include_metadata=True):
        listing = blobs.get_container_client(container.name).list_blobs(include=["metadata"])
        places[f"container {container.name}"] = json.dumps(
            [container.metadata, *[[b.name, b.metadata] for b in listing]], default=str
        )
    queues = QueueServiceClient.from_connection_string(cs)
    for queue in queues.list_queues():
        messages = queues.get_queue_client(queue.name).peek_messages(max_messages=32)
        places[f"queue {queue.name}"] = "\n".join(str(m.content) for m in messages)

    assert any(name.startswith("log ") for name in places) and any(name.startswith("table ") for name in places)
    assert role["db"] in places["http"]  # the scan reads what it should
    leaks = [
        (where, password)
        for password in _passwords()
        for where, text in places.items()
        if any(form in text for form in _forms(password))
    ]
    print(f"\nsecrets scan: {len(places)} places, {len(_passwords())} passwords, leaks {leaks}")
    assert leaks == []
