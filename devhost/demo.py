"""``make demo``: pgvault from nothing to a verified backup, on Azurite and a throwaway PostgreSQL.

It starts Azurite, PostgreSQL and devhost; creates a sample database and a backup user; stores
a policy; protects the database with an ``env:`` secret; shows validation failing for missing
privileges, runs the grant script pgvault generates, re-validates; takes an on-demand backup and
shows the job and the recovery point; restores the point into a new database and shows the data
matches; verifies the point against its manifest; restores it as files (a pg_restore-ready dump
and a manifest) into a blob container. Every process started here is stopped before it exits,
also when a step fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devhost.services import AZURITE_ACCOUNT, Azurite, Postgres, free_port, running_services, wait_for_port

REPO = Path(__file__).resolve().parents[1]
KEY = "demo-key"
DB, USER = "demo_shop", "demo_backup"
RESTORED, RESTORER, EXPORTS = "demo_shop_restored", "demo_restorer", "demo-exports"


def _say(text: str) -> None:
    print(f"==> {text}", flush=True)


class Api:
    """A tiny client of the HTTP API with the devhost key."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}/api"
        self.blob_endpoint = ""

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = body if isinstance(body, bytes) else None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - a local URL we built
            self.base + path, data=data, method=method, headers={"x-functions-key": KEY}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as r:  # noqa: S310
                raw = r.read()
                status = r.status
        except urllib.error.HTTPError as e:
            raw, status = e.read(), e.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode()

    def wait(self, path: str, done: Any, timeout: float = 120) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _, body = self.call("GET", path)
            if done(body):
                return body
            time.sleep(0.5)
        raise TimeoutError(f"{path} did not settle in {timeout} s")


class Devhost:
    """devhost serving the repository's function app on a free port over ``azurite``, for a ``with``
    block: ``settings`` over the ones every local vault takes (env secrets allowed, the demo key), its
    output in ``devhost.log`` beside Azurite's data. Stopped (SIGTERM, then waited for) when the block
    ends, also when it fails or devhost never starts serving."""

    def __init__(self, azurite: Azurite, settings: dict[str, str]) -> None:
        self.port = free_port()
        self.api = Api(self.port)
        self.log_path = azurite.location.parent / "devhost.log"
        self.env = {
            **os.environ,
            "AzureWebJobsStorage": azurite.connection_string,
            "PGVAULT_REGION": "westeurope",
            "PGVAULT_ALLOW_ENV_SECRETS": "true",
            "PGVAULT_DEVHOST_KEY": KEY,
            **settings,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Devhost:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "devhost", "--port", str(self.port), "--settings", "/nonexistent"],
                cwd=REPO,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_for_port(self.port, 30, self.proc)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)

    @property
    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.returncode


def validated(api: Api, pg: Postgres, name: str, database: str, say: Callable[[str], None]) -> dict[str, Any]:
    """Wait for ``name``'s validation; if it failed, run pgvault's grant script on ``database`` as the
    administrator and validate again. Returns the instance, ready (raises when it is not)."""

    def settled() -> dict[str, Any]:
        body: dict[str, Any] = api.wait(
            f"/backupInstances/{name}", lambda b: b["backupReadiness"]["status"] != "Validating"
        )
        return body

    instance = settled()
    error = instance["backupReadiness"]["error"] or {}
    say(f"readiness: {instance['backupReadiness']['status']} {error.get('code', '')}: {error.get('message', '')}")
    if instance["backupReadiness"]["status"] != "Success":
        status, script = api.call("GET", f"/backupInstances/{name}/grantScript?format=sql")
        say(f"GET .../grantScript -> {status}; running it as the administrator (psql)")
        pg.psql(script, database)
        status, _ = api.call("POST", f"/backupInstances/{name}:validate")
        say(f"POST .../{name}:validate -> {status}")
        instance = settled()
        say(f"readiness: {instance['backupReadiness']['status']}, protection: {instance['protectionStatus']}")
    if instance["backupReadiness"]["status"] != "Success":
        raise RuntimeError("validation did not succeed")
    return instance


def protected(api: Api, pg: Postgres, name: str, database: str, *, login_uri: str, policy: str) -> dict[str, Any]:
    """Protect ``database`` of the local server as instance ``name`` on ``policy`` with the login in the secret
    ``login_uri``, and make it ready (``validated``, quietly). Returns the instance."""
    instance = {
        "name": name,
        "server": "127.0.0.1",
        "port": pg.port,
        "database": database,
        "secretUri": login_uri,
        "policyName": policy,
    }
    status, body = api.call("POST", "/backupInstances", {"instances": [instance]})
    if status >= 300:
        raise RuntimeError(f"POST /backupInstances -> {status}: {body}")
    return validated(api, pg, name, database, lambda _: None)


def _story(api: Api, pg: Postgres) -> None:
    status, body = api.call("GET", "/health")
    _say(f"GET /api/health -> {status} {json.dumps(body)}")
    policy = (REPO / "tests" / "policy-examples" / "weekly-mon-wed-fri-with-archive.json").read_bytes()
    status, _ = api.call("PUT", "/backupPolicies/weekly", policy)
    _say(f"PUT /api/backupPolicies/weekly (Mon/Wed/Fri 22:00 UTC, tagged Yearly/Monthly/Weekly/Default) -> {status}")
    status, sim = api.call("POST", "/backupPolicies/weekly:simulate", {"from": "2025-01-01", "to": "2026-01-01"})
    _say(
        f"simulated 2025: {sim['summary']['backups']} backups, per tag {sim['summary']['backupsPerTag']}, "
        f"alive at the end {sim['summary']['livePoints']}"
    )

    instance = {
        "name": "shop",
        "server": "127.0.0.1",
        "port": pg.port,
        "database": DB,
        "secretUri": "env:PGVAULT_SECRET_DEMO_SHOP_CS",
        "policyName": "weekly",
    }
    status, body = api.call("POST", "/backupInstances", {"instances": [instance]})
    _say(
        f"POST /api/backupInstances (secret env:PGVAULT_SECRET_DEMO_SHOP_CS) -> {status}, validation job "
        f"{body['value'][0].get('validationJobId')}"
    )
    validated(api, pg, "shop", DB, _say)

    trigger = {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTagOverride": "Weekly"}}}
    status, body = api.call("POST", "/backupInstances/shop:backup", trigger)
    _say(f"POST /api/backupInstances/shop:backup -> {status} {json.dumps(body)}")
    job = api.wait(f"/backupJobs/{body['jobId']}", lambda j: j["status"] != "InProgress")
    _say(
        f"job {job['jobId']}: {job['status']}, {job['bytes']:,} bytes dumped in {job['durationSeconds']:.1f} s, "
        f"steps {[s['name'] for s in job['steps']]}"
    )
    if job["status"] != "Completed":
        raise RuntimeError(f"backup failed: {job['error']}")
    _, point = api.call("GET", f"/backupInstances/shop/recoveryPoints/{job['recoveryPointId']}")
    _say("recovery point:")
    print(json.dumps(point, indent=2), flush=True)
    _restore_story(api, pg, point["recoveryPointId"])


def _restore_story(api: Api, pg: Postgres, rp: str) -> None:
    credentials = {
        "objectType": "SecretStoreBasedAuthCredentials",
        "secretStoreResource": {"uri": "env:PGVAULT_SECRET_DEMO_TARGET_CS", "secretStoreType": "AzureKeyVault"},
    }
    body = {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": rp,
        "sourceDataStoreType": "VaultStore",
        "restoreTargetInfo": {
            "objectType": "RestoreTargetInfo",
            "recoveryOption": "FailIfExists",
            "datasourceInfo": {"resourceName": RESTORED},
            "datasourceAuthCredentials": credentials,
        },
    }
    status, accepted = api.call("POST", "/backupInstances/shop:restore", body)
    _say(f"POST /api/backupInstances/shop:restore (new database {RESTORED}, user {RESTORER} with CREATEDB) -> {status}")
    job = api.wait(f"/backupJobs/{accepted['jobId']}", lambda j: j["status"] != "InProgress")
    _say(
        f"restore job: {job['status']}, steps {[s['name'] for s in job['steps']]}, "
        f"warnings {job['details'].get('warnings')}"
    )
    if job["status"] not in ("Completed", "CompletedWithWarnings"):
        raise RuntimeError(f"restore failed: {job['error']}")
    query = "SELECT count(*) || ' rows, md5 ' || md5(string_agg(id || item || placed, ',' ORDER BY id)) FROM orders"
    source, restored = pg.psql(query, DB), pg.psql(query, RESTORED)
    _say(f"source   {DB}: {source}")
    _say(f"restored {RESTORED}: {restored} -> {'the data matches' if source == restored else 'DIFFERENT'}")
    if source != restored:
        raise RuntimeError("the restored data differs")
    status, again = api.call("POST", "/backupInstances/shop:restore", body)
    _say(f"the same restore again -> {status} {again['error']['code']} (an existing database is never touched)")

    status, accepted = api.call(
        "POST",
        "/backupInstances/shop:verifyRestore",
        {"recoveryPointId": rp, "secretUri": "env:PGVAULT_SECRET_DEMO_TARGET_CS"},
    )
    job = api.wait(f"/backupJobs/{accepted['jobId']}", lambda j: j["status"] != "InProgress")
    _say(f"POST .../shop:verifyRestore -> {status}; job {job['status']}: {job['details'].get('verification')}")

    container_url = f"{api.blob_endpoint}/{EXPORTS}"
    files = {
        **body,
        "restoreTargetInfo": {
            "objectType": "RestoreFilesTargetInfo",
            "recoveryOption": "FailIfExists",
            "targetDetails": {
                "url": container_url,
                "filePrefix": "shop/latest",
                "restoreTargetLocationType": "AzureBlobs",
            },
        },
    }
    status, accepted = api.call("POST", "/backupInstances/shop:restore", files)
    job = api.wait(f"/backupJobs/{accepted['jobId']}", lambda j: j["status"] != "InProgress")
    _say(
        f"POST .../shop:restore as files into {container_url} -> {status}; "
        f"job {job['status']}: {job['details'].get('files')}"
    )
    if job["status"] != "Completed":
        raise RuntimeError(f"restore as files failed: {job['error']}")
    _say(f"to restore the file by hand: {job['details']['restoreCommand']}")


def main() -> int:
    """Run the demo; 0 when every step worked."""
    started = time.monotonic()
    with running_services() as (azurite, postgres):
        assert azurite is not None and postgres is not None
        ports = f"{azurite.blob_port}/{azurite.queue_port}/{azurite.table_port}"
        _say(f"Azurite on ports {ports} (blob/queue/table; data in a temporary folder)")
        _say(f"PostgreSQL {postgres.bin_dir} on port {postgres.port} (throwaway cluster)")
        postgres.psql(
            f"CREATE ROLE {USER} LOGIN PASSWORD 'demo'; CREATE ROLE {RESTORER} LOGIN CREATEDB PASSWORD 'demo';"
            f"CREATE DATABASE {DB};"
        )
        postgres.psql(
            "CREATE TABLE orders (id serial PRIMARY KEY, item text, placed timestamptz DEFAULT now());"
            "INSERT INTO orders (item) SELECT 'item ' || g FROM generate_series(1, 50000) g;",
            DB,
        )
        _say(f"sample database {DB} (50,000 orders) and backup user {USER} (no privileges yet)")
        settings = {
            "PGVAULT_VAULT_NAME": "pgvault-demo",
            "PGVAULT_SCHEDULER_SCHEDULE": "0 */5 * * * *",
            "PGVAULT_RETENTION_SCHEDULE": "0 17 * * * *",
            # The demo's restore as files goes to the emulator's account (the vault runs on Azurite).
            "PGVAULT_EXPORT_ACCOUNTS": AZURITE_ACCOUNT,
            # The secret names its server: its password goes nowhere else (PGVAULT_ALLOWED_SERVERS is not set).
            "PGVAULT_SECRET_DEMO_SHOP_CS": (
                f"Server=127.0.0.1;Port={postgres.port};User Id={USER};Password=demo;Ssl Mode=Disable"
            ),
            "PGVAULT_SECRET_DEMO_TARGET_CS": (
                f"Server=127.0.0.1;Port={postgres.port};User Id={RESTORER};Password=demo;Ssl Mode=Disable"
            ),
        }
        from azure.storage.blob import BlobServiceClient

        blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
        blobs.create_container(EXPORTS)
        devhost, failed = Devhost(azurite, settings), False
        try:
            with devhost:
                _say(f"devhost serving function_app.app on {devhost.api.base}")
                devhost.api.blob_endpoint = blobs.url.rstrip("/")
                _story(devhost.api, postgres)
        except Exception as exc:  # the demo reports and still cleans up
            failed = True
            _say(f"demo step failed: {exc}")
            print(devhost.log_path.read_text(errors="replace")[-4000:], end="")
        _say(f"devhost stopped (exit code {devhost.exit_code})")
    _say(f"Azurite and PostgreSQL stopped; demo took {time.monotonic() - started:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
