"""Rehydration of archived recovery points: a readable copy, waited for across timer runs.

An archived point's blob (tier Archive) cannot be read. Rehydrating copies it to
``rehydrated/<blob name>`` with ``start_copy_from_url(standard_blob_tier=Hot,
rehydrate_priority=...)``; Azure takes hours (``archive_status`` says
``rehydrate-pending-to-hot`` meanwhile), Azurite is done at once. Nobody sleeps on it: a
record in the state table (partition ``rehydration``, one per point) says where the copy is,
whether it is ready, which restore jobs wait for it and when it expires; a timer polls pending
copies, releases the waiting restores when a copy is readable, and deletes copies whose
retention has passed. Every change of the record is ETag-guarded.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

import isodate

from shared.errors import ErrorCode, UserError
from shared.storage.blobs import BlobInfo, BlobMissing, BlobStore
from shared.storage.layout import part_blob_name
from shared.storage.tables import Entity, EntityExists, StateStore

log = logging.getLogger(__name__)

PARTITION = "rehydration"
COPY_PREFIX = "rehydrated/"


class CopyState(StrEnum):
    """Where a rehydrated copy is."""

    PENDING = "Pending"
    """Azure is still rehydrating (or copying)."""
    READY = "Ready"
    """Readable (tier Hot, copy finished)."""
    FAILED = "Failed"
    """The copy failed or was aborted; a new request starts over."""


def copy_state(info: BlobInfo) -> CopyState:
    """What a copy's properties say (Azure's ``x-ms-archive-status`` and ``x-ms-copy-status``)."""
    if info.copy_status in ("failed", "aborted"):
        return CopyState.FAILED
    if info.archive_status or info.copy_status == "pending" or info.tier == "Archive":
        return CopyState.PENDING
    return CopyState.READY


class BlobProbe(Protocol):
    """Reads what storage says about a blob (``BlobStore`` asks storage; tests can play recorded answers)."""

    def info(self, name: str) -> BlobInfo | None:
        """The blob's tier and copy state, or None when it does not exist."""
        ...


def copy_name_for(blob_name: str) -> str:
    """Where the rehydrated copy of ``blob_name`` goes."""
    return COPY_PREFIX + blob_name


@dataclass(frozen=True)
class Rehydration:
    """One point's rehydrated copy, as recorded."""

    recovery_point_id: str
    instance: str
    source_blob: str
    copy_blob: str
    priority: str
    duration: str
    job_id: str
    state: CopyState = CopyState.PENDING
    started: bool = False
    waiting: tuple[str, ...] = ()
    ready_at: datetime | None = None
    expiry: datetime | None = None
    etag: str | None = None
    parts: int = 0
    """Data parts of a multi-part point: each is rehydrated beside the schema part, named after it."""

    def copies(self) -> list[tuple[str, str]]:
        """(archived blob, its copy) for every blob of the point: the schema part's, then each data part's."""
        pairs = [(self.source_blob, self.copy_blob)]
        for i in range(1, self.parts + 1):
            pairs.append((part_blob_name(self.source_blob, i), part_blob_name(self.copy_blob, i)))
        return pairs

    def data(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "sourceBlob": self.source_blob,
            "copyBlob": self.copy_blob,
            "priority": self.priority,
            "duration": self.duration,
            "jobId": self.job_id,
            "state": self.state.value,
            "started": self.started,
            "waiting": json.dumps(list(self.waiting)),
            "readyAt": self.ready_at,
            "expiry": self.expiry,
            "parts": self.parts,
        }

    @classmethod
    def from_entity(cls, e: Entity) -> Rehydration:
        return cls(
            e.row_key,
            str(e["instance"]),
            str(e["sourceBlob"]),
            str(e["copyBlob"]),
            str(e["priority"]),
            str(e["duration"]),
            str(e["jobId"]),
            CopyState(e["state"]),
            bool(e.get("started", False)),
            tuple(json.loads(e.get("waiting") or "[]")),
            e.get("readyAt"),
            e.get("expiry"),
            e.etag,
            int(e.get("parts") or 0),
        )

    def to_dict(self) -> dict[str, Any]:
        """For job details."""
        return {
            "copyBlob": self.copy_blob,
            "state": self.state.value,
            "priority": self.priority,
            "duration": self.duration,
            "expiry": self.expiry.isoformat() if self.expiry else None,
        }


class RehydrationStore:
    """Rehydration records in the state table, every write ETag-guarded."""

    def __init__(self, state: StateStore) -> None:
        self._state = state

    def get(self, rp_id: str) -> Rehydration | None:
        entity = self._state.get(PARTITION, rp_id)
        return None if entity is None else Rehydration.from_entity(entity)

    def create(self, record: Rehydration) -> tuple[Rehydration, bool]:
        """Insert ``record``; if the point has one already, return that and False."""
        try:
            entity = self._state.insert(PARTITION, record.recovery_point_id, record.data())
        except EntityExists:
            existing = self.get(record.recovery_point_id)
            assert existing is not None
            return existing, False
        return replace(record, etag=entity.etag), True

    def save(self, record: Rehydration, **changes: Any) -> Rehydration:
        """Write ``changes`` if nobody changed the record since it was read (``ETagMismatch`` otherwise)."""
        new = replace(record, **changes)
        entity = Entity(PARTITION, record.recovery_point_id, {}, record.etag)
        return replace(new, etag=self._state.update(entity, new.data()).etag)

    def delete(self, record: Rehydration) -> None:
        self._state.delete(Entity(PARTITION, record.recovery_point_id, {}, record.etag))

    def all(self) -> list[Rehydration]:
        return [Rehydration.from_entity(e) for e in self._state.partition(PARTITION)]


def start_copy(blobs: BlobStore, record: Rehydration) -> None:
    """Ask storage to rehydrate the archived blob(s) into the record's copies (idempotent: a copy that
    exists already, pending or done, is left alone; a failed one is replaced)."""
    for source, copy in record.copies():
        existing = blobs.info(copy)
        if existing is not None:
            if copy_state(existing) is not CopyState.FAILED:
                continue
            blobs.delete(copy)  # what a failed or aborted copy left: start over
        try:
            blobs.start_rehydration(source, copy, record.priority)
        except BlobMissing as exc:
            raise UserError(
                ErrorCode.NOT_FOUND,
                f"the archived blob {source} of recovery point {record.recovery_point_id} is missing from the vault",
                target="recoveryPointId",
            ) from exc


def copies_state(probe: BlobProbe, record: Rehydration) -> CopyState:
    """Where the record's copies are together: Failed if any failed, Ready when every one is readable."""
    states = []
    for _, copy in record.copies():
        props = probe.info(copy)
        states.append(CopyState.PENDING if props is None else copy_state(props))
    if CopyState.FAILED in states:
        return CopyState.FAILED
    return CopyState.PENDING if CopyState.PENDING in states else CopyState.READY


def expiry_after(ready_at: datetime, duration: str) -> datetime:
    """When a copy that became readable at ``ready_at`` is deleted."""
    span: timedelta = isodate.parse_duration(duration)
    return ready_at + span
