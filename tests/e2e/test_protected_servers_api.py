"""A whole server protected over HTTP, on real PostgreSQL: five databases in one call, one created
later found by the next discovery, one dropped marked, double protection refused both ways; and
the dashboard's "Protected servers" pages (axe-core clean) protecting one and discovering it.

The discovery timer's schedule is unit-tested with travelling time (tests/unit/test_protected_servers.py);
here discoveries are asked for with ``:discover``, which runs the same code.
"""

from __future__ import annotations

from typing import Any

import pytest
from devhost_process import DevhostProcess
from factories import Database, Databases, Hosts
from psycopg import sql

from tests.examples import EXAMPLES
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fleet(make_database: Databases) -> Database:
    return make_database("fleet", tables="CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1);", databases=6)


@pytest.fixture(scope="module")
def host(make_host: Hosts, fleet: Database) -> DevhostProcess:
    # localhost too: the dashboard test protects the same cluster under that name (another server to pgvault).
    return make_host(
        {"PGVAULT_SECRET_FLEET_CS": fleet.connection_string(), "PGVAULT_ALLOWED_SERVERS": "127.0.0.1,localhost"}
    )


def _ready(host: DevhostProcess, names: list[str]) -> dict[str, dict[str, Any]]:
    def settled() -> dict[str, dict[str, Any]] | None:
        shown = {n: host.get(f"/backupInstances/{n}").json() for n in names}
        return shown if all(s["backupReadiness"]["status"] != "Validating" for s in shown.values()) else None

    return wait_until(settled, 180, interval=0.5, message="instances validated")


def test_a_whole_server_is_protected_discovered_and_its_dropped_database_marked(
    host: DevhostProcess, fleet: Database
) -> None:
    assert host.put_policy("weekly", (EXAMPLES / "sunday-default-only.json").read_bytes()).ok
    # One database protected on its own first: the server must skip it, not protect it twice.
    alone = host.configure(
        "alone", port=fleet.port, database=fleet.names[5], secret="env:PGVAULT_SECRET_FLEET_CS", policy="weekly"
    )
    assert alone["status"] == "Completed", alone
    body = {
        "server": "127.0.0.1",
        "port": fleet.port,
        "secretUri": "env:PGVAULT_SECRET_FLEET_CS",
        "policyName": "weekly",
        # Every database of this module's role (the role may connect to the cluster's others too).
        "includePatterns": [f"{fleet.name}*"],
        "excludePatterns": ["*_never"],
    }
    created = host.request("PUT", "/protectedServers/fleet", json=body)
    assert created.status_code == 201, created.text
    server = created.json()
    assert server["lastDiscovery"]["skipped"] == [fleet.names[5]]
    protected = {d["database"]: d for d in server["databases"] if d["status"] == "Protected"}
    assert sorted(protected) == sorted(fleet.names[:5])  # five databases protected in one call
    names = [protected[d]["instance"] for d in fleet.names[:5]]
    assert names == [f"fleet-{d}" for d in fleet.names[:5]]
    # Each an instance of its own, validated for real: readiness Success, the server named.
    for name, shown in _ready(host, names).items():
        assert shown["backupReadiness"]["status"] == "Success", (name, shown)
        assert shown["protectedServer"] == "fleet" and shown["protectionStatus"] == "ProtectionConfigured"

    # The other direction: an instance of its own for a database the server covers is refused.
    later = f"{fleet.name}_later"
    fleet.scratch.append(later)
    refused = host.request(
        "PUT",
        "/backupInstances/mine",
        json={
            "server": "127.0.0.1",
            "port": fleet.port,
            "database": later,
            "secretUri": "env:PGVAULT_SECRET_FLEET_CS",
            "policyName": "weekly",
        },
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "UserErrorDatabaseAlreadyProtected"
    assert "protected server 'fleet'" in refused.json()["error"]["message"]

    # A database created later is found and protected by the next discovery; a dropped one is marked.
    with fleet.connect("postgres") as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(later)))
        c.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(fleet.names[4])))
    fleet.grant(later)
    found = host.request("POST", "/protectedServers/fleet:discover")
    assert found.status_code == 200, found.text
    assert (found.json()["added"], found.json()["dropped"]) == ([later], [fleet.names[4]])
    new = _ready(host, [f"fleet-{later}"])[f"fleet-{later}"]
    assert new["backupReadiness"]["status"] == "Success" and new["protectedServer"] == "fleet"
    dropped = host.get(f"/backupInstances/fleet-{fleet.names[4]}").json()
    assert (dropped["protectionStatus"], dropped["retainData"]) == ("ProtectionStopped", "asPerPolicy")
    jobs = host.get(f"/backupJobs?instance=fleet-{fleet.names[4]}&operation=Discover").json()["value"]
    assert [j["details"]["change"] for j in jobs] == ["Dropped", "Protected"]

    listed = host.get("/protectedServers").json()["value"]
    assert [s["name"] for s in listed] == ["fleet"] and listed[0]["lastDiscovery"]["status"] == "CompletedWithWarnings"
    shown = {d["database"]: d["status"] for d in host.get("/protectedServers/fleet").json()["databases"]}
    assert shown[fleet.names[4]] == "Dropped" and shown[fleet.names[5]] == "Skipped" and shown[later] == "Protected"

    # Removing the server stops its instances and keeps them (and their data); never deletes.
    assert host.request("DELETE", "/protectedServers/fleet?retainData=delete").status_code == 400
    gone = host.request("DELETE", "/protectedServers/fleet")
    assert gone.status_code == 200, gone.text
    assert sorted(gone.json()["stoppedInstances"]) == sorted([*names[:4], f"fleet-{later}"])
    assert host.get("/protectedServers/fleet").status_code == 404
    assert host.get(f"/backupInstances/{names[0]}").json()["retainData"] == "asPerPolicy"


def test_the_dashboard_protects_a_server_shows_its_databases_and_discovers_it(
    host: DevhostProcess, fleet: Database
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    from test_dashboard_journey import AXE, CHROMIUM, CHROMIUM_ARGS

    if not (CHROMIUM.exists() and AXE.exists()):
        pytest.skip("chromium or axe-core missing (make deps, npm ci)")
    assert host.put_policy("weekly", (EXAMPLES / "sunday-default-only.json").read_bytes()).ok
    axe = AXE.read_text()

    def accessible(page: Any, label: str) -> None:
        page.wait_for_load_state("networkidle")
        if not page.evaluate("() => Boolean(window.axe)"):
            page.evaluate(axe)
        result = page.evaluate("async () => await window.axe.run(document, {resultTypes: ['violations']})")
        bad = [(v["id"], v["help"]) for v in result["violations"] if v["impact"] in ("serious", "critical")]
        assert not bad, f"{label}: {bad}"

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(60_000)
        page.goto(f"{host.url}/dashboard#/servers")
        page.get_by_label("Function key").fill(host.headers["x-functions-key"])
        page.get_by_role("button", name="Use key").click()
        expect = sync_api.expect
        expect(page.get_by_role("heading", name="Protected servers", exact=True)).to_be_visible()
        accessible(page, "servers")
        page.get_by_label("Name", exact=True).fill("via-dashboard")
        page.get_by_label("Server", exact=True).fill("localhost")
        page.get_by_label("Port").fill(str(fleet.port))
        page.get_by_label("Key vault secret URI").fill("env:PGVAULT_SECRET_FLEET_CS")
        page.get_by_label("Include patterns").fill(fleet.names[0])
        page.get_by_role("button", name="Protect server").click()
        expect(page.get_by_role("heading", name="Protected server via-dashboard")).to_be_visible()
        row = page.locator(f'tr[data-database="{fleet.names[0]}"]')
        expect(row).to_contain_text("Protected")
        expect(row).to_contain_text(f"via-dashboard-{fleet.names[0]}")
        accessible(page, "one server")
        page.get_by_role("button", name="Discover now").click()
        expect(page.get_by_text("Nothing changed.")).to_be_visible()
        accessible(page, "discovered")
        browser.close()
    assert host.get(f"/backupInstances/via-dashboard-{fleet.names[0]}").json()["protectedServer"] == "via-dashboard"
