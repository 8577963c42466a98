"""Restores end to end through devhost: HTTP request, queue worker, real PostgreSQL and Azurite."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from azure.storage.blob import BlobServiceClient
from devhost_process import DevhostProcess, wait_until
from psycopg import sql

from devhost.services import Postgres
from shared.pg.digests import table_digests
from shared.pg.grants import grant_sql
from tests.examples import EXAMPLES

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def names() -> dict[str, str]:
    s = uuid.uuid4().hex[:6]
    return {"db": f"rshop_{s}", "user": f"rbackup_{s}", "copy": f"rcopy_{s}", "container": f"exports-{s}"}


@pytest.fixture(scope="module")
def server(postgres: Postgres, names: dict[str, str]) -> Iterator[Postgres]:
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(names["user"])))
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(names["db"])))
    postgres.psql(
        "CREATE TABLE orders (id int PRIMARY KEY, item text);"
        "INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 20000) g;",
        names["db"],
    )
    postgres.psql(grant_sql(names["db"], names["user"]), names["db"])
    yield postgres
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        for db in (names["db"], names["copy"]):
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(names["user"])))
        c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(names["user"])))


@pytest.fixture(scope="module")
def host(
    app_env: dict[str, str], server: Postgres, names: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevhostProcess]:
    env = {
        **app_env,
        "PGVAULT_SECRET_SHOP_CS": f"User Id={names['user']};Password=unused;Ssl Mode=Disable",
        "PGVAULT_SECRET_TARGET_CS": (
            f"Server=127.0.0.1;Port={server.port};User Id=postgres;Password=unused;Ssl Mode=Disable"
        ),
    }
    h = DevhostProcess(env, tmp_path_factory.mktemp("devhost") / "devhost.log")
    h.headers = {"x-functions-key": app_env["PGVAULT_DEVHOST_KEY"]}
    yield h
    assert h.stop() == 0, h.log()


def _job(host: DevhostProcess, job_id: str) -> dict[str, Any]:
    return wait_until(  # type: ignore[return-value]
        lambda: (j := host.get(f"/backupJobs/{job_id}").json())["status"] != "InProgress" and j, 120, interval=0.3
    )


def _digests(pg: Postgres, db: str) -> dict[str, Any]:
    with psycopg.connect(host="127.0.0.1", port=pg.port, dbname=db, user="postgres") as c:
        return table_digests(c)


def test_restore_verify_and_files_through_the_api(
    host: DevhostProcess, server: Postgres, names: dict[str, str], app_env: dict[str, str]
) -> None:
    assert host.request("PUT", "/backupPolicies/p", data=(EXAMPLES / "sunday-default-only.json").read_bytes()).ok
    spec = {
        "server": "127.0.0.1",
        "port": server.port,
        "database": names["db"],
        "secretUri": "env:PGVAULT_SECRET_SHOP_CS",
    }
    r = host.request("PUT", "/backupInstances/shop", data=json.dumps({**spec, "policyName": "p"}))
    assert _job(host, r.json()["validationJobId"])["status"] == "Completed"
    r = host.request("POST", "/backupInstances/shop:backup")
    backup = _job(host, r.json()["jobId"])
    assert backup["status"] == "Completed", backup
    rp = backup["recoveryPointId"]

    body = {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": rp,
        "sourceDataStoreType": "VaultStore",
        "restoreTargetInfo": {
            "objectType": "RestoreTargetInfo",
            "recoveryOption": "FailIfExists",
            "datasourceInfo": {"resourceName": names["copy"]},
            "datasourceAuthCredentials": {
                "objectType": "SecretStoreBasedAuthCredentials",
                "secretStoreResource": {"uri": "env:PGVAULT_SECRET_TARGET_CS", "secretStoreType": "AzureKeyVault"},
            },
        },
    }
    r = host.request("POST", "/backupInstances/shop:restore", data=json.dumps(body))
    assert r.status_code == 202, r.text
    assert r.headers["Location"] == f"/api/backupJobs/{r.json()['jobId']}" and r.headers["Retry-After"]
    job = _job(host, r.json()["jobId"])
    assert job["status"] == "Completed" and job["operation"] == "Restore", job
    assert _digests(server, names["copy"]) == _digests(server, names["db"])
    again = host.request("POST", "/backupInstances/shop:restore", data=json.dumps(body))
    assert again.status_code == 409 and again.json()["error"]["code"] == "UserErrorDatabaseNameAlreadyInUse"

    r = host.request(
        "POST",
        "/backupInstances/shop:verifyRestore",
        data=json.dumps({"recoveryPointId": rp, "secretUri": "env:PGVAULT_SECRET_TARGET_CS"}),
    )
    assert r.status_code == 202, r.text
    verify = _job(host, r.json()["jobId"])
    assert verify["status"] == "Completed" and verify["operation"] == "VerifyRestore", verify
    assert verify["details"]["verification"] == {"tablesCompared": 1, "mismatches": []}

    service = BlobServiceClient.from_connection_string(app_env["AzureWebJobsStorage"])
    container = service.get_container_client(names["container"])
    container.create_container()
    files = {
        **body,
        "restoreTargetInfo": {
            "objectType": "RestoreFilesTargetInfo",
            "recoveryOption": "FailIfExists",
            "targetDetails": {"url": container.url, "filePrefix": "shop", "restoreTargetLocationType": "AzureBlobs"},
        },
    }
    r = host.request("POST", "/backupInstances/shop:restore", data=json.dumps(files))
    assert r.status_code == 202, r.text
    assert _job(host, r.json()["jobId"])["status"] == "Completed"
    assert {b.name for b in container.list_blobs()} == {"shop.dump", "shop.manifest.json"}

    bad = host.request("POST", "/backupInstances/shop:restore", data=json.dumps({**body, "recoveryPointId": "nope"}))
    assert bad.status_code == 404 and bad.json()["error"]["target"] == "recoveryPointId"
    assert host.request("POST", "/backupInstances/nothing:restore", data=json.dumps(body)).status_code == 404
