"""Multi-user authorization: a critical operation runs only once a second principal approves it.

As Azure Backup's multi-user authorization (MUA, opt-in: ``PGVAULT_MULTI_USER_AUTHORIZATION``):
a critical operation (stop protection with delete, shortening a policy's retention; purge of a
soft-deleted instance, lowering soft-delete days and unlocking immutability when they exist) is
not done when asked. It is recorded as a pending approval request (202 with its id); a principal
with the Backup Guard role who is not the requester approves it within
``PGVAULT_APPROVAL_HOURS`` (``POST /api/approvals/{id}:approve``), and the approval runs the
operation, once: Pending -> Running is one ETag-guarded write, so two approvals cannot both run
it. A function key is one principal ("function key"): it cannot approve a request it made.

The hook for another critical operation, in its handler (functions/*.py):

    pending = vault.approvals().gate(CriticalOperation.X, req_route, target, params, body, reason, now)
    if pending is not None:
        return json_response(pending, 202)       # recorded, waits for a Guard
    ... do the operation ...

and ``@executor(CriticalOperation.X)`` on a function ``(params, body, now) -> (status, answer)``
that does it, which the approval calls. ``gate`` returns None when MUA is off or ``reason`` is
None (the request is not critical), so the handler's own path stays the only code path.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.access import Principal, current_principal
from shared.errors import ErrorCode, UserError, error_body
from shared.jobs.model import _inverted
from shared.storage.ports import Entity, ETagMismatch, StateStore
from shared.wire.access import ApprovalPending, ApprovalRequest

log = logging.getLogger(__name__)

APPROVALS = "approvals"


class CriticalOperation(StrEnum):
    """The operations that need a Backup Guard's approval when MUA is on."""

    STOP_PROTECTION_WITH_DELETE = "StopProtectionWithDelete"
    SHORTEN_POLICY_RETENTION = "ShortenPolicyRetention"
    PURGE_SOFT_DELETED_INSTANCE = "PurgeSoftDeletedInstance"
    LOWER_SOFT_DELETE_DAYS = "LowerSoftDeleteDays"
    UNLOCK_IMMUTABILITY = "UnlockImmutability"


class ApprovalStatus(StrEnum):
    """Where an approval request is."""

    PENDING = "Pending"
    """Recorded; waits for a Guard."""
    RUNNING = "Running"
    """Approved; the operation is running (it runs once)."""
    EXECUTED = "Executed"
    """The operation ran and answered (``result_status`` below 400)."""
    FAILED = "Failed"
    """The operation ran and was refused or failed (its error in ``result``)."""
    EXPIRED = "Expired"
    """Not approved within the window; send the operation again."""


Executor = Callable[[Mapping[str, str], Any, datetime], tuple[int, Any]]
"""Run an approved operation: (route parameters, body, now) -> (HTTP status, JSON answer)."""

EXECUTORS: dict[CriticalOperation, Executor] = {}


def executor(operation: CriticalOperation) -> Callable[[Executor], Executor]:
    """Register the function that runs ``operation`` once it is approved (one per operation)."""

    def register(run: Executor) -> Executor:
        EXECUTORS[operation] = run
        return run

    return register


@dataclass(frozen=True)
class Approval:
    """One approval request, as stored."""

    id: str
    operation: CriticalOperation
    method: str
    route: str
    target: str
    reason: str
    params: Mapping[str, str]
    body: Any
    requested_by: str
    requested_by_id: str
    created: datetime
    expires: datetime
    status: ApprovalStatus = ApprovalStatus.PENDING
    approved_by: str | None = None
    approved_time: datetime | None = None
    result_status: int | None = None
    result: Any = None

    def to_wire(self) -> ApprovalRequest:
        """As the API shows it (the stored body, which the operation needs, is not shown)."""
        return ApprovalRequest(
            id=self.id,
            operation=self.operation.value,
            method=self.method,
            route=self.route,
            target=self.target,
            reason=self.reason,
            requestedBy=self.requested_by,
            requestedById=self.requested_by_id,
            created=self.created,
            expires=self.expires,
            status=self.status.value,
            approvedBy=self.approved_by,
            approvedTime=self.approved_time,
            resultStatus=self.result_status,
            result=self.result,
        )

    def _data(self) -> dict[str, Any]:
        return {
            "operation": self.operation.value,
            "method": self.method,
            "route": self.route,
            "target": self.target,
            "reason": self.reason,
            "params": json.dumps(dict(self.params)),
            "body": json.dumps(self.body),
            "requested_by": self.requested_by,
            "requested_by_id": self.requested_by_id,
            "created": self.created,
            "expires": self.expires,
            "status": self.status.value,
            "approved_by": self.approved_by,
            "approved_time": self.approved_time,
            "result_status": self.result_status,
            "result": json.dumps(self.result),
        }

    @classmethod
    def _from(cls, entity: Entity) -> Approval:
        d = entity.data
        return cls(
            id=entity.row_key,
            operation=CriticalOperation(d["operation"]),
            method=str(d["method"]),
            route=str(d["route"]),
            target=str(d["target"]),
            reason=str(d["reason"]),
            params=json.loads(str(d["params"])),
            body=json.loads(str(d["body"])),
            requested_by=str(d["requested_by"]),
            requested_by_id=str(d["requested_by_id"]),
            created=d["created"],
            expires=d["expires"],
            status=ApprovalStatus(d["status"]),
            approved_by=d.get("approved_by"),
            approved_time=d.get("approved_time"),
            result_status=d.get("result_status"),
            result=json.loads(str(d.get("result") or "null")),
        )


class Approvals:
    """Approval requests in the state table, and the gate critical operations pass."""

    def __init__(self, state: StateStore, *, enabled: bool, window: timedelta) -> None:
        self._state = state
        self.enabled = enabled
        self.window = window

    def gate(  # noqa: PLR0917 - what an approval records, named at each call site below
        self,
        operation: CriticalOperation,
        method: str,
        route: str,
        params: Mapping[str, str],
        body: Any,
        reason: str | None,
        now: datetime,
        principal: Principal | None = None,
    ) -> ApprovalPending | None:
        """None when the call may go on (MUA off, or not critical: ``reason`` None); else the pending
        request just recorded, for the handler to answer 202 with."""
        if not self.enabled or reason is None:
            return None
        if operation not in EXECUTORS:
            raise UserError(ErrorCode.INTERNAL, f"{operation} has no executor: it could never run once approved")
        who = principal or current_principal()
        approval = Approval(
            id=f"{_inverted(now)}-{secrets.token_hex(8)}",
            operation=operation,
            method=method,
            route=route,
            target=",".join(f"{k}={v}" for k, v in sorted(params.items())),
            reason=reason,
            params=dict(params),
            body=body,
            requested_by=who.label,
            requested_by_id=who.id,
            created=now,
            expires=now + self.window,
        )
        self._state.insert(APPROVALS, approval.id, approval._data())
        log.info(
            "approval %s: %s of %s by %s waits for a Backup Guard", approval.id, operation, approval.target, who.label
        )
        return ApprovalPending(
            approvalId=approval.id,
            status="Pending",
            expires=approval.expires,
            message=f"{operation.value} needs the approval of another principal with the Backup Guard role: "
            f"POST /api/approvals/{approval.id}:approve before {approval.expires.isoformat()}",
            approval=approval.to_wire(),
        )

    def _entity(self, approval_id: str) -> Entity:
        entity = None
        if approval_id and len(approval_id) < 100 and all(c in "0123456789abcdef-" for c in approval_id):
            entity = self._state.get(APPROVALS, approval_id)
        if entity is None:
            raise UserError(ErrorCode.NOT_FOUND, f"approval request {approval_id!r} does not exist", target="id")
        return entity

    def get(self, approval_id: str, now: datetime) -> Approval:
        """One request (a pending one past its window shows Expired)."""
        approval = Approval._from(self._entity(approval_id))
        return self._aged(approval, now)

    @staticmethod
    def _aged(approval: Approval, now: datetime) -> Approval:
        if approval.status is ApprovalStatus.PENDING and now > approval.expires:
            return replace(approval, status=ApprovalStatus.EXPIRED)
        return approval

    def recent(self, now: datetime, days: int = 7) -> list[Approval]:
        """Requests created in the last ``days`` days, newest first."""
        since = now - timedelta(days=days)
        out = [
            self._aged(Approval._from(e), now)
            for e in self._state.query(
                "( PartitionKey eq @pk ) and ( RowKey lt @before )", {"pk": APPROVALS, "before": f"{_inverted(since)}."}
            )
        ]
        return sorted(out, key=lambda a: a.id)

    def approve(self, approval_id: str, approver: Principal, now: datetime) -> Approval:
        """Approve and run a pending request, once.

        403 when the approver made the request (a function key its own), 409 when it is not
        pending (ran already, running, failed) or its window passed (``UserErrorApprovalExpired``).
        """
        entity = self._entity(approval_id)
        approval = Approval._from(entity)
        if approval.status is not ApprovalStatus.PENDING:
            raise UserError(
                ErrorCode.CONFLICT,
                f"approval request {approval_id} is {approval.status.value}: an approved operation runs once",
                target="id",
            )
        if approver.id == approval.requested_by_id:
            raise UserError(
                ErrorCode.SELF_APPROVAL_NOT_ALLOWED,
                f"{approver.label} requested {approval.operation.value} and cannot approve it too",
                target="id",
            )
        if now > approval.expires:
            self._write(entity, replace(approval, status=ApprovalStatus.EXPIRED))
            raise UserError(
                ErrorCode.APPROVAL_EXPIRED,
                f"approval request {approval_id} expired at {approval.expires.isoformat()}",
                target="id",
            )
        running = replace(approval, status=ApprovalStatus.RUNNING, approved_by=approver.label, approved_time=now)
        try:
            entity = self._write(entity, running)
        except ETagMismatch as exc:
            raise UserError(
                ErrorCode.CONFLICT, f"approval request {approval_id} was approved by another call", target="id"
            ) from exc
        log.info(
            "approval %s: approved by %s; %s of %s runs",
            approval.id,
            approver.label,
            approval.operation,
            approval.target,
        )
        try:
            status, answer = EXECUTORS[approval.operation](approval.params, approval.body, now)
        except UserError as exc:
            status, answer = exc.http_status, error_body(exc)
        except Exception:
            # Recorded as failed, never left Running: the requester sends the operation again.
            log.exception("approval %s: %s failed", approval.id, approval.operation)
            failure = UserError(ErrorCode.INTERNAL, f"{approval.operation.value} failed inside pgvault")
            status, answer = failure.http_status, error_body(failure)
        done = replace(
            running,
            status=ApprovalStatus.EXECUTED if status < 400 else ApprovalStatus.FAILED,
            result_status=status,
            result=answer,
        )
        self._write(entity, done)
        return done

    def _write(self, entity: Entity, approval: Approval) -> Entity:
        return self._state.update(entity, approval._data())
