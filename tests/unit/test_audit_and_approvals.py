"""The audit trail (redaction, pages, retention) and approval requests, on the in-memory state table."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.access import FUNCTION_KEY, Principal, Role
from shared.approvals import EXECUTORS, Approvals, ApprovalStatus, CriticalOperation
from shared.audit import AuditCursor, AuditLog, body_for_audit, redact
from shared.errors import UserError
from shared.policies import retention_shortened
from shared.policy import parse_policy
from shared.storage.memory import MemoryStateTable

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
EXAMPLES = Path(__file__).resolve().parents[1] / "policy-examples"


def test_redaction_takes_out_every_kind_of_secret_and_keeps_the_rest() -> None:
    body = {
        "retainData": "delete",
        "password": "hunter2",
        "nested": [{"User_Password": "x", "connectionString": "Server=a;Password=p"}],
        "note": "Server=db;User Id=u;Pwd=s3cret;",
        "container": "https://acct.blob.core.windows.net/c?sv=2024&sig=abcdef",
        "url": "https://h/api/x?code=the-function-key",
        "secretUri": "https://kv.vault.azure.net/secrets/db1",
    }
    clean = redact(body)
    text = json.dumps(clean)
    for secret in ("hunter2", "s3cret", "abcdef", "the-function-key", "Password=p"):
        assert secret not in text
    assert clean["retainData"] == "delete"
    assert clean["container"].startswith("https://acct.blob.core.windows.net/c?")
    assert clean["secretUri"] == body["secretUri"]  # a reference, not a secret (docs/rules.md C3)
    assert body_for_audit(b"not json") == {"unreadable": "8 bytes, not JSON"}
    assert body_for_audit(b"") is None


def _record(log: AuditLog, at: datetime, n: int) -> None:
    log.record(
        at,
        principal=f"user{n}",
        principal_id=f"id{n}",
        method="POST",
        route="backupInstances/{name}:backup",
        target=f"name=db{n}",
        body=None,
        status=202,
    )


def test_audit_pages_go_newest_first_across_days_without_a_gap_or_a_repeat() -> None:
    log = AuditLog(MemoryStateTable(), retention_days=3653)
    for n in range(7):
        _record(log, NOW - timedelta(hours=10 * n), n)
    _record(log, NOW - timedelta(days=30), 99)  # outside the window
    seen: list[str] = []
    records, cursor = log.page(NOW, days=7, top=3)
    seen += [r.principal for r in records]
    while cursor is not None:
        records, cursor = log.page(NOW, top=3, cursor=AuditCursor.decode(cursor.encode()))
        seen += [r.principal for r in records]
    assert seen == [f"user{n}" for n in range(7)]
    with pytest.raises(UserError) as bad:
        AuditCursor.decode("bm90LWEtdG9rZW4")
    assert bad.value.target == "continuationToken"


def test_audit_records_older_than_the_retention_are_deleted_and_newer_kept() -> None:
    log = AuditLog(MemoryStateTable(), retention_days=3653)
    _record(log, NOW - timedelta(days=3660), 1)
    _record(log, NOW - timedelta(days=3600), 2)
    assert log.expire(NOW) == 1
    records, _ = log.page(NOW, days=3653, top=10)
    assert [r.principal for r in records] == ["user2"]


ALICE = Principal("oid-alice", "alice", frozenset({Role.CONTRIBUTOR}))
GUARD = Principal("oid-gus", "gus", frozenset({Role.GUARD}))


@pytest.fixture
def runs() -> list[tuple[Mapping[str, str], Any]]:
    calls: list[tuple[Mapping[str, str], Any]] = []

    def run(params: Mapping[str, str], body: Any, now: datetime) -> tuple[int, Any]:
        calls.append((params, body))
        return 202, {"done": params["name"]}

    previous = EXECUTORS.get(CriticalOperation.PURGE_SOFT_DELETED_INSTANCE)
    EXECUTORS[CriticalOperation.PURGE_SOFT_DELETED_INSTANCE] = run
    yield calls
    if previous is None:
        del EXECUTORS[CriticalOperation.PURGE_SOFT_DELETED_INSTANCE]
    else:
        EXECUTORS[CriticalOperation.PURGE_SOFT_DELETED_INSTANCE] = previous


def _ask(approvals: Approvals, who: Principal, reason: str | None = "purges every point") -> str | None:
    pending = approvals.gate(
        CriticalOperation.PURGE_SOFT_DELETED_INSTANCE,
        "POST",
        "backupInstances/{name}:purge",
        {"name": "db1"},
        {"x": 1},
        reason,
        NOW,
        principal=who,
    )
    return None if pending is None else pending.approvalId


def test_a_critical_operation_waits_for_a_guard_who_is_not_the_requester_and_runs_once(
    runs: list[Any],
) -> None:
    approvals = Approvals(MemoryStateTable(), enabled=True, window=timedelta(hours=24))
    approval_id = _ask(approvals, ALICE)
    assert approval_id is not None and runs == []
    assert approvals.get(approval_id, NOW).status is ApprovalStatus.PENDING
    alice_as_guard = Principal("oid-alice", "alice", frozenset({Role.GUARD}))
    with pytest.raises(UserError) as self_approval:
        approvals.approve(approval_id, alice_as_guard, NOW)
    assert self_approval.value.code.value == "UserErrorSelfApprovalNotAllowed"
    done = approvals.approve(approval_id, GUARD, NOW + timedelta(minutes=5))
    assert done.status is ApprovalStatus.EXECUTED and done.result == {"done": "db1"} and done.approved_by == "gus"
    assert runs == [({"name": "db1"}, {"x": 1})]
    with pytest.raises(UserError) as again:
        approvals.approve(approval_id, FUNCTION_KEY, NOW)
    assert again.value.http_status == 409
    assert len(runs) == 1


def test_a_function_key_cannot_approve_its_own_request_but_may_approve_a_users(runs: list[Any]) -> None:
    approvals = Approvals(MemoryStateTable(), enabled=True, window=timedelta(hours=24))
    by_key = _ask(approvals, FUNCTION_KEY)
    assert by_key is not None
    with pytest.raises(UserError) as refused:
        approvals.approve(by_key, FUNCTION_KEY, NOW)
    assert refused.value.code.value == "UserErrorSelfApprovalNotAllowed"
    by_alice = _ask(approvals, ALICE)
    assert by_alice is not None
    assert approvals.approve(by_alice, FUNCTION_KEY, NOW).status is ApprovalStatus.EXECUTED
    assert len(runs) == 1


def test_an_approval_after_the_window_is_refused_and_nothing_runs(runs: list[Any]) -> None:
    approvals = Approvals(MemoryStateTable(), enabled=True, window=timedelta(hours=1))
    approval_id = _ask(approvals, ALICE)
    assert approval_id is not None
    assert approvals.get(approval_id, NOW + timedelta(hours=2)).status is ApprovalStatus.EXPIRED
    with pytest.raises(UserError) as late:
        approvals.approve(approval_id, GUARD, NOW + timedelta(hours=2))
    assert late.value.code.value == "UserErrorApprovalExpired"
    assert runs == []


def test_the_gate_is_open_when_mua_is_off_or_the_call_is_not_critical(runs: list[Any]) -> None:
    assert _ask(Approvals(MemoryStateTable(), enabled=False, window=timedelta(hours=1)), ALICE) is None
    assert _ask(Approvals(MemoryStateTable(), enabled=True, window=timedelta(hours=1)), ALICE, reason=None) is None


def _with_vault_retention(duration: str) -> Any:
    text = (EXAMPLES / "sunday-default-only.json").read_text()
    assert '"duration": "P7D"' in text
    return parse_policy(json.loads(text.replace('"duration": "P7D"', f'"duration": "{duration}"')))


def test_shortening_is_found_and_lengthening_or_keeping_is_not() -> None:
    month = _with_vault_retention("P30D")
    assert retention_shortened(month, month) is None
    assert retention_shortened(month, _with_vault_retention("P10Y")) is None
    reason = retention_shortened(month, _with_vault_retention("P7D"))
    assert reason is not None and "P7D instead of P30D" in reason
    # P1M is shorter than P30D from some starts (a February): that counts as shortening.
    assert retention_shortened(month, _with_vault_retention("P1M")) is not None
