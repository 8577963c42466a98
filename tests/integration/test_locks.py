"""Per-instance operation locks on a real Azurite: heartbeats, release, takeover."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from shared.locks import STALE_AFTER, Heartbeat, InstanceLocks
from shared.storage.tables import StateTable

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def state(state_table: StateTable) -> StateTable:
    return state_table


@pytest.fixture
def locks(state: StateTable) -> InstanceLocks:
    return InstanceLocks(state)


def _wait_for_a_renewal(heartbeat: Heartbeat) -> None:
    first = heartbeat.lock.entity.etag
    deadline = time.monotonic() + 10
    while heartbeat.lock.entity.etag == first and time.monotonic() < deadline:
        time.sleep(0.02)
    assert heartbeat.lock.entity.etag != first, "the heartbeat never renewed the lock"


def test_a_lock_renewed_by_its_heartbeat_is_released_with_its_latest_etag(locks: InstanceLocks) -> None:
    lock = locks.acquire("orders", "job-1", T0)
    assert lock is not None
    with Heartbeat(locks, lock, lambda: T0, every=timedelta(milliseconds=20)) as heartbeat:
        _wait_for_a_renewal(heartbeat)
    locks.release(lock)  # the ETag from before the renewals: refused, silently
    assert locks.holder("orders") is not None
    locks.release(heartbeat.lock)
    assert locks.holder("orders") is None
    assert locks.acquire("orders", "job-2", T0) is not None  # the next operation needs no wait


def test_a_heartbeat_whose_lock_was_taken_over_says_so_and_stops(locks: InstanceLocks, state: StateTable) -> None:
    lock = locks.acquire("orders", "job-1", T0)
    assert lock is not None
    heartbeat = Heartbeat(locks, lock, lambda: T0, every=timedelta(milliseconds=20))
    # job-1 looks dead once storage's clock says it went a second unrenewed (STALE_AFTER, shortened).
    quick = InstanceLocks(state, stale_after=timedelta(seconds=1))
    assert quick.acquire("orders", "job-2", T0 + STALE_AFTER + timedelta(seconds=1)) is None  # not by our clock
    deadline = time.monotonic() + 30
    while (taken := quick.acquire("orders", "job-2", T0)) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert taken is not None
    with heartbeat:
        deadline = time.monotonic() + 10
        while not heartbeat.lost and time.monotonic() < deadline:
            time.sleep(0.02)
    assert heartbeat.lost
    holder = locks.holder("orders")
    assert holder is not None and holder.job_id == "job-2"
