"""The retention sweep on Azurite, over the whole lifecycle of a short-lived policy (the scenarios:
tests/retention_travel.py; the in-memory tier runs them over three years of the example policy)."""

from __future__ import annotations

import pytest

from devhost.services import Azurite
from tests import retention_travel as travel
from tests.integration.world import open_storage

pytestmark = pytest.mark.integration


@pytest.fixture
def world(azurite: Azurite) -> travel.World:
    storage = open_storage(azurite, "ret", queues=[])
    return travel.build_world(
        storage.state, storage.backups, storage.fresh, policy=travel.short_lived_policy(), weeks=travel.SHORT_WEEKS
    )


@pytest.mark.slow
def test_weekly_sweeps_over_a_whole_lifecycle_leave_exactly_the_points_simulated(world: travel.World) -> None:
    travel.three_years_of_weekly_sweeps(world)


@pytest.mark.slow
def test_sweeps_killed_between_any_two_steps_and_rerun_converge_to_the_same_state(world: travel.World) -> None:
    travel.sweeps_killed_and_rerun(world)


@pytest.mark.slow
def test_two_sweeps_at_once_act_once_on_each_point(world: travel.World) -> None:
    travel.two_sweeps_at_once(world)
