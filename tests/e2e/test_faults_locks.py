"""The instance lock on Azurite's table: what a redelivery, a duplicate and a long backup do to it.

The fault tests end to end depend on these rules; here each is proved on its own, fast.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from devhost.services import Azurite
from shared.locks import HEARTBEAT, STALE_AFTER, InstanceLocks
from shared.storage import layout
from shared.storage.clients import StorageAccount
from shared.storage.tables import ETagMismatch, StateTable

pytestmark = pytest.mark.integration
NOW = datetime(2026, 1, 5, 3, 0, tzinfo=UTC)


@pytest.fixture
def locks(azurite: Azurite, unique: str) -> tuple[InstanceLocks, StateTable]:
    account = StorageAccount.from_connection_setting(
        "AzureWebJobsStorage", {"AzureWebJobsStorage": azurite.connection_string}
    )
    state = StateTable(account.table_service(), f"locks{unique}")
    state.ensure()
    return InstanceLocks(state), state


def test_a_later_delivery_of_the_same_job_takes_a_fresh_lock_over_and_the_old_holder_cannot_renew(
    locks: tuple[InstanceLocks, StateTable],
) -> None:
    store, _ = locks
    first = store.acquire("orders", "job-1", NOW, attempt=1)
    assert first is not None
    # A duplicate of the same delivery, or another job, finds the lock fresh: turned away.
    assert store.acquire("orders", "job-1", NOW + timedelta(seconds=1), attempt=1) is None
    assert store.acquire("orders", "job-2", NOW + timedelta(seconds=1), attempt=9) is None
    # The next delivery of job-1 (its first try ended without releasing): taken over at once.
    second = store.acquire("orders", "job-1", NOW + timedelta(seconds=2), attempt=2)
    assert second is not None and second.token != first.token
    with pytest.raises(ETagMismatch):
        store.renew(first, NOW + timedelta(seconds=3))
    store.release(first)  # a stale release changes nothing
    holder = store.holder("orders")
    assert holder is not None and holder.job_id == "job-1"
    store.release(second)
    assert store.holder("orders") is None


def test_a_lock_released_with_its_last_heartbeat_is_gone_and_one_released_as_first_taken_stays(
    locks: tuple[InstanceLocks, StateTable],
) -> None:
    store, state = locks
    taken = store.acquire("orders", "job-1", NOW)
    assert taken is not None
    beaten = store.renew(taken, NOW + HEARTBEAT)
    store.release(taken)  # the ETag of the first write: refused quietly, the lock stays
    assert [e.row_key for e in state.partition(layout.LOCK)] == [layout.row_key("orders")]
    store.release(beaten)
    assert list(state.partition(layout.LOCK)) == []
    # A lock nobody renews goes stale and anyone may take it: stale by the storage service's clock
    # (here after 1 s instead of STALE_AFTER), whatever the host's clock says.
    assert store.acquire("orders", "job-2", NOW) is not None
    assert store.acquire("orders", "job-3", NOW + STALE_AFTER + timedelta(seconds=1)) is None
    quick = InstanceLocks(state, stale_after=timedelta(seconds=1))
    deadline = time.monotonic() + 30
    while (taken := quick.acquire("orders", "job-3", NOW)) is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert taken is not None
