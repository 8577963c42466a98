"""An alert as the API shows it (``GET /api/alerts``)."""

from __future__ import annotations

from pydantic import Field

from shared.alerts.model import AlertKind, DeliveryState, Severity
from shared.jobs import _JOB_ID
from shared.wire.common import Response, UtcTime


class AlertDelivery(Response):
    """How far the alert's webhook delivery got."""

    state: DeliveryState
    attempts: int = Field(ge=0)
    """Tries made so far."""
    nextAttemptTime: UtcTime | None
    """When the next try is due (null once delivery is over)."""
    lastAttemptTime: UtcTime | None
    deliveredTime: UtcTime | None
    lastError: str | None
    """What the last failed try met: an HTTP status, a timeout, a connection failure (never the URL)."""


class AlertLinks(Response):
    """API paths of the alert's job (null when it has none) and instance."""

    job: str | None
    instance: str


class Alert(Response):
    """One raised alert: what happened, to which instance and job, and whether it was delivered."""

    alertId: str = Field(pattern=_JOB_ID.pattern)
    """Derived from the event: the same event raised twice is one alert."""
    kind: AlertKind
    severity: Severity
    time: UtcTime
    """When the event happened (a job's end, a corruption's discovery, a missed slot's deadline)."""
    raisedTime: UtcTime | None
    instance: str
    jobId: str | None
    operation: str | None
    status: str | None
    errorCode: str | None
    message: str
    recommendedAction: str | None
    recoveryPointId: str | None
    slot: UtcTime | None
    """The scheduled slot a MissedBackup alert is about."""
    delivery: AlertDelivery
    links: AlertLinks


class AlertList(Response):
    """A page of alerts, newest first."""

    value: list[Alert]
    nextLink: str | None = None
    """URL of the next page; absent on the last page."""
