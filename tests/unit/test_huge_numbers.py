"""Huge numbers and far dates are refused as bad input naming the field, never a 500 or a traceback.

Each parser below is fuzzed: whatever it is given, it returns a value or raises ``UserError``
with a 400 code; an ``OverflowError`` or ``ValueError`` escaping would be answered 500 by the
API (and be a traceback in the CLI).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import UserError
from shared.policies import parse_simulation_request
from shared.policy import DataStore, parse_policy, simulate
from shared.policy.parse import parse_retention_duration
from shared.policy.simulation import check_range
from shared.request_body import parse_instant, whole_number
from shared.restore.request import parse_restore_request
from tests.examples import EXAMPLES, REPO

UTC = dt.UTC
SUNDAY: dict[str, Any] = json.loads((EXAMPLES / "sunday-default-only.json").read_text())
POLICY = parse_policy(SUNDAY)

digits = st.one_of(st.integers(0, 40), st.integers(0, 10**30), st.just(10**400)).map(str)
durations = st.one_of(
    st.builds(lambda n, unit: f"P{n}{unit}", digits, st.sampled_from("YMWD")),
    st.builds(lambda a, b: f"P{a}Y{b}D", digits, digits),
    st.builds(lambda a, b, c: f"P{a}M{b}W{c}D", digits, digits, digits),
    st.text(max_size=30),
)
offsets = st.sampled_from(["Z", "+00:00", "-05:00", "+14:00", "-12:00", ""])
instants = st.one_of(
    st.builds(
        lambda d, offset: d.isoformat() + offset,
        st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59)),
        offsets,
    ),
    st.dates().map(str),
    st.text(max_size=25),
)


def _value_or_user_error(call: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return call(*args, **kwargs)
    except UserError as exc:
        assert exc.http_status == 400, exc.code
        assert exc.message and exc.target, exc
        return exc


@settings(max_examples=500, deadline=None)
@given(text=durations, store=st.sampled_from(list(DataStore)))
def test_any_retention_duration_is_a_value_or_a_400(text: str, store: DataStore) -> None:
    _value_or_user_error(parse_retention_duration, text, "x.duration", store)


@pytest.mark.parametrize("text", ["P99999999999999999999D", "P99999999999999999999Y", "P1" + "0" * 5000 + "D"])
def test_a_huge_retention_in_a_policy_is_refused_naming_the_field(text: str) -> None:
    doc = copy.deepcopy(SUNDAY)
    doc["policyRules"][1]["lifecycles"][0]["deleteAfter"]["duration"] = text
    refused = _value_or_user_error(parse_policy, doc)
    assert isinstance(refused, UserError)
    assert refused.target == "policyRules[1].lifecycles[0].deleteAfter.duration"
    assert "too long" in refused.message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)), offset=offsets)
def test_a_schedule_starting_in_any_year_is_a_policy_or_a_400(start: dt.datetime, offset: str) -> None:
    doc = copy.deepcopy(SUNDAY)
    interval = f"R/{start.replace(microsecond=0).isoformat()}{offset or 'Z'}/P1W"
    doc["policyRules"][0]["trigger"]["schedule"]["repeatingTimeIntervals"] = [interval]
    policy = _value_or_user_error(parse_policy, doc)
    if not isinstance(policy, UserError):
        _value_or_user_error(simulate, policy, dt.datetime(2025, 1, 1, tzinfo=UTC), dt.datetime(2025, 3, 1, tzinfo=UTC))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(start=instants, end=instants)
def test_any_simulation_range_is_a_simulation_or_a_400(start: str, end: str) -> None:
    parsed = _value_or_user_error(parse_simulation_request, {"from": start, "to": end})
    if isinstance(parsed, UserError):
        return
    first, last = parsed
    if isinstance(_value_or_user_error(check_range, first, last), UserError):
        return
    # A range the API accepts is simulated without an overflow, at the ends of the calendar too.
    last = min(last, first + dt.timedelta(days=60))
    _value_or_user_error(simulate, POLICY, first, last)


@pytest.mark.parametrize(
    ("start", "end", "target"),
    [
        ("9999-01-01", "9999-12-31", "from"),
        ("2025-01-01", "9999-12-31T23:59:59-05:00", "to"),
        ("0001-01-01T00:00:00+01:00", "2025-01-01", "from"),
        ("1000-01-01", "1001-01-01", "from"),
    ],
)
def test_a_simulation_at_the_ends_of_the_calendar_is_refused_naming_the_field(
    start: str, end: str, target: str
) -> None:
    refused = None
    try:
        first, last = parse_simulation_request({"from": start, "to": end})
        check_range(first, last)
    except UserError as exc:
        refused = exc
    assert refused is not None and refused.target == target


def test_simulating_the_last_years_directly_is_refused_not_an_overflow() -> None:
    with pytest.raises(UserError) as refused:
        simulate(POLICY, dt.datetime(9890, 1, 1, tzinfo=UTC), dt.datetime(9999, 1, 1, tzinfo=UTC))
    assert refused.value.target == "to"
    with pytest.raises(UserError) as refused:
        simulate(POLICY, dt.datetime(9990, 1, 1, tzinfo=UTC), dt.datetime(9991, 1, 1, tzinfo=UTC))
    assert refused.value.target == "from"


@settings(max_examples=300, deadline=None)
@given(value=st.one_of(st.integers(-(2**80), 2**80), st.text(max_size=12), st.just("1" * 5000), st.just("²")))
def test_any_port_or_count_is_a_number_in_range_or_a_400(value: Any) -> None:
    number = _value_or_user_error(whole_number, value, "port", 1, 65535)
    assert isinstance(number, UserError) or 1 <= number <= 65535


@settings(max_examples=200, deadline=None)
@given(duration=durations)
def test_any_rehydration_duration_is_accepted_or_a_400(duration: str) -> None:
    body = {
        "objectType": "AzureBackupRestoreWithRehydrationRequest",
        "recoveryPointId": "rp1",
        "sourceDataStoreType": "ArchiveStore",
        "rehydrationPriority": "High",
        "rehydrationRetentionDuration": duration,
        "restoreTargetInfo": {
            "objectType": "RestoreFilesTargetInfo",
            "recoveryOption": "FailIfExists",
            "targetDetails": {"url": "https://acct.blob.core.windows.net/exports", "filePrefix": "x"},
        },
    }
    _value_or_user_error(parse_restore_request, body, allow_env=False)


def test_instant_past_the_last_utc_instant_is_refused_naming_the_field() -> None:
    with pytest.raises(UserError) as refused:
        parse_instant("9999-12-31T23:00:00-05:00", "to")
    assert refused.value.target == "to"


# --- the CLI ------------------------------------------------------------------------------------


def _pgvault(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pgvault", *argv], cwd=REPO, capture_output=True, text=True, timeout=120, check=False
    )


def test_cli_offline_simulation_with_a_huge_duration_exits_2_with_the_field(tmp_path: Path) -> None:
    doc = copy.deepcopy(SUNDAY)
    doc["policyRules"][1]["lifecycles"][0]["deleteAfter"]["duration"] = "P99999999999999999999D"
    policy = tmp_path / "huge.json"
    policy.write_text(json.dumps(doc))
    done = _pgvault("policy", "simulate", "--file", str(policy), "--from", "2025-01-01", "--to", "2025-02-01")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "policyRules[1].lifecycles[0].deleteAfter.duration" in done.stderr and "too long" in done.stderr


@pytest.mark.parametrize(
    ("start", "end", "named"),
    [
        ("9990-01-01", "9999-12-31", "--from"),
        ("9890-01-01", "9899-12-31", None),
        ("2025-01-01", "9999-12-31T23:59:59-05:00", "--to"),
    ],
)
def test_cli_offline_simulation_to_year_9999_exits_2_with_the_field(start: str, end: str, named: str | None) -> None:
    policy = EXAMPLES / "sunday-default-only.json"
    done = _pgvault("policy", "simulate", "--file", str(policy), "--from", start, "--to", end, "-o", "json")
    if named is None:  # the last simulated decade works, retention past 9900 included
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["summary"]["backups"] > 500
        return
    assert done.returncode == 2, (done.stdout[-500:], done.stderr)
    assert "Traceback" not in done.stderr
    assert named in done.stderr and "InvalidRequest" in done.stderr


def test_cli_offline_simulation_with_a_misspelled_field_exits_2_naming_it(tmp_path: Path) -> None:
    doc = copy.deepcopy(SUNDAY)
    schedule = doc["policyRules"][0]["trigger"]["schedule"]
    schedule["timezone"] = schedule.pop("timeZone")
    policy = tmp_path / "typo.json"
    policy.write_text(json.dumps(doc))
    done = _pgvault("policy", "simulate", "--file", str(policy), "--from", "2025-01-01", "--to", "2025-02-01")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "policyRules[0].trigger.schedule.timezone" in done.stderr and "did you mean timeZone?" in done.stderr
