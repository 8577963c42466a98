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
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import requests
from azure.storage.blob import BlobServiceClient
from devhost_process import DevhostProcess
from psycopg import sql

from devhost.services import Postgres
from shared.pg.grants import grant_sql
from tests.examples import EXAMPLES
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e
MISSING = "/nonexistent/pgtools/bin"


@pytest.fixture(scope="module")
def names() -> dict[str, str]:
    s = uuid.uuid4().hex[:6]
    return {"db": f"tshop_{s}", "user": f"tbackup_{s}", "container": f"files-{s}"}


@pytest.fixture(scope="module")
def server(postgres: Postgres, names: dict[str, str]) -> Iterator[Postgres]:
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(names["user"])))
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(names["db"])))
    postgres.psql("CREATE TABLE t AS SELECT g, md5(g::text) AS v FROM generate_series(1, 500) g;", names["db"])
    postgres.psql(grant_sql(names["db"], names["user"]), names["db"])
    yield postgres
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(names["db"])))
        c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(names["user"])))
        c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(names["user"])))


def _job(host: DevhostProcess, job_id: str) -> dict[str, Any]:
    return wait_until(  # type: ignore[return-value]
        lambda: (j := host.get(f"/backupJobs/{job_id}").json())["status"] != "InProgress" and j, 120, interval=0.3
    )


def _start(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> DevhostProcess:
    host = DevhostProcess(env, tmp_path_factory.mktemp("devhost") / "devhost.log")
    host.headers = {"x-functions-key": env["PGVAULT_DEVHOST_KEY"]}
    return host


@pytest.fixture(scope="module")
def env(app_env: dict[str, str], names: dict[str, str]) -> dict[str, str]:
    return {**app_env, "PGVAULT_SECRET_TSHOP_CS": f"User Id={names['user']};Password=unused;Ssl Mode=Disable"}


@pytest.fixture(scope="module")
def point(env: dict[str, str], server: Postgres, names: dict[str, str],
          tmp_path_factory: pytest.TempPathFactory) -> str:  # fmt: skip
    host = _start(env, tmp_path_factory)
    try:
        assert host.request("PUT", "/backupPolicies/p", data=(EXAMPLES / "sunday-default-only.json").read_bytes()).ok
        spec = {"server": "127.0.0.1", "port": server.port, "database": names["db"],
                "secretUri": "env:PGVAULT_SECRET_TSHOP_CS", "policyName": "p"}  # fmt: skip
        r = host.request("PUT", "/backupInstances/tshop", data=json.dumps(spec))
        assert _job(host, r.json()["validationJobId"])["status"] == "Completed"
        backup = _job(host, host.request("POST", "/backupInstances/tshop:backup").json()["jobId"])
        assert backup["status"] == "Completed", backup
        return str(backup["recoveryPointId"])
    finally:
        assert host.stop() == 0, host.log()


@pytest.fixture(scope="module")
def broken(env: dict[str, str], point: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    host = _start({**env, "PGVAULT_PG_BIN_DIR": MISSING}, tmp_path_factory)
    yield host
    assert host.stop() == 0, host.log()


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


def test_a_restore_as_files_works_without_tools(
    broken: DevhostProcess, point: str, env: dict[str, str], names: dict[str, str]
) -> None:
    service = BlobServiceClient.from_connection_string(env["AzureWebJobsStorage"])
    target = service.get_container_client(names["container"])
    target.create_container()
    body = {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": point,
        "sourceDataStoreType": "VaultStore",
        "restoreTargetInfo": {
            "objectType": "RestoreFilesTargetInfo",
            "recoveryOption": "FailIfExists",
            "targetDetails": {"url": target.url, "filePrefix": "tshop", "restoreTargetLocationType": "AzureBlobs"},
        },
    }
    r = broken.request("POST", "/backupInstances/tshop:restore", data=json.dumps(body))
    assert r.status_code == 202, r.text
    assert _job(broken, r.json()["jobId"])["status"] == "Completed"
    assert [b.name for b in target.list_blobs()]


def test_a_backup_and_a_validation_fail_with_pg_tools_not_found(broken: DevhostProcess) -> None:
    backup = _job(broken, broken.request("POST", "/backupInstances/tshop:backup").json()["jobId"])
    assert backup["status"] == "Failed" and backup["error"]["code"] == "UserErrorPgToolsNotFound", backup
    assert "PGVAULT_PG_BIN_DIR" in backup["error"]["recommendedAction"]
    validation = _job(broken, broken.request("POST", "/backupInstances/tshop:validate").json()["jobId"])
    assert validation["status"] == "Failed" and validation["error"]["code"] == "UserErrorPgToolsNotFound"
