"""Dry run of a policy: every scheduled backup in a range, its tag, archive move and deletion.

The simulation assumes every backup succeeds and that protection starts at ``start``: no
backup before ``start`` counts, so the first backup of the range is the first of its week,
month and year. A point is alive in a datastore at instant ``t`` when ``t`` falls in its
half-open stay there (see :mod:`shared.policy.retention`); counts "at the end" of a range or
a month are taken at that instant, so a point expiring exactly then is not counted.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Any

from shared.errors import ErrorCode, UserError
from shared.policy.model import CopyOption, DataStore, Policy
from shared.policy.retention import Lifecycle, lifecycle
from shared.policy.schedule import occurrences
from shared.policy.tagging import Tagger
from shared.wire import dump, iso_z
from shared.wire import policies as wire

UTC = dt.UTC


@dataclass(frozen=True)
class SimulatedBackup:
    """One scheduled backup of the simulation and the life of its point."""

    time: dt.datetime
    tag: str
    lifecycle: Lifecycle

    def to_wire(self) -> wire.SimulatedBackup:
        """The contract's backup entry: time, tag, vaultExpiry, archiveMove?, archiveExpiry?, copyOption?, deletion.

        ``archiveMove`` is when the point reaches ArchiveStore: at vault expiry for
        CopyOnExpiryOption, at backup time for ImmediateCopyOption (``copyOption`` says which).
        """
        life = self.lifecycle
        archive: dict[str, Any] = {}
        if life.archive_copy is not None and life.archive_expiry is not None and life.copy_option is not None:
            archive = {
                "archiveMove": life.archive_copy,
                "archiveExpiry": life.archive_expiry,
                "copyOption": life.copy_option,
            }
        return wire.SimulatedBackup(
            time=self.time, tag=self.tag, vaultExpiry=life.vault_expiry, deletion=life.deletion, **archive
        )


@dataclass(frozen=True)
class MonthCount:
    """Points alive per datastore at the end of one (UTC) month of the simulation."""

    month: str
    """``YYYY-MM``."""
    at: dt.datetime
    """The instant counted at: 00:00 UTC on the next month's first day, or the simulation's end."""
    backups: int
    """Backups taken in the month (within the simulated range)."""
    vault_store: int
    archive_store: int

    def to_dict(self) -> dict[str, Any]:
        """JSON form: month, at, backups, VaultStore, ArchiveStore."""
        return {
            "month": self.month,
            "at": iso_z(self.at),  # the CLI's month table; not an API shape
            "backups": self.backups,
            DataStore.VAULT_STORE.value: self.vault_store,
            DataStore.ARCHIVE_STORE.value: self.archive_store,
        }


@dataclass(frozen=True)
class Simulation:
    """The result of :func:`simulate`: backups in time order, and counts derived from them."""

    policy: Policy
    start: dt.datetime
    end: dt.datetime
    backups: tuple[SimulatedBackup, ...]

    def live_points(self, at: dt.datetime) -> dict[str, int]:
        """Points of this simulation alive at ``at`` per datastore: ``{"VaultStore": n, "ArchiveStore": m}``.

        A point copied immediately to the archive counts in both stores while it is in both.
        """
        counts = {store.value: 0 for store in DataStore}
        for backup in self.backups:
            if backup.time > at:
                break  # backups are in time order
            for store in backup.lifecycle.datastores_at(at):
                counts[store.value] += 1
        return counts

    def backups_per_tag(self) -> dict[str, int]:
        """Number of backups per tag, every tag of the policy listed (0 when unused)."""
        counted = Counter(b.tag for b in self.backups)
        return {tag: counted.get(tag, 0) for tag in self.policy.tags}

    def monthly_counts(self) -> tuple[MonthCount, ...]:
        """Points alive per datastore at the end of each UTC month touched by ``[start, end)``.

        The last entry is counted at ``end`` when the range stops inside a month.
        """
        results: list[MonthCount] = []
        start, end = self.start.astimezone(UTC), self.end.astimezone(UTC)
        month_start = start
        while month_start < end:
            first = month_start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            next_month = (first + dt.timedelta(days=32)).replace(day=1)
            boundary = min(next_month, end)
            taken = sum(1 for b in self.backups if month_start <= b.time < boundary)
            live = self.live_points(boundary)
            results.append(
                MonthCount(
                    month=f"{first.year:04d}-{first.month:02d}",
                    at=boundary,
                    backups=taken,
                    vault_store=live[DataStore.VAULT_STORE.value],
                    archive_store=live[DataStore.ARCHIVE_STORE.value],
                )
            )
            month_start = boundary
        return tuple(results)

    def summary(self) -> dict[str, Any]:
        """Totals: livePoints at ``end`` per datastore, backupsPerTag, archive moves and deletions in range."""
        return dump(self.summary_wire())

    def summary_wire(self) -> wire.SimulationSummary:
        """The totals as the API answers them."""
        in_range = [b.lifecycle for b in self.backups]
        return wire.SimulationSummary(
            start=self.start,  # type: ignore[call-arg]  # "from" and "to" on the wire
            end=self.end,
            timeZone=self.policy.schedule.time_zone,
            backups=len(self.backups),
            backupsPerTag=self.backups_per_tag(),
            livePoints=self.live_points(self.end),
            archiveMoves=sum(1 for life in in_range if life.archive_copy is not None and life.archive_copy < self.end),
            deletions=sum(1 for life in in_range if life.deletion < self.end),
            immediateArchiveCopies=sum(1 for life in in_range if life.copy_option is CopyOption.IMMEDIATE),
            firstBackup=self.backups[0].time if self.backups else None,
            lastBackup=self.backups[-1].time if self.backups else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The contract's simulation shape: ``{"backups": [...], "summary": {...}}``."""
        return dump(self.to_wire())

    def to_wire(self) -> wire.Simulation:
        """The simulation as the API answers it."""
        return wire.Simulation(backups=[b.to_wire() for b in self.backups], summary=self.summary_wire())


# A point may live 20 years after its backup (10 in VaultStore, then 10 in ArchiveStore), and every
# instant must stay inside datetime's years 1..9999: simulations are kept well inside both.
EARLIEST_START = dt.datetime(1900, 1, 1, tzinfo=UTC)
LATEST_END = dt.datetime(9900, 1, 1, tzinfo=UTC)
# Longer ranges are refused: enough for the 10-year maximum retention twice over.
MAX_SIMULATION = dt.timedelta(days=366 * 20)


def _check_calendar(start: dt.datetime, end: dt.datetime, start_field: str, end_field: str) -> None:
    if not EARLIEST_START <= start < LATEST_END:
        raise UserError(
            ErrorCode.INVALID_REQUEST,
            f"{start_field} must be from {EARLIEST_START.date()} to before {LATEST_END.date()}, "
            f"got {start.isoformat()}",
            target=start_field,
        )
    if not EARLIEST_START <= end <= LATEST_END:
        raise UserError(
            ErrorCode.INVALID_REQUEST,
            f"{end_field} must be from {EARLIEST_START.date()} to {LATEST_END.date()} (the retention of its last "
            f"backup must fit in the calendar), got {end.isoformat()}",
            target=end_field,
        )


def check_range(start: dt.datetime, end: dt.datetime, *, start_field: str = "from", end_field: str = "to") -> None:
    """``InvalidRequest`` naming the field unless ``[start, end)`` is a forward range of at most
    ``MAX_SIMULATION`` inside the simulated years (what the API and the CLI accept)."""
    _check_calendar(start, end, start_field, end_field)
    if end <= start:
        raise UserError(
            ErrorCode.INVALID_REQUEST,
            f"{end_field} ({end.isoformat()}) must be after {start_field} ({start.isoformat()})",
            target=end_field,
        )
    if end - start > MAX_SIMULATION:
        raise UserError(
            ErrorCode.INVALID_REQUEST,
            f"a simulation covers at most {MAX_SIMULATION.days} days; ask for a shorter range",
            target=end_field,
        )


def simulate(policy: Policy, start: dt.datetime, end: dt.datetime) -> Simulation:
    """Every scheduled backup in ``[start, end)`` (timezone-aware), assuming all succeed, with tags and lifecycles.

    Deterministic: the same policy and range give an equal result. An instant outside the
    simulated years (``EARLIEST_START`` .. ``LATEST_END``) raises ``UserError(InvalidRequest)``
    naming ``from`` or ``to``.
    """
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    _check_calendar(start, end, "from", "to")
    tagger = Tagger(policy)
    backups = []
    for time in occurrences(policy.schedule, start, end):
        tag = tagger.tag(time)
        backups.append(SimulatedBackup(time=time, tag=tag, lifecycle=lifecycle(policy, tag, time)))
    return Simulation(policy=policy, start=start.astimezone(UTC), end=end.astimezone(UTC), backups=tuple(backups))
