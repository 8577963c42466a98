"""The retention sweep on the in-memory table and container: the same three-year scenarios as on
Azurite (tests/retention_travel.py), fast enough for the unit tier."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.recovery_points import RecoveryPointStore
from shared.retention import RetentionSweep
from shared.storage.memory import MemoryBlobStore, MemoryTables
from tests import retention_travel as travel


@pytest.fixture
def world() -> travel.World:
    tables, blobs = MemoryTables(), MemoryBlobStore()
    state = tables.table("state")
    # Points with roles here (their deletion takes the roles blob along); the Azurite tier keeps the older shape.
    return travel.build_world(state, blobs, lambda: (tables.table("state"), blobs), with_roles=True)


def test_three_years_of_weekly_sweeps_leave_exactly_the_points_the_simulator_predicts(world: travel.World) -> None:
    travel.three_years_of_weekly_sweeps(world)


def test_sweeps_killed_between_any_two_steps_and_rerun_converge_to_the_same_state(world: travel.World) -> None:
    travel.sweeps_killed_and_rerun(world)


def test_every_part_of_multi_part_points_is_archived_and_deleted_with_its_point_even_by_killed_sweeps(
    world: travel.World,
) -> None:
    world.parts = 3
    travel.sweeps_killed_and_rerun(world)  # checks, at the end, every listed point's blobs and nothing else


def test_two_sweeps_at_once_act_once_on_each_point(world: travel.World) -> None:
    travel.two_sweeps_at_once(world)


def test_a_host_clock_a_year_ahead_deletes_nothing_while_storage_s_clock_rules() -> None:
    # The storage service's clock is the memory account's: set it, and the host's, independently.
    storage_now = [travel.START]
    tables, blobs = MemoryTables(lambda: storage_now[0]), MemoryBlobStore()
    world = travel.build_world(tables.table("state"), blobs, lambda: (tables.table("state"), blobs))
    end = travel.START + timedelta(weeks=60)
    world.record_until(end, end)
    storage_now[0] = end
    before = {p.recovery_point_id for p in RecoveryPointStore(world.state).of(travel.NAME)}
    refused = RetentionSweep(world.state, world.blobs).sweep_on_time(end + timedelta(days=365))
    assert refused.refused is not None and "clock" in refused.refused.lower()
    assert {p.recovery_point_id for p in RecoveryPointStore(world.state).of(travel.NAME)} == before
    ran = RetentionSweep(world.state, world.blobs).sweep_on_time(end + timedelta(seconds=20))
    assert ran.refused is None
    after = {p.recovery_point_id for p in RecoveryPointStore(world.state).of(travel.NAME)}
    assert after < before  # the sweep ran at storage's time: what was due by then went
