"""Lifecycles: vault expiry, archive move or copy, final deletion, calendar arithmetic in UTC."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.policy import CopyOption, DataStore, LifecycleEvent, Policy, lifecycle, parse_policy
from tests.examples import EXAMPLES
from tests.moments import utc

ARCHIVE_DOC: dict[str, Any] = json.loads((EXAMPLES / "weekly-mon-wed-fri-with-archive.json").read_text())["properties"]
POLICY = parse_policy(ARCHIVE_DOC)
UTC = dt.UTC


def immediate_policy() -> Policy:
    doc = copy.deepcopy(ARCHIVE_DOC)
    doc["policyRules"][3]["lifecycles"][0]["targetDataStoreCopySettings"][0]["copyAfter"]["objectType"] = (
        "ImmediateCopyOption"
    )
    return parse_policy(doc)


def with_default_duration(duration: str) -> Policy:
    doc = copy.deepcopy(ARCHIVE_DOC)
    doc["policyRules"][1]["lifecycles"][0]["deleteAfter"]["duration"] = duration
    return parse_policy(doc)


def test_default_point_lives_three_months_in_vault_only() -> None:
    life = lifecycle(POLICY, "Default", utc(2025, 1, 8, 22))
    assert life.vault_expiry == life.deletion == utc(2025, 4, 8, 22)
    assert (life.archived, life.archive_copy, life.archive_expiry, life.copy_option) == (False, None, None, None)
    assert life.events() == ((utc(2025, 4, 8, 22), LifecycleEvent.DELETE),)


def test_yearly_point_moves_to_archive_on_expiry_and_stays_ten_years_there() -> None:
    life = lifecycle(POLICY, "Yearly", utc(2025, 1, 6, 22))
    assert life.copy_option is CopyOption.COPY_ON_EXPIRY
    assert life.vault_expiry == life.archive_copy == utc(2026, 1, 6, 22)
    assert life.archive_expiry == life.deletion == utc(2036, 1, 6, 22)
    assert life.datastores_at(utc(2026, 1, 6, 21, 59)) == {DataStore.VAULT_STORE}
    assert life.datastores_at(utc(2026, 1, 6, 22)) == {DataStore.ARCHIVE_STORE}
    assert life.datastores_at(utc(2036, 1, 6, 22)) == frozenset()
    assert [e for _, e in life.events()] == [LifecycleEvent.ARCHIVE_MOVE, LifecycleEvent.DELETE]


def test_weekly_point_lives_twelve_weeks() -> None:
    assert lifecycle(POLICY, "Weekly", utc(2025, 1, 13, 22)).deletion == utc(2025, 4, 7, 22)


def test_immediate_copy_is_in_both_stores_until_vault_expiry() -> None:
    policy = immediate_policy()
    life = lifecycle(policy, "Monthly", utc(2025, 2, 3, 22))
    assert life.copy_option is CopyOption.IMMEDIATE
    assert life.archive_copy == utc(2025, 2, 3, 22)
    assert life.vault_expiry == utc(2025, 8, 3, 22)
    assert life.archive_expiry == life.deletion == utc(2027, 2, 3, 22)
    assert life.datastores_at(utc(2025, 5, 1)) == {DataStore.VAULT_STORE, DataStore.ARCHIVE_STORE}
    assert life.datastores_at(utc(2025, 9, 1)) == {DataStore.ARCHIVE_STORE}
    assert [e for _, e in life.events()] == [
        LifecycleEvent.ARCHIVE_COPY,
        LifecycleEvent.DELETE_VAULT,
        LifecycleEvent.DELETE,
    ]


def test_one_month_from_31_january_ends_on_28_february() -> None:
    policy = with_default_duration("P1M")
    assert lifecycle(policy, "Default", utc(2025, 1, 31, 22)).vault_expiry == utc(2025, 2, 28, 22)
    assert lifecycle(policy, "Default", utc(2024, 1, 31, 22)).vault_expiry == utc(2024, 2, 29, 22)


def test_one_year_from_29_february_ends_on_28_february() -> None:
    policy = with_default_duration("P1Y")
    assert lifecycle(policy, "Default", utc(2024, 2, 29, 12)).vault_expiry == utc(2025, 2, 28, 12)


def test_arithmetic_is_on_the_utc_instant_not_the_local_wall_clock() -> None:
    # 7 days from a Berlin backup just before the spring change is exactly 168 hours.
    doc = json.loads((EXAMPLES / "sunday-default-only.json").read_text())
    policy = parse_policy(doc)
    taken = utc(2025, 3, 23, 2, 30)
    assert lifecycle(policy, "Default", taken).vault_expiry - taken == dt.timedelta(hours=168)


def test_unknown_tag_and_naive_time_are_programming_errors() -> None:
    with pytest.raises(KeyError):
        lifecycle(POLICY, "Quarterly", utc(2025, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        lifecycle(POLICY, "Default", dt.datetime(2025, 1, 1))


DURATIONS = ["P7D", "P12W", "P1M", "P3M", "P6M", "P13M", "P1Y", "P1Y6M", "P10Y", "P100D"]
ARCHIVE_DURATIONS = ["P6M", "P24M", "P1Y", "P10Y", "P200D"]
MIN_DAYS = {"D": 1, "W": 7, "M": 28, "Y": 365}


def shortest_days(duration: str) -> int:
    """Independent lower bound on a duration's length: 28-day months, 365-day years."""
    total, number = 0, ""
    for char in duration[1:]:
        if char.isdigit():
            number += char
        else:
            total += int(number) * MIN_DAYS[char]
            number = ""
    return total


def policy_for(vault: str, archive: str, option: str) -> Policy:
    doc = copy.deepcopy(ARCHIVE_DOC)
    monthly = doc["policyRules"][3]["lifecycles"]
    monthly[0]["deleteAfter"]["duration"] = vault
    monthly[0]["targetDataStoreCopySettings"][0]["copyAfter"]["objectType"] = option
    monthly[1]["deleteAfter"]["duration"] = archive
    return parse_policy(doc)


@settings(max_examples=80, deadline=None)
@given(
    vault=st.sampled_from(DURATIONS),
    archive=st.sampled_from(ARCHIVE_DURATIONS),
    option=st.sampled_from(["CopyOnExpiryOption", "ImmediateCopyOption"]),
    taken=st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2040, 1, 1), timezones=st.just(UTC)),
)
def test_point_is_never_deleted_early_nor_deleted_and_archived_at_once(
    vault: str, archive: str, option: str, taken: dt.datetime
) -> None:
    policy = policy_for(vault, archive, option)
    life = lifecycle(policy, "Monthly", taken)
    tick = dt.timedelta(microseconds=1)
    # Never deleted before its rule's duration, in either store.
    assert life.vault_expiry - taken >= dt.timedelta(days=shortest_days(vault))
    assert life.datastores_at(life.vault_expiry - tick) >= {DataStore.VAULT_STORE}
    assert life.archive_copy is not None and life.archive_expiry is not None
    assert life.archive_expiry - life.archive_copy >= dt.timedelta(days=shortest_days(archive))
    assert DataStore.ARCHIVE_STORE in life.datastores_at(life.archive_expiry - tick)
    assert life.deletion >= max(life.vault_expiry, life.archive_expiry)
    # Alive without a gap from backup to deletion, gone after.
    for instant in (
        taken,
        life.vault_expiry - tick,
        min(life.vault_expiry, life.deletion - tick),
        life.deletion - tick,
    ):
        assert life.is_alive(instant) and life.datastores_at(instant)
    assert not life.is_alive(life.deletion) and life.datastores_at(life.deletion) == frozenset()
    # At no instant is the point both finally deleted and archived.
    events = life.events()
    instants = [t for t, _ in events]
    assert instants == sorted(instants)
    final = [t for t, e in events if e is LifecycleEvent.DELETE]
    archived = [t for t, e in events if e in (LifecycleEvent.ARCHIVE_MOVE, LifecycleEvent.ARCHIVE_COPY)]
    assert final == [life.deletion] and len(archived) == 1
    assert archived[0] < final[0]
