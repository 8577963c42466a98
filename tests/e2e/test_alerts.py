"""Alerts end to end: a failed backup reaches a local webhook receiver, on the devhost's own alert
delivery timer (every 15 s), with the documented fields and no secret; the API and the CLI list it
as Delivered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from factories import Databases, Hosts
from psycopg import sql

from tests.examples import EXAMPLES
from tests.waiting import wait_until
from tests.webhook_receiver import WebhookReceiver

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "Al3rt-Webhook-Pa55"  # tests/e2e/test_secrets_never_leak.py looks for it everywhere too
DOCUMENTED = {
    "vault", "instance", "jobId", "operation", "status", "errorCode", "errorMessage", "recommendedAction",
    "time", "link", "text",
}  # fmt: skip


def test_a_failed_backup_reaches_the_webhook_with_the_documented_fields_and_no_secret(
    make_database: Databases, make_host: Hosts, app_env: dict[str, str]
) -> None:
    password = PASSWORD
    db = make_database("alerted", tables="CREATE TABLE t (id int); INSERT INTO t VALUES (1);", password=password,
                       password_required=True)  # fmt: skip
    receiver = WebhookReceiver().start()
    try:
        secret = db.connection_string()
        host = make_host({"PGVAULT_ALERT_WEBHOOK_URL": receiver.url, "PGVAULT_SECRET_ALERTED": secret})
        host.put_policy("p", (EXAMPLES / "sunday-default-only.json").read_bytes())
        validation = host.configure("alerted", port=db.port, database=db.name, secret="env:PGVAULT_SECRET_ALERTED",
                                    policy="p")  # fmt: skip
        assert validation["status"] == "Completed", validation
        # The password changes behind the vault's back: the next backup cannot log in.
        with db.connect("postgres") as c:
            c.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(db.user), sql.Literal("changed")))
        failed = host.wait_job(host.backup_now("alerted"))
        assert failed["status"] == "Failed", failed
        ended = time.monotonic()

        (document,) = wait_until(lambda: list(receiver.documents), 120, 0.5, "the webhook got no alert")
        took = time.monotonic() - ended
        raw = receiver.raw[0].decode()
        assert document.keys() >= DOCUMENTED
        assert document["vault"] == "pgvault-e2e" and document["instance"] == "alerted"
        assert (document["jobId"], document["operation"], document["status"]) == (failed["jobId"], "Backup", "Failed")
        assert document["errorCode"] == failed["error"]["code"] == "UserErrorDBUserAuthFailed"
        assert document["recommendedAction"] == failed["error"]["recommendedAction"]
        assert document["link"].endswith(f"/api/backupJobs/{failed['jobId']}") and "alerted" in document["text"]
        for secretive in (password, secret, "Password=", app_env["PGVAULT_DEVHOST_KEY"]):
            assert secretive not in raw

        def delivered() -> list[dict[str, object]]:
            listed = host.get("/alerts?days=1")
            assert listed.status_code == 200, listed.text
            return [a for a in listed.json()["value"] if a["delivery"]["state"] == "Delivered"]

        (alert,) = wait_until(delivered, 30)
        assert (
            alert["jobId"] == failed["jobId"]
            and alert["kind"] == "JobFailed"
            and alert["alertId"] == document["alertId"]
        )
        env = {
            **os.environ,
            "PGVAULT_URL": f"http://127.0.0.1:{host.port}",
            "PGVAULT_KEY": app_env["PGVAULT_DEVHOST_KEY"],
        }
        cli = subprocess.run([sys.executable, "-m", "pgvault", "alert", "list", "--days", "1", "-o", "json"],
                             cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert cli.returncode == 0, cli.stderr
        assert [a["alertId"] for a in json.loads(cli.stdout)["value"]] == [alert["alertId"]]
        assert len(receiver.documents) == 1  # one alert per event: later timer runs sent nothing more
        print(f"alert reached the webhook {took:.1f} s after the job ended")
    finally:
        receiver.stop()
