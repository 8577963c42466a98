"""The shapes of who-may-do-what: ``/api/me``, ``/api/auditLog``, ``/api/approvals``."""

from __future__ import annotations

from typing import Any, Literal

from shared.wire.common import Response, UtcTime

RoleName = Literal["Backup Reader", "Backup Operator", "Backup Contributor", "Backup Guard"]


class Me(Response):
    """The caller as pgvault sees it, and what it may do (the dashboard hides the rest)."""

    name: str
    id: str
    functionKey: bool
    """Called with a function key: the emergency admin (every role)."""
    roles: list[RoleName]
    """The roles held (a function key: every role)."""
    authMode: Literal["FunctionKeys", "AppServiceAuthentication"]
    multiUserAuthorization: bool
    """Critical operations wait for a Backup Guard's approval."""
    allowed: list[str]
    """Every ``METHOD route`` this caller may call (routes as in the OpenAPI paths, without /api)."""


class AuditOutcome(Response):
    """How the call ended."""

    status: int
    """The HTTP status answered."""
    errorCode: str | None = None
    """The error code when the call was refused or failed."""


class AuditRecord(Response):
    """One mutating call: who, when, what, how it ended. Never a secret (bodies are redacted)."""

    id: str
    time: UtcTime
    principal: str
    """The caller's name, or "function key"."""
    principalId: str
    method: str
    route: str
    """The route template, e.g. backupInstances/{name}:stopProtection."""
    target: str | None = None
    """The route's parameters (the instance, policy, job or approval named), e.g. name=db1."""
    body: Any = None
    """The request body, passwords, keys, tokens, connection strings and SAS signatures redacted."""
    outcome: AuditOutcome
    approvalId: str | None = None
    """The approval request the call created or ran under, for critical operations."""


class AuditLog(Response):
    """A page of the audit trail, newest first."""

    value: list[AuditRecord]
    nextLink: str | None = None


class ApprovalRequest(Response):
    """A critical operation waiting for (or after) a Backup Guard's approval."""

    id: str
    operation: str
    """What was asked: StopProtectionWithDelete, ShortenPolicyRetention, ..."""
    method: str
    route: str
    target: str
    reason: str
    """Why the operation is critical, e.g. which retention rule gets shorter."""
    requestedBy: str
    requestedById: str
    created: UtcTime
    expires: UtcTime
    status: Literal["Pending", "Running", "Executed", "Failed", "Expired"]
    approvedBy: str | None = None
    approvedTime: UtcTime | None = None
    resultStatus: int | None = None
    """The HTTP status the operation answered when it ran."""
    result: Any = None
    """The operation's answer when it ran (its error when it failed)."""


class ApprovalRequestList(Response):
    """Approval requests of the last days, newest first."""

    value: list[ApprovalRequest]


class ApprovalPending(Response):
    """202: the critical operation is recorded and waits for a Backup Guard's approval."""

    approvalId: str
    status: Literal["Pending"]
    expires: UtcTime
    message: str
    approval: ApprovalRequest
