"""What the alert timers run, and the alerts list.

``deliver`` posts every pending alert to the webhook, at least once: a try first claims the alert (its
next attempt moved past the try, ETag-guarded, so two processes never post it at once), then posts,
then records the outcome. A failed try is retried with exponential backoff (``retry_delay``) until
``DELIVERY_WINDOW`` after the alert was raised; a process that dies after posting leaves the claim to
expire, and the alert is posted again (at least once, never a storm: one try per claim).

``check`` raises what no hook could: missed scheduled backups (``shared.alerts.missed``), and the
alerts of ended jobs whose hook failed to record them (a sweep of the jobs that ended since the last
check; the alert's id makes a second raise a no-op).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.alerts.events import for_job, raise_alert
from shared.alerts.missed import DEFAULT_GRACE, LOOKBACK, MissedBackupCheck
from shared.alerts.model import Alert, DeliveryState
from shared.alerts.store import DEFAULT_PAGE_SIZE, AlertCursor, AlertStore
from shared.alerts.webhook import Poster, document, post
from shared.jobs.model import Job, JobStatus, partition_for
from shared.storage import layout
from shared.storage.tables import ETagMismatch, StateStore

log = logging.getLogger(__name__)

FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=1)
DELIVERY_WINDOW = timedelta(hours=24)
"""An alert not delivered this long after it was raised is Abandoned (and listed so)."""
CLAIM = timedelta(minutes=2)
"""How long a try owns an alert: longer than one POST may take (webhook.TIMEOUT_SECONDS)."""
_JOB_SWEEP = "|ended-jobs"  # no instance name has a "|": never an instance's marker
_JOB_SWEEP_OVERLAP = timedelta(minutes=15)
_JOB_SWEEP_DAYS = 3  # a job ends at most this many UTC days after the day it was created in


def retry_delay(failed_tries: int) -> timedelta:
    """How long to wait after the ``failed_tries``-th failed try: 30 s, 1 min, 2 min, ... up to 1 h."""
    if failed_tries < 1:
        return timedelta(0)
    delay: timedelta = FIRST_RETRY * (2 ** min(failed_tries - 1, 20))
    return min(delay, MAX_RETRY)


@dataclass
class DeliveryReport:
    """What one delivery run did."""

    delivered: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    not_configured: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, int]:
        return {k: len(v) for k, v in vars(self).items()}


class AlertService:
    """Raise, deliver and list alerts."""

    def __init__(
        self,
        state: StateStore,
        *,
        vault_name: str,
        webhook_url: str | None,
        grace: timedelta = DEFAULT_GRACE,
        link_base: str | None = None,
        poster: Poster = post,
    ) -> None:
        self._state = state
        self._store = AlertStore(state)
        self._vault = vault_name
        self._url = webhook_url
        self._grace = grace
        self._link_base = link_base
        self._post = poster

    # -- delivery -------------------------------------------------------------------------------

    def deliver(self, now: datetime) -> DeliveryReport:
        """Post every alert due for delivery by ``now`` once; record each outcome."""
        report = DeliveryReport()
        for alert in self._store.pending(now, LOOKBACK + DELIVERY_WINDOW + timedelta(days=1)):
            try:
                self._deliver_one(alert, now, report)
            except ETagMismatch:
                log.info("alert %s: another process is delivering it", alert.alert_id)
        return report

    def _deliver_one(self, alert: Alert, now: datetime, report: DeliveryReport) -> None:
        if self._url is None:
            self._store.save(alert, delivery=DeliveryState.NOT_CONFIGURED, next_attempt=None)
            report.not_configured.append(alert.alert_id)
            return
        tries = alert.attempts + 1
        claimed = self._store.save(alert, attempts=tries, last_attempt=now, next_attempt=now + CLAIM)
        result = self._post(self._url, document(alert, self._vault, self._link_base))
        if result.delivered:
            self._store.save(claimed, delivery=DeliveryState.DELIVERED, delivered_time=now, last_error=None)
            log.info("alert %s delivered to the webhook (try %d)", alert.alert_id, tries)
            report.delivered.append(alert.alert_id)
            return
        raised = alert.raised or alert.time
        if now - raised >= DELIVERY_WINDOW:
            self._store.save(claimed, delivery=DeliveryState.ABANDONED, next_attempt=None, last_error=result.error)
            log.error(
                "alert %s: webhook failed every try for %s (%s); abandoned", alert.alert_id, now - raised, result.error
            )
            report.abandoned.append(alert.alert_id)
            return
        retry = now + retry_delay(tries)
        self._store.save(claimed, next_attempt=retry, last_error=result.error)
        log.warning("alert %s: webhook try %d failed (%s); next try at %s", alert.alert_id, tries, result.error, retry)
        report.failed.append(alert.alert_id)

    # -- checks ---------------------------------------------------------------------------------

    def check(self, now: datetime) -> dict[str, int]:
        """Raise the alerts of missed backups and of ended jobs not raised yet; how many of each."""
        jobs = self.sweep_ended_jobs(now)
        missed = MissedBackupCheck(self._state).run(now, self._grace)
        return {"jobs": len(jobs), "missedBackups": len(missed)}

    def sweep_ended_jobs(self, now: datetime) -> list[Alert]:
        """Raise the alerts of jobs that ended Failed or CompletedWithWarnings since the last sweep (the net
        under ``JobStore.finish``'s hook); returns those raised now."""
        marker = self._state.get(layout.ALERT_CHECK, _JOB_SWEEP)
        since = marker["through"] - _JOB_SWEEP_OVERLAP if marker is not None else now - timedelta(days=1)
        since = max(since, now - LOOKBACK)
        where = "PartitionKey eq @pk and endTime ge @since and ( status eq @failed or status eq @warned )"
        params: dict[str, Any] = {
            "since": since,
            "failed": JobStatus.FAILED.value,
            "warned": JobStatus.COMPLETED_WITH_WARNINGS.value,
        }
        raised = []
        day = now
        while day.date() >= (since - timedelta(days=_JOB_SWEEP_DAYS)).date():
            for entity in self._state.query(where, {**params, "pk": partition_for(day)}):
                alert = for_job(Job._from(entity))
                if alert is not None and self._store.get(alert.alert_id) is None:
                    recorded, created = raise_alert(self._state, alert, now)
                    if created:
                        raised.append(recorded)
            day -= timedelta(days=1)
        self._state.upsert(layout.ALERT_CHECK, _JOB_SWEEP, {"through": now})
        return raised

    # -- list -----------------------------------------------------------------------------------

    def page(
        self, now: datetime, days: int, *, top: int = DEFAULT_PAGE_SIZE, token: str | None = None, target: str = ""
    ) -> tuple[list[Alert], str | None]:
        """One page of the alerts of the last ``days`` days, newest first, and the next page's token."""
        cursor = AlertCursor.decode(token, now, target) if token else AlertCursor("", now - timedelta(days=days))
        alerts, after = self._store.page(cursor.since, top=top, after=cursor.after)
        return alerts, (AlertCursor(after, cursor.since).encode() if after else None)

