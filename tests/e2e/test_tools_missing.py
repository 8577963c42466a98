"""A broken tool folder does not take the app down: devhost with PGVAULT_PG_BIN_DIR naming nothing.

A first devhost (tools as usual) makes a recovery point and stops. A second one on the same state
table and container, whose PGVAULT_PG_BIN_DIR names a folder that does not exist, starts and
serves: the policies, the jobs list and a restore as files work; /api/health says the tools are
Degraded and why; the self-check answers an anonymous caller only Unhealthy and a keyed one every
check; a backup and a validation fail with UserErrorPgToolsNotFound.
"""

from __future__ import annotations

import json
import uuid

import pytest
import requests
from azure.storage.blob import BlobServiceClient
from devhost_process import DevhostProcess, restore_files_body
from factories import Database, Databases, Hosts

pytestmark = pytest.mark.e2e
MISSING = "/nonexistent/pgtools/bin"


@pytest.fixture(scope="module")
def shop(make_database: Databases) -> Database:
    return make_database(
        "tshop", tables="CREATE TABLE t AS SELECT g, md5(g::text) AS v FROM generate_series(1, 500) g;"
    )


@pytest.fixture(scope="module")
def settings(shop: Database) -> dict[str, str]:
    """What both devhosts add to the app's settings (they share its state table and container)."""
    return {"PGVAULT_SECRET_TSHOP_CS": shop.connection_string()}


@pytest.fixture(scope="module")
def point(make_host: Hosts, settings: dict[str, str], shop: Database) -> str:
    host = make_host(settings)
    try:
        return host.first_point("tshop", port=shop.port, database=shop.name, secret="env:PGVAULT_SECRET_TSHOP_CS")
    finally:
        assert host.stop() == 0, host.log()


@pytest.fixture(scope="module")
def broken(make_host: Hosts, settings: dict[str, str], point: str) -> DevhostProcess:
    return make_host({**settings, "PGVAULT_PG_BIN_DIR": MISSING})


def test_health_says_the_tools_are_degraded_and_why_while_the_app_serves(broken: DevhostProcess) -> None:
    r = requests.get(broken.url + "/health", timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "Healthy" and body["tools"]["status"] == "Degraded", body
    assert MISSING in body["tools"]["reason"] and "UserErrorPgToolsNotFound" in body["tools"]["reason"]
    assert broken.get("/backupPolicies").status_code == 200
    jobs = broken.get("/backupJobs?days=7")
    assert jobs.status_code == 200 and any(j["operation"] == "Backup" for j in jobs.json()["value"])


def test_the_deep_check_tells_an_anonymous_caller_only_unhealthy_and_a_keyed_one_every_check(
    broken: DevhostProcess,
) -> None:
    anonymous = requests.get(broken.url + "/health?deep=true", timeout=60)
    assert anonymous.status_code == 503 and anonymous.json() == {"status": "Unhealthy"}
    assert requests.get(broken.url + "/health/checks", timeout=60).status_code == 401
    keyed = broken.get("/health/checks")
    assert keyed.status_code == 200, keyed.text
    checks = {c["name"]: c for c in keyed.json()["checks"]}
    assert keyed.json()["status"] == "Degraded"
    assert checks["tools"]["status"] == "Degraded" and MISSING in checks["tools"]["reason"]
    assert {checks[n]["status"] for n in ("stateTable", "queues", "backupContainer")} == {"Healthy"}
    assert checks["platform"]["findings"]["python"] and "glibc" in checks["platform"]["findings"]


def test_a_restore_as_files_works_without_tools(broken: DevhostProcess, point: str, app_env: dict[str, str]) -> None:
    service = BlobServiceClient.from_connection_string(app_env["AzureWebJobsStorage"])
    target = service.get_container_client(f"files-{uuid.uuid4().hex[:6]}")
    target.create_container()
    body = restore_files_body(point, target.url, "tshop")
    r = broken.request("POST", "/backupInstances/tshop:restore", data=json.dumps(body))
    assert r.status_code == 202, r.text
    assert broken.wait_job(r.json()["jobId"])["status"] == "Completed"
    assert [b.name for b in target.list_blobs()]


def test_a_backup_and_a_validation_fail_with_pg_tools_not_found(broken: DevhostProcess) -> None:
    backup = broken.wait_job(broken.backup_now("tshop"))
    assert backup["status"] == "Failed" and backup["error"]["code"] == "UserErrorPgToolsNotFound", backup
    assert "PGVAULT_PG_BIN_DIR" in backup["error"]["recommendedAction"]
    r = broken.request("POST", "/backupInstances/tshop:validate")
    assert r.status_code == 202, r.text
    validation = broken.wait_job(r.json()["jobId"])
    assert validation["status"] == "Failed" and validation["error"]["code"] == "UserErrorPgToolsNotFound"
