"""When an instance was last backed up and when its policy backs it up next (read-only).

The last backup is kept per instance in the ``lastbackup`` partition (``JobStore`` writes it when a
backup finishes), so the instances list reads one partition, not one history per instance; an
instance without that row is read from its job index once. The next one is derived from the
policy's schedule and ``now``. The next scheduled backup is shown only when the scheduler would take it: the
instance is protected and ready (see ``BackupStarter.schedule``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shared.errors import UserError
from shared.instances import Instance, ProtectionStatus, Readiness
from shared.jobs import Job, JobStore, Operation
from shared.jobs.store import LAST_BACKUP_STATUSES
from shared.policies import PolicyService
from shared.policy import Policy, next_occurrence
from shared.storage import layout
from shared.storage.tables import Entity, EntityExists, StateStore
from shared.wire import dump, iso_z
from shared.wire.instances import LastBackup

log = logging.getLogger(__name__)

# Finished backups that count as "the last backup": a Cancelled one (e.g. a skipped slot) never ran.
_ATTEMPTS = LAST_BACKUP_STATUSES


@dataclass(frozen=True)
class BackupTimes:
    """The last finished backup of an instance (if any) and its next scheduled one (if any)."""

    last_backup: Job | None
    next_scheduled: datetime | None

    def last_backup_wire(self) -> LastBackup | None:
        """The last finished backup as an instance's ``lastBackup`` shows it."""
        last = self.last_backup
        if last is None:
            return None
        return LastBackup(
            time=last.end_time or last.created,
            status=last.status,
            jobId=last.job_id,
            recoveryPointId=last.recovery_point_id,
            retentionTag=last.retention_tag,
        )

    def to_dict(self) -> dict[str, Any]:
        """``lastBackup`` (time, status, job, recovery point, tag) and ``nextScheduledBackup`` (ISO UTC)."""
        last = self.last_backup_wire()
        return {
            "lastBackup": None if last is None else dump(last),
            "nextScheduledBackup": None if self.next_scheduled is None else iso_z(self.next_scheduled),
        }


class BackupTimesReader:
    """Reads ``BackupTimes`` for instances; keeps each policy it parsed for the reader's lifetime."""

    def __init__(self, state: StateStore) -> None:
        self._state = state
        self._jobs = JobStore(state)
        self._policies = PolicyService(state)
        self._parsed: dict[str, Policy | None] = {}
        self._next: dict[tuple[str, datetime], datetime | None] = {}

    def _policy(self, name: str) -> Policy | None:
        if name not in self._parsed:
            try:
                self._parsed[name] = self._policies.get(name).policy
            except UserError as exc:
                log.warning("policy %s cannot be read for the next backup time: %s", name, exc.message)
                self._parsed[name] = None
        return self._parsed[name]

    def last_backup(self, instance: str) -> Job | None:
        """The newest backup job of ``instance`` that finished having run (Completed, with warnings, or Failed)."""
        return self._last(instance, self._state.get(layout.LAST_BACKUP, layout.row_key(instance)))

    def _last(self, instance: str, row: Entity | None) -> Job | None:
        """The last backup as its ``lastbackup`` row says; an instance without one (its backups are
        older than the row) is read from its history once, and the row written for the next reader."""
        if row is not None:
            return None if row.get("operation") is None else replace(Job._from(row), job_id=str(row["jobId"]))
        found = None
        for job in self._jobs.history(instance):
            if job.operation is Operation.BACKUP and job.status in _ATTEMPTS:
                found = job
                break
        data: dict[str, object] = {"none": True}
        if found is not None:
            data = {**{k: v for k, v in found._data().items() if k not in ("steps", "details")}, "jobId": found.job_id}
        with contextlib.suppress(EntityExists):  # a backup that finished meanwhile wrote a newer one
            self._state.insert(layout.LAST_BACKUP, layout.row_key(instance), data)
        return found

    def of_all(self, instances: Iterable[Instance], now: datetime) -> list[tuple[Instance, BackupTimes]]:
        """Both times for each instance: one read of the ``lastbackup`` partition, each policy once."""
        return self.of_rows(instances, {e.row_key: e for e in self._state.partition(layout.LAST_BACKUP)}, now)

    def of_range(
        self, instances: Iterable[Instance], lo: str, hi: str, now: datetime
    ) -> list[tuple[Instance, BackupTimes]]:
        """Both times for instances whose row keys lie in ``[lo, hi]`` (one page of the list): one range
        query of the ``lastbackup`` partition, whatever the vault holds outside it."""
        rows = self._state.query(layout.KEY_RANGE, {"pk": layout.LAST_BACKUP, "lo": lo, "hi": hi})
        return self.of_rows(instances, {e.row_key: e for e in rows}, now)

    def of_rows(
        self, instances: Iterable[Instance], rows: Mapping[str, Entity], now: datetime
    ) -> list[tuple[Instance, BackupTimes]]:
        """Both times for each instance from ``lastbackup`` rows already read (by row key), e.g. the
        range of one page of the instances list; an instance without a row is read from its history."""
        return [
            (
                i,
                BackupTimes(
                    self._last(i.spec.name, rows.get(layout.row_key(i.spec.name))), self.next_scheduled(i, now)
                ),
            )
            for i in instances
        ]

    def next_scheduled(self, instance: Instance, now: datetime) -> datetime | None:
        """The first slot of the instance's policy after ``now``, or None when the scheduler skips it."""
        if instance.protection_status is not ProtectionStatus.PROTECTED or instance.readiness is not Readiness.SUCCESS:
            return None
        key = (layout.row_key(instance.spec.policy_name), now)
        if key not in self._next:  # every instance of a policy has the same next slot
            policy = self._policy(instance.spec.policy_name)
            self._next[key] = None if policy is None else next_occurrence(policy.schedule, now)
        return self._next[key]

    def of(self, instance: Instance, now: datetime) -> BackupTimes:
        """Both times for ``instance`` as of ``now``."""
        return BackupTimes(self.last_backup(instance.spec.name), self.next_scheduled(instance, now))
