"""Backups end to end: on demand and on schedule, through devhost, Azurite and a real PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from azure.storage.blob import BlobServiceClient
from devhost_process import DevhostProcess, wait_until
from psycopg import sql

from devhost.services import Postgres
from shared.pg.grants import grant_sql
from shared.pg.restore import restore_blob
from shared.pg.tools import pick_tool
from shared.storage.blobs import BlobStore
from tests.examples import EXAMPLES

pytestmark = pytest.mark.e2e
PASSWORD = "B4ckup-S3cret-9"
ROWS = 200_000


@pytest.fixture(scope="module")
def names() -> dict[str, str]:
    s = uuid.uuid4().hex[:6]
    return {"db": f"shop_{s}", "user": f"backup_{s}"}


def _connect(pg: Postgres, db: str) -> psycopg.Connection[Any]:
    return psycopg.connect(host="127.0.0.1", port=pg.port, dbname=db, user="postgres", autocommit=True)


@pytest.fixture(scope="module")
def server(postgres: Postgres, names: dict[str, str]) -> Iterator[Postgres]:
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'x'").format(sql.Identifier(names["user"])))
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(names["db"])))
    with _connect(postgres, names["db"]) as c:
        c.execute("CREATE TABLE orders (id int PRIMARY KEY, item text, paid numeric)")
        c.execute(
            f"INSERT INTO orders SELECT g, md5(g::text) || repeat(' x', 20), g * 1.5 FROM generate_series(1, {ROWS}) g"
        )
    postgres.psql(grant_sql(names["db"], names["user"]), names["db"])
    yield postgres
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(names["db"])))
        c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(names["user"])))
        c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(names["user"])))


@pytest.fixture(scope="module")
def host(
    app_env: dict[str, str], server: Postgres, names: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DevhostProcess]:
    env = {
        **app_env,
        "PGVAULT_SCHEDULER_SCHEDULE": "*/3 * * * * *",
        "PGVAULT_SECRET_SHOP_CS": f"User Id={names['user']};Password={PASSWORD};Ssl Mode=Disable",
    }
    h = DevhostProcess(env, tmp_path_factory.mktemp("devhost") / "devhost.log")
    h.headers = {"x-functions-key": app_env["PGVAULT_DEVHOST_KEY"]}
    yield h
    assert h.stop() == 0, h.log()


def _policy(first_slot: datetime) -> bytes:
    doc = json.loads((EXAMPLES / "weekly-mon-wed-fri-with-archive.json").read_text())
    schedule = doc["properties"]["policyRules"][0]["trigger"]["schedule"]
    schedule["repeatingTimeIntervals"] = [f"R/{first_slot.strftime('%Y-%m-%dT%H:%M:%S')}+00:00/P1W"]
    return json.dumps(doc).encode()


def _job(host: DevhostProcess, job_id: str) -> dict[str, Any]:
    return wait_until(  # type: ignore[return-value]
        lambda: (j := host.get(f"/backupJobs/{job_id}").json())["status"] != "InProgress" and j, 120, interval=0.3
    )


def test_on_demand_then_scheduled_backups_restore_to_the_same_data(
    host: DevhostProcess,
    server: Postgres,
    names: dict[str, str],
    app_env: dict[str, str],
) -> None:
    slot = (datetime.now(UTC) + timedelta(seconds=40)).replace(microsecond=0)
    assert host.request("PUT", "/backupPolicies/mwf", data=_policy(slot)).status_code == 201
    r = host.request(
        "PUT",
        "/backupInstances/shop",
        data=json.dumps(
            {
                "server": "127.0.0.1",
                "port": server.port,
                "database": names["db"],
                "secretUri": "env:PGVAULT_SECRET_SHOP_CS",
                "policyName": "mwf",
            }
        ),
    )
    assert r.status_code == 202, r.text
    assert _job(host, r.json()["validationJobId"])["status"] == "Completed"

    # On demand, with a retention tag of its own.
    body = {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTagOverride": "Monthly"}}}
    r = host.request("POST", "/backupInstances/shop:backup", data=json.dumps(body))
    assert r.status_code == 202, r.text
    job_id = r.json()["jobId"]
    assert r.headers["Location"] == f"/api/backupJobs/{job_id}"
    collide = host.request("POST", "/backupInstances/shop:backup", data=json.dumps(body))
    assert collide.status_code == 409
    assert collide.json()["error"]["code"] == "UserErrorMaxConcurrentOperationLimitReached"
    job = _job(host, job_id)
    assert job["status"] == "Completed", job
    assert job["retentionTag"] == "Monthly" and job["recoveryPointId"] and job["bytes"] > 0
    assert [s["name"] for s in job["steps"]] == ["CheckPrivileges", "Dump", "Commit"]

    point = host.get(f"/backupInstances/shop/recoveryPoints/{job['recoveryPointId']}").json()
    assert point["datastore"] == "VaultStore" and point["retentionTag"] == "Monthly"
    assert point["sizeInBytes"] > 0 and len(point["sha256"]) == 64 and point["serverVersion"].startswith("15")
    # Monthly: 6 months in vault-standard, then archived (the example policy).
    assert point["archiveMove"] == point["vaultExpiry"]

    # The blob restores to the same data.
    container = BlobServiceClient.from_connection_string(app_env["AzureWebJobsStorage"]).get_container_client(
        app_env["PGVAULT_BACKUP_CONTAINER"]
    )
    blob_name = next(
        b.name for b in container.list_blobs() if job["recoveryPointId"] in b.name and b.name.endswith(".pgdump.zst")
    )
    target = f"restored_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
    report = restore_blob(
        pick_tool("pg_restore", 15).path,
        {"PGHOST": "127.0.0.1", "PGPORT": str(server.port), "PGUSER": "postgres", "PGDATABASE": target},
        BlobStore.of(container),
        blob_name,
        point["sha256"],
    )
    assert report.ok and not report.warnings, report.stderr_tail
    query = "SELECT count(*), sum(paid), md5(string_agg(item, ',' ORDER BY id)) FROM orders"
    with _connect(server, target) as a, _connect(server, names["db"]) as b:
        assert a.execute(query).fetchone() == b.execute(query).fetchone()
    with psycopg.connect(server.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(target)))

    # The scheduler (every 3 s here) takes the slot once it is due: one job, tagged by the policy.
    def scheduled() -> list[dict[str, Any]]:
        jobs = host.get("/backupJobs?instance=shop&operation=Backup").json()["value"]
        return [j for j in jobs if j["details"].get("trigger") == "Schedule" and j["status"] != "InProgress"]

    done = wait_until(scheduled, 120, interval=1)
    assert len(done) == 1 and done[0]["status"] == "Completed", done  # type: ignore[arg-type, index]
    # The first scheduled backup of the year (on-demand ones do not count).
    assert done[0]["retentionTag"] == "Yearly"  # type: ignore[index]
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
