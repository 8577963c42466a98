"""The continuation token of the jobs list: opaque, round-trips, refuses what pgvault did not write."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import ErrorCode
from shared.jobs import Cursor, InvalidToken, JobQuery, JobStatus, Operation, new_job_id, partition_for

NOW = datetime(2026, 3, 8, 9, 30, tzinfo=UTC)
QUERY = JobQuery.last_days(NOW, 7, instance="Orders", status=JobStatus.FAILED)


def _cursor(at: datetime = NOW - timedelta(days=2)) -> Cursor:
    return Cursor(partition_for(at), new_job_id(at), QUERY.since, QUERY.until, QUERY.fingerprint())


def test_token_round_trips_and_is_url_safe() -> None:
    cursor = _cursor()
    token = cursor.encode()
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert Cursor.decode(token, QUERY) == cursor


def test_same_filters_with_other_instance_case_accept_the_token() -> None:
    other_case = JobQuery.last_days(NOW + timedelta(minutes=5), 7, instance="ORDERS", status=JobStatus.FAILED)
    cursor = _cursor()
    assert Cursor.decode(cursor.encode(), other_case) == cursor


@given(position=st.integers(min_value=0), flip=st.integers(min_value=1, max_value=255))
def test_any_changed_byte_is_refused_naming_the_parameter(position: int, flip: int) -> None:
    raw = bytearray(base64.urlsafe_b64decode(_cursor().encode() + "=="))
    raw[position % len(raw)] ^= flip
    token = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(InvalidToken) as err:
        Cursor.decode(token, QUERY, target="$skipToken")
    assert err.value.target == "$skipToken" and err.value.code is ErrorCode.INVALID_REQUEST
    assert err.value.http_status == 400


@pytest.mark.parametrize("token", ["", "x", "!!!!", "e30", _cursor().encode()[:-3]])
def test_garbage_and_truncated_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        Cursor.decode(token, QUERY)


def test_token_of_a_query_with_other_filters_is_refused() -> None:
    other = JobQuery.last_days(NOW, 7, instance="orders", operation=Operation.BACKUP)
    with pytest.raises(InvalidToken, match="other filters"):
        Cursor.decode(_cursor().encode(), other)


def _forge(**fields: object) -> str:
    """A token with a valid checksum but chosen fields: what someone reading the code could build."""
    from shared.page_token import seal

    base = {"v": 1, "p": partition_for(NOW), "r": "", "s": 0, "u": 0, "q": QUERY.fingerprint()}
    base["s"] = int(QUERY.since.timestamp() * 1000)
    base["u"] = int(QUERY.until.timestamp() * 1000)
    return seal({**base, **fields}, "jobs")


def test_forged_token_cannot_leave_the_querys_window_or_name_another_partition() -> None:
    assert Cursor.decode(_forge(), QUERY).partition == partition_for(NOW)
    for fields in (
        {"p": "instance"},
        {"p": partition_for(NOW - timedelta(days=30))},
        {"r": "' or 1 eq 1"},
        {"s": int((NOW + timedelta(days=1)).timestamp() * 1000)},
        {"s": int((NOW - timedelta(days=3650)).timestamp() * 1000), "p": partition_for(NOW - timedelta(days=3000))},
        {"u": int((NOW + timedelta(days=3)).timestamp() * 1000), "p": partition_for(NOW + timedelta(days=2))},
        {"v": 2},
    ):
        with pytest.raises(InvalidToken):
            Cursor.decode(_forge(**fields), QUERY)
