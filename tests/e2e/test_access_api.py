"""Roles, multi-user authorization and the audit trail over HTTP, through devhost with dev principals."""

from __future__ import annotations

import json
import uuid

import pytest
from conftest import DEVHOST_KEY
from devhost_process import DevhostProcess
from factories import Hosts

from shared.access import Role, encode_principal
from tests.examples import EXAMPLES

pytestmark = pytest.mark.e2e

SECRET_IN_BODY = "hunter2-never-in-the-audit-log"


def _as(name: str, *roles: Role, oid: str | None = None) -> dict[str, str]:
    return {"X-MS-CLIENT-PRINCIPAL": encode_principal(f"{name}@contoso.com", list(roles), object_id=oid)}


ALICE = _as("alice", Role.CONTRIBUTOR, oid="oid-alice")
ALICE_AS_GUARD = _as("alice", Role.CONTRIBUTOR, Role.GUARD, oid="oid-alice")
GUS = _as("gus", Role.GUARD, oid="oid-gus")
BOB = _as("bob", Role.READER, oid="oid-bob")


@pytest.fixture(scope="module")
def host(make_host: Hosts) -> DevhostProcess:
    return make_host({"PGVAULT_DEV_PRINCIPALS": "true", "PGVAULT_MULTI_USER_AUTHORIZATION": "true"})


def test_critical_operations_wait_for_a_guard_run_once_and_every_call_is_audited(host: DevhostProcess) -> None:
    name = f"mua-{uuid.uuid4().hex[:6]}"
    policy = (EXAMPLES / "sunday-default-only.json").read_text()
    assert '"duration": "P7D"' in policy
    month = policy.replace('"duration": "P7D"', '"duration": "P30D"')
    calls: list[tuple[str, str, str, int]] = []  # what the audit log must show: method, route, who, status

    def call(method: str, path: str, route: str, who: dict[str, str], who_name: str, **kw: object) -> dict:
        r = host.request(method, path, headers=who, **kw)
        calls.append((method, route, who_name, r.status_code))
        return {"status": r.status_code, "body": r.json() if r.content else None}

    me = host.get("/me", headers=BOB).json()
    assert me["roles"] == ["Backup Reader"] and "PUT backupPolicies/{name}" not in me["allowed"]
    assert me["multiUserAuthorization"] is True

    # A Reader may not write; the 403 names the role.
    refused = call("PUT", "/backupPolicies/p30", "backupPolicies/{name}", BOB, "bob@contoso.com", data=month)
    assert refused["status"] == 403 and refused["body"]["error"]["message"].startswith("needs Backup Contributor")
    # A secret in a refused body never reaches the audit trail.
    with_secret = json.dumps({**json.loads(month), "password": SECRET_IN_BODY})
    bad = call("PUT", "/backupPolicies/p30", "backupPolicies/{name}", ALICE, "alice@contoso.com", data=with_secret)
    assert bad["status"] == 400
    assert (
        call("PUT", "/backupPolicies/p30", "backupPolicies/{name}", ALICE, "alice@contoso.com", data=month)["status"]
        == 201
    )
    instance = {
        "server": "db.invalid",
        "database": name,
        "secretUri": "env:PGVAULT_SECRET_NOT_SET",
        "policyName": "p30",
    }
    configured = call(
        "PUT", f"/backupInstances/{name}", "backupInstances/{name}", ALICE, "alice@contoso.com", json=instance
    )
    assert configured["status"] == 202

    # Stop with delete: recorded as pending, nothing deleted yet.
    stop_route = "backupInstances/{name}:stopProtection"
    pending = call(
        "POST",
        f"/backupInstances/{name}:stopProtection",
        stop_route,
        ALICE,
        "alice@contoso.com",
        json={"retainData": "delete"},
    )
    assert pending["status"] == 202 and pending["body"]["status"] == "Pending", pending
    approval_id = pending["body"]["approvalId"]
    assert host.get(f"/backupInstances/{name}", headers=BOB).status_code == 200

    approve_route = "approvals/{id}:approve"
    # The requester cannot approve, not even holding the Guard role; a Contributor is no Guard.
    own = call("POST", f"/approvals/{approval_id}:approve", approve_route, ALICE_AS_GUARD, "alice@contoso.com")
    assert own["status"] == 403 and own["body"]["error"]["code"] == "UserErrorSelfApprovalNotAllowed"
    no_guard = call("POST", f"/approvals/{approval_id}:approve", approve_route, BOB, "bob@contoso.com")
    assert no_guard["status"] == 403 and no_guard["body"]["error"]["message"].startswith("needs Backup Guard")
    assert host.get(f"/backupInstances/{name}", headers=BOB).status_code == 200

    # A Guard approves: it runs, once.
    done = call("POST", f"/approvals/{approval_id}:approve", approve_route, GUS, "gus@contoso.com")
    assert done["status"] == 200 and done["body"]["status"] == "Executed", done
    assert done["body"]["resultStatus"] == 202 and done["body"]["approvedBy"] == "gus@contoso.com"
    delete_job = done["body"]["result"]["jobId"]
    assert host.job(delete_job)["operation"] == "Delete"
    # Stop with delete soft-deletes: the instance stays, SoftDeleted, until its purge.
    assert host.get(f"/backupInstances/{name}", headers=BOB).json()["protectionStatus"] == "SoftDeleted"
    twice = call("POST", f"/approvals/{approval_id}:approve", approve_route, GUS, "gus@contoso.com")
    assert twice["status"] == 409
    deletes = [j for j in host.get(f"/backupJobs?instance={name}&operation=Delete").json()["value"]]
    assert [j["jobId"] for j in deletes] == [delete_job]

    # Shortening a policy's retention waits too; lengthening does not.
    shorter = call("PUT", "/backupPolicies/p30", "backupPolicies/{name}", ALICE, "alice@contoso.com", data=policy)
    assert shorter["status"] == 202 and "P7D instead of P30D" in shorter["body"]["approval"]["reason"]
    assert "P30D" in json.dumps(host.get("/backupPolicies/p30", headers=BOB).json())
    ran = call("POST", f"/approvals/{shorter['body']['approvalId']}:approve", approve_route, GUS, "gus@contoso.com")
    assert ran["body"]["status"] == "Executed" and ran["body"]["resultStatus"] == 200
    assert "P30D" not in json.dumps(host.get("/backupPolicies/p30", headers=BOB).json())

    # The audit log lists each of these calls, newest first, with no secret in it.
    first = host.get("/auditLog?days=1&top=5", headers=BOB)
    assert first.status_code == 200, first.text
    records, page = first.json()["value"], first.json()
    while "nextLink" in page:
        page = host.get(page["nextLink"].split("/api", 1)[1], headers=BOB).json()
        records += page["value"]
    shown = [(r["method"], r["route"], r["principal"], r["outcome"]["status"]) for r in records]
    assert [c for c in shown if c in calls] == list(reversed(calls)), shown
    assert all(r["target"] for r in records if r["route"].startswith(("backupInstances/", "approvals/")))
    approval_records = [r for r in records if r["approvalId"] == approval_id]
    assert {r["principal"] for r in approval_records} == {"alice@contoso.com", "bob@contoso.com", "gus@contoso.com"}
    text = json.dumps(records)
    assert SECRET_IN_BODY not in text and DEVHOST_KEY not in text
    refused_record = next(r for r in records if r["outcome"]["status"] == 403 and r["principal"] == "bob@contoso.com")
    assert refused_record["outcome"]["errorCode"] == "UserErrorInsufficientRole"
