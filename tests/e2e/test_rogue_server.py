"""Credentials go only where the secret says: a rogue server named by a caller receives nothing.

The rogue is ``tests/fake_postgres.py``: a listener on 127.0.0.1 that asks every client for its
password in cleartext and records what arrives. The secrets below belong to the real test
cluster. This devhost runs without ``PGVAULT_ALLOWED_SERVERS``, as a vault does by default.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from devhost_process import DevhostProcess, instance_spec
from factories import Database, Databases, Hosts

from tests.examples import EXAMPLES
from tests.fake_postgres import FakePostgres
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e
# The test user's password, distinctive so a leak is found by a plain search.
PASSWORD = "R0gue-Bait-S3cret"


@pytest.fixture(scope="module")
def app_env(app_env: dict[str, str]) -> dict[str, str]:
    """The shared e2e settings, minus the 127.0.0.1 allowance: a serverless secret is usable nowhere."""
    return {k: v for k, v in app_env.items() if k != "PGVAULT_ALLOWED_SERVERS"}


@pytest.fixture(scope="module")
def creds(make_database: Databases) -> Database:
    """A user with a password and an empty database (all a backup of it needs)."""
    return make_database("creds", password=PASSWORD, grant=False)


@pytest.fixture(scope="module")
def host(make_host: Hosts, creds: Database) -> DevhostProcess:
    login = f"User Id={creds.user};Password={PASSWORD}"
    h = make_host(
        {
            # Written for the real server, as Azure Backup's secrets are.
            "PGVAULT_SECRET_REAL_CS": f"Server=127.0.0.1;Port={creds.port};{login};Ssl Mode=Disable",
            "PGVAULT_SECRET_REAL_UPPER_CS": f"Server=127.0.0.1.;Port={creds.port};{login};Ssl Mode=Disable",
            # No Server at all: usable only where PGVAULT_ALLOWED_SERVERS says (unset here: nowhere).
            "PGVAULT_SECRET_SERVERLESS_CS": f"{login};Ssl Mode=Prefer",
        }
    )
    h.put_policy("weekly", (EXAMPLES / "sunday-default-only.json").read_bytes())
    return h


def _nothing_reached(rogue: FakePostgres, host: DevhostProcess) -> None:
    assert rogue.connections == 0 and rogue.passwords == []
    assert PASSWORD not in host.log()


def test_an_instance_on_a_rogue_server_with_a_real_servers_secret_is_refused_before_any_connection(
    host: DevhostProcess, creds: Database, rogue: FakePostgres
) -> None:
    body = instance_spec(rogue.port, creds.name, "env:PGVAULT_SECRET_REAL_CS")
    r = host.request("PUT", "/backupInstances/harvest", data=json.dumps(body))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "InvalidRequest" and error["target"] == "body.server"
    # Both servers are named: the one asked for and the secret's own.
    assert f"127.0.0.1:{rogue.port}" in error["message"] and f"127.0.0.1:{creds.port}" in error["message"]
    assert PASSWORD not in r.text and creds.user not in r.text
    assert host.get("/backupInstances/harvest").status_code == 404  # nothing stored

    # Configure-many refuses that entry (400: every entry failed) and stores nothing either.
    r = host.request("POST", "/backupInstances", data=json.dumps({"instances": [{**body, "name": "harvest2"}]}))
    assert r.status_code == 400, r.text
    (entry,) = r.json()["value"]
    assert entry["status"] == "Failed" and entry["error"]["code"] == "InvalidRequest"
    assert entry["error"]["target"] == "instances[0].server"
    assert f"127.0.0.1:{rogue.port}" in entry["error"]["message"]
    assert host.get("/backupInstances/harvest2").status_code == 404
    _nothing_reached(rogue, host)


def test_the_secrets_own_server_spelled_differently_is_accepted(
    host: DevhostProcess, creds: Database, rogue: FakePostgres
) -> None:
    # Secret "127.0.0.1." with port; instance "127.0.0.1": the same server after normalising.
    body = instance_spec(creds.port, creds.name, "env:PGVAULT_SECRET_REAL_UPPER_CS")
    r = host.request("PUT", "/backupInstances/own", data=json.dumps(body))
    assert r.status_code == 202, r.text

    def settled() -> dict[str, Any] | None:
        b = host.get("/backupInstances/own").json()
        return b if b["backupReadiness"]["status"] != "Validating" else None

    shown = wait_until(settled, 60, interval=0.3)
    # It reached the real server, logged in and found what a backup needs (an empty database).
    assert shown["backupReadiness"]["status"] == "Success", shown
    _nothing_reached(rogue, host)


def test_list_databases_accepts_no_server_but_the_secrets(
    host: DevhostProcess, creds: Database, rogue: FakePostgres
) -> None:
    for body in (
        {"secretUri": "env:PGVAULT_SECRET_REAL_CS", "server": "127.0.0.1", "port": rogue.port},
        {"secretUri": "env:PGVAULT_SECRET_REAL_CS", "port": rogue.port},
        {"secretUri": "env:PGVAULT_SECRET_SERVERLESS_CS", "server": "127.0.0.1", "port": rogue.port},
    ):
        r = host.request("POST", "/servers:listDatabases", data=json.dumps(body))
        assert r.status_code == 400, r.text
        error = r.json()["error"]
        assert error["code"] == "InvalidRequest" and error["target"] == "server"
        assert f"127.0.0.1:{rogue.port}" in error["message"]
        assert PASSWORD not in r.text
    # The secret's own server is listed as before.
    r = host.request("POST", "/servers:listDatabases", data=json.dumps({"secretUri": "env:PGVAULT_SECRET_REAL_CS"}))
    assert r.status_code == 200, r.text
    assert creds.name in [d["database"] for d in r.json()["value"]]
    _nothing_reached(rogue, host)


def test_a_secret_without_a_server_is_refused_for_a_server_no_setting_allows(
    host: DevhostProcess, creds: Database, rogue: FakePostgres
) -> None:
    body = instance_spec(rogue.port, creds.name, "env:PGVAULT_SECRET_SERVERLESS_CS")
    r = host.request("PUT", "/backupInstances/serverless", data=json.dumps(body))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "InvalidRequest" and "PGVAULT_ALLOWED_SERVERS" in error["message"]
    assert "PGVAULT_ALLOWED_SERVERS" in error["recommendedAction"]
    _nothing_reached(rogue, host)
