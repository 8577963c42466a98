"""The pure policy engine: parse Azure BackupPolicy JSON, schedule, tag, retain, simulate.

Everything here is a function of its inputs and of the instants passed in; nothing reads the
clock. See README.md in this folder for the rules it follows (time zones, DST, week start,
calendar arithmetic).
"""

from __future__ import annotations

from shared.policy.model import (
    AbsoluteMarker,
    BackupCriterion,
    BackupRule,
    CopyOption,
    CopySetting,
    DataStore,
    DayOfMonth,
    Month,
    Policy,
    RepeatingInterval,
    RetentionDuration,
    RetentionRule,
    Schedule,
    SourceLifecycle,
    TaggingCriterion,
    Weekday,
    WeekOfMonth,
)
from shared.policy.parse import parse_policy
from shared.policy.retention import Lifecycle, LifecycleEvent, lifecycle
from shared.policy.schedule import next_occurrence, occurrences
from shared.policy.simulation import MonthCount, SimulatedBackup, Simulation, simulate
from shared.policy.tagging import WEEK_STARTS_ON, Tagger, tag_backup, tag_on_demand
from shared.policy.timezones import resolve_time_zone

__all__ = [
    "WEEK_STARTS_ON",
    "AbsoluteMarker",
    "BackupCriterion",
    "BackupRule",
    "CopyOption",
    "CopySetting",
    "DataStore",
    "DayOfMonth",
    "Lifecycle",
    "LifecycleEvent",
    "Month",
    "MonthCount",
    "Policy",
    "RepeatingInterval",
    "RetentionDuration",
    "RetentionRule",
    "Schedule",
    "SimulatedBackup",
    "Simulation",
    "SourceLifecycle",
    "Tagger",
    "TaggingCriterion",
    "WeekOfMonth",
    "Weekday",
    "lifecycle",
    "next_occurrence",
    "occurrences",
    "parse_policy",
    "resolve_time_zone",
    "simulate",
    "tag_backup",
    "tag_on_demand",
]
