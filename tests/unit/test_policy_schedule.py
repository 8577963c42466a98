"""Weekly schedules in a time zone: wall-clock times kept across DST, gap and fold resolved one way."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.policy import Policy, next_occurrence, occurrences, parse_policy
from tests.examples import EXAMPLES
from tests.moments import utc

SUNDAY: dict[str, Any] = json.loads((EXAMPLES / "sunday-default-only.json").read_text())
UTC = dt.UTC


def policy_with(time_zone: str, *intervals: str) -> Policy:
    doc = copy.deepcopy(SUNDAY)
    doc["policyRules"][0]["trigger"]["schedule"] = {"timeZone": time_zone, "repeatingTimeIntervals": list(intervals)}
    return parse_policy(doc)


def sundays_between(policy: Policy, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    return occurrences(policy.schedule, start, end)


# --- Europe: W. Europe Standard Time = Europe/Berlin; CET +01:00, CEST +02:00 --------------------


def test_berlin_0330_stays_0330_local_across_spring_forward() -> None:
    policy = parse_policy(json.loads((EXAMPLES / "sunday-default-only.json").read_text()))
    assert sundays_between(policy, utc(2025, 3, 20), utc(2025, 4, 7)) == [
        utc(2025, 3, 23, 2, 30),  # 03:30 CET
        utc(2025, 3, 30, 1, 30),  # 03:30 CEST, the day clocks go forward at 02:00
        utc(2025, 4, 6, 1, 30),
    ]


def test_berlin_0330_stays_0330_local_across_fall_back() -> None:
    policy = parse_policy(json.loads((EXAMPLES / "sunday-default-only.json").read_text()))
    assert sundays_between(policy, utc(2025, 10, 15), utc(2025, 11, 3)) == [
        utc(2025, 10, 19, 1, 30),  # 03:30 CEST
        utc(2025, 10, 26, 2, 30),  # 03:30 CET, after the 03:00 -> 02:00 change
        utc(2025, 11, 2, 2, 30),
    ]


def test_berlin_0230_in_the_spring_gap_runs_an_hour_later_on_the_wall_clock() -> None:
    policy = policy_with("W. Europe Standard Time", "R/2025-03-02T02:30:00+01:00/P1W")
    found = sundays_between(policy, utc(2025, 3, 20), utc(2025, 4, 7))
    assert found == [utc(2025, 3, 23, 1, 30), utc(2025, 3, 30, 1, 30), utc(2025, 4, 6, 0, 30)]
    zone = ZoneInfo("Europe/Berlin")
    assert found[1].astimezone(zone).strftime("%H:%M %Z") == "03:30 CEST"


def test_berlin_0230_in_the_autumn_fold_runs_once_at_the_first_occurrence() -> None:
    policy = policy_with("Europe/Berlin", "R/2025-10-05T02:30:00+02:00/P1W")
    found = sundays_between(policy, utc(2025, 10, 20), utc(2025, 11, 3))
    assert found == [utc(2025, 10, 26, 0, 30), utc(2025, 11, 2, 1, 30)]  # 02:30 CEST, then 02:30 CET
    assert next_occurrence(policy.schedule, utc(2025, 10, 26, 0, 30)) == utc(2025, 11, 2, 1, 30)


# --- America: Pacific Standard Time = America/Los_Angeles; PST -08:00, PDT -07:00 ---------------


def test_pacific_0230_in_the_spring_gap_runs_at_0330_pdt() -> None:
    policy = policy_with("Pacific Standard Time", "R/2025-03-02T02:30:00-08:00/P1W")
    found = sundays_between(policy, utc(2025, 3, 1), utc(2025, 3, 20))
    assert found == [utc(2025, 3, 2, 10, 30), utc(2025, 3, 9, 10, 30), utc(2025, 3, 16, 9, 30)]
    zone = ZoneInfo("America/Los_Angeles")
    assert found[1].astimezone(zone).strftime("%H:%M %Z") == "03:30 PDT"
    assert found[2].astimezone(zone).strftime("%H:%M %Z") == "02:30 PDT"


def test_pacific_0130_in_the_fold_runs_once_at_0130_pdt() -> None:
    policy = policy_with("Pacific Standard Time", "R/2025-10-26T01:30:00-07:00/P1W")
    found = sundays_between(policy, utc(2025, 10, 20), utc(2025, 11, 12))
    assert found == [utc(2025, 10, 26, 8, 30), utc(2025, 11, 2, 8, 30), utc(2025, 11, 9, 9, 30)]
    zone = ZoneInfo("America/Los_Angeles")
    assert [t.astimezone(zone).strftime("%H:%M %Z") for t in found] == ["01:30 PDT", "01:30 PDT", "01:30 PST"]


def test_pacific_wall_time_kept_across_both_transitions() -> None:
    policy = policy_with("Pacific Standard Time", "R/2025-01-05T09:00:00-08:00/P1W")
    zone = ZoneInfo("America/Los_Angeles")
    year = sundays_between(policy, utc(2025, 1, 1), utc(2026, 1, 1))
    assert len(year) == 52
    assert {t.astimezone(zone).strftime("%a %H:%M") for t in year} == {"Sun 09:00"}
    assert {t.utcoffset() for t in year} == {dt.timedelta(0)}


# --- general rules ------------------------------------------------------------------------------


def test_nothing_before_the_interval_start() -> None:
    policy = policy_with("UTC", "R/2025-06-02T06:00:00+00:00/P1W")
    assert occurrences(policy.schedule, utc(2025, 1, 1), utc(2025, 6, 2, 6)) == []
    assert occurrences(policy.schedule, utc(2025, 1, 1), utc(2025, 6, 10)) == [utc(2025, 6, 2, 6), utc(2025, 6, 9, 6)]
    assert next_occurrence(policy.schedule, utc(2020, 1, 1)) == utc(2025, 6, 2, 6)


def test_next_occurrence_is_strictly_after() -> None:
    policy = policy_with("UTC", "R/2025-01-06T22:00:00+00:00/P1W", "R/2025-01-08T22:00:00+00:00/P1W")
    assert next_occurrence(policy.schedule, utc(2025, 1, 6, 22)) == utc(2025, 1, 8, 22)
    assert next_occurrence(policy.schedule, utc(2025, 1, 6, 21, 59, second=59)) == utc(2025, 1, 6, 22)


def test_start_offset_different_from_zone_is_read_in_the_zone() -> None:
    # 03:30+00:00 is 04:30 in Berlin in winter: the backup is on Sunday at 04:30 local.
    policy = policy_with("Europe/Berlin", "R/2025-03-02T03:30:00+00:00/P1W")
    (interval,) = policy.schedule.intervals
    assert (interval.weekday.value, interval.local_time) == ("Sunday", dt.time(4, 30))


def test_naive_instants_are_refused() -> None:
    policy = policy_with("UTC", "R/2025-01-06T22:00:00+00:00/P1W")
    with pytest.raises(ValueError, match="timezone-aware"):
        next_occurrence(policy.schedule, dt.datetime(2025, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        occurrences(policy.schedule, dt.datetime(2025, 1, 1), utc(2025, 2, 1))


ZONES = ["W. Europe Standard Time", "Pacific Standard Time", "UTC", "Australia/Lord_Howe", "Asia/Kolkata"]


@settings(max_examples=60, deadline=None)
@given(
    zone=st.sampled_from(ZONES),
    day=st.integers(min_value=0, max_value=6),
    minute=st.integers(min_value=0, max_value=24 * 60 - 1),
    after=st.datetimes(min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2030, 1, 1), timezones=st.just(UTC)),
)
def test_next_occurrence_agrees_with_occurrences_and_keeps_the_wall_clock(
    zone: str, day: int, minute: int, after: dt.datetime
) -> None:
    start_day = dt.date(2024, 12, 2) + dt.timedelta(days=day)
    start = dt.datetime.combine(start_day, dt.time(minute // 60, minute % 60), tzinfo=UTC)
    policy = policy_with(zone, f"R/{start.isoformat()}/P1W")
    found = next_occurrence(policy.schedule, after)
    assert found > after
    assert found - after <= dt.timedelta(days=7, hours=3)
    assert occurrences(policy.schedule, after + dt.timedelta(microseconds=1), found) == []
    assert occurrences(policy.schedule, after, found + dt.timedelta(seconds=1))[-1] == found
    (interval,) = policy.schedule.intervals
    local = found.astimezone(policy.zone)
    assert local.date().weekday() == interval.weekday.iso_index
    wall = dt.datetime.combine(local.date(), interval.local_time, tzinfo=policy.zone)
    # The wall time is kept, except in a spring-forward gap, where it moves forward by the gap.
    assert local.replace(tzinfo=None) == wall.replace(tzinfo=None) or (
        wall.astimezone(UTC).astimezone(policy.zone).replace(tzinfo=None) == local.replace(tzinfo=None)
    )
