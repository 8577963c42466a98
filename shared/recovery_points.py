"""Recovery points: what a successful backup leaves, and what restores read.

A recovery point is written only after its blob is committed and its checksum recorded (the
backup worker's last step), with an insert keyed by an id derived from the backup job, so a
job that runs twice leaves one point. Points of an instance share a partition; ids start with
the inverted backup time, so the partition reads newest first.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from shared.errors import ErrorCode, TransientError, UserError
from shared.policy import CopyOption, DataStore, Lifecycle, LifecycleEvent
from shared.storage import layout
from shared.storage.limits import MAX_TABLE_PROPERTY_STRING_CHARS
from shared.storage.tables import Entity, EntityExists, ETagMismatch, StateStore

if TYPE_CHECKING:  # the wire models import this module's enums
    from shared.wire import instances as wire_instances
    from shared.wire import recovery_points as wire_points

log = logging.getLogger(__name__)


class PointState(StrEnum):
    """Where a recovery point is in its retention life (the sweep's state machine, ``shared.retention``).

    Settled states say where the point's copies are; in-flight states are written, with the step's
    job id, BEFORE the sweep acts, so a sweep killed at any step is finished by the next one.
    Legal moves: Active -> Moving -> Archived; Active -> Copying -> Active (an immediate archive
    copy); Active|Archived -> Deleting -> (record gone, or back to Active/Archived after a partial
    delete of one of two copies).
    """

    ACTIVE = "Active"
    """Settled; its restorable copy is in VaultStore (points written before states existed read as Active)."""
    MOVING = "Moving"
    """Its blob is being moved to the Archive tier (CopyOnExpiryOption); still listed, datastore VaultStore."""
    COPYING = "Copying"
    """An archive copy of its blob is being made (ImmediateCopyOption); still restorable from VaultStore."""
    ARCHIVED = "Archived"
    """Settled; its only copy is in ArchiveStore (blob tier Archive): restorable after rehydration."""
    DELETING = "Deleting"
    """A copy is being deleted (blob first, then the record). Not listed and not restorable meanwhile."""
    SOFT_DELETED = "SoftDeleted"
    """Shown, never stored: the point's instance is soft-deleted, so the point is kept as it is (no
    lifecycle step, no restore) until the instance's purge time (``purgeTime``); undelete brings it back."""


class Integrity(StrEnum):
    """What reads of a point's blob have found (public ``integrity``; ``state`` is its retention state)."""

    AVAILABLE = "Available"
    """No read has found its blob altered: restorable."""
    CORRUPTED = "Corrupted"
    """A restore or verification found its blob failing its SHA-256: refused as a restore source."""


# The in-flight state each sweep step writes before it acts.
STEP_STATE: dict[LifecycleEvent, PointState] = {
    LifecycleEvent.ARCHIVE_MOVE: PointState.MOVING,
    LifecycleEvent.ARCHIVE_COPY: PointState.COPYING,
    LifecycleEvent.DELETE_VAULT: PointState.DELETING,
    LifecycleEvent.DELETE_ARCHIVE: PointState.DELETING,
    LifecycleEvent.DELETE: PointState.DELETING,
}


def recovery_point_id(job_id: str) -> str:
    """The id of the point a backup job makes: the job id, so a repeated job finds its point."""
    return job_id


@dataclass(frozen=True)
class Part:
    """One data part of a multi-part recovery point (``shared.pg.parts``): checksum, sizes, tables.

    Its blob is ``layout.part_blob_name(point.blob_name, index)``: named after the point's blob,
    so it follows the point's blob through archive copies and rehydrated copies.
    """

    index: int
    sha256: str
    stored_bytes: int
    raw_bytes: int
    tables: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "sha256": self.sha256,
            "storedBytes": self.stored_bytes,
            "rawBytes": self.raw_bytes,
            "tables": list(self.tables),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Part:
        return cls(int(d["index"]), str(d["sha256"]), int(d["storedBytes"]), int(d["rawBytes"]), tuple(d["tables"]))


# A point's parts are JSON cut into string properties ``parts``, ``parts2``, ... (each at most 64 KiB of UTF-16),
# at most this many: 768 KiB, leaving a quarter of the 1 MiB entity to the record's other fields.
MAX_PART_PROPERTIES = 12
_PROPERTY_BYTES = 2 * MAX_TABLE_PROPERTY_STRING_CHARS


def _part_property(i: int) -> str:
    return "parts" if i == 0 else f"parts{i + 1}"


def _cut(text: str) -> list[str]:
    """``text`` in pieces of at most one string property's UTF-16 each, never between a surrogate pair."""
    raw, pieces, start = text.encode("utf-16-le"), [], 0
    while start < len(raw):
        end = min(start + _PROPERTY_BYTES, len(raw))
        if end < len(raw) and 0xD8 <= raw[end - 1] <= 0xDB:  # the high half of a pair: keep the pair together
            end -= 2
        pieces.append(raw[start:end].decode("utf-16-le"))
        start = end
    return pieces


def _parts_text(parts: Sequence[Part]) -> str:
    # Unescaped: \uXXXX would spend six characters on each non-ASCII one.
    return json.dumps([p.to_dict() for p in parts], separators=(",", ":"), ensure_ascii=False)


def parts_properties(parts: Sequence[Part]) -> dict[str, str | None]:
    """The parts as the point's record stores them: ``{"parts": None}`` for a single-part point, else their JSON
    in as many properties as it needs. Their table lists are left out when with them the parts would not fit
    ``MAX_PART_PROPERTIES``: the lists are a note (the manifest has them too); a restore reads each part's blob
    and checksum only."""
    if not parts:
        return {"parts": None}
    pieces = _cut(_parts_text(parts))
    if len(pieces) > MAX_PART_PROPERTIES:
        log.warning("a point of %s parts is recorded without their table lists: they do not fit its record", len(parts))
        pieces = _cut(_parts_text([replace(p, tables=()) for p in parts]))
    return {_part_property(i): piece for i, piece in enumerate(pieces)}


def parts_of_record(data: Mapping[str, Any]) -> tuple[Part, ...]:
    """The parts a point's record stores (none for a single-part point, or one written before parts)."""
    pieces = []
    for i in range(MAX_PART_PROPERTIES):
        piece = data.get(_part_property(i))
        if not piece:
            break
        pieces.append(str(piece))
    return tuple(Part.from_dict(d) for d in json.loads("".join(pieces))) if pieces else ()


@dataclass(frozen=True)
class RecoveryPoint:
    """One restorable copy of a database."""

    recovery_point_id: str
    instance: str
    time: datetime
    datastore: DataStore
    retention_tag: str
    vault_expiry: datetime
    archive_move: datetime | None
    archive_expiry: datetime | None
    deletion: datetime
    blob_name: str
    size_in_bytes: int
    raw_bytes: int
    sha256: str
    server_version: str
    pg_dump_version: str
    job_id: str
    on_demand: bool = False
    etag: str | None = None
    # Retention state machine (shared.retention). Defaults are what a point written before it reads as.
    state: PointState = PointState.ACTIVE
    copy_option: CopyOption | None = None
    """How the point reaches ArchiveStore; None for old records (inferred from ``archive_move``)."""
    events_done: int = 0
    """How many of its lifecycle events (``lifecycle().events()``) the sweep has finished."""
    pending_event: LifecycleEvent | None = None
    """The event in flight while ``state`` is Moving/Copying/Deleting."""
    pending_job_id: str | None = None
    """The ArchiveMove/Delete job of the event in flight."""
    claimed_by: str | None = None
    """The sweep run acting on the point now (another run takes over only after ``CLAIM_TIMEOUT``)."""
    claimed_at: datetime | None = None
    archive_blob_name: str | None = None
    """The blob of the ArchiveStore copy while the point is in both stores (ImmediateCopyOption)."""
    corrupted_at: datetime | None = None
    """When a read found its blob failing its checksum; a Corrupted point is never restored again."""
    corruption: str | None = None
    """What that read found, and which job read it."""
    roles_blob_name: str | None = None
    """The blob beside the dump with the cluster roles its objects need (``shared.pg.roles``); None for
    points taken before pgvault stored roles."""
    roles_sha256: str | None = None
    role_count: int | None = None
    parts: tuple[Part, ...] = ()
    """The data parts of a multi-part point (its ``blob_name`` is then the schema part); none: one blob."""

    def part_blobs(self, blob_name: str | None = None) -> list[tuple[str, str]]:
        """(blob, sha256) of each data part, named after ``blob_name`` (the point's blob, or a copy of it)."""
        base = blob_name if blob_name is not None else self.blob_name
        return [(layout.part_blob_name(base, p.index), p.sha256) for p in self.parts]

    def blob_names(self, blob_name: str | None = None) -> list[str]:
        """Every blob of the point: ``blob_name`` (default its own) and its parts' blobs named after it."""
        base = blob_name if blob_name is not None else self.blob_name
        return [base, *(name for name, _ in self.part_blobs(base))]

    @property
    def integrity(self) -> Integrity:
        """Whether the point's blob still matches its checksum as far as any read has seen."""
        return Integrity.CORRUPTED if self.corrupted_at is not None else Integrity.AVAILABLE

    @property
    def effective_copy_option(self) -> CopyOption | None:
        """The copy option, inferred for records written before it was stored."""
        if self.copy_option is not None:
            return self.copy_option
        return CopyOption.COPY_ON_EXPIRY if self.archive_move is not None else None

    def lifecycle(self) -> Lifecycle:
        """The point's lifecycle as recorded (the dates fixed when it was written)."""
        option = self.effective_copy_option
        if option is None or self.archive_expiry is None:
            return Lifecycle(self.retention_tag, self.time, self.vault_expiry)
        copied = self.vault_expiry if option is CopyOption.COPY_ON_EXPIRY else self.time
        return Lifecycle(self.retention_tag, self.time, self.vault_expiry, option, copied, self.archive_expiry)

    def next_event(self) -> tuple[datetime, LifecycleEvent] | None:
        """The next thing the sweep does to this point and when (the event in flight, if any); None at the end."""
        events = self.lifecycle().events()
        if self.pending_event is not None:
            return (events[self.events_done][0] if self.events_done < len(events) else self.time), self.pending_event
        if self.events_done >= len(events):
            return None
        return events[self.events_done]

    @classmethod
    def from_lifecycle(
        cls,
        rp_id: str,
        instance: str,
        life: Lifecycle,
        *,
        blob_name: str,
        size_in_bytes: int,
        raw_bytes: int,
        sha256: str,
        server_version: str,
        pg_dump_version: str,
        job_id: str,
        on_demand: bool,
        roles_blob_name: str | None = None,
        roles_sha256: str | None = None,
        role_count: int | None = None,
        parts: tuple[Part, ...] = (),
    ) -> RecoveryPoint:
        """A new point in vault-standard, with the dates its policy's lifecycle gives."""
        return cls(
            rp_id,
            instance,
            life.backup_time,
            DataStore.VAULT_STORE,
            life.tag,
            life.vault_expiry,
            life.archive_copy,
            life.archive_expiry,
            life.deletion,
            blob_name,
            size_in_bytes,
            raw_bytes,
            sha256,
            server_version,
            pg_dump_version,
            job_id,
            on_demand,
            copy_option=life.copy_option,
            roles_blob_name=roles_blob_name,
            roles_sha256=roles_sha256,
            role_count=role_count,
            parts=parts,
        )

    def to_dict(self) -> dict[str, Any]:
        """The public recovery point shape (README, API; ``shared.wire.recovery_points.RecoveryPoint``)."""
        from shared.wire import dump

        return dump(self.to_wire())

    def to_wire(self, purge_time: datetime | None = None) -> wire_points.RecoveryPoint:
        """The point as the API answers it; with ``purge_time`` (its instance is soft-deleted) as SoftDeleted."""
        from shared.wire import recovery_points as wire

        corruption = None
        if self.corrupted_at is not None:
            corruption = wire.Corruption(detectedTime=self.corrupted_at, reason=self.corruption)
        return wire.RecoveryPoint(
            recoveryPointId=self.recovery_point_id,
            instance=self.instance,
            time=self.time,
            datastore=self.datastore,
            retentionTag=self.retention_tag,
            expiry=self.vault_expiry if self.datastore is DataStore.VAULT_STORE else self.archive_expiry,
            vaultExpiry=self.vault_expiry,
            archiveMove=self.archive_move,
            archiveExpiry=self.archive_expiry,
            deletion=self.deletion,
            sizeInBytes=self.size_in_bytes,
            rawBytes=self.raw_bytes,
            sha256=self.sha256,
            serverVersion=self.server_version,
            pgDumpVersion=self.pg_dump_version,
            jobId=self.job_id,
            onDemand=self.on_demand,
            state=PointState.SOFT_DELETED if purge_time is not None else self.state,
            purgeTime=purge_time,
            copyOption=self.copy_option,
            inArchiveStore=self.datastore is DataStore.ARCHIVE_STORE or self.archive_blob_name is not None,
            integrity=self.integrity,
            corruption=corruption,
            roleCount=self.role_count,
            rolesSha256=self.roles_sha256,
            parts=1 + len(self.parts),
        )

    def _data(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "time": self.time,
            "datastore": self.datastore.value,
            "retentionTag": self.retention_tag,
            "vaultExpiry": self.vault_expiry,
            "archiveMove": self.archive_move,
            "archiveExpiry": self.archive_expiry,
            "deletion": self.deletion,
            "blobName": self.blob_name,
            "sizeInBytes": self.size_in_bytes,
            "rawBytes": self.raw_bytes,
            "sha256": self.sha256,
            "serverVersion": self.server_version,
            "pgDumpVersion": self.pg_dump_version,
            "jobId": self.job_id,
            "onDemand": self.on_demand,
            "state": self.state.value,
            "copyOption": self.copy_option.value if self.copy_option else None,
            "eventsDone": self.events_done,
            "pendingEvent": self.pending_event.value if self.pending_event else None,
            "pendingJobId": self.pending_job_id,
            "claimedBy": self.claimed_by,
            "claimedAt": self.claimed_at,
            "archiveBlobName": self.archive_blob_name,
            "corruptedAt": self.corrupted_at,
            "corruption": self.corruption,
            "rolesBlobName": self.roles_blob_name,
            "rolesSha256": self.roles_sha256,
            "roleCount": self.role_count,
            **parts_properties(self.parts),
        }

    @classmethod
    def _from(cls, e: Entity) -> RecoveryPoint:
        return cls(
            e.row_key,
            str(e["instance"]),
            e["time"],
            DataStore(e["datastore"]),
            str(e["retentionTag"]),
            e["vaultExpiry"],
            e.get("archiveMove"),
            e.get("archiveExpiry"),
            e["deletion"],
            str(e["blobName"]),
            int(e["sizeInBytes"]),
            int(e["rawBytes"]),
            str(e["sha256"]),
            str(e["serverVersion"]),
            str(e["pgDumpVersion"]),
            str(e["jobId"]),
            bool(e.get("onDemand", False)),
            e.etag,
            PointState(e.get("state") or PointState.ACTIVE.value),
            CopyOption(e["copyOption"]) if e.get("copyOption") else None,
            int(e.get("eventsDone") or 0),
            LifecycleEvent(e["pendingEvent"]) if e.get("pendingEvent") else None,
            e.get("pendingJobId"),
            e.get("claimedBy"),
            e.get("claimedAt"),
            e.get("archiveBlobName"),
            e.get("corruptedAt"),
            e.get("corruption"),
            e.get("rolesBlobName"),
            e.get("rolesSha256"),
            int(e["roleCount"]) if e.get("roleCount") is not None else None,
            parts_of_record(e.data),
        )


def due_key(point: RecoveryPoint) -> tuple[str, str] | None:
    """The (partition, row) of the point's row in the retention due index; None when nothing is due ever."""
    upcoming = point.next_event()
    if upcoming is None:
        return None
    return layout.due_partition(upcoming[0]), layout.due_row(point.instance, point.recovery_point_id)


@dataclass(frozen=True)
class Usage:
    """What one instance's listed recovery points take: how many, the newest one's size, all together."""

    points: int
    latest_size_in_bytes: int | None
    latest_time: datetime | None
    total_size_in_bytes: int

    def data(self) -> dict[str, Any]:
        return {
            "points": self.points,
            "latestSizeInBytes": self.latest_size_in_bytes,
            "latestTime": self.latest_time,
            "totalSizeInBytes": self.total_size_in_bytes,
        }

    @classmethod
    def from_entity(cls, e: Entity) -> Usage:
        latest = e.get("latestSizeInBytes")
        return cls(
            int(e["points"]), None if latest is None else int(latest), e.get("latestTime"), int(e["totalSizeInBytes"])
        )

    def to_wire(self) -> wire_instances.Storage:
        """The usage as an instance's ``storage`` shows it."""
        from shared.wire.instances import Storage

        return Storage(
            recoveryPoints=self.points,
            latestPointSizeInBytes=self.latest_size_in_bytes,
            latestPointTime=self.latest_time,
            totalSizeInBytes=self.total_size_in_bytes,
        )


class RecoveryPointStore:
    """Recovery points in the state table, and their rows in the retention due index.

    Each point has one row in the due index (``due-YYYYMMDD``, the UTC day of its next lifecycle
    event), so the retention sweep reads only what is due, never every point of every instance.
    The index row is written before the point and removed after it: an index row without its
    point is harmless (the sweep drops it), a point without an index row would never expire.
    """

    def __init__(self, state: StateStore) -> None:
        self._state = state

    def add(self, point: RecoveryPoint) -> tuple[RecoveryPoint, bool]:
        """Record ``point``; if a point with its id exists (the job ran twice), return that one and False.

        The instance's usage row is recomputed after (``refresh_usage``)."""
        pk = layout.recovery_points(point.instance)
        self.index(point)
        try:
            entity = self._state.insert(pk, point.recovery_point_id, point._data())
        except EntityExists:
            return self.get(point.instance, point.recovery_point_id, include_deleting=True), False
        self._refresh_quietly(point.instance)
        return replace(point, etag=entity.etag), True

    def refresh_usage(self, instance: str) -> Usage:
        """Recompute what ``instance``'s listed points take and write it to its usage row.

        Recomputed from the points (one partition read), never incremented: a second run, or a run
        after a lost write, writes the same truth, so the row cannot drift from the points.
        """
        # Only the fields it needs: a point's record is large, and this runs at every add and removal.
        rows = self._state.query(
            "PartitionKey eq @pk",
            {"pk": layout.recovery_points(instance)},
            # The keys too: the adapter builds an Entity of every row (the in-memory twin keeps them anyway).
            select=["PartitionKey", "RowKey", "time", "sizeInBytes", "state", "pendingEvent"],
        )
        going = (PointState.DELETING.value, LifecycleEvent.DELETE.value)  # as ``of``: its last copy is being deleted
        listed = [(e["time"], int(e["sizeInBytes"])) for e in rows if (e.get("state"), e.get("pendingEvent")) != going]
        newest = max(listed, default=None)
        usage = Usage(
            points=len(listed),
            latest_size_in_bytes=None if newest is None else newest[1],
            latest_time=None if newest is None else newest[0],
            total_size_in_bytes=sum(size for _, size in listed),
        )
        self._state.upsert(layout.USAGE, layout.row_key(instance), {"instance": instance, **usage.data()})
        return usage

    def _refresh_quietly(self, instance: str) -> None:
        # The point is what counts: a usage row that could not be written now is written at the next change.
        try:
            self.refresh_usage(instance)
        except TransientError as exc:
            log.warning("usage of instance %s not refreshed: %s", instance, exc.message)

    def usage_of(self, instance: str) -> Usage:
        """``instance``'s usage: its row, or (none yet: points recorded before rows were kept) recomputed now."""
        entity = self._state.get(layout.USAGE, layout.row_key(instance))
        return Usage.from_entity(entity) if entity is not None else self.refresh_usage(instance)

    def usage(self) -> dict[str, Usage]:
        """Every instance's usage row, by lowercase name (one partition query, whatever the instances hold)."""
        return {e.row_key: Usage.from_entity(e) for e in self._state.partition(layout.USAGE)}

    def usage_between(self, lo: str, hi: str) -> dict[str, Usage]:
        """The usage rows of instances whose row keys lie in ``[lo, hi]`` (one page of the instances
        list), by lowercase name: one range query, whatever the vault holds outside it."""
        rows = self._state.query(layout.KEY_RANGE, {"pk": layout.USAGE, "lo": lo, "hi": hi})
        return {e.row_key: Usage.from_entity(e) for e in rows}

    def index(self, point: RecoveryPoint, previous: tuple[str, str] | None = None) -> None:
        """Write the point's due-index row for its next event; drop ``previous`` (its former row) if different."""
        key = due_key(point)
        if key is not None:
            upcoming = point.next_event()
            assert upcoming is not None
            self._state.upsert(
                key[0],
                key[1],
                {
                    "instance": point.instance,
                    "recoveryPointId": point.recovery_point_id,
                    "at": upcoming[0],
                    "event": upcoming[1].value,
                    "pointTime": point.time,
                    "pendingJobId": point.pending_job_id,
                    "claimedAt": point.claimed_at,
                },
            )
        if previous is not None and previous != key:
            self._state.delete(Entity(previous[0], previous[1]))

    def due(self, now: datetime) -> list[Entity]:
        """Due-index rows whose event is at or before ``now``, oldest event first."""
        rows = self._state.query(
            "PartitionKey ge @lo and PartitionKey le @hi", {"lo": layout.DUE_PREFIX, "hi": layout.due_partition(now)}
        )
        due = [r for r in rows if r.partition_key.startswith(layout.DUE_PREFIX) and r["at"] <= now]
        due.sort(key=lambda r: (r["at"], r.get("pointTime") or r["at"], r.row_key))
        return due

    def drop_index_row(self, key: tuple[str, str]) -> None:
        """Delete one due-index row (its point is gone); gone already is fine."""
        self._state.delete(Entity(*key))

    def every(self) -> Iterator[RecoveryPoint]:
        """Every point of every instance, in any state (one range query over the point partitions)."""
        # '.' sorts right after '-': the range holds every ``rp-<name>`` partition and nothing else.
        for entity in self._state.query("PartitionKey ge @lo and PartitionKey lt @hi", {"lo": "rp-", "hi": "rp."}):
            yield RecoveryPoint._from(entity)

    def get(self, instance: str, rp_id: str, *, include_deleting: bool = False) -> RecoveryPoint:
        """Point ``rp_id`` of ``instance``; ``NotFound`` if there is none (or it is being deleted)."""
        entity = self._state.get(layout.recovery_points(instance), rp_id)
        point = RecoveryPoint._from(entity) if entity is not None else None
        if point is None or (
            point.state is PointState.DELETING and point.pending_event is LifecycleEvent.DELETE and not include_deleting
        ):
            raise UserError(
                ErrorCode.NOT_FOUND,
                f"recovery point {rp_id!r} of {instance!r} does not exist",
                target="recoveryPointId",
            )
        return point

    def find(self, instance: str, rp_id: str) -> RecoveryPoint | None:
        """Point ``rp_id`` of ``instance`` in whatever state, or None."""
        entity = self._state.get(layout.recovery_points(instance), rp_id)
        return RecoveryPoint._from(entity) if entity is not None else None

    def of(self, instance: str, *, include_deleting: bool = False) -> Iterator[RecoveryPoint]:
        """Every point of ``instance``, newest first; points being deleted are left out unless asked for.

        A point whose last copy is being deleted may already have lost its blob: it is not listed,
        so nothing listed is unrestorable.
        """
        for e in self._state.partition(layout.recovery_points(instance)):
            point = RecoveryPoint._from(e)
            if include_deleting or not (
                point.state is PointState.DELETING and point.pending_event is LifecycleEvent.DELETE
            ):
                yield point

    def newest(self, instance: str) -> RecoveryPoint | None:
        """The newest point of ``instance`` in any state (one row read: the partition reads newest first)."""
        rows, _ = self._state.page("PartitionKey eq @pk", {"pk": layout.recovery_points(instance)}, page_size=1)
        return RecoveryPoint._from(rows[0]) if rows else None

    def save(self, point: RecoveryPoint, **changes: Any) -> RecoveryPoint:
        """Write ``changes`` if the point is unchanged since ``point`` was read; ``ETagMismatch`` otherwise."""
        new = replace(point, **changes)
        entity = Entity(layout.recovery_points(point.instance), point.recovery_point_id, {}, point.etag)
        written = self._state.update(entity, new._data())
        return replace(new, etag=written.etag)

    def mark_corrupted(self, instance: str, rp_id: str, reason: str, now: datetime) -> RecoveryPoint | None:
        """Mark point ``rp_id`` Corrupted (its blob failed its checksum), ETag-guarded; the first mark stays.

        Re-read and written again when another writer (the retention sweep) changed the point
        meanwhile. None when the point is gone.
        """
        for _ in range(5):
            point = self.find(instance, rp_id)
            if point is None or point.corrupted_at is not None:
                return point
            try:
                marked = self.save(point, corrupted_at=now, corruption=reason)
            except ETagMismatch:
                continue
            self._raise_corrupted(marked)
            return marked
        return self.find(instance, rp_id)

    def _raise_corrupted(self, point: RecoveryPoint) -> None:
        """The alert of a point just marked Corrupted (its id is derived from the point and the mark's time)."""
        from shared.alerts.events import for_corrupted_point, raise_alert  # alerts build on the stores

        assert point.corrupted_at is not None
        try:
            alert = for_corrupted_point(point.instance, point.recovery_point_id, point.corruption, point.corrupted_at)
            raise_alert(self._state, alert, point.corrupted_at)
        except Exception as exc:  # the mark is written; the failed job that found it still raises its own alert
            log.warning("point %s: its alert could not be recorded now (%s)", point.recovery_point_id, exc)

    def remove(self, point: RecoveryPoint) -> None:
        """Delete the point's record if unchanged since read (``ETagMismatch`` otherwise); gone is fine.

        The instance's usage row is recomputed after (``refresh_usage``)."""
        self._state.delete(Entity(layout.recovery_points(point.instance), point.recovery_point_id, {}, point.etag))
        self._refresh_quietly(point.instance)


def shown(state: StateStore, instance: str, rp_id: str | None = None) -> list[wire_points.RecoveryPoint]:
    """The points of ``instance`` as the API lists them (or just ``rp_id``): newest first, marked
    SoftDeleted with their purge time while the instance is soft-deleted. ``NotFound`` for an unknown
    instance or point."""
    from shared.instances import InstanceStore

    owner = InstanceStore(state).get(instance)
    purge = owner.purge_at if owner.soft_deleted else None
    points = RecoveryPointStore(state)
    if rp_id is not None:
        return [points.get(owner.spec.name, rp_id).to_wire(purge)]
    return [p.to_wire(purge) for p in points.of(owner.spec.name)]


__all__ = [
    "ETagMismatch",
    "Integrity",
    "PointState",
    "RecoveryPoint",
    "RecoveryPointStore",
    "Usage",
    "due_key",
    "recovery_point_id",
    "shown",
]
