"""Tags: first successful backup of the year / month / week (Sunday start), priority, generic criteria."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.policy import Policy, Tagger, Weekday, occurrences, parse_policy, tag_backup
from shared.policy.tagging import WEEK_STARTS_ON
from tests.examples import EXAMPLES
from tests.moments import utc

ARCHIVE_DOC: dict[str, Any] = json.loads((EXAMPLES / "weekly-mon-wed-fri-with-archive.json").read_text())["properties"]
UTC = dt.UTC


def policy_in(zone: str, *, criteria: list[dict[str, Any]] | None = None) -> Policy:
    doc = copy.deepcopy(ARCHIVE_DOC)
    doc["policyRules"][0]["trigger"]["schedule"]["timeZone"] = zone
    if criteria is not None:
        doc["policyRules"][0]["trigger"]["taggingCriteria"] = criteria
    return parse_policy(doc)


def test_week_starts_on_sunday() -> None:
    assert WEEK_STARTS_ON is Weekday.SUNDAY


def test_first_backups_of_2025_get_yearly_then_weekly_then_default() -> None:
    policy = policy_in("UTC")
    times = occurrences(policy.schedule, utc(2025, 1, 1), utc(2025, 2, 10))
    tags = [tag_backup(policy, t, times) for t in times]
    assert list(zip(times[:7], tags[:7], strict=True)) == [
        (utc(2025, 1, 6, 22), "Yearly"),
        (utc(2025, 1, 8, 22), "Default"),
        (utc(2025, 1, 10, 22), "Default"),
        (utc(2025, 1, 13, 22), "Weekly"),
        (utc(2025, 1, 15, 22), "Default"),
        (utc(2025, 1, 17, 22), "Default"),
        (utc(2025, 1, 20, 22), "Weekly"),
    ]
    assert tags[times.index(utc(2025, 2, 3, 22))] == "Monthly"


def test_failed_monday_makes_wednesday_the_first_of_the_week() -> None:
    policy = policy_in("UTC")
    succeeded = [utc(2025, 1, 6, 22), utc(2025, 1, 8, 22), utc(2025, 1, 10, 22)]  # 13 January failed
    assert tag_backup(policy, utc(2025, 1, 15, 22), succeeded) == "Weekly"


def test_first_of_year_is_counted_in_the_policy_zone() -> None:
    # 2024-12-31 23:30 UTC is already 1 January 2025 in Berlin, so it is the first of 2025 there.
    berlin, utc_policy = policy_in("W. Europe Standard Time"), policy_in("UTC")
    earlier = [utc(2024, 12, 27, 22)]
    assert tag_backup(berlin, utc(2024, 12, 31, 23, 30), earlier) == "Yearly"
    assert tag_backup(utc_policy, utc(2024, 12, 31, 23, 30), earlier) == "Weekly"


def test_sunday_is_the_first_day_of_the_week() -> None:
    # Saturday backup then Sunday backup: the Sunday one opens a new week.
    criteria = [
        {"isDefault": True, "taggingPriority": 99, "tagInfo": {"tagName": "Default"}},
        {"taggingPriority": 20, "tagInfo": {"tagName": "Weekly"}, "criteria": [{"absoluteCriteria": ["FirstOfWeek"]}]},
    ]
    policy = policy_in("UTC", criteria=criteria)
    saturday, sunday, monday = utc(2025, 1, 11, 9), utc(2025, 1, 12, 9), utc(2025, 1, 13, 9)
    assert tag_backup(policy, sunday, [saturday]) == "Weekly"
    assert tag_backup(policy, monday, [saturday, sunday]) == "Default"


def test_lowest_priority_number_wins_whatever_the_order() -> None:
    criteria = [
        {"isDefault": True, "taggingPriority": 99, "tagInfo": {"tagName": "Default"}},
        {"taggingPriority": 5, "tagInfo": {"tagName": "Weekly"}, "criteria": [{"absoluteCriteria": ["FirstOfWeek"]}]},
        {"taggingPriority": 6, "tagInfo": {"tagName": "Yearly"}, "criteria": [{"absoluteCriteria": ["FirstOfYear"]}]},
    ]
    policy = policy_in("UTC", criteria=criteria)
    assert tag_backup(policy, utc(2025, 1, 6, 22), []) == "Weekly"


def test_all_backup_marker_tags_every_backup() -> None:
    criteria = [
        {"isDefault": True, "taggingPriority": 99, "tagInfo": {"tagName": "Default"}},
        {"taggingPriority": 1, "tagInfo": {"tagName": "Monthly"}, "criteria": [{"absoluteCriteria": ["AllBackup"]}]},
    ]
    policy = policy_in("UTC", criteria=criteria)
    times = occurrences(policy.schedule, utc(2025, 1, 1), utc(2025, 3, 1))
    assert {tag_backup(policy, t, times) for t in times} == {"Monthly"}


def test_generic_last_friday_of_the_month() -> None:
    criteria = [
        {"isDefault": True, "taggingPriority": 99, "tagInfo": {"tagName": "Default"}},
        {
            "taggingPriority": 1,
            "tagInfo": {"tagName": "Monthly"},
            "criteria": [{"daysOfTheWeek": ["Friday"], "weeksOfTheMonth": ["Last"]}],
        },
    ]
    policy = policy_in("UTC", criteria=criteria)
    times = occurrences(policy.schedule, utc(2025, 1, 1), utc(2025, 4, 1))
    monthly = [t for t in times if tag_backup(policy, t, times) == "Monthly"]
    assert monthly == [utc(2025, 1, 31, 22), utc(2025, 2, 28, 22), utc(2025, 3, 28, 22)]


def test_generic_first_of_month_day_and_months_of_year() -> None:
    criteria = [
        {"isDefault": True, "taggingPriority": 99, "tagInfo": {"tagName": "Default"}},
        {
            "taggingPriority": 1,
            "tagInfo": {"tagName": "Yearly"},
            "criteria": [{"monthsOfYear": ["March", "September"], "daysOfMonth": [{"date": 3}, {"isLast": True}]}],
        },
    ]
    policy = policy_in("UTC", criteria=criteria)
    times = occurrences(policy.schedule, utc(2025, 1, 1), utc(2026, 1, 1))
    yearly = [t for t in times if tag_backup(policy, t, times) == "Yearly"]
    # Mon 3 March, Mon 31 March; 3 September is a Wednesday, 30 September a Tuesday (no backup).
    assert yearly == [utc(2025, 3, 3, 22), utc(2025, 3, 31, 22), utc(2025, 9, 3, 22)]


def test_later_times_passed_as_earlier_are_ignored() -> None:
    policy = policy_in("UTC")
    times = occurrences(policy.schedule, utc(2025, 1, 1), utc(2026, 1, 1))
    assert tag_backup(policy, times[0], times) == "Yearly"


ZONES = ["UTC", "W. Europe Standard Time", "Pacific Standard Time", "Tokyo Standard Time", "Pacific/Kiritimati"]


@settings(max_examples=40, deadline=None)
@given(zone=st.sampled_from(ZONES), failures=st.lists(st.booleans(), min_size=320, max_size=320))
def test_each_success_gets_one_tag_and_yearly_is_first_success_of_local_year(zone: str, failures: list[bool]) -> None:
    policy = policy_in(zone)
    times = occurrences(policy.schedule, utc(2024, 12, 1), utc(2027, 1, 15))[: len(failures)]
    succeeded = [t for t, failed in zip(times, failures, strict=False) if not failed]
    tagger = Tagger(policy)
    for i, time in enumerate(succeeded):
        tag = tag_backup(policy, time, succeeded[:i])
        assert tag in policy.tags
        assert tagger.tag(time) == tag  # the incremental tagger agrees with the from-scratch one
        local_year = time.astimezone(policy.zone).year
        first_of_year = all(e.astimezone(policy.zone).year != local_year for e in succeeded[:i])
        assert (tag == "Yearly") == first_of_year
        if tag == "Monthly":
            month = time.astimezone(policy.zone).strftime("%Y-%m")
            assert all(e.astimezone(policy.zone).strftime("%Y-%m") != month for e in succeeded[:i])
