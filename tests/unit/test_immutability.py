"""Vault immutability (PGVAULT_IMMUTABILITY) on the in-memory table and container, ``now`` a parameter."""

from __future__ import annotations

import copy
import json
from datetime import timedelta
from typing import Any

import pytest

from shared.errors import ErrorCode, SettingsError, UserError
from shared.immutability import Immutability, enforce_lock, parse_immutability, shortened_rules
from shared.instances import InstanceStore, ProtectionStatus
from shared.policies import PolicyService
from shared.policy import parse_policy
from shared.protection import ProtectionService
from shared.recovery_points import RecoveryPointStore
from shared.retention import RetentionSweep
from shared.settings import load_settings
from shared.storage.memory import MemoryBlobStore, MemoryTables
from tests import retention_travel as travel
from tests.examples import EXAMPLES

NAME = travel.NAME
END = travel.START + timedelta(weeks=8)
NOW = END + timedelta(hours=1)
IMMUTABLE = [Immutability.UNLOCKED, Immutability.LOCKED]


@pytest.fixture
def world() -> travel.World:
    tables, blobs = MemoryTables(), MemoryBlobStore()
    world = travel.build_world(tables.table("state"), blobs, lambda: (tables.table("state"), blobs))
    world.record_until(END, END)
    return world


def _policy_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((EXAMPLES / "weekly-mon-wed-fri-with-archive.json").read_text())
    return doc


def _durations(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every ``deleteAfter`` object of the policy document (each rule's datastores)."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("deleteAfter"), dict):
                found.append(node["deleteAfter"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    return found


@pytest.mark.parametrize("mode", IMMUTABLE)
def test_an_immutable_vault_refuses_stop_with_delete_and_keeps_everything(
    world: travel.World, mode: Immutability
) -> None:
    points = {p.recovery_point_id for p in RecoveryPointStore(world.state).of(NAME)}
    protection = ProtectionService(world.state, world.blobs, immutability=mode)
    with pytest.raises(UserError) as refused:
        protection.stop(NAME, {"retainData": "delete"}, NOW)
    assert refused.value.code is ErrorCode.OPERATION_BLOCKED_BY_IMMUTABILITY
    assert refused.value.code.value == "UserErrorOperationBlockedByImmutability" and refused.value.http_status == 409
    assert refused.value.target == "retainData" and mode.value in refused.value.message
    instance = InstanceStore(world.state).get(NAME)
    assert instance.protection_status is ProtectionStatus.PROTECTED
    assert {p.recovery_point_id for p in RecoveryPointStore(world.state).of(NAME)} == points
    # Stopping and keeping the data is allowed; points then expire only on their own dates.
    stopped, job = protection.stop(NAME, {"retainData": "asPerPolicy"}, NOW)
    assert job is None and stopped.protection_status is ProtectionStatus.STOPPED


@pytest.mark.parametrize("mode", IMMUTABLE)
def test_an_immutable_vault_refuses_a_policy_change_that_shortens_retention_of_a_used_policy(
    world: travel.World, mode: Immutability
) -> None:
    policies = PolicyService(world.state, immutability=mode)
    doc = _policy_doc()
    shorter = copy.deepcopy(doc)
    first = _durations(shorter)[0]
    first["duration"] = "P7D"
    with pytest.raises(UserError) as refused:
        policies.put("mwf", shorter, NOW)
    assert refused.value.code is ErrorCode.OPERATION_BLOCKED_BY_IMMUTABILITY
    assert "1 backup instance" in refused.value.message
    assert policies.get("mwf").policy == world.policy  # nothing written
    # Longer is fine, and so is the same policy again.
    longer = copy.deepcopy(doc)
    for duration in _durations(longer):
        duration["duration"] = "P10Y"
    assert policies.put("mwf", doc, NOW)[1] is False
    assert policies.put("mwf", longer, NOW)[1] is False
    # A policy no instance uses may be shortened; and a vault without immutability shortens anything.
    assert policies.put("unused", doc, NOW)[1] is True
    policies.put("unused", shorter, NOW)
    PolicyService(world.state).put("mwf", shorter, NOW)


def test_shortened_rules_names_each_rule_kept_less_long_or_dropped() -> None:
    doc = _policy_doc()
    old = parse_policy(doc)
    assert shortened_rules(old, old, NOW) == []
    names = [r.name for r in old.retention_rules]
    shorter = copy.deepcopy(doc)
    _durations(shorter)[0]["duration"] = "P7D"
    assert len(shortened_rules(old, parse_policy(shorter), NOW)) == 1
    # A policy with the Default rule alone drops every other rule.
    only_default = parse_policy(json.loads((EXAMPLES / "sunday-default-only.json").read_text()))
    dropped = set(shortened_rules(old, only_default, NOW))
    assert {n for n in names if n != "Default"} <= dropped and len(names) > 1


@pytest.mark.parametrize("mode", IMMUTABLE)
def test_purge_of_an_instance_soft_deleted_before_immutability_keeps_unexpired_points(
    world: travel.World, mode: Immutability
) -> None:
    store = RecoveryPointStore(world.state)
    points = list(store.of(NAME))
    ProtectionService(world.state, world.blobs, soft_delete_days=14).stop(NAME, {"retainData": "delete"}, NOW)
    purge = NOW + timedelta(days=14)
    sweep = RetentionSweep(world.state, world.blobs, immutability=mode)
    report = sweep.sweep(purge)
    assert report.immutable == len([p for p in points if p.deletion > purge]) > 0
    left = {p.recovery_point_id for p in store.of(NAME)}
    assert left == {p.recovery_point_id for p in points if p.deletion > purge}
    # Each goes when its own retention ends; the instance when the last one has gone.
    last = max(p.deletion for p in points)
    middle = sorted(p.deletion for p in points)[len(points) // 2]
    sweep.sweep(middle)
    assert {p.recovery_point_id for p in store.of(NAME)} == {p.recovery_point_id for p in points if p.deletion > middle}
    assert InstanceStore(world.state).find(NAME) is not None
    RetentionSweep(world.state, world.blobs, immutability=mode).sweep(last)
    assert InstanceStore(world.state).find(NAME) is None and list(store.of(NAME, include_deleting=True)) == []


def test_locked_is_recorded_on_first_start_and_no_later_start_turns_it_off() -> None:
    state = MemoryTables().table("state")
    assert enforce_lock(state, Immutability.UNLOCKED, NOW) is Immutability.UNLOCKED
    assert enforce_lock(state, Immutability.DISABLED, NOW) is Immutability.DISABLED  # Unlocked may be undone
    assert enforce_lock(state, Immutability.LOCKED, NOW) is Immutability.LOCKED
    for weaker in (Immutability.DISABLED, Immutability.UNLOCKED):
        with pytest.raises(SettingsError) as refused:
            enforce_lock(state, weaker, NOW + timedelta(days=1))
        assert set(refused.value.problems) == {"PGVAULT_IMMUTABILITY"}
        assert "Locked" in refused.value.problems["PGVAULT_IMMUTABILITY"]
    assert enforce_lock(state, Immutability.LOCKED, NOW + timedelta(days=2)) is Immutability.LOCKED


def test_the_settings_read_soft_delete_days_and_immutability_and_name_every_bad_value() -> None:
    base = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "PGVAULT_SCHEDULER_SCHEDULE": "0 */5 * * * *",
        "PGVAULT_RETENTION_SCHEDULE": "0 17 * * * *",
    }
    default = load_settings(base)
    assert (default.soft_delete_days, default.immutability) == (14, Immutability.DISABLED)
    chosen = load_settings({**base, "PGVAULT_SOFT_DELETE_DAYS": "180", "PGVAULT_IMMUTABILITY": "locked"})
    assert (chosen.soft_delete_days, chosen.immutability) == (180, Immutability.LOCKED)
    for days in ("13", "181", "fourteen", "-14"):
        with pytest.raises(SettingsError) as bad:
            load_settings({**base, "PGVAULT_SOFT_DELETE_DAYS": days, "PGVAULT_IMMUTABILITY": "Sometimes"})
        assert set(bad.value.problems) == {"PGVAULT_SOFT_DELETE_DAYS", "PGVAULT_IMMUTABILITY"}
    assert parse_immutability("") is Immutability.DISABLED and parse_immutability(" Unlocked ") is Immutability.UNLOCKED
