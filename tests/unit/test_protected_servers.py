"""Whole servers protected, on the in-memory state table with an in-memory server listing.

The listing is an honest twin of ``PostgresLister`` (what ``pg_database`` answers: name, allows
connections, is a template); the real one runs in tests/e2e/test_protected_servers_api.py against
PostgreSQL. Time travels: the discovery timer's schedule is evaluated with ``now``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import ErrorCode, UserError
from shared.instances import Instance, InstanceService, ProtectionStatus, RetainData
from shared.jobs import Job, JobStore, Operation
from shared.policies import PolicyService
from shared.protected_servers import (
    DISCOVERY_BATCH,
    MemberStatus,
    ProtectedServerService,
    ServerSpec,
    member_instance_name,
)
from shared.protection import ProtectionService
from shared.storage import layout
from shared.storage.memory import MemoryBlobStore, MemoryStateTable
from tests.examples import EXAMPLES

NOW = datetime(2026, 3, 1, 12, 20, tzinfo=UTC)
SECRET = "env:PGVAULT_SECRET_DB1"
SYSTEM = [
    ("azure_maintenance", True, False),
    ("azure_sys", True, False),
    ("template0", False, True),
    ("template1", True, True),
    ("postgres", True, False),
]


class MemoryLister:
    """The databases of in-memory servers, as ``pg_database`` lists them for the secret's user."""

    def __init__(self) -> None:
        self.servers: dict[tuple[str, int], list[tuple[str, bool, bool]]] = {}
        self.failure: UserError | None = None

    def databases(self, spec: ServerSpec) -> list[tuple[str, bool, bool]]:
        if self.failure is not None:
            raise self.failure
        return sorted(self.servers.get((spec.server.lower(), spec.port), []))

    def create(self, *names: str, server: str = "db1.example.com", port: int = 5432) -> None:
        self.servers.setdefault((server, port), list(SYSTEM)).extend((n, True, False) for n in names)

    def drop(self, name: str, server: str = "db1.example.com", port: int = 5432) -> None:
        self.servers[(server, port)] = [r for r in self.servers[(server, port)] if r[0] != name]


class World:
    def __init__(self) -> None:
        self.state = MemoryStateTable("state")
        PolicyService(self.state).put("weekly", json.loads((EXAMPLES / "sunday-default-only.json").read_text()), NOW)
        self.queued: list[tuple[Job, Instance]] = []
        self.instances = InstanceService(self.state, lambda job, inst: self.queued.append((job, inst)))
        self.lister = MemoryLister()
        self.service = ProtectedServerService(
            self.state,
            self.instances,
            ProtectionService(self.state, MemoryBlobStore()),
            self.lister,
            allow_env_secrets=True,
        )

    def body(self, **changes: object) -> dict[str, object]:
        return {"server": "db1.example.com", "secretUri": SECRET, "policyName": "weekly", **changes}

    def discover_jobs(self, instance: str) -> list[Job]:
        rows = self.state.partition(layout.instance_jobs(instance))
        jobs = [JobStore(self.state).get(r.row_key) for r in rows]
        return [j for j in jobs if j.operation is Operation.DISCOVER]


@pytest.fixture
def world() -> World:
    return World()


def test_a_server_with_five_databases_is_protected_in_one_call(world: World) -> None:
    world.lister.create("orders", "billing", "stock", "users", "audit", "scratch_tmp")
    record, found, created = world.service.put("db1", world.body(excludePatterns=["scratch_*"]), NOW)
    assert created and record.spec.server == "db1.example.com"
    five = ["audit", "billing", "orders", "stock", "users"]
    # postgres is a database like any other: the patterns decide (here: every name but scratch_*).
    assert sorted(found.added) == sorted([*five, "postgres"])
    excluded = {e["database"]: e["reason"] for e in found.excluded}
    assert set(excluded) == {"azure_maintenance", "azure_sys", "template0", "template1", "scratch_tmp"}
    assert "excludePatterns 'scratch_*'" in excluded["scratch_tmp"]
    for db in five:
        instance = world.instances.get(f"db1-{db}")
        assert instance.spec.database == db and instance.spec.policy_name == "weekly"
        assert instance.protected_server == "db1" and instance.to_dict()["protectedServer"] == "db1"
        # Validated as usual: a Validate job queued for each, and a Discover job saying why it exists.
        assert any(i.spec.name == f"db1-{db}" and j.operation is Operation.VALIDATE for j, i in world.queued)
        (job,) = world.discover_jobs(f"db1-{db}")
        assert job.details["change"] == "Protected" and job.details["protectedServer"] == "db1"
    members = {m.database: m for m in world.service.members("db1")}
    assert members["orders"].status is MemberStatus.PROTECTED and members["orders"].instance == "db1-orders"
    assert "scratch_tmp" not in members
    assert world.service.get("DB1").last_discovery is not None


def test_a_database_created_later_is_protected_by_the_next_discovery_when_it_is_due(world: World) -> None:
    world.lister.create("orders")
    world.service.put("db1", world.body(includePatterns=["orders*", "shop"]), NOW)
    world.lister.create("orders_eu", "Orders_US", "other")
    # Hourly by default: nothing is due before 13:00.
    assert world.service.discover_due(NOW + timedelta(minutes=30)) == {}
    assert world.instances.store.find("db1-orders_eu") is None
    found = world.service.discover_due(NOW + timedelta(minutes=41))["db1"]
    assert found.added == ["orders_eu"]  # fnmatch is case-sensitive: Orders_US is not orders*
    assert {e["database"] for e in found.excluded} >= {"Orders_US", "other"}
    assert world.instances.get("db1-orders_eu").protection_status is ProtectionStatus.CONFIGURING
    # Discovered at 13:01: the next slot is 14:00.
    assert world.service.due(NOW + timedelta(minutes=99)) == []
    assert [s.spec.name for s in world.service.due(NOW + timedelta(minutes=100))] == ["db1"]


def test_a_dropped_database_is_marked_and_its_protection_stopped_with_its_data(world: World) -> None:
    world.lister.create("orders", "billing")
    world.service.put("db1", world.body(), NOW)
    world.lister.drop("billing")
    later = NOW + timedelta(hours=1)
    found = world.service.discover("db1", later)
    assert found.dropped == ["billing"] and found.added == []
    billing = world.instances.get("db1-billing")  # the instance stays: its points are restorable
    assert billing.protection_status is ProtectionStatus.STOPPED and billing.retain_data is RetainData.AS_PER_POLICY
    member = {m.database: m for m in world.service.members("db1")}["billing"]
    assert member.status is MemberStatus.DROPPED and "dropped from the server" in (member.reason or "")
    assert [j.details["change"] for j in world.discover_jobs("db1-billing")] == ["Dropped", "Protected"]
    # Another discovery changes nothing more; the database coming back is protected again.
    assert world.service.discover("db1", later + timedelta(hours=1)).dropped == []
    world.lister.create("billing")
    back = world.service.discover("db1", later + timedelta(hours=2))
    assert back.reprotected == ["billing"]
    resumed = world.instances.get("db1-billing")
    assert resumed.protection_status is not ProtectionStatus.STOPPED and resumed.retain_data is None


def test_a_database_no_longer_matched_is_stopped_like_a_dropped_one(world: World) -> None:
    world.lister.create("orders", "billing")
    world.service.put("db1", world.body(), NOW)
    found = world.service.put("db1", world.body(excludePatterns=["bill*"]), NOW + timedelta(minutes=5))[1]
    assert found.dropped == ["billing"]
    member = {m.database: m for m in world.service.members("db1")}["billing"]
    assert "no longer matched" in (member.reason or "")


def test_an_instance_of_its_own_for_a_covered_database_is_refused_naming_the_server(world: World) -> None:
    world.lister.create("orders")
    world.service.put("db1", world.body(excludePatterns=["legacy"]), NOW)
    entry = {"server": "DB1.example.com.", "database": "orders", "secretUri": SECRET, "policyName": "weekly"}
    with pytest.raises(UserError) as err:
        world.instances.configure_one("mine", entry, NOW, allow_env_secrets=True, vault_region=None)
    assert err.value.code is ErrorCode.DATABASE_ALREADY_PROTECTED and "protected server 'db1'" in err.value.message
    assert err.value.target == "body.database"
    # Covered before its discovery found it (created a minute ago): refused all the same.
    with pytest.raises(UserError) as err:
        world.instances.configure_one(
            "new", {**entry, "database": "new_db"}, NOW, allow_env_secrets=True, vault_region=None
        )
    assert "db1-new_db" in err.value.message and "excludePatterns" in err.value.recommended_action
    # An excluded database, or another port, is nobody's: it may be protected on its own.
    legacy = world.instances.configure_one(
        "legacy", {**entry, "database": "legacy"}, NOW, allow_env_secrets=True, vault_region=None
    )
    assert legacy.error is None
    other_port = {**entry, "port": 5433}
    assert world.instances.configure_one("o", other_port, NOW, allow_env_secrets=True, vault_region=None).error is None


def test_a_server_finding_an_individually_protected_database_skips_and_reports_it(world: World) -> None:
    world.lister.create("orders", "billing")
    entry = {"server": "db1.example.com", "database": "orders", "secretUri": SECRET, "policyName": "weekly"}
    world.instances.configure_one("orders-alone", entry, NOW, allow_env_secrets=True, vault_region=None)
    found = world.service.put("db1", world.body(), NOW)[1]
    assert found.skipped == ["orders"] and "billing" in found.added
    assert world.instances.store.find("db1-orders") is None  # never protected twice
    member = {m.database: m for m in world.service.members("db1")}["orders"]
    assert member.status is MemberStatus.SKIPPED and member.instance == "orders-alone"
    assert "'orders-alone'" in (member.reason or "")
    (job,) = world.discover_jobs("orders-alone")
    assert job.details["change"] == "Skipped"
    # Skipped again at the next discovery, without a new job each hour.
    assert world.service.discover("db1", NOW + timedelta(hours=1)).skipped == ["orders"]
    assert len(world.discover_jobs("orders-alone")) == 1
    # The instance of its own configured by the server's discovery says which server holds the other.
    mine = {"server": "db1.example.com", "database": "billing", "secretUri": SECRET, "policyName": "weekly"}
    results = world.instances.configure_many({"instances": [mine]}, NOW, allow_env_secrets=True, vault_region=None)
    assert results[0].error is not None and "protected server 'db1'" in results[0].error.message


def test_one_protected_server_per_host_and_a_server_cannot_move(world: World) -> None:
    world.lister.create("orders")
    world.service.put("db1", world.body(), NOW)
    with pytest.raises(UserError) as err:
        world.service.put("again", world.body(server="DB1.EXAMPLE.COM"), NOW)
    assert err.value.code is ErrorCode.CONFLICT and "'db1'" in err.value.message
    assert world.service.store.find("again") is None
    with pytest.raises(UserError) as err:
        world.service.put("db1", world.body(port=5433), NOW)
    assert err.value.code is ErrorCode.CONFLICT and err.value.target == "body.server"


def test_a_listing_that_fails_stores_nothing_at_put_and_is_recorded_at_discovery(world: World) -> None:
    world.lister.failure = UserError(ErrorCode.DB_USER_AUTH_FAILED, "password authentication failed")
    with pytest.raises(UserError) as err:
        world.service.put("db1", world.body(), NOW)
    assert err.value.code is ErrorCode.DB_USER_AUTH_FAILED and world.service.store.find("db1") is None
    world.lister.failure = None
    world.lister.create("orders")
    world.service.put("db1", world.body(), NOW)
    world.lister.failure = UserError(ErrorCode.SERVER_CONNECTION_CLOSED, "the server closed the connection")
    found = world.service.discover_due(NOW + timedelta(hours=1))["db1"]
    assert found.status == "Failed"
    last = world.service.get("db1").last_discovery
    assert last is not None and last["error"]["code"] == "UserErrorServerConnectionClosed"
    # Nothing was dropped because the server did not answer.
    assert world.instances.get("db1-orders").protection_status is not ProtectionStatus.STOPPED


def test_bad_bodies_are_refused_naming_the_field(world: World) -> None:
    for body, target in [
        (world.body(includePatterns=[]), "includePatterns"),
        (world.body(policyName="nope"), "policyName"),
        (world.body(server="not a host"), "body.server"),
        (world.body(extra=1), "extra"),
        (world.body(excludePatterns=["a\x01"]), "excludePatterns[0]"),
    ]:
        with pytest.raises(UserError) as err:
            world.service.put("db1", body, NOW)
        assert err.value.target == target, (body, err.value.message)


def test_deleting_a_server_stops_its_instances_keeps_their_data_and_protecting_it_again_adopts_them(
    world: World,
) -> None:
    world.lister.create("orders", "billing")
    world.service.put("db1", world.body(), NOW)
    with pytest.raises(UserError) as err:
        world.service.delete("db1", "delete", NOW)
    assert err.value.target == "retainData"
    retain, stopped = world.service.delete("db1", None, NOW)
    assert retain is RetainData.AS_PER_POLICY and sorted(stopped) == ["db1-billing", "db1-orders", "db1-postgres"]
    assert world.service.store.find("db1") is None and world.service.members("db1") == []
    orders = world.instances.get("db1-orders")
    assert orders.protection_status is ProtectionStatus.STOPPED and orders.retain_data is RetainData.AS_PER_POLICY
    # No server covers the host now; the same name protects it again and takes its instances back.
    found = world.service.put("db1", world.body(), NOW + timedelta(days=1))[1]
    assert sorted(found.reprotected) == ["billing", "orders", "postgres"] and found.added == []
    assert world.instances.get("db1-orders").retain_data is None


def test_more_new_databases_than_one_run_takes_are_left_to_the_next_discovery(world: World) -> None:
    world.lister.create(*(f"db_{i:03}" for i in range(DISCOVERY_BATCH + 3)))
    found = world.service.put("db1", world.body(includePatterns=["db_*"]), NOW)[1]
    assert len(found.added) == DISCOVERY_BATCH and found.remaining == 3
    assert len(world.service.discover("db1", NOW + timedelta(hours=1)).added) == 3


def test_member_instance_names_are_deterministic_valid_and_unique() -> None:
    assert member_instance_name("db1", "orders") == "db1-orders"
    odd = ["Orders", "orders", "my db", "my-db", "ü", "x" * 63]
    names = [member_instance_name("db1", d) for d in odd]
    assert names == [member_instance_name("db1", d) for d in odd]
    assert len({layout.row_key(n) for n in names}) == len(odd)
    assert all(layout.valid_name(n) for n in names)
    assert layout.valid_name(member_instance_name("s" * 150, "orders"))


def test_the_discovery_schedule_is_hourly_by_default_and_checked_like_the_other_timers() -> None:
    from shared.errors import SettingsError
    from shared.settings import load_settings

    env = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "PGVAULT_SCHEDULER_SCHEDULE": "0 */5 * * * *",
        "PGVAULT_RETENTION_SCHEDULE": "0 17 * * * *",
    }
    assert load_settings(env).discovery_schedule == "0 0 * * * *"
    assert load_settings({**env, "PGVAULT_DISCOVERY_SCHEDULE": "0 30 */6 * * *"}).discovery_schedule == "0 30 */6 * * *"
    with pytest.raises(SettingsError) as err:
        load_settings({**env, "PGVAULT_DISCOVERY_SCHEDULE": "hourly"})
    assert set(err.value.problems) == {"PGVAULT_DISCOVERY_SCHEDULE"}


def test_a_new_policy_or_secret_reaches_every_instance_of_the_server_each_validated_again(world: World) -> None:
    world.lister.create("orders", "billing")
    PolicyService(world.state).put("daily", json.loads((EXAMPLES / "sunday-default-only.json").read_text()), NOW)
    world.service.put("db1", world.body(), NOW)
    world.queued.clear()
    found = world.service.put("db1", world.body(policyName="daily", secretUri="env:PGVAULT_SECRET_DB1_NEW"), NOW)[1]
    assert sorted(found.updated) == ["billing", "orders", "postgres"]
    orders = world.instances.get("db1-orders")
    assert (orders.spec.policy_name, orders.spec.secret_uri) == ("daily", "env:PGVAULT_SECRET_DB1_NEW")
    assert sorted(i.spec.name for _, i in world.queued) == ["db1-billing", "db1-orders", "db1-postgres"]
    # Sent again unchanged: nothing to update, nothing validated again.
    world.queued.clear()
    assert (
        world.service.put("db1", world.body(policyName="daily", secretUri="env:PGVAULT_SECRET_DB1_NEW"), NOW)[1].updated
        == []
    )
    assert world.queued == []


def test_a_name_taken_by_an_unrelated_instance_fails_that_database_without_touching_the_other(world: World) -> None:
    world.lister.create("orders")
    other = {"server": "db9.example.com", "database": "x", "secretUri": SECRET, "policyName": "weekly"}
    world.instances.configure_one("db1-orders", other, NOW, allow_env_secrets=True, vault_region=None)
    found = world.service.put("db1", world.body(), NOW)[1]
    assert found.failed == ["orders"]
    member = {m.database: m for m in world.service.members("db1")}["orders"]
    assert member.status is MemberStatus.FAILED and (member.error or {})["code"] == "Conflict"
    assert world.discover_jobs("db1-orders") == []  # the unrelated instance's history is left alone
    assert world.instances.get("db1-orders").spec.server == "db9.example.com"
