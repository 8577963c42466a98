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

import importlib
import json
from typing import Any

import pytest
import requests
from factories import Database, Databases, Hosts
from psycopg import sql
from vault_views import encoded_forms, storage_text

from devhost.services import Azurite
from tests.examples import EXAMPLES

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PASSWORD = "S3cret-Story-Pa55"
CHANGED = "Ch4nged-Under-The-Vault"
# Passwords other e2e modules give their roles (their modules may not have run: then they prove nothing).
OTHER_MODULES = ("test_alerts", "test_backups_api", "test_faults", "test_concurrency", "test_hostile")


def _passwords() -> list[str]:
    found = [PASSWORD, CHANGED]
    for name in OTHER_MODULES:
        try:
            found.append(str(importlib.import_module(name).PASSWORD))
        except (ImportError, AttributeError):
            continue
    return found


@pytest.fixture(scope="module")
def role(make_database: Databases) -> Database:
    table = "CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g;"
    return make_database("secrets", password=PASSWORD, password_required=True, tables=table)


def test_no_password_in_any_answer_log_entity_blob_metadata_or_message(
    make_host: Hosts, azurite: Azurite, role: Database, tmp_path_factory: pytest.TempPathFactory
) -> None:
    host = make_host({"PGVAULT_SECRET_SECRET_CS": role.connection_string(with_server=True)})
    host.transcript = []  # every answer (status line, headers, body) kept for the scan

    def call(method: str, path: str, body: Any = None) -> requests.Response:
        return host.request(method, path, data=None if body is None else json.dumps(body))

    try:
        assert call("PUT", "/backupPolicies/weekly", json.loads((EXAMPLES / "sunday-default-only.json").read_text())).ok
        listed = call("POST", "/servers:listDatabases", {"secretUri": "env:PGVAULT_SECRET_SECRET_CS"})
        assert listed.status_code == 200 and role.name in listed.text, listed.text
        instance = {
            "server": "127.0.0.1",
            "port": role.port,
            "database": role.name,
            "secretUri": "env:PGVAULT_SECRET_SECRET_CS",
            "policyName": "weekly",
        }
        r = call("PUT", "/backupInstances/story", instance)
        assert host.wait_job(r.json()["validationJobId"])["status"] == "Completed"
        trigger = {
            "backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTagOverride": "Default"}}
        }
        assert (
            host.wait_job(call("POST", "/backupInstances/story:backup", trigger).json()["jobId"])["status"]
            == "Completed"
        )

        # The password changes under the vault: the next backup and re-validation fail, and say why.
        with role.connect("postgres") as c:
            c.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(role.user), sql.Literal(CHANGED)))
        failed = host.wait_job(call("POST", "/backupInstances/story:backup", trigger).json()["jobId"])
        assert failed["status"] == "Failed" and failed["error"]["code"] == "UserErrorDBUserAuthFailed", failed
        revalidated = host.wait_job(call("POST", "/backupInstances/story:validate").json()["jobId"])
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

    places: dict[str, str] = {"http": "\n".join(host.transcript)}
    for log in sorted(tmp_path_factory.getbasetemp().rglob("*.log")):
        places[f"log {log}"] = log.read_text(errors="replace")
    places.update(storage_text(azurite.connection_string))

    assert any(name.startswith("log ") for name in places) and any(name.startswith("table ") for name in places)
    assert role.name in places["http"]  # the scan reads what it should
    leaks = [
        (where, password)
        for password in _passwords()
        for where, text in places.items()
        if any(form in text for form in encoded_forms(password))
    ]
    print(f"\nsecrets scan: {len(places)} places, {len(_passwords())} passwords, leaks {leaks}")
    assert leaks == []
