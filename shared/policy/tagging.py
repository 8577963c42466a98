"""Which retention tag a backup gets. Pure functions of the policy and the backup times given.

A scheduled backup gets the tag of the highest-priority tagging criterion (lowest
``taggingPriority`` number) it meets, else the default tag. Calendar periods are read in the
policy's time zone:

* ``FirstOfYear`` / ``FirstOfMonth`` / ``FirstOfDay``: no earlier successful backup in the same
  local calendar year / month / day.
* ``FirstOfWeek``: no earlier successful backup in the same local week, and a week starts on
  **Sunday** (00:00 local). Azure does not state the first day of the week for Data Protection
  policies; Sunday is what its REST ``DayOfWeek`` enum, its .NET ``DayOfWeek`` and its default
  PostgreSQL policies (start dates on Sundays, e.g. ``R/2021-08-22T02:00:00+00:00/P1W``) use.
  See ``README.md``. Change :data:`WEEK_STARTS_ON` if Azure is shown to differ.
* ``AllBackup``: every backup.
* Generic criteria (``daysOfTheWeek``, ``weeksOfTheMonth``, ``monthsOfYear``, ``daysOfMonth``):
  the local date matches every given field (any value within a field), and the backup is the
  first successful one of that local day.

"Earlier successful backups" are whatever the caller passes; pgvault passes the scheduled
backups of the instance that succeeded (on-demand backups carry the tag they asked for).
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable

from shared.errors import ErrorCode, UserError
from shared.policy.model import (
    AbsoluteMarker,
    BackupCriterion,
    Policy,
    TaggingCriterion,
    Weekday,
    WeekOfMonth,
)

WEEK_STARTS_ON = Weekday.SUNDAY
"""The first day of the week for ``FirstOfWeek`` (see the module docstring for the source)."""

ON_DEMAND_TAG_TARGET = "backupRuleOptions.triggerOption.retentionTagOverride"

_ORDINAL_WEEKS = (WeekOfMonth.FIRST, WeekOfMonth.SECOND, WeekOfMonth.THIRD, WeekOfMonth.FOURTH)

# A period key identifies the local calendar period a backup falls in, per marker.
PeriodKey = tuple[str, int, int, int]


def week_start(day: dt.date) -> dt.date:
    """The first day of the week (per :data:`WEEK_STARTS_ON`) that contains ``day``."""
    back = (day.weekday() - WEEK_STARTS_ON.iso_index) % 7
    return day - dt.timedelta(days=back)


def period_keys(local_day: dt.date) -> dict[AbsoluteMarker, PeriodKey]:
    """The year, month, week and day a local date belongs to, as comparable keys."""
    week = week_start(local_day)
    return {
        AbsoluteMarker.FIRST_OF_YEAR: ("Y", local_day.year, 0, 0),
        AbsoluteMarker.FIRST_OF_MONTH: ("M", local_day.year, local_day.month, 0),
        AbsoluteMarker.FIRST_OF_WEEK: ("W", week.year, week.month, week.day),
        AbsoluteMarker.FIRST_OF_DAY: ("D", local_day.year, local_day.month, local_day.day),
    }


def _week_of_month_matches(day: dt.date, weeks: tuple[WeekOfMonth, ...]) -> bool:
    ordinal = (day.day - 1) // 7  # 0 for days 1-7: the first such weekday of the month
    if ordinal < len(_ORDINAL_WEEKS) and _ORDINAL_WEEKS[ordinal] in weeks:
        return True
    days_in_month = calendar.monthrange(day.year, day.month)[1]
    return WeekOfMonth.LAST in weeks and day.day + 7 > days_in_month


def generic_date_matches(criterion: BackupCriterion, day: dt.date) -> bool:
    """True when the local date meets every generic field the criterion gives."""
    if criterion.months_of_year and day.month not in {m.number for m in criterion.months_of_year}:
        return False
    if criterion.days_of_month and not any(d.matches(day) for d in criterion.days_of_month):
        return False
    if criterion.days_of_week and Weekday.of(day) not in criterion.days_of_week:
        return False
    return not (criterion.weeks_of_month and not _week_of_month_matches(day, criterion.weeks_of_month))


def _criterion_matches(criterion: BackupCriterion, local_day: dt.date, seen: set[PeriodKey]) -> bool:
    keys = period_keys(local_day)
    if criterion.absolute:
        # AllBackup always matches; a FirstOf* marker matches when its period has no earlier backup.
        return any(m is AbsoluteMarker.ALL_BACKUP or keys[m] not in seen for m in criterion.absolute)
    first_of_day = keys[AbsoluteMarker.FIRST_OF_DAY] not in seen
    return first_of_day and generic_date_matches(criterion, local_day)


def _choose(criteria: tuple[TaggingCriterion, ...], local_day: dt.date, seen: set[PeriodKey]) -> str:
    default = None
    for tagging in criteria:  # sorted by priority at parse time
        if tagging.is_default:
            default = tagging.tag_name
            continue
        if any(_criterion_matches(c, local_day, seen) for c in tagging.criteria):
            return tagging.tag_name
    if default is None:  # parse_policy guarantees a default criterion
        raise ValueError("the policy has no default tagging criterion")
    return default


class Tagger:
    """Tags a run of scheduled backups in time order, remembering the periods already served.

    Equivalent to calling :func:`tag_backup` with every earlier time, in O(1) per backup; the
    simulator uses it. Call :meth:`tag` with non-decreasing times of successful backups.
    """

    def __init__(self, policy: Policy) -> None:
        self._policy = policy
        self._seen: set[PeriodKey] = set()

    def tag(self, backup_time: dt.datetime) -> str:
        """The tag of this successful backup; it then counts as an earlier successful backup."""
        local_day = backup_time.astimezone(self._policy.zone).date()
        tag = _choose(self._policy.tagging_criteria, local_day, self._seen)
        self._seen.update(period_keys(local_day).values())
        return tag


def tag_backup(policy: Policy, backup_time: dt.datetime, earlier_successful_times: Iterable[dt.datetime]) -> str:
    """The retention tag of a scheduled backup at ``backup_time`` (timezone-aware).

    ``earlier_successful_times`` are the instants of the instance's earlier successful
    backups; times at or after ``backup_time`` are ignored, so passing every known time is
    safe. The answer is always one of ``policy.tags``.
    """
    if backup_time.tzinfo is None:
        raise ValueError("backup_time must be timezone-aware")
    seen: set[PeriodKey] = set()
    for earlier in earlier_successful_times:
        if earlier < backup_time:
            seen.update(period_keys(earlier.astimezone(policy.zone).date()).values())
    return _choose(policy.tagging_criteria, backup_time.astimezone(policy.zone).date(), seen)


def tag_on_demand(policy: Policy, requested_tag: object) -> str:
    """The tag of an on-demand backup: the requested retention rule's name, as the policy spells it.

    Raises ``UserError(INVALID_REQUEST)`` targeting
    ``backupRuleOptions.triggerOption.retentionTagOverride`` when the policy has no retention
    rule of that name (matched exactly, else ignoring case).
    """
    allowed = ", ".join(policy.tags)
    if not isinstance(requested_tag, str) or not requested_tag:
        raise UserError(
            ErrorCode.INVALID_REQUEST,
            f"{ON_DEMAND_TAG_TARGET} must be the name of a retention rule of the policy (one of: {allowed}).",
            target=ON_DEMAND_TAG_TARGET,
        )
    if requested_tag in policy.tags:
        return requested_tag
    for tag in policy.tags:
        if tag.casefold() == requested_tag.casefold():
            return tag
    raise UserError(
        ErrorCode.INVALID_REQUEST,
        f"{ON_DEMAND_TAG_TARGET}: the policy has no retention rule named {requested_tag!r}; use one of: {allowed}.",
        target=ON_DEMAND_TAG_TARGET,
    )
