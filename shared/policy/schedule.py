"""When a weekly schedule fires. Pure functions of the schedule and the instants given.

Each ``R/<start>/P1W`` interval fires every week on the weekday of ``start`` at the wall-clock
time of ``start``, both read in the policy's time zone: a backup at 03:30 local stays at 03:30
local across daylight saving changes, so its UTC instant moves by the DST offset.

Wall-clock times that do not exist once a year or exist twice are resolved one way:

* In the spring-forward gap (02:30 in Europe/Berlin on the last Sunday of March) the time is
  read with the offset in force before the change, which lands the backup the gap's length
  later on the wall clock (02:30 CET = 03:30 CEST). This is ``zoneinfo``'s ``fold=0``.
* In the fall-back fold (01:30 in America/Los_Angeles on the first Sunday of November) the
  first of the two occurrences is used (01:30 PDT, not 01:30 PST), again ``fold=0``. The
  backup runs once, not twice.

No occurrence is earlier than its interval's start instant. All instants returned are UTC.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from shared.policy.model import RepeatingInterval, Schedule

UTC = dt.UTC
_WEEK = dt.timedelta(days=7)


def local_instant(day: dt.date, wall_time: dt.time, zone: ZoneInfo) -> dt.datetime:
    """The UTC instant of ``wall_time`` on ``day`` in ``zone``, gap and fold resolved as the module says."""
    # fold=0 is the default; named here because it is the rule the module documents.
    return dt.datetime.combine(day, wall_time, tzinfo=zone).replace(fold=0).astimezone(UTC)


def _require_aware(name: str, value: dt.datetime) -> None:
    # A naive datetime would silently mean the machine's local zone: refuse it as a programming error.
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")


def _first_candidate_day(interval: RepeatingInterval, zone: ZoneInfo, not_before: dt.datetime) -> dt.date:
    """The first day on the interval's weekday whose occurrence could be at or after ``not_before``."""
    # One day of slack covers the gap shift and zones far from UTC; extra candidates are filtered out.
    earliest = max(not_before, interval.start).astimezone(zone).date() - dt.timedelta(days=1)
    ahead = (interval.weekday.iso_index - earliest.weekday()) % 7
    return earliest + dt.timedelta(days=ahead)


def _interval_occurrences(
    interval: RepeatingInterval, zone: ZoneInfo, start: dt.datetime, end: dt.datetime
) -> list[dt.datetime]:
    found: list[dt.datetime] = []
    day = _first_candidate_day(interval, zone, start)
    while True:
        instant = local_instant(day, interval.local_time, zone)
        if instant >= end:
            return found
        if instant >= start and instant >= interval.start:
            found.append(instant)
        day += _WEEK


def occurrences(schedule: Schedule, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """Every instant the schedule fires in ``[start, end)``, sorted, UTC-aware.

    ``start`` and ``end`` must be timezone-aware. Empty when ``end <= start``.
    """
    _require_aware("start", start)
    _require_aware("end", end)
    if end <= start:
        return []
    found: set[dt.datetime] = set()
    for interval in schedule.intervals:
        found.update(_interval_occurrences(interval, schedule.zone, start, end))
    return sorted(found)


def next_occurrence(schedule: Schedule, after: dt.datetime) -> dt.datetime:
    """The first instant the schedule fires strictly after ``after`` (timezone-aware), UTC-aware.

    A weekly schedule always fires again, so there is always an answer.
    """
    _require_aware("after", after)
    best: dt.datetime | None = None
    for interval in schedule.intervals:
        day = _first_candidate_day(interval, schedule.zone, after)
        while True:
            instant = local_instant(day, interval.local_time, schedule.zone)
            if instant > after and instant >= interval.start:
                break
            day += _WEEK
        if best is None or instant < best:
            best = instant
    if best is None:  # parse_policy refuses a schedule without intervals
        raise ValueError("the schedule has no repeating time intervals")
    return best
