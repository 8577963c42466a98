"""Stop, resume, soft delete and undelete over HTTP, through devhost, real PostgreSQL and Azurite."""

from __future__ import annotations

import pytest
from devhost_process import DevhostProcess, instance_spec, restore_body
from factories import Database, Databases, Hosts

pytestmark = pytest.mark.e2e

SECRET = "env:PGVAULT_SECRET_SOFT_CS"


@pytest.fixture(scope="module")
def shop(make_database: Databases) -> Database:
    return make_database(
        "soft",
        tables="CREATE TABLE orders (id int PRIMARY KEY, item text);"
        "INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 500) g;",
    )


@pytest.fixture(scope="module")
def host(make_host: Hosts, shop: Database) -> DevhostProcess:
    return make_host(
        {
            "PGVAULT_SECRET_SOFT_CS": shop.connection_string(),
            "PGVAULT_SECRET_SOFT_TARGET_CS": (
                f"Server=127.0.0.1;Port={shop.port};User Id=postgres;Password=unused;Ssl Mode=Disable"
            ),
            "PGVAULT_SOFT_DELETE_DAYS": "20",
        }
    )


def test_stop_resume_then_soft_delete_and_undelete_with_every_point_restorable(
    host: DevhostProcess, shop: Database
) -> None:
    point = host.first_point("shop", port=shop.port, database=shop.name, secret=SECRET)

    bad = host.request("POST", "/backupInstances/shop:stopProtection", json={"retainData": "sometimes"})
    assert bad.status_code == 400 and bad.json()["error"]["target"] == "retainData"
    stopped = host.request("POST", "/backupInstances/shop:stopProtection", json={"retainData": "forever"})
    assert stopped.status_code == 200, stopped.text
    shown = host.get("/backupInstances/shop").json()
    assert (shown["protectionStatus"], shown["currentProtectionState"]) == ("ProtectionStopped", "ProtectionStopped")
    refused = host.request("POST", "/backupInstances/shop:backup")
    assert refused.status_code == 409 and "stopped" in refused.json()["error"]["message"]
    resumed = host.request("POST", "/backupInstances/shop:resumeProtection")
    assert resumed.status_code == 200 and resumed.json()["protectionStatus"] == "ProtectionConfigured"
    assert host.request("POST", "/backupInstances/shop:resumeProtection").status_code == 409
    not_deleted = host.request("POST", "/backupInstances/shop:undelete")
    assert not_deleted.status_code == 409 and not_deleted.json()["error"]["code"] == "Conflict"

    # Stop with delete: soft-deleted, its point kept and marked with its purge time.
    deleting = host.request("POST", "/backupInstances/shop:stopProtection", json={"retainData": "delete"})
    assert deleting.status_code == 202, deleting.text
    job = host.get(deleting.headers["Location"].removeprefix("/api")).json()
    assert (job["operation"], job["status"]) == ("Delete", "Completed")
    soft = host.get("/backupInstances/shop").json()
    assert (soft["protectionStatus"], soft["currentProtectionState"]) == ("SoftDeleted", "SoftDeleted")
    purge = soft["deletionInfo"]["scheduledPurgeTime"]
    assert soft["deletionInfo"]["deleteJobId"] == job["jobId"]
    listed = host.get("/backupInstances/shop/recoveryPoints").json()["value"]
    assert [(p["recoveryPointId"], p["state"], p["purgeTime"]) for p in listed] == [(point, "SoftDeleted", purge)]

    # Soft-deleted: no backup, no restore, and the database cannot be protected under another name.
    target = shop.spare("back")
    body = restore_body(point, target, "env:PGVAULT_SECRET_SOFT_TARGET_CS")
    for method, path, payload in (
        ("POST", "/backupInstances/shop:backup", None),
        ("POST", "/backupInstances/shop:restore", body),
        ("POST", "/backupInstances/shop:resumeProtection", None),
        ("PUT", "/backupInstances/shop2", instance_spec(shop.port, shop.name, SECRET, "p")),
    ):
        answer = host.request(method, path, json=payload)
        assert answer.status_code == 409, (path, answer.text)
        error = answer.json()["error"]
        assert error["code"] == "UserErrorBackupInstanceSoftDeleted", (path, error)
        assert "'shop'" in error["message"] and "undelete" in error["recommendedAction"].lower()
    assert purge.removesuffix("Z")[:16] in answer.json()["error"]["message"]

    # Undelete: ProtectionStopped (retain forever) with its point, which restores.
    back = host.request("POST", "/backupInstances/shop:undelete")
    assert back.status_code == 200, back.text
    assert (back.json()["protectionStatus"], back.json()["retainData"]) == ("ProtectionStopped", "forever")
    assert back.json()["deletionInfo"] is None
    again = host.get("/backupInstances/shop/recoveryPoints").json()["value"]
    assert [(p["recoveryPointId"], p["state"]) for p in again] == [(point, "Active")]
    restore = host.request("POST", "/backupInstances/shop:restore", json=body)
    assert restore.status_code == 202, restore.text
    restored = host.wait_job(restore.json()["jobId"])
    assert restored["status"] == "Completed", restored
    assert shop.digests(target) == shop.digests()
    assert host.request("POST", "/backupInstances/shop:resumeProtection").status_code == 200
