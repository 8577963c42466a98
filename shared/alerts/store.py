"""The alerts outbox: one row per alert in the state table, every write ETag-guarded.

An alert is recorded once (an insert keyed by its event-derived id; a second raise finds it) with its
delivery ``Pending``; the delivery timer reads the pending ones and writes each try's outcome. The
list of ``GET /api/alerts`` reads the one partition by row key range, newest first, in pages.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.alerts.model import Alert, DeliveryState
from shared.errors import ErrorCode, UserError
from shared.jobs.model import _inverted
from shared.page_token import seal, unseal
from shared.storage import layout
from shared.storage.tables import Entity, EntityExists, StateStore

MAX_LIST_DAYS = 90
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def _before(since: datetime) -> str:
    """A row key bound: every alert id of an event at or after ``since`` sorts below it."""
    return f"{_inverted(since)}."


class AlertStore:
    """Alerts in the state table's ``alerts`` partition."""

    def __init__(self, state: StateStore) -> None:
        self._state = state

    def record(self, alert: Alert, now: datetime) -> tuple[Alert, bool]:
        """Record ``alert`` as raised at ``now``, due for delivery at once; when its id is there already (the
        same event raised again) return that one and False."""
        new = alert.with_changes(raised=now, next_attempt=now, delivery=DeliveryState.PENDING, attempts=0)
        try:
            entity = self._state.insert(layout.ALERTS, alert.alert_id, new.data())
        except EntityExists:
            existing = self.get(alert.alert_id)
            return (existing if existing is not None else new), False
        return new.with_changes(etag=entity.etag), True

    def get(self, alert_id: str) -> Alert | None:
        """Alert ``alert_id``, or None."""
        entity = self._state.get(layout.ALERTS, alert_id)
        return Alert.from_entity(entity) if entity is not None else None

    def save(self, alert: Alert, **changes: Any) -> Alert:
        """Write ``changes`` if the alert is unchanged since read (``ETagMismatch`` otherwise)."""
        new = alert.with_changes(**changes)
        written = self._state.update(Entity(layout.ALERTS, alert.alert_id, {}, alert.etag), new.data())
        return new.with_changes(etag=written.etag)

    def pending(self, now: datetime, window: timedelta) -> Iterator[Alert]:
        """Alerts of events since ``now - window`` whose delivery is Pending and due by ``now``, oldest first."""
        rows = self._state.query(
            "PartitionKey eq @pk and RowKey lt @before and delivery eq @pending",
            {"pk": layout.ALERTS, "before": _before(now - window), "pending": DeliveryState.PENDING.value},
        )
        due = [a for a in map(Alert.from_entity, rows) if a.next_attempt is None or a.next_attempt <= now]
        yield from reversed(due)

    def page(self, since: datetime, *, top: int = DEFAULT_PAGE_SIZE, after: str = "") -> tuple[list[Alert], str | None]:
        """Up to ``top`` alerts of events since ``since``, newest first, after row key ``after``; and the row key
        the next page starts after (None on the last page)."""
        items, _ = self._state.page(
            "PartitionKey eq @pk and RowKey gt @after and RowKey lt @before",
            {"pk": layout.ALERTS, "after": after, "before": _before(since)},
            page_size=top + 1,
        )
        alerts = [Alert.from_entity(e) for e in items[:top]]
        return alerts, (alerts[-1].alert_id if len(items) > top else None)


@dataclass(frozen=True)
class AlertCursor:
    """Where a page of the alerts list starts: after an alert id, within the first page's window."""

    after: str
    since: datetime

    def encode(self) -> str:
        """An opaque, URL-safe token with a checksum."""
        return seal({"a": self.after, "s": int(self.since.timestamp() * 1000)}, "alerts")

    @classmethod
    def decode(cls, token: str, now: datetime, target: str = "continuationToken") -> AlertCursor:
        """The cursor in ``token``; 400 ``InvalidRequest`` naming ``target`` unless pgvault wrote it."""
        try:
            fields = unseal(token, "alerts")
            after, since = str(fields["a"]), datetime.fromtimestamp(int(fields["s"]) / 1000, UTC)
        except (ValueError, KeyError, TypeError, OverflowError, UnicodeDecodeError) as exc:
            raise UserError(
                ErrorCode.INVALID_REQUEST,
                f"{target} is not a continuation token of the alerts list",
                target=target,
                recommended_action=f"Follow the previous page's nextLink as it is, or start again without {target}.",
            ) from exc
        if now - since > timedelta(days=MAX_LIST_DAYS, minutes=5):
            raise UserError(ErrorCode.INVALID_REQUEST, f"{target} is outside the alerts list's window", target=target)
        return cls(after, since)
