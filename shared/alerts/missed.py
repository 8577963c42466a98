"""Missed scheduled backups: a slot of an instance's policy with no successful backup by slot + grace.

A missed backup is an alert even when no job ran at all (the vault was down, the scheduler skipped the
instance): the check reads the policy's slots and the instance's recovery points, never the jobs. It
runs on its own timer (``functions/alerts.py``), reads every instance (O(instances) per run, plus the
newest points of those with a slot to judge) and remembers per instance until when it judged
(``alertcheck`` partition), so each slot is judged once; the alert's id comes from instance and slot,
so a slot judged twice (two processes) still raises one alert.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from shared.alerts.events import for_missed_backup, raise_alert
from shared.alerts.model import Alert
from shared.errors import UserError
from shared.instances import InstanceStore, ProtectionStatus
from shared.policies import PolicyService
from shared.policy import Policy, occurrences
from shared.policy.model import Schedule
from shared.recovery_points import RecoveryPointStore
from shared.storage import layout
from shared.storage.tables import Entity, EntityExists, ETagMismatch, StateStore

log = logging.getLogger(__name__)

DEFAULT_GRACE = timedelta(hours=6)
LOOKBACK = timedelta(days=7)
"""How far back a first check (or one after a long outage) judges slots: older misses are history."""
_TICK = timedelta(microseconds=1)


def missed_slots(
    schedule: Schedule, since: datetime, now: datetime, grace: timedelta, backups: Iterable[datetime]
) -> list[datetime]:
    """The slots in ``(since, now - grace]`` with no backup (a recovery point's time) in ``[slot, slot + grace]``."""
    slots = occurrences(schedule, since + _TICK, now - grace + _TICK)
    times = sorted(backups)
    return [s for s in slots if not any(s <= t <= s + grace for t in times)]


class MissedBackupCheck:
    """Judges the slots of every protected instance that passed their grace since the last check."""

    def __init__(self, state: StateStore) -> None:
        self._state = state
        self._instances = InstanceStore(state)
        self._policies = PolicyService(state)
        self._points = RecoveryPointStore(state)

    def run(self, now: datetime, grace: timedelta = DEFAULT_GRACE) -> list[Alert]:
        """Raise an alert for each newly missed slot; returns the alerts raised now."""
        raised: list[Alert] = []
        horizon = now - grace
        parsed: dict[str, Policy | None] = {}
        for instance in self._instances.all():
            name = instance.spec.name
            key = layout.row_key(name)
            marker = self._state.get(layout.ALERT_CHECK, key)
            since = max(marker["through"] if marker is not None else instance.created, now - LOOKBACK)
            protected = instance.protection_status is ProtectionStatus.PROTECTED and instance.retain_data is None
            if protected and horizon > since:
                policy = self._policy(instance.spec.policy_name, parsed)
                if policy is None:
                    continue  # judged again at the next run, once the policy reads
                try:
                    raised.extend(
                        self._judge(name, instance.spec.policy_name, policy.schedule, since=since, now=now, grace=grace)
                    )
                except UserError as exc:
                    log.error("instance %s: missed backups not checked: %s", name, exc)
                    continue
            # Stopped (or being deleted): its slots are not expected, so they are never judged later.
            self._advance(marker, key, name, max(horizon, since))
        return raised

    def _judge(
        self, name: str, policy_name: str, schedule: Schedule, *, since: datetime, now: datetime, grace: timedelta
    ) -> list[Alert]:
        first = occurrences(schedule, since + _TICK, now - grace + _TICK)
        if not first:
            return []
        times = self._backup_times(name, first[0])
        out = []
        for slot in missed_slots(schedule, since, now, grace, times):
            alert, created = raise_alert(self._state, for_missed_backup(name, policy_name, slot, slot + grace), now)
            if created:
                out.append(alert)
        return out

    def _backup_times(self, name: str, oldest_slot: datetime) -> Sequence[datetime]:
        """The times of ``name``'s recovery points from ``oldest_slot`` on (the partition reads newest first)."""
        times = []
        for point in self._points.of(name, include_deleting=True):
            if point.time < oldest_slot - timedelta(days=1):
                break
            times.append(point.time)
        return times

    def _policy(self, name: str, parsed: dict[str, Policy | None]) -> Policy | None:
        if name not in parsed:
            try:
                parsed[name] = self._policies.get(name).policy
            except UserError as exc:
                log.error("policy %s cannot be read for the missed-backup check: %s", name, exc.message)
                parsed[name] = None
        return parsed[name]

    def _advance(self, marker: Entity | None, key: str, name: str, through: datetime) -> None:
        data = {"through": through, "instance": name}
        try:
            if marker is None:
                self._state.insert(layout.ALERT_CHECK, key, data)
            elif through > marker["through"]:
                self._state.update(marker, data)
        except (EntityExists, ETagMismatch):
            log.info("instance %s: another process checked its missed backups at the same time", name)
