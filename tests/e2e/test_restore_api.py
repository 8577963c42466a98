"""Restores end to end through devhost: HTTP request, queue worker, real PostgreSQL and Azurite."""

from __future__ import annotations

import json
import uuid

import pytest
from azure.storage.blob import BlobServiceClient
from devhost_process import DevhostProcess, restore_body
from factories import Database, Databases, Hosts

from tests.examples import EXAMPLES

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def shop(make_database: Databases) -> Database:
    return make_database(
        "rshop",
        tables="CREATE TABLE orders (id int PRIMARY KEY, item text);"
        "INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 20000) g;",
    )


@pytest.fixture(scope="module")
def host(make_host: Hosts, shop: Database) -> DevhostProcess:
    return make_host(
        {
            "PGVAULT_SECRET_SHOP_CS": shop.connection_string(),
            "PGVAULT_SECRET_TARGET_CS": (
                f"Server=127.0.0.1;Port={shop.port};User Id=postgres;Password=unused;Ssl Mode=Disable"
            ),
        }
    )


def test_restore_verify_and_files_through_the_api(
    host: DevhostProcess, shop: Database, app_env: dict[str, str]
) -> None:
    copy = shop.spare("copy")
    assert host.put_policy("p", (EXAMPLES / "sunday-default-only.json").read_bytes())
    validation = host.configure(
        "shop", port=shop.port, database=shop.name, secret="env:PGVAULT_SECRET_SHOP_CS", policy="p"
    )
    assert validation["status"] == "Completed"
    backup = host.wait_job(host.backup_now("shop"))
    assert backup["status"] == "Completed", backup
    rp = backup["recoveryPointId"]

    body = restore_body(rp, copy, "env:PGVAULT_SECRET_TARGET_CS")
    r = host.request("POST", "/backupInstances/shop:restore", data=json.dumps(body))
    assert r.status_code == 202, r.text
    assert r.headers["Location"] == f"/api/backupJobs/{r.json()['jobId']}" and r.headers["Retry-After"]
    job = host.wait_job(r.json()["jobId"])
    assert job["status"] == "Completed" and job["operation"] == "Restore", job
    assert shop.digests(copy) == shop.digests()
    again = host.request("POST", "/backupInstances/shop:restore", data=json.dumps(body))
    assert again.status_code == 409 and again.json()["error"]["code"] == "UserErrorDatabaseNameAlreadyInUse"

    r = host.request(
        "POST",
        "/backupInstances/shop:verifyRestore",
        data=json.dumps({"recoveryPointId": rp, "secretUri": "env:PGVAULT_SECRET_TARGET_CS"}),
    )
    assert r.status_code == 202, r.text
    verify = host.wait_job(r.json()["jobId"])
    assert verify["status"] == "Completed" and verify["operation"] == "VerifyRestore", verify
    assert verify["details"]["verification"] == {"tablesCompared": 1, "mismatches": []}

    service = BlobServiceClient.from_connection_string(app_env["AzureWebJobsStorage"])
    container = service.get_container_client(f"exports-{uuid.uuid4().hex[:6]}")
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
    assert host.wait_job(r.json()["jobId"])["status"] == "Completed"
    # The roles the database needs come along as a script beside the dump.
    assert {b.name for b in container.list_blobs()} == {"shop.dump", "shop.roles.sql", "shop.manifest.json"}

    bad = host.request("POST", "/backupInstances/shop:restore", data=json.dumps({**body, "recoveryPointId": "nope"}))
    assert bad.status_code == 404 and bad.json()["error"]["target"] == "recoveryPointId"
    assert host.request("POST", "/backupInstances/nothing:restore", data=json.dumps(body)).status_code == 404
