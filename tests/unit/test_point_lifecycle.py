"""A recovery point's recorded lifecycle drives the sweep: next events, old records, the due index key."""

from __future__ import annotations

import copy
import datetime as dt
import json
from dataclasses import replace
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.policy import CopyOption, LifecycleEvent, Policy, lifecycle, parse_policy
from shared.recovery_points import PointState, RecoveryPoint, due_key
from shared.storage import layout
from tests.examples import EXAMPLES

DOC: dict[str, Any] = json.loads((EXAMPLES / "weekly-mon-wed-fri-with-archive.json").read_text())["properties"]
POLICY = parse_policy(DOC)
UTC = dt.UTC


def _immediate() -> Policy:
    doc = copy.deepcopy(DOC)
    doc["policyRules"][3]["lifecycles"][0]["targetDataStoreCopySettings"][0]["copyAfter"]["objectType"] = (
        "ImmediateCopyOption"
    )
    return parse_policy(doc)


def _point(policy: Policy, tag: str, at: dt.datetime) -> RecoveryPoint:
    return RecoveryPoint.from_lifecycle(
        "rp",
        "orders",
        lifecycle(policy, tag, at),
        blob_name="orders/rp.pgdump.zst",
        size_in_bytes=1,
        raw_bytes=1,
        sha256="0" * 64,
        server_version="15",
        pg_dump_version="15",
        job_id="rp",
        on_demand=False,
    )


def _walk(point: RecoveryPoint) -> list[tuple[dt.datetime, LifecycleEvent]]:
    seen = []
    while (upcoming := point.next_event()) is not None:
        seen.append(upcoming)
        point = replace(point, events_done=point.events_done + 1)
    return seen


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["Default", "Weekly", "Monthly", "Yearly"]),
    st.datetimes(min_value=dt.datetime(2020, 1, 1), max_value=dt.datetime(2035, 12, 31), timezones=st.just(UTC)),
    st.booleans(),
)
def test_a_recorded_point_owes_exactly_the_events_of_its_policy_lifecycle(
    tag: str, at: dt.datetime, immediate: bool
) -> None:
    policy = _immediate() if immediate else POLICY
    point = _point(policy, tag, at)
    assert tuple(_walk(point)) == lifecycle(policy, tag, at).events()


def test_points_recorded_before_the_copy_option_was_stored_read_as_copy_on_expiry() -> None:
    at = dt.datetime(2025, 2, 3, 22, tzinfo=UTC)
    old = replace(_point(POLICY, "Monthly", at), copy_option=None)
    assert old.effective_copy_option is CopyOption.COPY_ON_EXPIRY
    assert [e for _, e in _walk(old)] == [LifecycleEvent.ARCHIVE_MOVE, LifecycleEvent.DELETE]
    plain = replace(_point(POLICY, "Default", at), copy_option=None)
    assert [e for _, e in _walk(plain)] == [LifecycleEvent.DELETE]


def test_a_step_in_flight_keeps_the_index_row_of_its_event() -> None:
    point = _point(POLICY, "Monthly", dt.datetime(2025, 2, 3, 22, tzinfo=UTC))
    claimed = replace(point, state=PointState.MOVING, pending_event=LifecycleEvent.ARCHIVE_MOVE, pending_job_id="j")
    assert due_key(claimed) == due_key(point) == (layout.due_partition(point.vault_expiry), "orders|rp")
    assert claimed.next_event() == (point.vault_expiry, LifecycleEvent.ARCHIVE_MOVE)


def test_a_point_with_every_event_done_has_no_index_row() -> None:
    point = _point(POLICY, "Default", dt.datetime(2025, 2, 3, 22, tzinfo=UTC))
    assert due_key(replace(point, events_done=1)) is None
