"""Protecting databases over HTTP: configure, validate on a real server, grant script, re-validate."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from devhost_process import DevhostProcess, instance_spec
from factories import Database, Databases, Hosts

from devhost.services import Postgres
from tests.examples import EXAMPLES
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e
# Distinctive, so a leak into any answer is found by a plain substring search.
PASSWORDS = ("Sh0p-S3cret-1", "N0body-S3cret-2", "Wr0ng-S3cret-3", "Br0ken-S3cret-4")


@pytest.fixture(scope="module")
def shop_db(make_database: Databases) -> Database:
    """A fresh user (without the backup privileges) and two databases, ``orders`` in the first."""
    return make_database(
        "shop",
        databases=2,
        password="pw",
        grant=False,
        tables=["CREATE TABLE orders (id serial PRIMARY KEY, item text);"
                "INSERT INTO orders (item) SELECT 'item ' || g FROM generate_series(1, 100) g;", ""],
    )  # fmt: skip


@pytest.fixture(scope="module")
def must_give_password(make_database: Databases) -> Database:
    """A role that must give its password (the test cluster trusts everyone else); no database."""
    return make_database("shop_pw", databases=0, password="right", password_required=True)


@pytest.fixture(scope="module")
def host(make_host: Hosts, shop_db: Database, must_give_password: Database) -> DevhostProcess:
    pw_user = must_give_password.user
    h = make_host(
        {
            # The secret names its server: the instances below must name the same one.
            "PGVAULT_SECRET_SHOP_CS": (
                f"Server=127.0.0.1;Port={shop_db.port};User Id={shop_db.user};Password={PASSWORDS[0]};Ssl Mode=Disable"
            ),
            "PGVAULT_SECRET_SHOP_ANY_CS": f"User Id={shop_db.user};Password={PASSWORDS[0]};Ssl Mode=Disable",
            "PGVAULT_SECRET_NOBODY_CS": f"User Id=nobody_at_all;Password={PASSWORDS[1]};Ssl Mode=Disable",
            "PGVAULT_SECRET_WRONG_PASSWORD_CS": f"User Id={pw_user};Password={PASSWORDS[2]};Ssl Mode=Disable",
            "PGVAULT_SECRET_RIGHT_PASSWORD_CS": f"User Id={pw_user};Password=right;Ssl Mode=Disable",
            "PGVAULT_SECRET_BROKEN_CS": f"User Id=x;Password='{PASSWORDS[3]}",
            # Retried deliveries 2 s apart instead of host.json's 10 s: the unreachable server's five tries.
            "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:02",
        }
    )
    h.put_policy("weekly", (EXAMPLES / "sunday-default-only.json").read_bytes())
    return h


SHOP_SECRET = "env:PGVAULT_SECRET_SHOP_CS"


def _entry(server: Database | Postgres, database: str, secret: str = SHOP_SECRET, **over: Any) -> dict[str, Any]:
    return instance_spec(server.port, database, secret, **over)


def _settled(host: DevhostProcess, name: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        body = host.get(f"/backupInstances/{name}").json()
        return body if body["backupReadiness"]["status"] != "Validating" else None

    return wait_until(done, 60, interval=0.3)


def test_protect_validate_grant_and_revalidate(host: DevhostProcess, shop_db: Database, tmp_path: Path) -> None:
    r = host.request(
        "POST",
        "/backupInstances",
        data=json.dumps(
            {
                "instances": [
                    _entry(shop_db, shop_db.name, name="shop"),
                    _entry(shop_db, "template0", name="tpl"),
                ]
            }
        ),
    )
    assert r.status_code == 202, r.text
    by_name = {v["name"]: v for v in r.json()["value"]}
    assert by_name["shop"]["status"] == "Validating"
    assert by_name["tpl"]["error"]["code"] == "UserErrorDatabaseNotSupported"

    # A fresh user lacks the backup privileges: validation says so, naming the table.
    shop = _settled(host, "shop")
    assert shop["backupReadiness"]["status"] == "Failed"
    error = shop["backupReadiness"]["error"]
    assert error["code"] == "UserErrorMissingDBPermissions"
    assert '"public"."orders"' in error["message"] and "grantScript" in error["recommendedAction"]
    job = host.get(f"/backupJobs/{shop['backupReadiness']['jobId']}").json()
    assert job["status"] == "Failed" and job["operation"] == "Validate"
    assert [s["name"] for s in job["steps"]][:3] == ["ReadSecret", "Connect", "CheckPrivileges"]
    # The job keeps every missing privilege (the message names only the first few).
    missing = job["details"]["missingPrivileges"]
    assert {"privilege": "SELECT", "kind": "table", "name": '"public"."orders"', "owner": "postgres"} in missing
    assert job["details"]["missingPrivilegesCount"] == len(missing)

    # The administrator runs the grant script; re-validation succeeds.
    script = host.get("/backupInstances/shop/grantScript?format=sh")
    assert script.status_code == 200 and script.text.startswith("#!/bin/sh")
    path = tmp_path / "grant.sh"
    path.write_text(script.text)
    ran = subprocess.run(
        ["sh", str(path)],
        env={"PGUSER": "postgres", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr
    r = host.request("POST", "/backupInstances/shop:validate")
    assert r.status_code == 202 and r.headers["Location"] == f"/api/backupJobs/{r.json()['jobId']}"
    assert int(r.headers["Retry-After"]) > 0
    shop = _settled(host, "shop")
    assert shop["backupReadiness"] == {"status": "Success", "jobId": r.json()["jobId"], "error": None}
    assert shop["protectionStatus"] == "ProtectionConfigured"
    job = host.get(f"/backupJobs/{r.json()['jobId']}").json()
    assert job["status"] == "Completed" and job["details"]["serverVersion"] >= 150000
    assert all(s["status"] == "Completed" for s in job["steps"])

    # The same database cannot be protected twice, whatever the spelling of the host.
    again = host.request("PUT", "/backupInstances/shop2", data=json.dumps(_entry(shop_db, shop_db.name)))
    assert again.status_code == 409 and again.json()["error"]["code"] == "UserErrorDatabaseAlreadyProtected"

    listed = host.request(
        "POST",
        "/servers:listDatabases",
        data=json.dumps({"secretUri": "env:PGVAULT_SECRET_SHOP_CS", "server": "127.0.0.1", "port": shop_db.port}),
    )
    assert listed.status_code == 200, listed.text
    dbs = {d["database"]: d for d in listed.json()["value"]}
    assert dbs[shop_db.name]["protected"] is True and dbs[shop_db.name]["instance"] == "shop"
    # Those that cannot be protected are listed apart, with why (the dashboard shows them disabled).
    excluded = {d["database"]: d["reason"] for d in listed.json()["excluded"]}
    assert "template1" in excluded and "not supported" in excluded["template1"] and "template1" not in dbs
    assert dbs[shop_db.names[1]]["protected"] is False
    assert "template0" not in dbs and "template1" not in dbs

    # The policy is in use now.
    assert host.request("DELETE", "/backupPolicies/weekly").status_code == 409


@pytest.mark.parametrize(
    ("database", "secret", "code"),
    [
        ("no_such_db_here", "env:PGVAULT_SECRET_SHOP_CS", "UserErrorDBNotFound"),
        (None, "env:PGVAULT_SECRET_NOBODY_CS", "UserErrorDBUserAuthFailed"),
        (None, "env:PGVAULT_SECRET_WRONG_PASSWORD_CS", "UserErrorDBUserAuthFailed"),
        (None, "env:PGVAULT_SECRET_BROKEN_CS", "UserErrorSecretValueInUnsupportedFormat"),
        (None, "env:PGVAULT_SECRET_NOT_SET_ANYWHERE", "UserErrorInvalidSecret"),
    ],
)
def test_validation_failures_carry_azure_codes(
    host: DevhostProcess, shop_db: Database, database: str | None, secret: str, code: str
) -> None:
    name = "v-" + uuid.uuid4().hex[:8]
    # Each case its own database name: one database is protected once (these need not exist).
    r = host.request(
        "PUT", f"/backupInstances/{name}", data=json.dumps(_entry(shop_db, database or f"db_{name}", secret=secret))
    )
    assert r.status_code == 202, r.text
    settled = _settled(host, name)
    assert settled["backupReadiness"]["status"] == "Failed"
    assert settled["backupReadiness"]["error"]["code"] == code
    assert settled["protectionStatus"] == "ConfiguringProtectionFailed"
    job = host.get(f"/backupJobs/{settled['backupReadiness']['jobId']}").text
    for password in PASSWORDS:
        assert password not in json.dumps(settled) and password not in job


def test_unreachable_server_fails_after_retries_with_connection_closed(host: DevhostProcess) -> None:
    from devhost.services import free_port

    name = "down-" + uuid.uuid4().hex[:6]
    r = host.request(
        "PUT",
        f"/backupInstances/{name}",
        data=json.dumps(
            {
                "server": "127.0.0.1",
                "port": free_port(),
                "database": "x",
                # A secret without a Server (127.0.0.1 is allowed): SHOP_CS names the real port.
                "secretUri": "env:PGVAULT_SECRET_NOBODY_CS",
                "policyName": "weekly",
            }
        ),
    )
    assert r.status_code == 202
    # Transient: retried by the queue (5 tries, 2 s apart on this host), then failed, not poisoned.
    settled = wait_until(
        lambda: (b := host.get(f"/backupInstances/{name}").json())["backupReadiness"]["status"] != "Validating" and b,
        90,
        interval=1,
    )
    assert settled["backupReadiness"]["error"]["code"] == "UserErrorServerConnectionClosed"


def test_role_assignment_template_and_bad_requests(host: DevhostProcess, shop_db: Database) -> None:
    name = "t-" + uuid.uuid4().hex[:6]
    host.request("PUT", f"/backupInstances/{name}", data=json.dumps(_entry(shop_db, shop_db.names[1])))
    t = host.get(f"/backupInstances/{name}/roleAssignmentTemplate").json()
    assert t["resources"] == [] and t["metadata"]["notes"]
    assert host.get(f"/backupInstances/{name}/grantScript?format=bat").json()["error"]["target"] == "format"
    assert host.get("/backupInstances/nothing-here").status_code == 404
    assert host.request("POST", "/backupInstances", data=b"[]").status_code == 400
    bad = host.request("POST", "/backupInstances", data=json.dumps({"instances": [{"server": "x"}]}))
    assert bad.status_code == 400 and bad.json()["value"][0]["error"]["code"] == "InvalidRequest"


@pytest.fixture(scope="module")
def second_server(run_dir: Path) -> Iterator[Postgres]:
    other = Postgres(run_dir / "pg-second").start()
    yield other
    other.stop()


def test_batch_across_two_servers_configures_the_good_and_names_why_each_bad_one_failed(
    host: DevhostProcess, shop_db: Database, second_server: Postgres
) -> None:
    tag = uuid.uuid4().hex[:6]
    batch = [
        _entry(shop_db, f"a_{tag}", name=f"a-{tag}"),
        _entry(shop_db, f"b_{tag}", name=f"b-{tag}", secretUri="env:PGVAULT_SECRET_RIGHT_PASSWORD_CS"),
        # SHOP_CS names the first server; on the second, a secret without a Server (127.0.0.1 is allowed).
        _entry(second_server, f"c_{tag}", name=f"c-{tag}", secretUri="env:PGVAULT_SECRET_SHOP_ANY_CS"),
        _entry(second_server, "azure_sys", name=f"d-{tag}"),
        _entry(shop_db, f"e_{tag}", name=f"e-{tag}", policyName="no-such-policy"),
    ]
    r = host.request("POST", "/backupInstances", data=json.dumps({"instances": batch}))
    assert r.status_code == 202, r.text
    outcome = {v["name"]: v for v in r.json()["value"]}
    assert [outcome[f"{x}-{tag}"]["status"] for x in "abcde"] == ["Validating"] * 3 + ["Failed"] * 2
    assert outcome[f"d-{tag}"]["error"]["code"] == "UserErrorDatabaseNotSupported"
    assert outcome[f"e-{tag}"]["error"]["code"] == "NotFound"
    assert outcome[f"e-{tag}"]["error"]["target"] == "instances[4].policyName"
    listed = {i["name"] for i in host.get("/backupInstances?top=1000").json()["value"]}
    assert {f"a-{tag}", f"b-{tag}", f"c-{tag}"} <= listed and not {f"d-{tag}", f"e-{tag}"} & listed
    # The right password logs in (the databases do not exist, which validation then says).
    assert _settled(host, f"b-{tag}")["backupReadiness"]["error"]["code"] == "UserErrorDBNotFound"


def test_validate_refuses_any_body_field_naming_it(host: DevhostProcess) -> None:
    r = host.request("POST", "/backupInstances/shop:validate", json={"deep": True})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["target"] == "deep"


def test_validate_for_backup_checks_a_would_be_instance_and_stores_none(
    host: DevhostProcess, shop_db: Database, tmp_path: Path
) -> None:
    database = shop_db.spare("candidate")
    with shop_db.connect("postgres") as c:
        c.execute(f'CREATE DATABASE "{database}"')
    with shop_db.connect(database) as c:
        c.execute("CREATE TABLE ledger (id int PRIMARY KEY)")
    entry = _entry(shop_db, database)

    def validate() -> dict[str, Any]:
        r = host.request("POST", "/backupInstances:validateForBackup", data=json.dumps(entry))
        assert r.status_code == 202, r.text
        assert r.headers["Location"] == f"/api/backupJobs/{r.json()['jobId']}"
        return host.wait_job(r.json()["jobId"], 60)

    # The shop user has no privileges there: the job says so, as an instance's validation would.
    failed = validate()
    assert failed["operation"] == "Validate" and failed["status"] == "Failed", failed
    assert failed["error"]["code"] == "UserErrorMissingDBPermissions" and failed["error"]["recommendedAction"]
    assert failed["details"]["backupReadiness"] == "Failed"
    assert f"/api/backupJobs/{failed['jobId']}/grantScript" in failed["error"]["recommendedAction"]
    assert failed["details"]["backupInstance"]["database"] == database
    assert {"privilege": "SELECT", "kind": "table", "name": '"public"."ledger"', "owner": "postgres"} in failed[
        "details"
    ]["missingPrivileges"]
    # Its grant script (and role template) come from the job: there is no instance to ask.
    script = host.get(failed["links"]["grantScript"].removeprefix("/api") + "?format=sh")
    assert script.status_code == 200 and script.text.startswith("#!/bin/sh") and shop_db.user in script.text
    assert host.get(failed["links"]["roleAssignmentTemplate"].removeprefix("/api")).json()["resources"] == []
    path = tmp_path / "grant.sh"
    path.write_text(script.text)
    ran = subprocess.run(
        ["sh", str(path)],
        env={"PGUSER": "postgres", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr

    passed = validate()
    assert passed["status"] == "Completed" and passed["details"]["backupReadiness"] == "Success", passed
    assert [s["status"] for s in passed["steps"]] == ["Completed"] * 4
    # Neither validation left an instance or a claim: configuring it now is the first time.
    assert database not in {i["database"] for i in host.get("/backupInstances?top=1000").json()["value"]}
    configured = host.request("POST", "/backupInstances", data=json.dumps({"instances": [entry]}))
    assert configured.json()["value"][0]["status"] == "Validating", configured.text
    # What configure refuses at once, validation refuses the same way.
    again = host.request("POST", "/backupInstances:validateForBackup", data=json.dumps(entry))
    assert again.status_code == 409 and again.json()["error"]["code"] == "UserErrorDatabaseAlreadyProtected"
    unknown = host.request("POST", "/backupInstances:validateForBackup", data=json.dumps({**entry, "deep": True}))
    assert unknown.status_code == 400 and unknown.json()["error"]["target"] == "deep"
    assert host.get(f"/backupJobs/{passed['jobId']}/grantScript").status_code == 200
    # An instance's own validation answers at the instance's grantScript, not the job's.
    own = host.get(f"/backupJobs/{configured.json()['value'][0]['validationJobId']}/grantScript")
    assert own.status_code == 404 and own.json()["error"]["target"] == "jobId"
