"""InstanceStore on the in-memory state table: reads, ETag-guarded saves, and the database claims.

The table is the honest in-memory twin of the Azure one (the contract test in
tests/integration/test_memory_table.py holds it to Azurite's answers); the integration tests of
tests/integration/test_instances.py configure instances through the service on Azurite.
"""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import ErrorCode, UserError
from shared.instances import (
    STALE_CLAIM,
    Instance,
    InstanceService,
    InstanceSpec,
    InstanceStore,
    ProtectionStatus,
    Readiness,
)
from shared.policies import PolicyService
from shared.storage import layout
from shared.storage.memory import MemoryStateTable, MemoryTables
from shared.storage.tables import ETagMismatch
from tests.examples import EXAMPLES

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SPEC = InstanceSpec("orders", "DB1.example.com.", 5432, "orders", "env:PGVAULT_SECRET_X", "weekly")


@pytest.fixture
def state() -> MemoryStateTable:
    table = MemoryStateTable("state")
    PolicyService(table).put("weekly", json.loads((EXAMPLES / "sunday-default-only.json").read_text()), NOW)
    return table


@pytest.fixture
def store(state: MemoryStateTable) -> InstanceStore:
    return InstanceStore(state)


def _instance(spec: InstanceSpec = SPEC) -> Instance:
    return Instance(spec, ProtectionStatus.CONFIGURING, Readiness.VALIDATING, "job-1", None, NOW)


def test_reads_by_name_whatever_its_case_and_lists_every_instance(store: InstanceStore) -> None:
    store.insert(_instance())
    store.insert(_instance(replace(SPEC, name="Billing", database="billing")))
    assert store.get("ORDERS").spec.database == "orders"
    assert store.find("nobody") is None
    with pytest.raises(UserError) as err:
        store.get("nobody")
    assert err.value.code is ErrorCode.NOT_FOUND and err.value.target == "name"
    assert [i.spec.name for i in store.all()] == ["Billing", "orders"]


def test_a_save_over_a_stale_read_loses(store: InstanceStore) -> None:
    store.insert(_instance())
    first, second = store.get("orders"), store.get("orders")
    saved = store.save(first, replace(first, readiness=Readiness.SUCCESS))
    with pytest.raises(ETagMismatch):
        store.save(second, replace(second, readiness=Readiness.FAILED))
    assert store.get("orders").readiness is Readiness.SUCCESS
    assert store.save(saved, replace(saved, protection_status=ProtectionStatus.PROTECTED)).etag != saved.etag
    with pytest.raises(ETagMismatch):
        store.delete(saved)  # changed since
    store.delete(store.get("orders"))
    assert store.find("orders") is None


def test_of_claimants_racing_for_one_database_exactly_one_wins() -> None:
    tables = MemoryTables(lambda: NOW)
    wins: list[str] = []
    refused: list[ErrorCode] = []
    barrier = threading.Barrier(8)

    def claimant(i: int) -> None:
        store = InstanceStore(tables.table("state"))  # each its own adapter, one table
        barrier.wait()
        try:
            store.claim(replace(SPEC, name=f"i{i}"), "body", NOW)
            wins.append(f"i{i}")
        except UserError as exc:
            refused.append(exc.code)

    threads = [threading.Thread(target=claimant, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(refused) == 7
    # The winner's instance is not written yet: the others are told to retry, not "already protected".
    assert set(refused) == {ErrorCode.CONFLICT}
    assert InstanceStore(tables.table("state")).holder(SPEC) == wins[0]


def test_a_claimed_database_is_refused_once_its_instance_exists(store: InstanceStore) -> None:
    store.claim(SPEC, "body", NOW)
    store.insert(_instance())
    other = replace(SPEC, name="orders-again", server="db1.EXAMPLE.com")  # the same database, spelt otherwise
    with pytest.raises(UserError) as err:
        store.claim(other, "instances[3]", NOW + timedelta(days=1))
    assert err.value.code is ErrorCode.DATABASE_ALREADY_PROTECTED
    assert err.value.target == "instances[3].database" and "'orders'" in err.value.message


def test_a_claim_whose_instance_was_never_written_is_taken_over_once_stale(store: InstanceStore) -> None:
    store.claim(SPEC, "body", NOW)  # its request died before writing the instance
    late = replace(SPEC, name="late")
    with pytest.raises(UserError) as err:
        store.claim(late, "body", NOW + STALE_CLAIM - timedelta(seconds=1))
    assert err.value.code is ErrorCode.CONFLICT
    store.claim(late, "body", NOW + STALE_CLAIM)
    assert store.holder(SPEC) == "late"


def test_release_lets_go_only_of_the_instance_s_own_claim(store: InstanceStore) -> None:
    store.claim(SPEC, "body", NOW)
    store.release(replace(SPEC, name="someone-else"))
    assert store.holder(SPEC) == "orders"
    store.release(SPEC)
    assert store.holder(SPEC) is None
    store.release(SPEC)  # gone is fine


def test_configuring_through_the_service_claims_writes_and_queues_once(state: MemoryStateTable) -> None:
    sent: list[str] = []
    service = InstanceService(state, lambda job, instance: sent.append(instance.spec.name))
    body = {
        "server": "db1.example.com",
        "database": "orders",
        "secretUri": "env:PGVAULT_SECRET_X",
        "policyName": "weekly",
    }
    made = service.configure_one("orders", body, NOW, allow_env_secrets=True, vault_region=None)
    assert made.instance is not None and sent == ["orders"]
    assert InstanceStore(state).holder(made.instance.spec) == "orders"
    assert state.get(layout.CLAIM, made.instance.spec.claim_key) is not None
    with pytest.raises(UserError) as err:
        service.configure_one("copy", body, NOW, allow_env_secrets=True, vault_region=None)
    assert err.value.code is ErrorCode.DATABASE_ALREADY_PROTECTED and sent == ["orders"]
    # A name taken by an instance of another database: refused, and the new claim let go again.
    other = {**body, "database": "billing"}
    results = service.configure_many(
        {"instances": [{**other, "name": "orders"}]}, NOW, allow_env_secrets=True, vault_region=None
    )
    assert results[0].error is not None and results[0].error.code is ErrorCode.CONFLICT
    spec = replace(made.instance.spec, database="billing")
    assert InstanceStore(state).holder(spec) is None
