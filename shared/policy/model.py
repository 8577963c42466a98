"""The backup policy model: frozen records built by :func:`shared.policy.parse.parse_policy`.

Every record can give back its part of Azure's BackupPolicy JSON (``to_dict``), normalised:
the bare properties form, every ``objectType`` written out, ``targetDataStoreCopySettings``
always a list, the implicit Default retention rule and tagging criterion made explicit. Parsing
that output again gives an equal :class:`Policy`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

import isodate

# Azure's names for the datasource types this vault protects: single server and flexible server.
DATASOURCE_TYPE_SINGLE_SERVER = "Microsoft.DBforPostgreSQL/servers/databases"
DATASOURCE_TYPE_FLEXIBLE_SERVER = "Microsoft.DBforPostgreSQL/flexibleServers/databases"
SUPPORTED_DATASOURCE_TYPES = (DATASOURCE_TYPE_SINGLE_SERVER, DATASOURCE_TYPE_FLEXIBLE_SERVER)

DEFAULT_RULE_NAME = "Default"
DEFAULT_TAGGING_PRIORITY = 99  # what Azure's portal and default policies write for the Default tag


class DataStore(StrEnum):
    """Where a recovery point lives (Azure's ``dataStoreType``)."""

    VAULT_STORE = "VaultStore"
    """Vault-standard: blob storage in the hot/cool tier, restorable at once."""
    ARCHIVE_STORE = "ArchiveStore"
    """Vault-archive: blob Archive tier, rehydrated before a restore."""


class CopyOption(StrEnum):
    """When a point is copied from VaultStore to ArchiveStore (Azure's ``copyAfter.objectType``)."""

    COPY_ON_EXPIRY = "CopyOnExpiryOption"
    """Moved to the archive when its vault-standard retention ends: it lives in one store at a time."""
    IMMEDIATE = "ImmediateCopyOption"
    """Copied to the archive at backup time: it lives in both stores until the vault copy expires."""


class AbsoluteMarker(StrEnum):
    """Azure's ``absoluteCriteria`` values: which backup of a calendar period gets a tag."""

    ALL_BACKUP = "AllBackup"
    """Every backup."""
    FIRST_OF_DAY = "FirstOfDay"
    """The first successful backup of the local calendar day."""
    FIRST_OF_WEEK = "FirstOfWeek"
    """The first successful backup of the local week (weeks start on Sunday, see README)."""
    FIRST_OF_MONTH = "FirstOfMonth"
    """The first successful backup of the local calendar month."""
    FIRST_OF_YEAR = "FirstOfYear"
    """The first successful backup of the local calendar year."""


class Weekday(StrEnum):
    """Azure's ``DayOfWeek`` names."""

    MONDAY = "Monday"
    TUESDAY = "Tuesday"
    WEDNESDAY = "Wednesday"
    THURSDAY = "Thursday"
    FRIDAY = "Friday"
    SATURDAY = "Saturday"
    SUNDAY = "Sunday"

    @property
    def iso_index(self) -> int:
        """0 for Monday .. 6 for Sunday, as :meth:`datetime.date.weekday` counts."""
        return list(Weekday).index(self)

    @classmethod
    def of(cls, day: dt.date) -> Weekday:
        """The weekday of a date."""
        return list(cls)[day.weekday()]


class WeekOfMonth(StrEnum):
    """Azure's ``WeekNumber`` names: which occurrence of a weekday in its month."""

    FIRST = "First"
    SECOND = "Second"
    THIRD = "Third"
    FOURTH = "Fourth"
    LAST = "Last"


class Month(StrEnum):
    """Azure's ``Month`` names."""

    JANUARY = "January"
    FEBRUARY = "February"
    MARCH = "March"
    APRIL = "April"
    MAY = "May"
    JUNE = "June"
    JULY = "July"
    AUGUST = "August"
    SEPTEMBER = "September"
    OCTOBER = "October"
    NOVEMBER = "November"
    DECEMBER = "December"

    @property
    def number(self) -> int:
        """1 for January .. 12 for December."""
        return list(Month).index(self) + 1


@dataclass(frozen=True)
class RetentionDuration:
    """An ISO 8601 retention duration in whole years, months and days (weeks count as 7 days).

    ``text`` is the duration as the user wrote it; it is what ``to_dict`` gives back.
    """

    text: str
    years: int = 0
    months: int = 0
    days: int = 0

    def after(self, start: dt.datetime) -> dt.datetime:
        """``start`` plus this duration, by isodate's calendar arithmetic.

        Years and months are added first, the day clamped to the end of a shorter month
        (2025-01-31 + P1M = 2025-02-28; 2024-02-29 + P1Y = 2025-02-28), then the days. The
        time of day and the time zone of ``start`` are kept.
        """
        later: dt.datetime = start + isodate.Duration(days=self.days, months=self.months, years=self.years)
        return later

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class DayOfMonth:
    """Azure's ``Day``: a day number (1..28) or the last day of the month."""

    date: int
    is_last: bool = False

    def matches(self, day: dt.date) -> bool:
        """True when ``day`` is this day of its month."""
        if self.is_last:
            return (day + dt.timedelta(days=1)).month != day.month
        return day.day == self.date

    def to_dict(self) -> dict[str, Any]:
        """Azure's JSON form."""
        return {"date": self.date, "isLast": self.is_last}


@dataclass(frozen=True)
class BackupCriterion:
    """One ``ScheduleBasedBackupCriteria``: absolute markers, or a day/week/month pattern.

    A criterion holds either ``absolute`` markers (any of them may match) or the generic
    fields; within a generic field any value may match, and every given field must match.
    """

    absolute: tuple[AbsoluteMarker, ...] = ()
    days_of_week: tuple[Weekday, ...] = ()
    weeks_of_month: tuple[WeekOfMonth, ...] = ()
    months_of_year: tuple[Month, ...] = ()
    days_of_month: tuple[DayOfMonth, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Azure's JSON form, with only the fields in use."""
        body: dict[str, Any] = {"objectType": "ScheduleBasedBackupCriteria"}
        if self.absolute:
            body["absoluteCriteria"] = [m.value for m in self.absolute]
        if self.days_of_week:
            body["daysOfTheWeek"] = [d.value for d in self.days_of_week]
        if self.weeks_of_month:
            body["weeksOfTheMonth"] = [w.value for w in self.weeks_of_month]
        if self.months_of_year:
            body["monthsOfYear"] = [m.value for m in self.months_of_year]
        if self.days_of_month:
            body["daysOfMonth"] = [d.to_dict() for d in self.days_of_month]
        return body


@dataclass(frozen=True)
class TaggingCriterion:
    """Which backups get ``tag_name``; the lowest ``priority`` number wins when several match."""

    tag_name: str
    priority: int
    is_default: bool
    criteria: tuple[BackupCriterion, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Azure's JSON form."""
        body: dict[str, Any] = {
            "isDefault": self.is_default,
            "taggingPriority": self.priority,
            "tagInfo": {"tagName": self.tag_name},
        }
        if self.criteria:
            body["criteria"] = [c.to_dict() for c in self.criteria]
        return body


@dataclass(frozen=True)
class RepeatingInterval:
    """One ``R/<start>/P1W`` entry: a weekly backup at ``local_time`` on ``weekday``, from ``start``."""

    text: str
    start: dt.datetime
    """The interval's start instant, UTC."""
    weekday: Weekday
    """The weekday of ``start`` in the policy's zone."""
    local_time: dt.time
    """The wall-clock time of ``start`` in the policy's zone (naive)."""


@dataclass(frozen=True)
class Schedule:
    """A weekly schedule: one or more weekdays at a wall-clock time in ``zone``."""

    time_zone: str
    """The zone as the user wrote it (an IANA or a Windows name)."""
    zone: ZoneInfo
    intervals: tuple[RepeatingInterval, ...]

    def to_dict(self) -> dict[str, Any]:
        """Azure's JSON form."""
        return {"timeZone": self.time_zone, "repeatingTimeIntervals": [i.text for i in self.intervals]}


@dataclass(frozen=True)
class BackupRule:
    """The one ``AzureBackupRule``: when backups run and how they are tagged."""

    name: str
    schedule: Schedule
    tagging_criteria: tuple[TaggingCriterion, ...]
    """Sorted by priority, highest priority (lowest number) first."""
    data_store: DataStore = DataStore.VAULT_STORE
    backup_type: str = "Full"

    @property
    def default_criterion(self) -> TaggingCriterion:
        """The criterion with ``isDefault: true`` (parsing guarantees there is exactly one)."""
        return next(c for c in self.tagging_criteria if c.is_default)

    def to_dict(self) -> dict[str, Any]:
        """Azure's JSON form."""
        return {
            "name": self.name,
            "objectType": "AzureBackupRule",
            "backupParameters": {"objectType": "AzureBackupParams", "backupType": self.backup_type},
            "dataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": self.data_store.value},
            "trigger": {
                "objectType": "ScheduleBasedTriggerContext",
                "schedule": self.schedule.to_dict(),
                "taggingCriteria": [c.to_dict() for c in self.tagging_criteria],
            },
        }


@dataclass(frozen=True)
class CopySetting:
    """A ``targetDataStoreCopySettings`` entry: copy to ``target`` as ``option`` says."""

    option: CopyOption
    target: DataStore = DataStore.ARCHIVE_STORE

    def to_dict(self) -> dict[str, Any]:
        """Azure's JSON form."""
        return {
            "copyAfter": {"objectType": self.option.value},
            "dataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": self.target.value},
        }


@dataclass(frozen=True)
class SourceLifecycle:
    """How long a point stays in ``source`` and where it is copied."""

    source: DataStore
    delete_after: RetentionDuration
    copies: tuple[CopySetting, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Azure's JSON form."""
        return {
            "sourceDataStore": {"objectType": "DataStoreInfoBase", "dataStoreType": self.source.value},
            "deleteAfter": {"objectType": "AbsoluteDeleteOption", "duration": self.delete_after.text},
            "targetDataStoreCopySettings": [c.to_dict() for c in self.copies],
        }


@dataclass(frozen=True)
class RetentionRule:
    """An ``AzureRetentionRule``: the lifecycle of points whose tag is ``name``."""

    name: str
    is_default: bool
    vault: SourceLifecycle
    """The VaultStore lifecycle (every rule has one)."""
    archive: SourceLifecycle | None = None
    """The ArchiveStore lifecycle, when the rule copies points to the archive."""

    @property
    def copy_option(self) -> CopyOption | None:
        """How points reach the archive, or None when they never do."""
        return self.vault.copies[0].option if self.vault.copies else None

    def to_dict(self) -> dict[str, Any]:
        """Azure's JSON form."""
        lifecycles = [self.vault.to_dict()]
        if self.archive is not None:
            lifecycles.append(self.archive.to_dict())
        return {
            "name": self.name,
            "objectType": "AzureRetentionRule",
            "isDefault": self.is_default,
            "lifecycles": lifecycles,
        }


@dataclass(frozen=True)
class Policy:
    """A validated backup policy. Build it with :func:`shared.policy.parse_policy`."""

    datasource_types: tuple[str, ...]
    backup_rule: BackupRule
    retention_rules: tuple[RetentionRule, ...]
    """In the order the user gave them; the implicit Default rule when none was given."""

    @property
    def backup_rule_name(self) -> str:
        """The name of the AzureBackupRule (what on-demand requests send as ``ruleName``)."""
        return self.backup_rule.name

    @property
    def schedule(self) -> Schedule:
        """The weekly schedule."""
        return self.backup_rule.schedule

    @property
    def zone(self) -> ZoneInfo:
        """The policy's time zone, in which weeks, months and years are counted."""
        return self.backup_rule.schedule.zone

    @property
    def tagging_criteria(self) -> tuple[TaggingCriterion, ...]:
        """The tagging criteria, highest priority first."""
        return self.backup_rule.tagging_criteria

    @property
    def rule_names(self) -> tuple[str, ...]:
        """The retention rule names, which are also the tags a backup can carry."""
        return tuple(r.name for r in self.retention_rules)

    @property
    def tags(self) -> tuple[str, ...]:
        """Same as :attr:`rule_names`: a tag names the retention rule that keeps the point."""
        return self.rule_names

    @property
    def default_tag(self) -> str:
        """The tag of backups no other criterion matches."""
        return self.backup_rule.default_criterion.tag_name

    @property
    def data_stores(self) -> tuple[DataStore, ...]:
        """The datastores any rule uses, VaultStore first."""
        stores = [DataStore.VAULT_STORE]
        if any(r.archive is not None for r in self.retention_rules):
            stores.append(DataStore.ARCHIVE_STORE)
        return tuple(stores)

    def retention_rule(self, tag: str) -> RetentionRule:
        """The retention rule for ``tag``; KeyError when the policy has none of that name."""
        for rule in self.retention_rules:
            if rule.name == tag:
                return rule
        raise KeyError(tag)

    def to_dict(self) -> dict[str, Any]:
        """The normalised Azure BackupPolicy JSON, bare properties form."""
        return {
            "objectType": "BackupPolicy",
            "datasourceTypes": list(self.datasource_types),
            "policyRules": [self.backup_rule.to_dict()] + [r.to_dict() for r in self.retention_rules],
        }
