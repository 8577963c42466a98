"""The scheduler's due index: each schedulable instance's next slot, so a tick reads only what is due.

A row in ``nextbackup`` per instance that is protected and ready (``layout.slot_row``: the slot's
UTC time, then the instance), and the instance's ``schedule`` marker (``through``: until when the
scheduler evaluated it; ``next``: its index row). The timer's tick reads the rows up to ``now``
with one range query; with nothing due, that and the backfill marker are all it reads.

The index is a superset of the schedulable instances, never a subset: a row is written *before*
an instance becomes schedulable (validation passed, protection resumed, a policy changed) and
removed *after* it stops being so. A row whose instance is not schedulable any more (a write that
failed in between, a concurrent change) is harmless: the tick reads the instance, sees it, and
drops the row. The writes happen in ``InstanceStore`` (every change of an instance goes through
it) and in ``PolicyService.put`` (re-indexes the instances of the policy: bounded by them).

Migration: an index that was never built (instances configured before it existed) is built once
by the first tick (``backfill``), guarded by the insert of its marker row.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.errors import UserError
from shared.policy import Policy, next_occurrence, parse_policy
from shared.storage import layout
from shared.storage.tables import Entity, EntityExists, StateStore

log = logging.getLogger(__name__)

# The backfill's marker in the ``schedule`` partition ('~' never starts an instance name).
INDEX_MARKER = "~index-v1"
# Azure Tables: at most 15 comparisons in one filter (one for the partition, 14 row keys).
# https://learn.microsoft.com/rest/api/storageservices/querying-tables-and-entities
MAX_KEYS_PER_QUERY = 14
# Reading a whole partition (1,000 rows a page) beats key lookups past this many keys.
WHOLE_PARTITION_ABOVE = 14 * 20
_PROTECTED = "ProtectionConfigured"  # shared.instances.ProtectionStatus.PROTECTED (no import: a cycle)
_READY = "Success"  # shared.instances.Readiness.SUCCESS


def schedulable(record: Mapping[str, Any] | None) -> bool:
    """Whether the instance stored as ``record`` is one the scheduler backs up (protected and ready)."""
    return record is not None and record.get("protectionStatus") == _PROTECTED and record.get("readiness") == _READY


@dataclass(frozen=True)
class DueRow:
    """One row of the index: instance ``instance`` is due at ``slot``."""

    key: str
    instance: str
    slot: datetime

    @classmethod
    def of(cls, entity: Entity) -> DueRow:
        return cls(entity.row_key, str(entity["instance"]), entity["slot"])


def read_keys(state: StateStore, pk: str, keys: Iterable[str]) -> dict[str, Entity]:
    """The rows of partition ``pk`` with these row keys (absent ones left out), in few requests:
    key lookups of ``MAX_KEYS_PER_QUERY`` per query, or the whole partition when there are many."""
    wanted = sorted(set(keys))
    if len(wanted) > WHOLE_PARTITION_ABOVE:
        chosen = set(wanted)
        return {e.row_key: e for e in state.partition(pk) if e.row_key in chosen}
    found: dict[str, Entity] = {}
    for start in range(0, len(wanted), MAX_KEYS_PER_QUERY):
        chunk = wanted[start : start + MAX_KEYS_PER_QUERY]
        params: dict[str, Any] = {"pk": pk, **{f"k{i}": k for i, k in enumerate(chunk)}}
        ors = " or ".join(f"RowKey eq @k{i}" for i in range(len(chunk)))
        for entity in state.query(f"PartitionKey eq @pk and ( {ors} )", params):
            found[entity.row_key] = entity
    return found


class PolicyCache:
    """Policies read once each for the life of this object (a tick, a re-index)."""

    def __init__(self, state: StateStore) -> None:
        self._state = state
        self._parsed: dict[str, Policy | None] = {}

    def get(self, key: str) -> Policy | None:
        """Policy ``key`` (lowercase name), or None when it is missing or cannot be read (logged)."""
        key = layout.row_key(key)
        if key not in self._parsed:
            entity = self._state.get(layout.POLICY, key)
            policy: Policy | None = None
            if entity is None:
                log.error("policy %s does not exist; its instances are not scheduled", key)
            else:
                try:
                    policy = parse_policy(json.loads(str(entity["policy"])))
                except (UserError, ValueError) as exc:
                    log.error("policy %s cannot be evaluated: %s", key, exc)
            self._parsed[key] = policy
        return self._parsed[key]


class ScheduleIndex:
    """The ``nextbackup`` rows and ``schedule`` markers (see the module's doc)."""

    def __init__(self, state: StateStore, policies: PolicyCache | None = None) -> None:
        self._state = state
        self.policies = policies or PolicyCache(state)

    # -- reads ----------------------------------------------------------------------------------

    def due(self, now: datetime, limit: int) -> list[DueRow]:
        """The rows due at ``now`` (slot <= now), oldest slot first, at most ``limit``: one range query
        (a page per 1,000 rows)."""
        rows: list[DueRow] = []
        token: Any | None = None
        while len(rows) < limit:
            page, token = self._state.page(
                "PartitionKey eq @pk and RowKey le @hi",
                {"pk": layout.NEXT_BACKUP, "hi": layout.slot_row_bound(now)},
                page_size=min(1000, limit - len(rows)),
                continuation=token,
            )
            rows.extend(DueRow.of(e) for e in page)
            if token is None:
                break
        return rows

    def markers(self, names: Iterable[str]) -> dict[str, Entity]:
        """The ``schedule`` markers of these instances, by row key."""
        return read_keys(self._state, layout.SCHEDULE, (layout.row_key(n) for n in names))

    # -- writes ---------------------------------------------------------------------------------

    def entry(
        self, name: str, policy_key: str, since: datetime, old_next: str | None
    ) -> tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]], str | None] | None:
        """The index row and marker for instance ``name`` evaluated through ``since`` (and the old row
        to delete), or None when its policy cannot be read."""
        policy = self.policies.get(policy_key)
        if policy is None:
            return None
        slot = next_occurrence(policy.schedule, since)
        key = layout.slot_row(slot, name)
        row = {"instance": name, "slot": slot, "policyKey": layout.row_key(policy_key)}
        marker = {"through": since, "instance": name, "next": key}
        return (key, row), (layout.row_key(name), marker), (old_next if old_next and old_next != key else None)

    def write(
        self, entries: Iterable[tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]], str | None]]
    ) -> int:
        """Write index rows and markers (``entry``'s answers) in batches; the requests made.

        Rows first, then the old rows go, then the markers: a crash in between leaves an extra row
        (harmless: the tick finds the marker's ``through`` and the instance, and drops or moves it)."""
        rows, markers, old = [], [], []
        for row, marker, stale in entries:
            rows.append(row)
            markers.append(marker)
            if stale:
                old.append(stale)
        if not rows:
            return 0
        return self._state.write_batch(layout.NEXT_BACKUP, rows, old) + self._state.write_batch(
            layout.SCHEDULE, markers
        )

    def put(self, name: str, policy_key: str, created: datetime) -> None:
        """Index instance ``name`` (about to become schedulable): its next slot after the scheduler's
        ``through`` for it, or after its creation when it was never evaluated."""
        marker = self._state.get(layout.SCHEDULE, layout.row_key(name))
        since = marker["through"] if marker is not None else created
        entry = self.entry(name, policy_key, since, marker.get("next") if marker is not None else None)
        if entry is not None:
            self.write([entry])

    def drop(self, name: str) -> None:
        """Remove instance ``name``'s row (it stopped being schedulable); its ``through`` stays."""
        marker = self._state.get(layout.SCHEDULE, layout.row_key(name))
        if marker is not None and marker.get("next"):
            self._state.write_batch(layout.NEXT_BACKUP, deletes=[str(marker["next"])])

    def reindex_policy(self, policy_key: str) -> int:
        """Recompute the next slot of every schedulable instance of policy ``policy_key`` (it changed);
        how many. Work: the policy's instances (one filtered query), their markers, batched writes."""
        users = [
            e
            for e in self._state.query(
                "PartitionKey eq @pk and policyKey eq @policy",
                {"pk": layout.INSTANCE, "policy": layout.row_key(policy_key)},
            )
            if schedulable(e.data)
        ]
        markers = self.markers(str(e["name"]) for e in users)
        entries = []
        for e in users:
            marker = markers.get(e.row_key)
            since = marker["through"] if marker is not None else e["created"]
            entry = self.entry(str(e["name"]), policy_key, since, marker.get("next") if marker is not None else None)
            if entry is not None:
                entries.append(entry)
        self.write(entries)
        return len(entries)

    def backfill(self) -> bool:
        """Build the index once for instances configured before it existed; False when it was built.

        Reads every instance and marker once (the only O(instances) work, done once); the marker's
        insert guards it (two ticks backfilling at once write the same rows)."""
        if self._state.get(layout.SCHEDULE, INDEX_MARKER) is not None:
            return False
        markers = {e.row_key: e for e in self._state.partition(layout.SCHEDULE)}
        entries = []
        for e in self._instances():
            if not schedulable(e.data):
                continue
            marker = markers.get(e.row_key)
            since = marker["through"] if marker is not None else e["created"]
            entry = self.entry(
                str(e["name"]), str(e["policyName"]), since, marker.get("next") if marker is not None else None
            )
            if entry is not None:
                entries.append(entry)
        self.write(entries)
        try:
            self._state.insert(layout.SCHEDULE, INDEX_MARKER, {"builtFor": len(entries)})
        except EntityExists:
            log.info("another scheduler built the due index at the same time")
        log.info("scheduler due index built for %d instance(s)", len(entries))
        return True

    def _instances(self) -> Iterator[Entity]:
        return self._state.partition(layout.INSTANCE)
