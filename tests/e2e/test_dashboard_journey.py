"""The portal's journey in the dashboard, from an empty vault with two PostgreSQL servers.

Headless Debian Chromium through Playwright, against devhost, Azurite and two real PostgreSQL
clusters: create a policy in the form (the API's field error shown beside the field), configure
three databases across both servers in one go (one without privileges: its missing privileges
listed, its grant script downloaded and run as the administrator, Re-validate until Success),
Configure backup, Backup Now with the Monthly rule, the job's steps and progress, the seven-day
dashboard and View all, and a restore as a new database whose rows equal the source's. Every
page is checked with axe-core (no serious or critical violations) and photographed into
``test-artifacts/dashboard-journey/``; one page is also checked at 400 px wide.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from azure.storage.blob import BlobServiceClient
from devhost_process import REPO, DevhostProcess, wait_until
from psycopg import sql

from devhost.services import Postgres

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip
ARTIFACTS = REPO / "test-artifacts" / "dashboard-journey"
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
PASSWORD = "J0urney-S3cret-value-9"
TIMEOUT = 120_000  # ms: generous, the machine may be loaded

sync_api = pytest.importorskip("playwright.sync_api")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (make deps installs it)", allow_module_level=True)
if not AXE.exists():
    pytest.skip("axe-core is not installed (npm ci)", allow_module_level=True)


@pytest.fixture(scope="module")
def names() -> dict[str, str]:
    s = uuid.uuid4().hex[:6]
    return {
        "shop": f"shop_{s}", "crm": f"crm_{s}", "ledger": f"ledger_{s}", "restored": f"shop_{s}_restored",
        "user_a": f"backup_a_{s}", "user_b": f"backup_b_{s}", "policy": f"mon-thu-{s}",
    }  # fmt: skip


def _role(pg: Postgres, user: str, createdb: bool) -> None:
    with psycopg.connect(pg.dsn(), autocommit=True) as c:
        c.execute(
            sql.SQL("CREATE ROLE {} LOGIN {} PASSWORD {}").format(
                sql.Identifier(user), sql.SQL("CREATEDB" if createdb else "NOCREATEDB"), sql.Literal(PASSWORD)
            )
        )


def _database(pg: Postgres, db: str, table: str, rows: int) -> None:
    with psycopg.connect(pg.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    with psycopg.connect(pg.dsn(dbname=db), autocommit=True) as c:
        c.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, item text)").format(sql.Identifier(table)))
        c.execute(
            sql.SQL("INSERT INTO {} SELECT g, md5(g::text) FROM generate_series(1, %s) g").format(
                sql.Identifier(table)
            ),
            (rows,),
        )


def _drop(pg: Postgres, dbs: list[str], user: str) -> None:
    with psycopg.connect(pg.dsn(), autocommit=True) as c:
        for db in dbs:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
        c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(user)))
        c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(user)))


@pytest.fixture(scope="module")
def servers(postgres: Postgres, names: dict[str, str], run_dir: Path) -> Iterator[tuple[Postgres, Postgres]]:
    """Server A holds shop and crm, its backup user granted; server B holds ledger, its user granted nothing."""
    from shared.pg.grants import grant_sql

    # In the session's folder (not tmp_path): the cluster's own user must be able to read it.
    second = Postgres(run_dir / f"pg-journey-{uuid.uuid4().hex[:6]}").start()
    _role(postgres, names["user_a"], createdb=True)
    _database(postgres, names["shop"], "orders", 50_000)
    _database(postgres, names["crm"], "contacts", 500)
    for db in (names["shop"], names["crm"]):
        postgres.psql(grant_sql(db, names["user_a"]), db)
    _role(second, names["user_b"], createdb=False)
    _database(second, names["ledger"], "entries", 800)
    yield postgres, second
    _drop(postgres, [names["shop"], names["crm"], names["restored"]], names["user_a"])
    second.stop()


@pytest.fixture(scope="module")
def host(
    app_env: dict[str, str], servers: tuple[Postgres, Postgres], names: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DevhostProcess]:  # fmt: skip
    a, b = servers
    env = {
        **app_env,
        "PGVAULT_SECRET_A_CS": f"Server=127.0.0.1;Port={a.port};User Id={names['user_a']};Password={PASSWORD};"
        "Ssl Mode=Disable",
        "PGVAULT_SECRET_B_CS": f"Server=127.0.0.1;Port={b.port};User Id={names['user_b']};Password={PASSWORD};"
        "Ssl Mode=Disable",
    }
    h = DevhostProcess(env, tmp_path_factory.mktemp("devhost") / "devhost.log")
    h.headers = {"x-functions-key": app_env["PGVAULT_DEVHOST_KEY"]}
    yield h
    assert h.stop() == 0, h.log()


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
            accept_downloads=True,
        )
        context.grant_permissions(["clipboard-read", "clipboard-write"])
        page = context.new_page()
        page.set_default_timeout(30_000)
        # Eight engineers share two cores: an answer may take more than expect's default 5 s.
        sync_api.expect.set_options(timeout=30_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.errors = errors
        yield page
        context.close()


class Journey:
    """The page, with a screenshot and an axe-core check at every step."""

    def __init__(self, page: Any, host: DevhostProcess) -> None:
        self.page, self.host, self.n = page, host, 0
        self.axe = AXE.read_text()

    def check(self, name: str) -> None:
        """Screenshot, axe-core (no serious or critical violation), and no secret value on the page."""
        page = self.page
        page.wait_for_load_state("networkidle")
        self.n += 1
        page.screenshot(path=str(ARTIFACTS / f"{self.n:02d}-{name}.png"), full_page=True)
        if not page.evaluate("() => Boolean(window.axe)"):
            page.evaluate(self.axe)  # through the DevTools protocol: the page's CSP stays as it is
        result = page.evaluate("async () => await window.axe.run(document, {resultTypes: ['violations']})")
        bad = [
            {"id": v["id"], "impact": v["impact"], "help": v["help"], "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result["violations"]
            if v["impact"] in ("serious", "critical")
        ]
        assert not bad, f"{name}: {json.dumps(bad, indent=1)}"
        assert PASSWORD not in page.content(), name

    def finished(self, job_id: str) -> dict[str, Any]:
        return wait_until(  # type: ignore[return-value]
            lambda: (j := self.host.get(f"/backupJobs/{job_id}").json())["status"] != "InProgress" and j, 120, 0.3
        )


def _create_policy(j: Journey, names: dict[str, str]) -> None:
    page, expect = j.page, sync_api.expect
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Backup policies").click()
    expect(page.get_by_role("heading", name="Backup policies", exact=True)).to_be_visible()
    j.check("policies-empty")
    page.get_by_role("link", name="Create backup policy").click()
    page.get_by_label("Policy name").fill(names["policy"])
    # By keyboard: Sunday (the new form's default day) off, Monday and Thursday on.
    for day in ("Sunday", "Monday", "Thursday"):
        page.get_by_label(day, exact=True).focus()
        page.keyboard.press("Space")
    page.get_by_label("Time", exact=True).fill("22:00")
    page.get_by_label("Time zone").fill("W. Europe Standard Time")
    default_n = page.locator("#rule-Default-vault-n")
    expect(default_n).to_have_value("3")  # the Default rule preset to 3 months
    expect(page.locator("#rule-Default-vault-unit")).to_have_value("M")
    for tag in ("Weekly", "Monthly", "Yearly"):
        page.get_by_role("button", name=f"Add {tag} rule").click()
    page.get_by_role("button", name="Remove Yearly rule").click()  # removed, then added again
    page.get_by_role("button", name="Add Yearly rule").click()
    page.locator(".rule-Monthly").get_by_label("On-expiry: move to Vault-archive").check()
    page.locator("#rule-Monthly-archive-duration-n").fill("1")  # under the archive's 6-month minimum
    j.check("policy-form")
    page.get_by_role("button", name="Create").click()
    # The API's refusal shows beside the field it names, not as a box at the end.
    error = page.locator(".rule-Monthly .field-error:visible")
    expect(error).to_contain_text("InvalidPolicy")
    expect(error).to_contain_text("ArchiveStore")
    expect(page.locator("#rule-Monthly-archive-duration-n")).to_have_attribute("aria-invalid", "true")
    j.check("policy-field-error")
    page.locator("#rule-Monthly-archive-duration-n").fill("24")
    page.get_by_role("button", name="Create").click()
    expect(page.locator("#policy-name")).to_have_text(names["policy"])


def _check_policy_view(j: Journey, names: dict[str, str]) -> None:
    page, expect = j.page, sync_api.expect
    stored = j.host.get(f"/backupPolicies/{names['policy']}").json()
    schedule = stored["policyRules"][0]["trigger"]["schedule"] if "policyRules" in stored else None
    schedule = schedule or stored["properties"]["policyRules"][0]["trigger"]["schedule"]
    assert schedule["timeZone"] == "W. Europe Standard Time"
    # Monday and Thursday at 22:00 on Berlin's wall clock (+01:00 in January).
    assert sorted(schedule["repeatingTimeIntervals"]) == [
        "R/2025-01-06T22:00:00+01:00/P1W", "R/2025-01-09T22:00:00+01:00/P1W"]  # fmt: skip
    rules = page.locator("tr[data-rule]")
    expect(rules).to_have_count(5)  # Default, Weekly, Monthly (vault, then archive), Yearly
    expect(page.locator('tr[data-rule="Monthly"]').first).to_contain_text("On-expiry: move to Vault-archive")
    expect(page.locator('tr[data-rule="Monthly"]').nth(1)).to_contain_text("24 Months")
    expect(page.locator("main")).to_contain_text("Every Mon, Thu at 22:00")
    expect(page.locator("main")).to_contain_text("Mon ")
    # The simulator: the next year's backups on a calendar coloured by tag, points per tier.
    # A year from today: the first backup and January's are Yearly, the other months' firsts Monthly.
    expect(page.locator("#simulator rect[data-tag]").first).to_be_visible(timeout=TIMEOUT)
    assert 10 <= page.locator('#simulator rect[data-tag="Monthly"]').count() <= 12
    assert 1 <= page.locator('#simulator rect[data-tag="Yearly"]').count() <= 2
    assert page.locator('#simulator rect[data-tag="Weekly"]').count() > 30
    assert page.locator('#simulator rect[data-tag="Default"]').count() > 30
    expect(page.locator("#simulator polyline.line-archive")).to_have_count(1)
    page.get_by_label("Size of one backup (GiB)").fill("2")
    expect(page.locator("#sim-storage")).to_contain_text("GiB")
    j.check("policy-view")

    # Edit reads the stored policy back into the form as it was made; saving it unchanged keeps it.
    page.get_by_role("link", name="Edit", exact=True).click()
    for day, checked in (("Sunday", False), ("Monday", True), ("Thursday", True), ("Friday", False)):
        assert page.get_by_label(day, exact=True).is_checked() is checked, day
    expect(page.get_by_label("Time", exact=True)).to_have_value("22:00")
    expect(page.get_by_label("Time zone")).to_have_value("W. Europe Standard Time")
    expect(page.locator("fieldset.rule")).to_have_count(4)
    expect(page.locator("#rule-Monthly-archive-duration-n")).to_have_value("24")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#policy-name")).to_have_text(names["policy"])
    assert j.host.get(f"/backupPolicies/{names['policy']}").json() == stored


def _add_server(j: Journey, secret: str, pick: list[str]) -> None:
    page = j.page
    page.get_by_role("button", name="Add/Edit").click()
    page.get_by_label("Key vault secret (connection string of a user who may log in)").fill(secret)
    page.get_by_role("button", name="List databases").click()
    for db in pick:
        page.get_by_label(db, exact=True).check()


def _configure(j: Journey, names: dict[str, str], grant_dir: Path) -> None:
    page, expect = j.page, sync_api.expect
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Backup instances").click()
    expect(page.get_by_role("heading", name="Backup instances", exact=True)).to_be_visible()
    page.get_by_role("link", name="Configure backup").click()
    expect(page.get_by_role("button", name="1 Basics")).to_have_attribute("aria-current", "step")
    j.check("configure-basics")
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Backup policy").select_option(names["policy"])
    j.check("configure-policy")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("button", name="3 Datasources")).to_have_attribute("aria-current", "step")

    _add_server(j, "env:PGVAULT_SECRET_A_CS", [names["shop"], names["crm"]])
    # What cannot be protected is listed disabled, with why.
    expect(page.get_by_label("template1", exact=True)).to_be_disabled()
    expect(page.locator("#list-result")).to_contain_text("not supported")
    j.check("configure-list-databases")
    page.get_by_role("button", name="Add", exact=True).click()
    _add_server(j, "env:PGVAULT_SECRET_B_CS", [names["ledger"]])
    page.get_by_role("button", name="Add", exact=True).click()

    rows = {db: page.locator(f'tr[data-row="{names[db]}"]') for db in ("shop", "crm", "ledger")}
    for db in ("shop", "crm"):
        expect(rows[db].locator(".readiness")).to_have_text("Success", timeout=TIMEOUT)
    expect(rows["ledger"].locator(".readiness")).to_have_text("Failed", timeout=TIMEOUT)
    failure = page.locator("tr.row-error")
    expect(failure).to_contain_text("UserErrorMissingDBPermissions")
    expect(failure).to_contain_text("grant script")  # its recommended action
    # Validating stored nothing: a wizard left here leaves no backup instance behind.
    assert j.host.get("/backupInstances").json()["value"] == []

    # The same secret assigned to two selected rows at once: both validate again.
    rows["shop"].get_by_role("checkbox").check()
    rows["crm"].get_by_role("checkbox").check()
    page.get_by_role("button", name="Assign key vault (2)").click()
    page.get_by_label("Key vault secret URI (the connection string the backups log in with)").fill(
        "env:PGVAULT_SECRET_A_CS"
    )
    page.get_by_role("button", name="Assign", exact=True).click()
    for db in ("shop", "crm"):
        expect(rows[db].locator(".readiness")).to_have_text("Success", timeout=TIMEOUT)

    page.get_by_role("button", name="View details").click()
    details = page.locator(".row-details")
    expect(details).to_contain_text("CheckPrivileges")
    expect(details).to_contain_text('"public"."entries"')
    expect(details).to_contain_text("SELECT")
    j.check("configure-validation-failed")

    with page.expect_download() as got:
        page.get_by_label("Grant script format").select_option("sh")
        page.get_by_role("button", name="Download grant script").click()
    script = grant_dir / "grant.sh"
    got.value.save_as(script)
    assert script.read_text().startswith("#!/bin/sh") and names["user_b"] in script.read_text()
    # "Copy grant script" puts the same script on the clipboard (the browser context may read it).
    page.get_by_role("button", name="Copy grant script").click()
    expect(page.locator(".row-error [aria-live]")).to_have_text("Copied to the clipboard.")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied.startswith("#!/bin/sh") and names["user_b"] in copied and names["ledger"] in copied
    ran = subprocess.run(["sh", str(script)], env={"PGUSER": "postgres", "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    with page.expect_download() as template:
        page.get_by_role("button", name="Download role assignment template").click()
    # An ARM template (its resources empty here: an env: secret and a local server need no Azure role).
    assert "deploymentTemplate.json" in json.loads(Path(template.value.path()).read_text())["$schema"]

    rows["ledger"].get_by_role("button", name="Re-validate", exact=True).click()
    expect(rows["ledger"].locator(".readiness")).to_have_text("Success", timeout=TIMEOUT)
    expect(page.locator("tr.row-error")).to_have_count(0)
    j.check("configure-revalidated")
    assert j.host.get("/backupInstances").json()["value"] == []

    page.get_by_role("button", name="Review and configure", exact=True).click()
    expect(page.locator("tr[data-review]")).to_have_count(3)
    expect(page.locator(f'tr[data-review="{names["ledger"]}"]')).to_contain_text("Protected by the policy")
    j.check("configure-review")
    page.get_by_role("button", name="Configure backup", exact=True).click()
    outcome = page.locator("tr[data-outcome]")
    expect(outcome).to_have_count(3, timeout=TIMEOUT)
    for db in ("shop", "crm", "ledger"):
        expect(page.locator(f'tr[data-outcome="{names[db]}"]')).to_contain_text("Backup configured")
    j.check("configure-done")
    # Only "Configure backup" made instances: one per row, each validated once more as it was created.
    assert len(j.host.get("/backupInstances").json()["value"]) == 3


def _backup_now(j: Journey, names: dict[str, str]) -> str:
    page, expect = j.page, sync_api.expect
    page.get_by_role("link", name="Go to Backup instances").click()
    instances = page.locator("tr[data-instance]")
    expect(instances).to_have_count(3)
    for i in range(3):
        expect(instances.nth(i)).to_contain_text("ProtectionConfigured")
    j.check("instances")
    page.locator("tr[data-instance]", has_text=names["shop"]).get_by_role("link").first.click()
    expect(page.locator("#instance-name")).to_contain_text(names["shop"])
    j.check("instance")
    tag = page.get_by_label("Retain as (the policy's retention rules)")
    labels = [o.strip() for o in tag.locator("option").all_inner_texts()]
    assert [label.split(":")[0] for label in labels] == ["Default", "Weekly", "Monthly", "Yearly"]
    assert "then 24 Months in Vault-archive" in labels[2]
    tag.select_option("Monthly")
    page.get_by_role("button", name="Backup Now").click()
    page.wait_for_function("() => location.hash.startsWith('#/jobs/')", timeout=TIMEOUT)
    job_id = page.url.rsplit("/", 1)[1]
    # The job's page follows it: its steps, its progress bar, bytes and rate, to Completed.
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=TIMEOUT)
    expect(page.locator("#job-progress")).to_have_text("100 %")
    expect(page.locator("tr[data-step]").first).to_be_visible()
    expect(page.locator('tr[data-step="Dump"]')).to_contain_text("Completed")
    expect(page.locator("#job-request")).to_contain_text("retained as Monthly")
    expect(page.locator("#job-pace")).to_contain_text("/s")
    j.check("job")
    job = j.host.get(f"/backupJobs/{job_id}").json()
    assert job["status"] == "Completed" and job["retentionTag"] == "Monthly", job
    return str(job_id)


def _jobs(j: Journey, job_id: str) -> None:
    page, expect = j.page, sync_api.expect
    # The ledger's failed validation raised an alert: the Alerts page lists it with its webhook state.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Alerts", exact=True).click()
    expect(page.get_by_role("heading", name="Alerts", exact=True)).to_be_visible()
    expect(page.locator('tr[data-kind="JobFailed"]').filter(has_text="Validate").first).to_be_visible()
    j.check("alerts")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Jobs", exact=True).click()
    expect(page.locator(f'tr[data-job-id="{job_id}"]')).to_contain_text("Completed")
    expect(page.locator('tr[data-operation="Backup"]')).to_contain_text("1")
    expect(page.locator('tr[data-operation="Validate"]')).to_be_visible()
    assert page.locator("svg.chart rect.bar.ok").count() >= 1
    j.check("jobs-dashboard")
    page.get_by_role("link", name="View all").click()
    page.get_by_label("Period", exact=True).select_option("90")
    page.get_by_label("Operation", exact=True).select_option("Validate")
    expect(page.locator("tr[data-job-id]").first).to_be_visible()
    # The ledger's first validation failed: the error column says why.
    expect(page.locator("main table")).to_contain_text("UserErrorMissingDBPermissions")
    j.check("jobs-view-all")
    page.get_by_label("Operation", exact=True).select_option("Backup")
    expect(page.locator("tr[data-job-id]")).to_have_count(1)
    expect(page.locator(f'tr[data-job-id="{job_id}"]')).to_be_visible()


def _restore(j: Journey, names: dict[str, str], source: Postgres) -> None:
    page, expect = j.page, sync_api.expect
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Backup instances").click()
    # The list shows each instance's size: its newest point, and all of them.
    expect(page.locator("tr[data-instance]", has_text=names["shop"]).locator("td.size")).to_contain_text("in 1 point")
    expect(page.locator("tr[data-instance]", has_text=names["crm"]).locator("td.size")).to_have_text("no points")
    page.locator("tr[data-instance]", has_text=names["shop"]).get_by_role("link").first.click()
    # A recovery point on the timeline picks it for the restore by keyboard too.
    point = page.locator("tr[data-recovery-point]").first.get_attribute("data-recovery-point")
    page.locator(f'circle[data-recovery-point="{point}"]').focus()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Recovery point", exact=True)).to_have_value(str(point))
    expect(page.get_by_label("New database name")).to_be_focused()
    page.get_by_label("Restore as database").check()
    page.get_by_label("New database name").fill(names["restored"])
    page.get_by_label("Target secret (Key Vault secret URI)").fill("env:PGVAULT_SECRET_A_CS")
    j.check("restore-form")
    page.locator("#restore").click()
    page.wait_for_function("() => location.hash.startsWith('#/jobs/')", timeout=TIMEOUT)
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=TIMEOUT)
    expect(page.locator("#job-request")).to_contain_text(f"as the new database {names['restored']}")
    j.check("restore-job")
    digest = "SELECT count(*), md5(string_agg(id || ':' || item, ',' ORDER BY id)) FROM orders"
    with psycopg.connect(source.dsn(dbname=names["shop"])) as a:
        expected = a.execute(digest).fetchone()
    with psycopg.connect(source.dsn(dbname=names["restored"])) as b:
        assert b.execute(digest).fetchone() == expected


def _restore_files(j: Journey, names: dict[str, str], app_env: dict[str, str]) -> None:
    page, expect = j.page, sync_api.expect
    service = BlobServiceClient.from_connection_string(app_env["AzureWebJobsStorage"])
    container = service.get_container_client(f"exports-{names['policy']}")
    container.create_container()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Backup instances").click()
    page.locator("tr[data-instance]", has_text=names["shop"]).get_by_role("link").first.click()
    page.get_by_label("Restore as files").check()
    page.get_by_label("Target container URL").fill(container.url)
    page.get_by_label("File prefix").fill("journey/shop")
    j.check("restore-files-form")
    page.locator("#restore").click()
    page.wait_for_function("() => location.hash.startsWith('#/jobs/')", timeout=TIMEOUT)
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=TIMEOUT)
    expect(page.locator("#job-request")).to_contain_text(f"as files journey/shop in {container.url}")
    names_written = {b.name for b in container.list_blobs()}
    assert {"journey/shop.dump", "journey/shop.manifest.json"} <= names_written, names_written


def _verify_stop_resume(j: Journey, names: dict[str, str]) -> None:
    page, expect = j.page, sync_api.expect
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Backup instances").click()
    page.locator("tr[data-instance]", has_text=names["shop"]).get_by_role("link").first.click()
    page.get_by_label("Target secret (Key Vault secret URI)").fill("env:PGVAULT_SECRET_A_CS")
    page.get_by_role("button", name="Verify restore").click()
    page.wait_for_function("() => location.hash.startsWith('#/jobs/')", timeout=TIMEOUT)
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=TIMEOUT)
    expect(page.locator("main h1")).to_contain_text("VerifyRestore")
    page.get_by_role("main").get_by_role("link", name=f"127-{names['shop']}").first.click()
    page.get_by_label("Backup data").select_option("forever")
    page.get_by_role("button", name="Stop backup").click()
    expect(page.get_by_role("button", name="Resume backup")).to_be_visible()
    expect(page.locator(".page-head")).to_contain_text("ProtectionStopped")
    expect(page.get_by_role("button", name="Backup Now")).to_be_disabled()
    j.check("instance-stopped")
    page.get_by_role("button", name="Resume backup").click()
    expect(page.get_by_role("button", name="Stop backup")).to_be_visible()
    expect(page.locator(".page-head")).to_contain_text("ProtectionConfigured")
    assert j.host.get(f"/backupInstances/127-{names['shop']}").json()["protectionStatus"] == "ProtectionConfigured"


def _narrow(j: Journey) -> None:
    """At 400 px the pages reflow: no page wider than the window."""
    page = j.page
    page.set_viewport_size({"width": 400, "height": 800})
    try:
        pages = {"jobs": "#view-all", "instances": "#configure-open", "policies": "#create-policy",
                 "configure": "#step-0"}  # fmt: skip
        for route, ready in pages.items():
            page.evaluate(f"location.hash = {json.dumps('#/' + route)}")
            page.locator(ready).wait_for()
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= 402, f"{route} is {width} px wide at 400 px"
            j.check(f"narrow-{route}")
        # The chart is drawn at the page's width: its axis labels keep a readable size.
        page.evaluate("location.hash = '#/jobs'")
        page.locator("svg.chart text.axis").first.wait_for()
        label = page.evaluate(
            "Math.min(...[...document.querySelectorAll('svg.chart text.axis')]"
            ".map((t) => t.getBoundingClientRect().height))"
        )
        assert label >= 10, f"the chart's labels are {label} px high at 400 px"
        # Review and configure (the wizard kept its state): each row a block of labelled lines, no tall empty rows.
        page.evaluate("location.hash = '#/configure'")
        page.locator("tr[data-review]").first.wait_for()
        heights = page.evaluate(
            "[...document.querySelectorAll('tr[data-review]')].map(r => [r.getBoundingClientRect().height,"
            " [...r.cells].reduce((n, c) => n + c.getBoundingClientRect().height, 0)])"
        )
        assert heights and all(row <= cells + 16 and row < 200 for row, cells in heights), heights
        j.check("narrow-configure-review")
    finally:
        page.set_viewport_size({"width": 1280, "height": 900})


@pytest.fixture
def journey(browser: Any, host: DevhostProcess) -> Journey:
    return Journey(browser, host)


def test_the_portals_journey_from_an_empty_vault(
    journey: Journey, servers: tuple[Postgres, Postgres], names: dict[str, str], tmp_path: Path, app_env: dict[str, str]
) -> None:
    j = journey
    page, host, expect = j.page, j.host, sync_api.expect
    page.goto(f"{host.url}/dashboard")
    expect(page.locator("#key-form")).to_be_visible()
    j.check("key")
    page.get_by_label("Function key").fill(host.headers["x-functions-key"])
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Jobs", exact=True)).to_be_visible()
    j.check("jobs-empty")

    try:
        _create_policy(j, names)
        _check_policy_view(j, names)
        _configure(j, names, tmp_path)
        job_id = _backup_now(j, names)
        _jobs(j, job_id)
        _restore(j, names, servers[0])
        _restore_files(j, names, app_env)
        _verify_stop_resume(j, names)
        _narrow(j)
    except BaseException:
        page.screenshot(path=str(ARTIFACTS / "failed.png"), full_page=True)
        raise
    # The browser logs the key prompt's 401s and the refused policy's 400; nothing else may fail.
    assert not [e for e in page.errors if "status of 401" not in e and "status of 400" not in e], page.errors
    assert sum("status of 400" in e for e in page.errors) == 1, page.errors
