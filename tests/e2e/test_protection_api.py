"""Stop and resume protection over HTTP, through devhost and the registered app."""

from __future__ import annotations

import uuid

import pytest
from devhost_process import DevhostProcess

from tests.examples import EXAMPLES

pytestmark = pytest.mark.e2e


def test_stop_resume_and_stop_with_delete_over_http(app_host: DevhostProcess) -> None:
    name = f"stopme-{uuid.uuid4().hex[:6]}"
    body = (EXAMPLES / "sunday-default-only.json").read_bytes()
    assert app_host.request("PUT", "/backupPolicies/sunday", data=body).ok
    instance = {
        "server": "db.invalid",
        "database": name,
        "secretUri": "env:PGVAULT_SECRET_NOT_SET",
        "policyName": "sunday",
    }
    assert app_host.request("PUT", f"/backupInstances/{name}", json=instance).status_code == 202

    bad = app_host.request("POST", f"/backupInstances/{name}:stopProtection", json={"retainData": "sometimes"})
    assert bad.status_code == 400 and bad.json()["error"]["target"] == "retainData"

    stopped = app_host.request("POST", f"/backupInstances/{name}:stopProtection", json={"retainData": "forever"})
    assert stopped.status_code == 200, stopped.text
    shown = app_host.get(f"/backupInstances/{name}").json()
    assert (shown["protectionStatus"], shown["currentProtectionState"]) == ("ProtectionStopped", "ProtectionStopped")
    refused = app_host.request("POST", f"/backupInstances/{name}:backup")
    assert refused.status_code == 409 and "stopped" in refused.json()["error"]["message"]

    resumed = app_host.request("POST", f"/backupInstances/{name}:resumeProtection")
    assert resumed.status_code == 200 and resumed.json()["protectionStatus"] != "ProtectionStopped"
    again = app_host.request("POST", f"/backupInstances/{name}:resumeProtection")
    assert again.status_code == 409

    deleting = app_host.request("POST", f"/backupInstances/{name}:stopProtection", json={"retainData": "delete"})
    assert deleting.status_code == 202, deleting.text
    job = app_host.get(deleting.headers["Location"].removeprefix("/api")).json()
    assert (job["operation"], job["status"]) == ("Delete", "Completed")  # no points: done at once
    assert app_host.get(f"/backupInstances/{name}").status_code == 404
    # Its claim went too: the database can be protected again.
    assert app_host.request("PUT", f"/backupInstances/{name}", json=instance).status_code == 202
