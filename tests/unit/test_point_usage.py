"""What an instance's recovery points take (the instance list's size column), on the in-memory table.

The usage row is recomputed from the points whenever one is added or removed, so the list reads
every instance's sizes in one partition query instead of one query per instance.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from shared.policy import LifecycleEvent, lifecycle, parse_policy
from shared.recovery_points import PointState, RecoveryPoint, RecoveryPointStore
from shared.storage import layout
from shared.storage.memory import MemoryStateTable
from tests.examples import EXAMPLES

DOC: dict[str, Any] = json.loads((EXAMPLES / "weekly-mon-wed-fri-with-archive.json").read_text())["properties"]
POLICY = parse_policy(DOC)
T0 = dt.datetime(2026, 3, 2, 22, 0, tzinfo=dt.UTC)


def _point(instance: str, n: int, size: int) -> RecoveryPoint:
    return RecoveryPoint.from_lifecycle(
        f"rp{n}",
        instance,
        lifecycle(POLICY, "Default", T0 + dt.timedelta(days=n)),
        blob_name=f"{instance}/rp{n}.pgdump.zst",
        size_in_bytes=size,
        raw_bytes=size * 4,
        sha256="0" * 64,
        server_version="15",
        pg_dump_version="15",
        job_id=f"job{n}",
        on_demand=False,
    )


def test_usage_follows_every_point_added_or_removed_and_lists_in_one_query() -> None:
    state = MemoryStateTable("state")
    points = RecoveryPointStore(state)
    first, _ = points.add(_point("Orders", 1, 100))
    points.add(_point("Orders", 2, 3 * 2**31))  # above 32 bits, as a real dump may be
    points.add(_point("billing", 1, 7))
    usage = points.usage()
    assert set(usage) == {"orders", "billing"}
    orders = usage["orders"]
    assert (orders.points, orders.latest_size_in_bytes, orders.total_size_in_bytes) == (2, 3 * 2**31, 3 * 2**31 + 100)
    assert orders.latest_time == T0 + dt.timedelta(days=2)
    wire = orders.to_wire()
    assert wire.latestPointSizeInBytes == 3 * 2**31 and wire.recoveryPoints == 2

    # A point whose last copy is being deleted is no longer listed, nor counted.
    going = points.save(points.get("Orders", "rp2"), state=PointState.DELETING, pending_event=LifecycleEvent.DELETE)
    assert points.refresh_usage("Orders").points == 1
    points.remove(going)
    after = points.usage()["orders"]
    assert (after.points, after.latest_size_in_bytes, after.total_size_in_bytes) == (1, 100, 100)
    points.remove(first)
    assert points.usage()["orders"].points == 0 and points.usage()["orders"].latest_size_in_bytes is None


def test_an_instance_without_a_usage_row_gets_one_when_it_is_read_alone() -> None:
    state = MemoryStateTable("state")
    points = RecoveryPointStore(state)
    points.add(_point("orders", 1, 40))
    state.delete(state.get(layout.USAGE, "orders"))  # as for points recorded before usage rows were kept
    assert points.usage() == {}
    assert points.usage_of("orders").total_size_in_bytes == 40
    assert points.usage()["orders"].points == 1
