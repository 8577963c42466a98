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
    """Three databases of one backup user, each with ``items``."""
    return make_database(
        "cli",
        databases=3,
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
    for name, db in zip(("shop", "shop2"), shops.names[:2], strict=True):
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
    # --wait on a pipe: plain progress lines on stderr, the last one the finished job.
    assert f"{job['jobId']}: Completed " in r.err and "\r" not in r.err, r.err
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
    assert [j["jobId"] for j in paged.json()["value"]] == [j["jobId"] for j in everything["value"]]
    validations = cli("job", "list", "--top", "1", "--operation", "Validate", "-o", "table")
    expected = len(host.get("/backupJobs?operation=Validate&top=1000").json()["value"])
    assert validations.code == 0 and expected >= 2 and validations.out.count("Validate") == expected


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
    assert instances.code == 0 and {i["name"] for i in instances.json()["value"]} == {"shop", "shop2"}
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
    assert points.code == 0 and [p for p in points.json()["value"] if p["jobId"] == job_id] == []
    again = cli("job", "cancel", job_id, "-o", "json")  # finished Cancelled already: nothing to do, exit 0
    assert again.code == 0 and again.json()["status"] == "Cancelled"
    validations = cli("job", "list", "--instance", "shop", "--operation", "Validate", "-o", "json")
    refused = cli("job", "cancel", validations.json()["value"][0]["jobId"])
    assert refused.code == 3 and "Conflict" in refused.err and "(HTTP 409)" in refused.err


def _file(tmp_path: Any, name: str, entries: list[dict[str, Any]]) -> str:
    path = tmp_path / name
    path.write_text(json.dumps({"instances": entries}))
    return str(path)


def test_configure_file_sent_again_skips_what_it_made_and_reports_every_entry(  # type: ignore[no-untyped-def]
    cli, protected: list[str], shops: Database, tmp_path
) -> None:
    common = {
        "server": "127.0.0.1",
        "port": shops.port,
        "secretUri": "env:PGVAULT_SECRET_CLI_CS",
        "policyName": "weekly",
    }
    shop = {"name": "shop", "database": shops.names[0], **common}
    shop3 = {"name": "shop3", "database": shops.names[2], **common}
    batch = _file(tmp_path, "batch.json", [shop, shop3])
    try:
        first = cli("instance", "configure", "--file", batch, "--wait", "--poll", "0.3", "-o", "json")
        assert first.code == 0, first.err
        outcome = first.json()["value"]
        assert [(r["name"], r["status"]) for r in outcome] == [("shop", "Skipped"), ("shop3", "Validating")]
        assert outcome[1]["validationJob"]["status"] == "Completed"
        again = cli("instance", "configure", "--file", batch, "-o", "json")
        assert again.code == 0, again.err
        assert [(r["name"], r["status"]) for r in again.json()["value"]] == [("shop", "Skipped"), ("shop3", "Skipped")]
        validations = cli("job", "list", "--instance", "shop3", "--operation", "Validate", "-o", "json")
        assert len(validations.json()["value"]) == 1  # nothing was configured, nor validated, twice

        changed = _file(tmp_path, "changed.json", [{**shop3, "policyName": "daily"}])
        differs = cli("instance", "configure", "--file", changed, "-o", "json")
        assert differs.code == 3, (differs.out, differs.err)
        assert (
            "pgvault: Conflict: shop3: instances[0]: backup instance 'shop3' exists with another definition: "
            "policyName is 'weekly' in the vault, 'daily' in the file" in differs.err
        )
        assert "Target: instances[0].policyName" in differs.err and "Recommended action: To change" in differs.err

        bad = _file(
            tmp_path,
            "bad.json",
            [{**common, "database": "template1"}, {**common, "server": "not a host", "database": "x"}],
        )
        refused = cli("instance", "configure", "--file", bad, "-o", "json")
        assert refused.code == 2, (refused.out, refused.err)
        assert "HTTP 400" not in refused.err
        assert (
            "pgvault: UserErrorDatabaseNotSupported: " in refused.err and "Target: instances[0].database" in refused.err
        )
        assert "pgvault: InvalidRequest: " in refused.err and "Target: instances[1].server" in refused.err
        assert refused.err.count("Recommended action: ") == 2
        assert [r["status"] for r in refused.json()["value"]] == ["Failed", "Failed"]
    finally:
        deleted = cli("instance", "delete", "--name", "shop3", "--yes", "--wait", "--poll", "0.3", "-o", "json")
    assert deleted.code == 0, deleted.err
    assert deleted.json()["operation"] == "Delete" and deleted.json()["status"] == "Completed"
    soft = cli("instance", "list", "-o", "table")
    assert soft.code == 0 and "PURGE" in soft.out.splitlines()[0]
    assert any(line.split()[0] == "shop3" and "SoftDeleted" in line.split() for line in soft.out.splitlines())
    again_soft = cli("instance", "configure", "--file", batch, "-o", "json")
    assert again_soft.code == 3 and "pgvault: UserErrorBackupInstanceSoftDeleted: shop3: " in again_soft.err
    assert "pgvault instance undelete --name shop3" in again_soft.err


def test_stop_and_resume_protection(cli, protected: list[str]) -> None:  # type: ignore[no-untyped-def]
    try:
        stopped = cli("instance", "stop-protection", "--name", "shop2", "--retain-data", "forever", "-o", "json")
        assert stopped.code == 0, stopped.err
        assert stopped.json()["protectionStatus"] == "ProtectionStopped"
        assert stopped.json()["currentProtectionState"] == "ProtectionStopped"
        refused = cli("backup", "now", "--instance", "shop2", "-o", "json")
        assert refused.code == 3 and "(HTTP 409)" in refused.err
        table = cli("instance", "show", "--name", "shop2", "-o", "table")
        assert table.code == 0 and "ProtectionStopped" in table.out and "STATE" in table.out
    finally:
        resumed = cli("instance", "resume-protection", "--name", "shop2", "-o", "json")
    assert resumed.code == 0, resumed.err
    assert resumed.json()["protectionStatus"] != "ProtectionStopped" and resumed.json()["retainData"] is None
    again = cli("instance", "resume-protection", "--name", "shop2", "-o", "json")
    assert again.code == 3 and "Conflict" in again.err  # not stopped


def test_server_list_databases_marks_the_protected_ones(  # type: ignore[no-untyped-def]
    cli, protected: list[str], shops: Database
) -> None:
    argv = ["server", "list-databases", "--secret-uri", "env:PGVAULT_SECRET_CLI_CS", "--server", "127.0.0.1"]
    listed = cli(*argv, "--port", str(shops.port), "-o", "json")
    assert listed.code == 0, listed.err
    body = listed.json()
    assert (body["server"], body["port"]) == ("127.0.0.1", shops.port)
    found = {d["database"]: d for d in body["value"]}
    assert found[shops.names[0]]["protected"] is True and found[shops.names[0]]["instance"] == "shop"
    # shops.names[2] is protected only by shop3, which the configure test leaves soft-deleted (still its claim).
    shop3 = cli("instance", "show", "--name", "shop3", "-o", "json")
    assert found[shops.names[2]]["protected"] is (shop3.code == 0) and "template1" not in found
    if shop3.code == 0:
        assert found[shops.names[2]]["instance"] == "shop3"
    table = cli(*argv, "--port", str(shops.port), "-o", "table")
    assert table.code == 0 and table.out.startswith(f"server 127.0.0.1:{shops.port}\n")
    assert any(line.split() == [shops.names[0], "yes", "shop"] for line in table.out.splitlines())


def test_policy_show_in_full_and_bad_policy_files_exit_2(cli, protected: list[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    shown = cli("policy", "show", "--name", "weekly", "--time-zone", "Asia/Tokyo", "-o", "table")
    assert shown.code == 0, shown.err
    assert "Schedule: weekly, Sunday 03:30 (W. Europe Standard Time, Europe/Berlin)" in shown.out
    assert " JST " in shown.out and "Default  VaultStore  P7D (7 days)" in shown.out
    document = cli("policy", "show", "--name", "weekly", "-o", "json")
    assert document.code == 0 and document.json()["name"] == "weekly" and document.json()["properties"]["policyRules"]
    assert cli("policy", "show", "--name", "weekly", "--time-zone", "Mars/Olympus").code == 2
    assert cli("policy", "show", "--name", "nothing-here", "-o", "json").code == 3
    not_json = tmp_path / "policy.json"
    not_json.write_text("{ not json")
    for argv in (["policy", "create", "-n", "x"], ["policy", "simulate", "--from", "2026-01-01", "--to", "2026-02-01"]):
        r = cli(*argv, "-f", str(not_json), "-o", "json")
        assert r.code == 2 and "is not valid JSON" in r.err and "Traceback" not in r.err, r.err


def test_role_assignment_template_is_printed_as_the_apis_json(cli, protected: list[str]) -> None:  # type: ignore[no-untyped-def]
    # JSON even when a table is asked for: it is a file to deploy.
    template = cli("instance", "role-assignment-template", "--name", "shop", "-o", "table")
    assert template.code == 0, template.err
    assert json.loads(template.out)["$schema"].startswith("https://schema.management.azure.com/")
    assert cli("instance", "role-assignment-template", "--name", "nothing-here").code == 3
