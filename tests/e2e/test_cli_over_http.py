"""The CLI through the real HTTP API: devhost, Azurite and a real PostgreSQL, `python -m pgvault` as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import pytest
from devhost_process import REPO, DevhostProcess
from factories import Database, Databases, Hosts
from psycopg import sql

from tests.examples import EXAMPLES

pytestmark = pytest.mark.e2e
PASSWORD = "Cli-S3cret-7"


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture(scope="module")
def shops(make_database: Databases) -> Database:
    """Two databases of one backup user, each with ``items``."""
    return make_database(
        "cli",
        databases=2,
        password=PASSWORD,
        tables="CREATE TABLE items (id int PRIMARY KEY, label text);"
        "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 2000) g;",
    )


@pytest.fixture(scope="module")
def host(make_host: Hosts, shops: Database) -> DevhostProcess:
    return make_host({"PGVAULT_SECRET_CLI_CS": shops.connection_string()})


@pytest.fixture(scope="module")
def cli(host: DevhostProcess, app_env: dict[str, str]):  # type: ignore[no-untyped-def]
    def run(*argv: str) -> Run:
        env = {
            **os.environ,
            "PGVAULT_URL": f"http://127.0.0.1:{host.port}",
            "PGVAULT_KEY": app_env["PGVAULT_DEVHOST_KEY"],
        }
        done = subprocess.run(
            [sys.executable, "-m", "pgvault", *argv],
            check=False,
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        return Run(done.returncode, done.stdout, done.stderr)

    return run


@pytest.fixture(scope="module")
def protected(cli, shops: Database) -> list[str]:  # type: ignore[no-untyped-def]
    """Policy stored and two instances protected (validated) through the CLI."""
    policy = cli("policy", "create", "-n", "weekly", "-f", str(EXAMPLES / "sunday-default-only.json"), "-o", "json")
    assert policy.code == 0, policy.err
    assert policy.json()["name"] == "weekly"
    made = []
    for name, db in zip(("shop", "shop2"), shops.names, strict=True):
        r = cli(
            "instance",
            "configure",
            "-n",
            name,
            "--server",
            "127.0.0.1",
            "--port",
            str(shops.port),
            "-d",
            db,
            "--secret-uri",
            "env:PGVAULT_SECRET_CLI_CS",
            "--policy",
            "weekly",
            "--wait",
            "--poll",
            "0.3",
            "-o",
            "json",
        )
        assert r.code == 0, r.err
        assert r.json()["status"] == "Completed" and r.json()["operation"] == "Validate"
        made.append(name)
    return made


def test_backup_now_wait_exits_0_and_prints_the_recovery_point(cli, protected: list[str]) -> None:  # type: ignore[no-untyped-def]
    r = cli("backup", "now", "--instance", "shop", "--tag", "Default", "--wait", "--poll", "0.3", "-o", "json")
    assert r.code == 0, r.err
    job = r.json()
    assert job["status"] == "Completed" and job["operation"] == "Backup" and job["bytes"] > 0
    point_id = job["recoveryPointId"]
    assert point_id and job["links"]["recoveryPoint"].endswith(f"/recoveryPoints/{point_id}")
    shown = cli("recovery-point", "show", "-i", "shop", "--id", point_id, "-o", "json")
    assert shown.code == 0 and shown.json()["retentionTag"] == "Default" and len(shown.json()["sha256"]) == 64
    table = cli("recovery-point", "list", "-i", "shop", "-o", "table")
    assert table.code == 0 and point_id in table.out and "VaultStore" in table.out
    detail = cli("job", "show", job["jobId"], "-o", "table")
    assert detail.code == 0 and "step Dump" in detail.out and point_id in detail.out


def test_backup_of_an_instance_whose_user_lost_its_privileges_exits_1_with_the_code(  # type: ignore[no-untyped-def]
    cli, protected: list[str], shops: Database
) -> None:
    with shops.connect(shops.names[1]) as c:
        c.execute(sql.SQL("REVOKE SELECT ON items FROM {}").format(sql.Identifier(shops.user)))
    r = cli("backup", "now", "--instance", "shop2", "--wait", "--poll", "0.3", "-o", "json")
    assert r.code == 1, (r.out, r.err)
    # Progress lines (one per change of status or step: stderr is not a terminal here), then the error.
    assert any(line.startswith("pgvault: UserErrorMissingDBPermissions: job ") for line in r.err.splitlines()), r.err
    assert "Recommended action:" in r.err
    assert r.json()["status"] == "Failed"
    watched = cli("job", "watch", r.json()["jobId"], "-o", "json")
    assert watched.code == 1 and "UserErrorMissingDBPermissions" in watched.err


def test_api_errors_exit_3_with_the_code_and_bad_input_exits_2(cli, protected: list[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = cli("backup", "now", "--instance", "nothing-here", "-o", "json")
    assert r.code == 3 and r.err.startswith("pgvault: NotFound: ")
    r = cli("backup", "now", "--instance", "shop", "--tag", "Hourly", "-o", "json")
    assert r.code == 2 and "InvalidRequest" in r.err and "retentionTagOverride" in r.err
    doc = json.loads((EXAMPLES / "sunday-default-only.json").read_text())
    doc["policyRules"][1]["lifecycles"][0]["deleteAfter"]["duration"] = "P99999999999999999999D"
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps(doc))
    r = cli("policy", "create", "-n", "huge", "-f", str(huge), "-o", "json")
    assert r.code == 2 and "Traceback" not in r.err, r.err
    assert "InvalidPolicy" in r.err and "Target: policyRules[1].lifecycles[0].deleteAfter.duration" in r.err


def test_job_list_reads_every_page(cli, host: DevhostProcess, protected: list[str]) -> None:  # type: ignore[no-untyped-def]
    everything = host.get("/backupJobs?top=1000").json()
    assert "nextLink" not in everything and len(everything["value"]) >= 3
    first = host.get("/backupJobs?top=2").json()
    assert len(first["value"]) == 2 and "continuationToken=" in first["nextLink"]
    paged = cli("job", "list", "--top", "2", "-o", "json")
    assert paged.code == 0, paged.err
    assert [j["jobId"] for j in paged.json()] == [j["jobId"] for j in everything["value"]]
    validations = cli("job", "list", "--top", "1", "--operation", "Validate", "-o", "table")
    assert validations.code == 0 and validations.out.count("Validate") == 2


def test_tampered_continuation_token_is_a_400_naming_the_parameter(host: DevhostProcess, protected: list[str]) -> None:
    link = host.get("/backupJobs?top=1").json()["nextLink"]
    assert link.startswith(host.url + "/backupJobs?")
    token = link.split("continuationToken=")[1]
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    r = host.get(f"/backupJobs?top=1&continuationToken={tampered}")
    assert r.status_code == 400 and r.json()["error"]["target"] == "continuationToken"
    other_filter = host.get(f"/backupJobs?top=1&status=Failed&$skipToken={token}")
    assert other_filter.status_code == 400 and other_filter.json()["error"]["target"] == "$skipToken"
    assert host.get(link.removeprefix(host.url)).status_code == 200


def test_openapi_description_is_served_with_the_key(host: DevhostProcess) -> None:
    doc = host.get("/openapi.json")
    assert doc.status_code == 200 and doc.json()["openapi"].startswith("3.")
    assert "/backupJobs" in doc.json()["paths"]
    assert host.get("/openapi.json", headers={"x-functions-key": "wrong"}).status_code == 401


def test_next_link_never_carries_a_function_key_given_as_code(
    host: DevhostProcess, app_env: dict[str, str], protected: list[str]
) -> None:
    import requests

    key = app_env["PGVAULT_DEVHOST_KEY"]
    r = requests.get(f"{host.url}/backupJobs", params={"top": 1, "code": key}, timeout=30)
    assert r.status_code == 200 and "nextLink" in r.json()
    assert key not in r.json()["nextLink"] and "code=" not in r.json()["nextLink"]


def test_real_answers_match_the_openapi_schemas(host: DevhostProcess, protected: list[str]) -> None:
    from jsonschema import Draft202012Validator

    from shared.openapi import openapi

    components = openapi()["components"]

    def check(schema: str, body: Any) -> None:
        Draft202012Validator({"$ref": f"#/components/schemas/{schema}", "components": components}).validate(body)

    jobs = host.get("/backupJobs?top=3").json()
    check("JobList", jobs)
    check("Job", host.get(f"/backupJobs/{jobs['value'][0]['jobId']}").json())
    check("BackupInstanceList", host.get("/backupInstances").json())
    check("BackupInstance", host.get("/backupInstances/shop").json())
    check("RecoveryPointList", host.get("/backupInstances/shop/recoveryPoints").json())
    check("PolicyList", host.get("/backupPolicies").json())
    check("Error", host.get("/backupInstances/nothing-here").json())
    check("Error", host.get("/backupJobs?days=0").json())


def test_read_commands_show_policies_instances_and_scripts(cli, protected: list[str], shops: Database) -> None:  # type: ignore[no-untyped-def]
    sim = cli("policy", "simulate", "--name", "weekly", "--from", "2026-01-01", "--to", "2026-03-01", "-o", "json")
    assert sim.code == 0, sim.err
    assert len(sim.json()["backups"]) == 8 and {b["tag"] for b in sim.json()["backups"]} == {"Default"}
    policies = cli("policy", "list", "-o", "table")
    assert policies.code == 0 and policies.out.splitlines()[0].split() == ["NAME", "RULES"] and "weekly" in policies.out
    instances = cli("instance", "list", "-o", "json")
    assert instances.code == 0 and {i["name"] for i in instances.json()} == {"shop", "shop2"}
    shown = cli("instance", "show", "-n", "shop", "-o", "table")
    assert shown.code == 0 and "Success" in shown.out and shops.name in shown.out
    script = cli("instance", "grant-script", "-n", "shop", "--format", "sh")
    assert script.code == 0 and "psql" in script.out and shops.user in script.out
    assert cli("policy", "delete", "-n", "weekly").code == 3  # in use: 409 Conflict


def test_job_cancel_stops_a_running_backup_and_refuses_other_operations(  # type: ignore[no-untyped-def]
    cli, shops: Database, protected: list[str]
) -> None:
    with shops.connect(autocommit=False) as holder:
        holder.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")  # pg_dump waits behind it: the backup runs on
        started = cli("backup", "now", "--instance", "shop", "--tag", "Default", "-o", "json")
        assert started.code == 0, started.err
        job_id = started.json()["jobId"]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with shops.connect("postgres") as c:
                waiting = c.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'"
                    " AND query LIKE 'LOCK TABLE public.items %%'",
                    (shops.name,),
                ).fetchone()
            if waiting and waiting[0]:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"pg_dump never started: {cli('job', 'show', job_id, '-o', 'json').out}")
        cancelled = cli("job", "cancel", job_id, "--wait", "--poll", "0.3", "-o", "json")
        holder.rollback()
    assert cancelled.code == 0, cancelled.err
    assert cancelled.json()["status"] == "Cancelled" and cancelled.json()["cancelRequestedTime"]
    points = cli("recovery-point", "list", "-i", "shop", "-o", "json")
    assert points.code == 0 and [p for p in points.json() if p["jobId"] == job_id] == []
    again = cli("job", "cancel", job_id, "-o", "json")  # finished Cancelled already: nothing to do, exit 0
    assert again.code == 0 and again.json()["status"] == "Cancelled"
    validations = cli("job", "list", "--instance", "shop", "--operation", "Validate", "-o", "json")
    refused = cli("job", "cancel", validations.json()[0]["jobId"])
    assert refused.code == 3 and "Conflict" in refused.err and "(HTTP 409)" in refused.err
