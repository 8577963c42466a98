"""The alert record: what happened (its kind, subject, error) and how far its delivery got.

An alert's id is derived from the event it reports (``alert_id``): the same event raised twice, by a
retried job, a repeated timer or two processes at once, is one row, so one alert. Ids begin with the
inverted event time, as job ids do, so the alerts partition reads newest first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shared.jobs.model import new_job_id
from shared.storage.tables import Entity

if TYPE_CHECKING:  # the wire model imports this module's enums
    from shared.wire import alerts as wire_alerts


class AlertKind(StrEnum):
    """What an alert reports."""

    JOB_FAILED = "JobFailed"
    """A job (any operation) ended Failed."""
    JOB_COMPLETED_WITH_WARNINGS = "JobCompletedWithWarnings"
    """A job ended CompletedWithWarnings."""
    RECOVERY_POINT_CORRUPTED = "RecoveryPointCorrupted"
    """A read found a recovery point's blob failing its checksum; the point is marked Corrupted."""
    MISSED_BACKUP = "MissedBackup"
    """A slot of the instance's policy passed, plus the grace, without a successful backup."""
    PRIVILEGE_DRIFT = "PrivilegeDrift"
    """A validation failed where the instance's previous validation had succeeded."""


class Severity(StrEnum):
    """How urgent an alert is (Azure Monitor's names for the two levels pgvault uses)."""

    ERROR = "Error"
    WARNING = "Warning"


SEVERITY: dict[AlertKind, Severity] = {
    AlertKind.JOB_FAILED: Severity.ERROR,
    AlertKind.JOB_COMPLETED_WITH_WARNINGS: Severity.WARNING,
    AlertKind.RECOVERY_POINT_CORRUPTED: Severity.ERROR,
    AlertKind.MISSED_BACKUP: Severity.ERROR,
    AlertKind.PRIVILEGE_DRIFT: Severity.ERROR,
}


class DeliveryState(StrEnum):
    """Where an alert's webhook delivery is."""

    PENDING = "Pending"
    """Not delivered yet: the delivery timer posts it at ``nextAttempt`` (again after a failure)."""
    DELIVERED = "Delivered"
    """The webhook answered 2xx."""
    NOT_CONFIGURED = "NotConfigured"
    """No webhook was set (PGVAULT_ALERT_WEBHOOK_URL) when it was due: recorded and logged only."""
    ABANDONED = "Abandoned"
    """Every try within the delivery window failed; ``lastError`` says what the last one met."""

    @property
    def settled(self) -> bool:
        """Whether delivery is over (nothing more is sent)."""
        return self is not DeliveryState.PENDING


def alert_id(kind: AlertKind, key: str, at: datetime) -> str:
    """The id of the alert of event ``key`` of ``kind`` that happened at ``at``: the same event, the same id."""
    return new_job_id(at, key=f"alert/{kind.value}/{key}")


@dataclass(frozen=True)
class Alert:
    """One raised alert and its delivery. Frozen: a change is a new record written with the old one's ETag."""

    alert_id: str
    kind: AlertKind
    time: datetime
    """When the event happened (the job's end, the corruption's discovery, the slot's deadline)."""
    instance: str
    message: str
    raised: datetime | None = None
    """When the alert was recorded."""
    job_id: str | None = None
    operation: str | None = None
    status: str | None = None
    """The job's status, or the point's integrity, or ``Missed``."""
    error_code: str | None = None
    recommended_action: str | None = None
    recovery_point_id: str | None = None
    slot: datetime | None = None
    """The missed slot (MissedBackup)."""
    delivery: DeliveryState = DeliveryState.PENDING
    attempts: int = 0
    next_attempt: datetime | None = None
    last_attempt: datetime | None = None
    delivered_time: datetime | None = None
    last_error: str | None = None
    """What the last failed try met (an HTTP status or the kind of network error; never the URL)."""
    etag: str | None = None

    @property
    def severity(self) -> Severity:
        return SEVERITY[self.kind]

    def links(self) -> dict[str, str | None]:
        """API paths of the alert's job and instance (None where there is none)."""
        instance = f"/api/backupInstances/{quote(self.instance, safe='')}"
        return {"job": f"/api/backupJobs/{self.job_id}" if self.job_id else None, "instance": instance}

    def to_wire(self) -> wire_alerts.Alert:
        """The alert as ``GET /api/alerts`` answers it."""
        from shared.wire import alerts as wire

        return wire.Alert(
            alertId=self.alert_id,
            kind=self.kind,
            severity=self.severity,
            time=self.time,
            raisedTime=self.raised,
            instance=self.instance,
            jobId=self.job_id,
            operation=self.operation,
            status=self.status,
            errorCode=self.error_code,
            message=self.message,
            recommendedAction=self.recommended_action,
            recoveryPointId=self.recovery_point_id,
            slot=self.slot,
            delivery=wire.AlertDelivery(
                state=self.delivery,
                attempts=self.attempts,
                nextAttemptTime=self.next_attempt if not self.delivery.settled else None,
                lastAttemptTime=self.last_attempt,
                deliveredTime=self.delivered_time,
                lastError=self.last_error,
            ),
            links=wire.AlertLinks.model_validate(self.links()),
        )

    def data(self) -> dict[str, Any]:
        """The alert's properties as the state table keeps them."""
        return {
            "kind": self.kind.value,
            "time": self.time,
            "raised": self.raised,
            "instance": self.instance,
            "message": self.message,
            "jobId": self.job_id,
            "operation": self.operation,
            "status": self.status,
            "errorCode": self.error_code,
            "recommendedAction": self.recommended_action,
            "recoveryPointId": self.recovery_point_id,
            "slot": self.slot,
            "delivery": self.delivery.value,
            "attempts": self.attempts,
            "nextAttempt": self.next_attempt,
            "lastAttempt": self.last_attempt,
            "deliveredTime": self.delivered_time,
            "lastError": self.last_error,
        }

    @classmethod
    def from_entity(cls, e: Entity) -> Alert:
        return cls(
            alert_id=e.row_key,
            kind=AlertKind(e["kind"]),
            time=_utc(e["time"]),
            instance=str(e["instance"]),
            message=str(e.get("message") or ""),
            raised=_utc(e.get("raised")),
            job_id=e.get("jobId"),
            operation=e.get("operation"),
            status=e.get("status"),
            error_code=e.get("errorCode"),
            recommended_action=e.get("recommendedAction"),
            recovery_point_id=e.get("recoveryPointId"),
            slot=_utc(e.get("slot")),
            delivery=DeliveryState(e.get("delivery") or DeliveryState.PENDING),
            attempts=int(e.get("attempts") or 0),
            next_attempt=_utc(e.get("nextAttempt")),
            last_attempt=_utc(e.get("lastAttempt")),
            delivered_time=_utc(e.get("deliveredTime")),
            last_error=e.get("lastError"),
            etag=e.etag,
        )

    def with_changes(self, **changes: Any) -> Alert:
        return replace(self, **changes)


def _utc(value: Any) -> Any:
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
