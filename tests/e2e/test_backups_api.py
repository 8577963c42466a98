"""Backups end to end: on demand and on schedule, through devhost, Azurite and a real PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from devhost_process import DevhostProcess
from factories import Database, Databases, Hosts
from psycopg import sql
from vault_views import backup_container

from shared.pg.restore import restore_blob
from shared.pg.tools import pick_tool
from shared.storage.blobs import BlobStore
from tests.examples import policy_starting_at
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e
PASSWORD = "B4ckup-S3cret-9"
ROWS = 200_000


@pytest.fixture(scope="module")
def shop(make_database: Databases) -> Database:
    return make_database(
        "shop",
        password=PASSWORD,
        tables="CREATE TABLE orders (id int PRIMARY KEY, item text, paid numeric);"
        f"INSERT INTO orders SELECT g, md5(g::text) || repeat(' x', 20), g * 1.5 FROM generate_series(1, {ROWS}) g;",
    )


@pytest.fixture(scope="module")
def host(make_host: Hosts, shop: Database) -> DevhostProcess:
    return make_host(
        {"PGVAULT_SCHEDULER_SCHEDULE": "*/3 * * * * *", "PGVAULT_SECRET_SHOP_CS": shop.connection_string()}
    )


def test_on_demand_then_scheduled_backups_restore_to_the_same_data(
    host: DevhostProcess, shop: Database, app_env: dict[str, str]
) -> None:
    # The first slot a day away for now: it is brought close once the on-demand backup is done.
    later = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    assert host.put_policy("mwf", policy_starting_at("weekly-mon-wed-fri-with-archive.json", later)).status_code == 201
    validation = host.configure(
        "shop", port=shop.port, database=shop.name, secret="env:PGVAULT_SECRET_SHOP_CS", policy="mwf"
    )
    assert validation["status"] == "Completed"

    # On demand, with a retention tag of its own.
    body = {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTagOverride": "Monthly"}}}
    r = host.request("POST", "/backupInstances/shop:backup", data=json.dumps(body))
    assert r.status_code == 202, r.text
    job_id = r.json()["jobId"]
    assert r.headers["Location"] == f"/api/backupJobs/{job_id}"
    collide = host.request("POST", "/backupInstances/shop:backup", data=json.dumps(body))
    assert collide.status_code == 409
    assert collide.json()["error"]["code"] == "UserErrorMaxConcurrentOperationLimitReached"
    job = host.wait_job(job_id)
    assert job["status"] == "Completed", job
    assert job["retentionTag"] == "Monthly" and job["recoveryPointId"] and job["bytes"] > 0
    assert [s["name"] for s in job["steps"]] == ["CheckPrivileges", "Dump", "Commit"]
    # The policy replaced in use, its first slot now 10 s away: the scheduler follows the new schedule.
    slot = (datetime.now(UTC) + timedelta(seconds=10)).replace(microsecond=0)
    assert host.put_policy("mwf", policy_starting_at("weekly-mon-wed-fri-with-archive.json", slot)).status_code == 200

    point = host.get(f"/backupInstances/shop/recoveryPoints/{job['recoveryPointId']}").json()
    assert point["datastore"] == "VaultStore" and point["retentionTag"] == "Monthly"
    assert point["sizeInBytes"] > 0 and len(point["sha256"]) == 64 and point["serverVersion"].startswith("15")
    # Monthly: 6 months in vault-standard, then archived (the example policy).
    assert point["archiveMove"] == point["vaultExpiry"]

    # The blob restores to the same data.
    container = backup_container(app_env)
    blob_name = next(
        b.name for b in container.list_blobs() if job["recoveryPointId"] in b.name and b.name.endswith(".pgdump.zst")
    )
    target = shop.spare("restored")
    with shop.connect("postgres") as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
    report = restore_blob(
        pick_tool("pg_restore", 15).path,
        {"PGHOST": "127.0.0.1", "PGPORT": str(shop.port), "PGUSER": "postgres", "PGDATABASE": target},
        BlobStore.of(container),
        blob_name,
        point["sha256"],
    )
    assert report.ok and not report.warnings, report.stderr_tail
    query = "SELECT count(*), sum(paid), md5(string_agg(item, ',' ORDER BY id)) FROM orders"
    with shop.connect(target) as a, shop.connect() as b:
        assert a.execute(query).fetchone() == b.execute(query).fetchone()
    with shop.connect("postgres") as c:
        c.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(target)))

    # The scheduler (every 3 s here) takes the slot once it is due: one job, tagged by the policy.
    def scheduled() -> list[dict[str, Any]]:
        jobs = host.get("/backupJobs?instance=shop&operation=Backup").json()["value"]
        return [j for j in jobs if j["details"].get("trigger") == "Schedule" and j["status"] != "InProgress"]

    done = wait_until(scheduled, 120, interval=1)
    assert len(done) == 1 and done[0]["status"] == "Completed", done
    # The first scheduled backup of the year (on-demand ones do not count).
    assert done[0]["retentionTag"] == "Yearly"
    points = host.get("/backupInstances/shop/recoveryPoints").json()["value"]
    assert {p["retentionTag"] for p in points} == {"Monthly", "Yearly"} and len(points) == 2
    assert PASSWORD not in host.get("/backupJobs?instance=shop").text


def test_backup_of_an_unknown_or_unready_instance_is_refused(host: DevhostProcess) -> None:
    assert host.request("POST", "/backupInstances/nothing:backup").status_code == 404
    bad = host.request(
        "POST",
        "/backupInstances/shop:backup",
        data=json.dumps(
            {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTagOverride": "Hourly"}}}
        ),
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["target"] == "backupRuleOptions.triggerOption.retentionTagOverride"
