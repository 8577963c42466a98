"""The web dashboard in headless Chromium against devhost, PostgreSQL and Azurite.

Debian's ``chromium`` driven by Playwright (``playwright install`` is never run: the browser is
the system one). One screenshot per page goes to ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from devhost_process import REPO, DevhostProcess
from factories import Database, Databases, Hosts
from vault_views import backup_container, state_table

from tests.examples import EXAMPLES
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts" / "dashboard"
PASSWORD = "D4shboard-S3cret-7"
# A database name is data the page shows; this one is valid for PostgreSQL and hostile to HTML.
HOSTILE_DB = '<img src=x onerror="window.__pwned=1">'

sync_api = pytest.importorskip("playwright.sync_api")
if not CHROMIUM.exists():
    pytest.skip("Debian's chromium is not installed (make deps installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def database(make_database: Databases) -> Database:
    # CREATEDB: the restore from the page goes to this server as this user.
    return make_database(
        "dash",
        password=PASSWORD,
        createdb=True,
        tables="CREATE TABLE orders (id int PRIMARY KEY, item text);"
        "INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(1, 5000) g;",
    )


@pytest.fixture(scope="module")
def host(make_host: Hosts, database: Database) -> DevhostProcess:
    return make_host(
        {
            "PGVAULT_SECRET_DASH_CS": database.connection_string(),
            # A restore's target secret names its server (the instance's secret need not).
            "PGVAULT_SECRET_DASH_TARGET_CS": database.connection_string(with_server=True),
        }
    )


def _configure(host: DevhostProcess, db: Database, name: str, database: str) -> dict[str, Any]:
    return host.configure(name, port=db.port, database=database, secret="env:PGVAULT_SECRET_DASH_CS", policy="weekly")


@pytest.fixture(scope="module")
def vault(host: DevhostProcess, database: Database) -> dict[str, Any]:
    """A policy, a protected database with one completed backup, and an instance with a hostile name."""
    policy = (EXAMPLES / "weekly-mon-wed-fri-with-archive.json").read_bytes()
    assert host.put_policy("weekly", policy).status_code == 201
    assert _configure(host, database, "shop", database.name)["status"] == "Completed"
    assert _configure(host, database, "hostile", HOSTILE_DB)["status"] == "Failed"
    job = host.wait_job(host.backup_now("shop"))
    assert job["status"] == "Completed", job
    return {"job": job}


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        pg = context.new_page()
        errors: list[str] = []
        pg.on("pageerror", lambda exc: errors.append(str(exc)))
        pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        pg.errors = errors
        yield pg
        context.close()


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_dashboard_files_are_served_with_a_content_security_policy_and_nothing_else_is(host: DevhostProcess) -> None:
    page = requests.get(f"{host.url}/dashboard", timeout=10)  # no key: the page holds no data
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert "<script" in page.text and "<script>" not in page.text  # module files only, nothing inline
    js = requests.get(f"{host.url}/dashboard/views/jobs.js", timeout=10)
    assert js.status_code == 200 and js.headers["Content-Type"].startswith("text/javascript")
    slash = requests.get(f"{host.url}/dashboard/", timeout=10, allow_redirects=False)
    assert slash.status_code == 302 and slash.headers["Location"] == "../dashboard"  # relative links need no slash
    for path in ("%2e%2e/function_app.py", "..%2f..%2fhost.json", "nothing.js", "dashboard.py"):
        assert requests.get(f"{host.url}/dashboard/{path}", timeout=10).status_code == 404, path
    # The data behind it needs the key.
    assert requests.get(f"{host.url}/backupJobs", timeout=10).status_code == 401


def test_instances_api_tells_the_last_backup_and_the_next_scheduled_one(
    host: DevhostProcess, vault: dict[str, Any]
) -> None:
    shop = host.get("/backupInstances/shop").json()
    done = vault["job"]
    assert shop["lastBackup"] == {
        "time": done["endTime"],
        "status": "Completed",
        "jobId": done["jobId"],
        "recoveryPointId": done["recoveryPointId"],
        "retentionTag": "Default",
    }
    # The example policy backs up on Mondays, Wednesdays and Fridays at 22:00 UTC.
    upcoming = datetime.fromisoformat(shop["nextScheduledBackup"])
    now = datetime.now(UTC)
    assert now < upcoming <= now + timedelta(days=3) and upcoming.weekday() in (0, 2, 4)
    assert (upcoming.hour, upcoming.minute) == (22, 0)
    listed = {i["name"]: i for i in host.get("/backupInstances?top=1000").json()["value"]}
    assert listed["shop"]["lastBackup"] == shop["lastBackup"]
    assert listed["hostile"]["lastBackup"] is None and listed["hostile"]["nextScheduledBackup"] is None
    # Its size, in the list as on its own (the list reads every instance's in one query).
    stored = host.get(f"/backupInstances/shop/recoveryPoints/{done['recoveryPointId']}").json()["sizeInBytes"]
    assert listed["shop"]["storage"] == shop["storage"] == {
        "recoveryPoints": 1,
        "latestPointSizeInBytes": stored,
        "latestPointTime": shop["storage"]["latestPointTime"],
        "totalSizeInBytes": stored,
    }
    assert listed["hostile"]["storage"] is None  # never had a point


def test_dashboard_shows_jobs_instances_recovery_points_restores_and_backs_up_now(
    host: DevhostProcess, vault: dict[str, Any], page: Any, database: Database
) -> None:
    expect = sync_api.expect
    done = vault["job"]
    restored = database.spare("restored")
    page.goto(f"{host.url}/dashboard")

    # The key is asked for once, then sent on every call (devhost refuses calls without it).
    page.fill("#function-key", "not-the-key")
    page.click("#key-form button[type=submit]")
    expect(page.locator("#key-refused")).to_be_visible()
    page.fill("#function-key", host.headers["x-functions-key"])
    page.click("#key-form button[type=submit]")

    # Jobs of the last 7 days: the completed backup is listed, counted and charted.
    row = page.locator(f'tr[data-job-id="{done["jobId"]}"]')
    expect(row).to_contain_text("Completed")
    expect(row).to_contain_text("Backup")
    expect(page.locator('[data-status="Completed"] .n')).to_have_text("2")  # the backup and shop's validation
    expect(page.locator('[data-status="Failed"] .n')).to_have_text("1")  # the hostile instance's validation
    assert page.locator("svg.chart rect.bar.ok").count() >= 1
    expect(page.locator("#vault")).to_contain_text("pgvault-e2e")
    _shot(page, "1-jobs")
    page.select_option("#filter-status", "Failed")
    expect(page.locator("tr[data-job-id]")).to_have_count(1)
    expect(page.locator("tr[data-job-id]")).to_contain_text("hostile")
    page.click("text=Clear")

    # Backup instances: readiness, policy, last and next backup; the hostile name is only text.
    page.click("header nav >> text=Backup instances")
    shop = page.locator('tr[data-instance="shop"]')
    expect(shop).to_contain_text("Success")
    expect(shop).to_contain_text("ProtectionConfigured")
    expect(shop).to_contain_text("weekly")
    expect(shop).not_to_contain_text("not scheduled")
    expect(shop).not_to_contain_text("never")
    hostile = page.locator('tr[data-instance="hostile"]')
    expect(hostile).to_contain_text(HOSTILE_DB)
    expect(hostile).to_contain_text("Failed")
    assert page.locator("main img").count() == 0
    assert page.evaluate("window.__pwned") is None
    _shot(page, "2-instances")

    # The hostile instance's page and its failed validation job show the error, still as text.
    page.click('tr[data-instance="hostile"] a')
    expect(page.locator("#instance-name")).to_have_text("hostile")
    expect(page.locator(".error-box")).to_contain_text("UserErrorDBNotFound")
    expect(page.locator("main")).to_contain_text(HOSTILE_DB)
    assert page.locator("main img").count() == 0 and page.evaluate("window.__pwned") is None
    page.click("text=validation job")
    expect(page.locator("#job-status")).to_have_text("Failed")
    expect(page.locator(".error-box")).to_contain_text(HOSTILE_DB)
    expect(page.locator(".error-box .action")).not_to_be_empty()
    assert page.locator("main img").count() == 0 and page.evaluate("window.__pwned") is None

    # Instance page: the recovery point on the timeline and in the list.
    page.goto(f"{host.url}/dashboard#/instances/shop")
    page.reload()  # the key is kept for the tab: no second prompt
    point = done["recoveryPointId"]
    expect(page.locator("#key-form")).to_have_count(0)
    expect(page.locator(f'circle[data-recovery-point="{point}"]')).to_have_count(1)
    expect(page.locator(f'tr[data-recovery-point="{point}"]')).to_contain_text("VaultStore")
    _shot(page, "3-instance")

    # Restore: the form posts Azure's restore request for the chosen point.
    page.locator(f'tr[data-recovery-point="{point}"] button').click()
    page.fill("#restore-database", restored)
    page.fill("#restore-secret", "env:PGVAULT_SECRET_DASH_TARGET_CS")
    with page.expect_request(lambda r: r.url.endswith("/backupInstances/shop:restore")) as sent:
        page.click("#restore")
    assert sent.value.method == "POST"
    assert sent.value.headers["x-functions-key"] == host.headers["x-functions-key"]
    assert json.loads(sent.value.post_data) == {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": point,
        "sourceDataStoreType": "VaultStore",
        "restoreTargetInfo": {
            "objectType": "RestoreTargetInfo",
            "recoveryOption": "FailIfExists",
            "datasourceInfo": {"resourceName": restored},
            "datasourceAuthCredentials": {
                "objectType": "SecretStoreBasedAuthCredentials",
                "secretStoreResource": {"uri": "env:PGVAULT_SECRET_DASH_TARGET_CS", "secretStoreType": "AzureKeyVault"},
            },
        },
    }
    # The page follows the restore's job to its end; the restored database holds the rows.
    try:
        page.wait_for_function("() => location.hash.startsWith('#/jobs/')")
    except sync_api.TimeoutError:
        raise AssertionError(page.locator("#restore-result").inner_text()) from None
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=120_000)
    with database.connect(restored) as c:
        assert c.execute("SELECT count(*) FROM orders").fetchone() == (5000,)

    # Backup now from the page, with a chosen tag: the job page follows it to Completed.
    page.goto(f"{host.url}/dashboard#/instances/shop")
    page.select_option("#backup-tag", "Weekly")
    page.click("#backup-now")
    try:
        page.wait_for_function("() => location.hash.startsWith('#/jobs/')")
    except sync_api.TimeoutError:
        _shot(page, "failed-backup-now")
        raise AssertionError(page.locator("#backup-result").inner_text() + host.log()[-3000:]) from None
    job_id = page.url.rsplit("/", 1)[1]
    assert job_id != done["jobId"]
    expect(page.locator("#job-status")).to_have_text("Completed", timeout=120_000)
    expect(page.locator("#job-progress")).to_have_text("100 %")
    expect(page.locator("main")).to_contain_text("Dump")
    _shot(page, "4-job")
    job = host.get(f"/backupJobs/{job_id}").json()
    assert job["status"] == "Completed" and job["retentionTag"] == "Weekly" and job["recoveryPointId"]
    assert page.locator("#job-recovery-point").inner_text() == job["recoveryPointId"]
    assert not [e for e in page.errors if "401" not in e and "405" not in e and "404" not in e], page.errors


def test_the_job_page_cancels_a_running_backup(
    host: DevhostProcess, vault: dict[str, Any], page: Any, database: Database
) -> None:
    expect = sync_api.expect
    with database.connect(autocommit=False) as holder:
        holder.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")  # pg_dump waits behind it: the backup runs on
        job_id = host.backup_now("shop")
        wait_until(lambda: host.get(f"/backupJobs/{job_id}").json().get("startTime"), 120, interval=0.3)
        page.goto(f"{host.url}/dashboard#/jobs/{job_id}")
        if page.locator("#key-form").count():
            page.fill("#function-key", host.headers["x-functions-key"])
            page.click("#key-form button[type=submit]")
        expect(page.locator("#job-status")).to_have_text("InProgress")
        # While it runs, the page counts its duration from startTime (the API says 0 until it ends)
        # and does not claim it waits for a worker: it has started.
        expect(page.locator("#job-duration")).not_to_have_text("0 s", timeout=60_000)
        expect(page.locator("main")).not_to_contain_text("Waiting for a worker")
        page.once("dialog", lambda dialog: dialog.accept())
        with page.expect_request(lambda req: req.url.endswith(f"/backupJobs/{job_id}:cancel")) as sent:
            page.click("#job-cancel")
        assert sent.value.method == "POST"
        expect(page.locator("#job-status")).to_have_text("Cancelled", timeout=120_000)
        holder.rollback()
    _shot(page, "5-cancelled")
    job = host.get(f"/backupJobs/{job_id}").json()
    assert job["status"] == "Cancelled" and job["recoveryPointId"] is None and job["cancelRequestedTime"]
    expect(page.locator("#job-cancel")).to_have_count(0)  # a finished job offers no cancel


def test_a_corrupted_point_shows_so_on_the_instance_page_and_is_not_offered_for_restore(
    host: DevhostProcess, vault: dict[str, Any], page: Any, app_env: dict[str, str]
) -> None:
    expect = sync_api.expect
    backup = host.wait_job(host.backup_now("shop"))
    assert backup["status"] == "Completed", backup
    point = backup["recoveryPointId"]
    blob = backup_container(app_env).get_blob_client(backup["details"]["blobName"])
    data = bytearray(blob.download_blob().readall())
    data[len(data) // 2] ^= 0x01
    blob.upload_blob(bytes(data), overwrite=True)
    verify = host.request(
        "POST",
        "/backupInstances/shop:verifyRestore",
        data=json.dumps({"recoveryPointId": point, "secretUri": "env:PGVAULT_SECRET_DASH_TARGET_CS"}),
    )
    assert verify.status_code == 202, verify.text
    failed = host.wait_job(verify.json()["jobId"])
    assert failed["status"] == "Failed" and failed["error"]["code"] == "RecoveryPointCorrupted", failed
    listed = {p["recoveryPointId"]: p for p in host.get("/backupInstances/shop/recoveryPoints").json()["value"]}
    assert listed[point]["integrity"] == "Corrupted" and failed["jobId"] in listed[point]["corruption"]["reason"]
    assert listed[vault["job"]["recoveryPointId"]]["integrity"] == "Available"

    page.goto(f"{host.url}/dashboard#/instances/shop")
    if page.locator("#key-form").count():
        page.fill("#function-key", host.headers["x-functions-key"])
        page.click("#key-form button[type=submit]")
    row = page.locator(f'tr[data-recovery-point="{point}"]')
    expect(row).to_contain_text("Corrupted")
    expect(row).to_contain_text("not restorable")
    assert row.locator("button").count() == 0
    expect(page.locator(f'#restore-point option[value="{point}"]')).to_have_count(0)
    expect(page.locator(f'tr[data-recovery-point="{vault["job"]["recoveryPointId"]}"]')).to_contain_text("Available")
    _shot(page, "6-corrupted")
    # The corruption raised an alert of its own (and the verification's failed job one): the Alerts page shows both.
    page.goto(f"{host.url}/dashboard#/alerts")
    expect(page.locator('tr[data-kind="RecoveryPointCorrupted"]')).to_contain_text(point)
    verification = page.locator('tr[data-kind="JobFailed"]').filter(has_text="VerifyRestore")
    expect(verification.first).to_contain_text("RecoveryPointCorrupted")


def test_a_soft_deleted_instance_shows_so_and_undelete_brings_it_back(
    host: DevhostProcess, vault: dict[str, Any], page: Any
) -> None:
    expect = sync_api.expect
    spec = {"server": "db.invalid", "database": "gone", "secretUri": "env:PGVAULT_SECRET_NONE", "policyName": "weekly"}
    assert host.request("PUT", "/backupInstances/gone", json=spec).status_code == 202
    stopped = host.request("POST", "/backupInstances/gone:stopProtection", json={"retainData": "delete"})
    assert stopped.status_code == 202, stopped.text
    page.goto(f"{host.url}/dashboard#/instances")
    if page.locator("#key-form").count():
        page.fill("#function-key", host.headers["x-functions-key"])
        page.click("#key-form button[type=submit]")
    row = page.locator('tr[data-instance="gone"]')
    expect(row).to_contain_text("SoftDeleted")
    expect(row).to_contain_text("purged")
    page.goto(f"{host.url}/dashboard#/instances/gone")
    expect(page.locator("#undelete-form")).to_contain_text("Soft-deleted")
    page.click("#undelete-instance")
    expect(page.locator("#resume-backup")).to_be_visible()
    shown = host.get("/backupInstances/gone").json()
    assert (shown["protectionStatus"], shown["retainData"]) == ("ProtectionStopped", "forever")
    _shot(page, "7-undeleted")


def test_behind_app_service_authentication_no_key_is_asked_and_only_the_roles_actions_show(
    make_host: Hosts, vault: dict[str, Any], page: Any
) -> None:
    # As behind App Service Authentication: no key on the host, the platform's principal header on
    # every call (here a dev principal, sent by the browser).
    from shared.access import Role, encode_principal

    signed_in = make_host(
        {"PGVAULT_DEVHOST_KEY": "", "PGVAULT_DEV_PRINCIPALS": "true", "PGVAULT_MULTI_USER_AUTHORIZATION": "true"}
    )
    # A critical operation waiting for a Guard (the hostile instance, which no later test uses).
    asked = requests.post(
        f"{signed_in.url}/backupInstances/hostile:stopProtection",
        json={"retainData": "delete"},
        headers={"X-MS-CLIENT-PRINCIPAL": encode_principal("alice@contoso.com", [Role.CONTRIBUTOR])},
        timeout=30,
    )
    assert asked.status_code == 202 and asked.json()["status"] == "Pending", asked.text
    approval = asked.json()["approvalId"]
    expect = sync_api.expect
    for name, roles, backup, stop in (
        ("bob", [Role.READER], False, False),
        ("olga", [Role.OPERATOR], True, False),  # (a key caller, every role, sees all: the test above)
        ("gus", [Role.GUARD], False, False),
    ):
        tab = page.context.new_page()
        try:
            tab.set_extra_http_headers({"X-MS-CLIENT-PRINCIPAL": encode_principal(f"{name}@contoso.com", roles)})
            tab.goto(f"{signed_in.url}/dashboard#/instances/shop")
            expect(tab.locator("#instance-name")).to_have_text("shop")
            expect(tab.locator("#key-form")).to_have_count(0)
            expect(tab.locator("#who")).to_contain_text(f"{name}@contoso.com · {roles[0].value}")
            for element, shown in (("#backup-form", backup), ("#protection-form", stop)):
                if shown:
                    expect(tab.locator(element)).to_be_visible()
                else:
                    expect(tab.locator(element)).to_be_hidden()
            if name == "bob":
                _shot(tab, "reader-instance")
                # The audit log page lists the mutating calls of this module's run (the policy's PUT first of all).
                tab.click("header nav >> text=Audit log")
                expect(tab.locator("main")).to_contain_text("PUT backupPolicies/{name}")
                expect(tab.locator("main")).not_to_contain_text(PASSWORD)
                tab.click("header nav >> text=Approvals")
                expect(tab.locator(f'tr[data-approval="{approval}"]')).to_contain_text("Pending")
                expect(tab.locator(f"#approve-{approval}")).to_have_count(0)  # a Reader cannot approve
            if name == "gus":
                # A Guard approves from the page: the stop with delete runs, once.
                tab.click("header nav >> text=Approvals")
                tab.click(f"#approve-{approval}")
                row = tab.locator(f'tr[data-approval="{approval}"]')
                expect(row).to_contain_text("Executed by gus@contoso.com (202)")
                expect(tab.locator(f"#approve-{approval}")).to_have_count(0)
                _shot(tab, "guard-approved")
        finally:
            tab.close()


def test_restoring_an_archived_point_asks_for_the_rehydration_priority_and_duration(
    host: DevhostProcess, vault: dict[str, Any], page: Any, app_env: dict[str, str], database: Database
) -> None:
    from azure.storage.blob import StandardBlobTier

    from shared.storage import layout

    expect = sync_api.expect
    point = vault["job"]["recoveryPointId"]
    # What the retention sweep does on an archive move: the blob to the Archive tier, then the record.
    backup_container(app_env).get_blob_client(vault["job"]["details"]["blobName"]).set_standard_blob_tier(
        StandardBlobTier.ARCHIVE
    )
    state = state_table(app_env)
    entity = state.get(layout.recovery_points("shop"), point)
    assert entity is not None
    state.update(entity, {**entity.data, "datastore": "ArchiveStore"})
    assert host.get(f"/backupInstances/shop/recoveryPoints/{point}").json()["datastore"] == "ArchiveStore"

    page.goto(f"{host.url}/dashboard#/instances/shop")
    page.reload()  # the page may show this instance already: read it again
    if page.locator("#key-form").count():
        page.fill("#function-key", host.headers["x-functions-key"])
        page.click("#key-form button[type=submit]")
    expect(page.locator(f'tr[data-recovery-point="{point}"]')).to_contain_text("ArchiveStore")
    page.get_by_label("Recovery point", exact=True).select_option(point)
    rehydrate = page.get_by_role("group", name="Archived point: rehydrate first")
    expect(rehydrate).to_be_visible()
    expect(page.get_by_label("Keep rehydrated for (days)")).to_have_value("15")  # Azure's default, P15D
    page.get_by_label("Rehydration priority").select_option("High")
    page.get_by_label("Keep rehydrated for (days)").fill("12")
    page.get_by_label("New database name").fill(database.spare("from_archive"))
    page.get_by_label("Target secret (Key Vault secret URI)").fill("env:PGVAULT_SECRET_DASH_TARGET_CS")
    _shot(page, "7-restore-archived")
    with page.expect_request(lambda r: r.url.endswith("/backupInstances/shop:restore")) as sent:
        page.locator("#restore").click()
    body = json.loads(sent.value.post_data)
    assert body["objectType"] == "AzureBackupRestoreWithRehydrationRequest"
    assert (body["rehydrationPriority"], body["rehydrationRetentionDuration"]) == ("High", "P12D")
    assert body["sourceDataStoreType"] == "ArchiveStore" and body["recoveryPointId"] == point
    # The API took it: the restore's job waits for the rehydration, and says what was asked.
    page.wait_for_function("() => location.hash.startsWith('#/jobs/')")
    job = host.job(page.url.rsplit("/", 1)[1])
    assert job["operation"] == "Restore" and job["details"]["rehydrationJobId"], job
    expect(page.locator("#job-request")).to_contain_text("rehydrated first (High, kept P12D)")
