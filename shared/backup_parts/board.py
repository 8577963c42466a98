"""The rows of a cross-instance backup in the state table (partition ``bparts-<job id>``): one per attempt
and one per data part, their statuses and their ETag-guarded transitions."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.backup_parts.messages import PartMessage
from shared.errors import PgVaultError, TransientError, UserError
from shared.jobs import JobStore
from shared.storage import layout
from shared.storage.blobs import BlobStore
from shared.storage.limits import MAX_TABLE_BATCH_ENTITIES
from shared.storage.ports import Entity, ETagMismatch, StateStore

log = logging.getLogger(__name__)


_ROW_DIGITS = 4
# Ended jobs whose part rows one ``sweep_ended`` deletes, at most: each has up to MAX_PARTS + 1 rows per
# attempt that died, 10 table transactions (every 5 tries, 50); the rest wait for the next sweep.
SWEEP_JOBS = 100


class AttemptStatus(StrEnum):
    """Where one attempt of a cross-instance backup stands (its row in ``bparts-<job id>``)."""

    RUNNING = "Running"
    """The coordinator holds the snapshot and waits for the parts."""
    DONE = "Done"
    """Every part was recorded; the snapshot is closed. Its parts' blobs may be named by a point."""
    FAILED = "Failed"
    """The coordinator gave the attempt up: its parts are dropped and their blobs deleted."""


class PartStatus(StrEnum):
    """Where one data part of an attempt stands. Committed and Failed are final."""

    PENDING = "Pending"
    """Sent, not taken yet."""
    RUNNING = "Running"
    """A worker is dumping it (``started``: when its latest delivery began)."""
    COMMITTED = "Committed"
    """Its blob is committed and its checksum recorded."""
    FAILED = "Failed"
    """It cannot be dumped on this attempt's snapshot (``error``): the attempt fails."""

    @property
    def final(self) -> bool:
        return self in (PartStatus.COMMITTED, PartStatus.FAILED)


class AttemptOver(PgVaultError):
    """The part's attempt ended (failed, finished, its lock taken over) while the part was dumped."""


@dataclass(frozen=True)
class PartRow:
    """One data part's row, as read."""

    index: int
    status: PartStatus
    deliveries: int = 0
    worker: str | None = None
    started: datetime | None = None
    sha256: str | None = None
    stored_bytes: int = 0
    raw_bytes: int = 0
    error_code: str | None = None
    error: str | None = None
    user_error: bool = False
    sent: str | None = None
    """The digest of the part's message (``PartMessage.digest``)."""
    written: datetime | None = None
    """When the row was last written, by the storage service's clock (its ``Timestamp``): for a Running row,
    the write that started its latest delivery (nothing else writes a row until it is final)."""

    def sent_as(self, msg: PartMessage) -> bool:
        """Whether ``msg`` is the message the coordinator sent for this part."""
        return self.sent is not None and self.sent == msg.digest()

    @classmethod
    def of(cls, entity: Entity) -> PartRow:
        return cls(
            int(entity["index"]),
            PartStatus(entity["status"]),
            int(entity.get("deliveries") or 0),
            entity.get("worker"),
            entity.get("started"),
            entity.get("sha256"),
            int(entity.get("storedBytes") or 0),
            int(entity.get("rawBytes") or 0),
            entity.get("errorCode"),
            entity.get("error"),
            bool(entity.get("userError")),
            entity.get("sent"),
            entity.timestamp,
        )

    def running_for(self, service_now: datetime, host_now: datetime) -> timedelta | None:
        """How long the part's latest delivery has run (None unless Running), by the storage service's clock
        (``service_now`` against the row's ``written``), so the worker's own clock plays no part.

        ``host_now`` against the worker's ``started`` only for a row read without the service's times (an
        entity built in memory).
        """
        if self.status is not PartStatus.RUNNING:
            return None
        if self.written is not None:
            return service_now - self.written
        return None if self.started is None else host_now - self.started


@dataclass(frozen=True)
class AttemptRow:
    """One attempt's row, as its coordinator wrote it (``PartBoard.open``) and as it now stands."""

    status: AttemptStatus
    instance: str | None
    snapshot: str | None
    blob_name: str | None
    """The schema part's blob: each data part's is named after it (``layout.part_blob_name``)."""
    parts: int = 0
    created: datetime | None = None
    ended: datetime | None = None

    @classmethod
    def of(cls, entity: Entity) -> AttemptRow:
        return cls(
            AttemptStatus(entity["status"]),
            entity.get("instance"),
            entity.get("snapshot"),
            entity.get("blobName"),
            int(entity.get("parts") or 0),
            entity.get("created"),
            entity.get("ended"),
        )


class PartBoard:
    """The rows of one attempt's parts: the attempt's row and one row per data part, every write ETag-guarded."""

    def __init__(self, state: StateStore, job_id: str, attempt: str) -> None:
        self._state = state
        self.pk = layout.backup_parts(job_id)
        self.attempt = attempt

    def _rk(self, index: int) -> str:
        return f"{self.attempt}.{index:0{_ROW_DIGITS}d}"

    def open(
        self, *, instance: str, snapshot: str, blob_name: str, messages: Sequence[PartMessage], now: datetime
    ) -> None:
        """Record the attempt Running and its parts Pending, each with the digest of its message (before any
        message is sent)."""
        parts = len(messages)
        rows: list[tuple[str, Mapping[str, Any]]] = [
            (
                self._rk(m.part),
                {"status": PartStatus.PENDING.value, "index": m.part, "deliveries": 0, "sent": m.digest()},
            )
            for m in messages
        ]
        for start in range(0, len(rows), MAX_TABLE_BATCH_ENTITIES):
            if not self._state.insert_batch(self.pk, rows[start : start + MAX_TABLE_BATCH_ENTITIES]):
                raise TransientError(f"could not record the parts of attempt {self.attempt}")
        self._state.insert(
            self.pk,
            self.attempt,
            {
                "status": AttemptStatus.RUNNING.value,
                "instance": instance,
                "snapshot": snapshot,
                "blobName": blob_name,
                "parts": parts,
                "created": now,
            },
        )

    def status(self) -> AttemptStatus | None:
        """The attempt's status; None when it has no row (never opened)."""
        attempt = self.recorded()
        return None if attempt is None else attempt.status

    def recorded(self) -> AttemptRow | None:
        """The attempt's row (status, instance, snapshot, the schema part's blob); None when it has none."""
        entity = self._state.get(self.pk, self.attempt)
        return None if entity is None else AttemptRow.of(entity)

    def finish(self, status: AttemptStatus, now: datetime) -> None:
        """Move the attempt from Running to ``status`` (a finished attempt stays as it is)."""
        for _ in range(5):
            entity = self._state.get(self.pk, self.attempt)
            if entity is None or entity["status"] != AttemptStatus.RUNNING.value:
                return
            try:
                self._state.update(entity, {**entity.data, "status": status.value, "ended": now})
                return
            except ETagMismatch:
                continue
        raise TransientError(f"attempt {self.attempt}: its row kept changing")

    def sweep(self) -> None:
        """Delete the attempt's rows, once it has ended for good (Done or Failed): its parts' first, its own last.

        A late delivery that finds no attempt row touches nothing (``PartWorker``); one that still finds the
        attempt's row without its part's knows from the attempt's status alone what it may delete.
        """
        bounds = {"pk": self.pk, "lo": self._rk(0), "hi": self._rk(10**_ROW_DIGITS - 1)}
        parts = [e.row_key for e in self._state.query(layout.KEY_RANGE, bounds, select=["PartitionKey", "RowKey"])]
        if parts:
            self._state.write_batch(self.pk, deletes=parts)
        self._state.write_batch(self.pk, deletes=[self.attempt])

    def part(self, index: int) -> PartRow | None:
        entity = self._state.get(self.pk, self._rk(index))
        return None if entity is None else PartRow.of(entity)

    def rows(self) -> list[PartRow]:
        """Every part row of the attempt, by index (one range query)."""
        bounds = {"pk": self.pk, "lo": self._rk(0), "hi": self._rk(10**_ROW_DIGITS - 1)}
        return sorted((PartRow.of(e) for e in self._state.query(layout.KEY_RANGE, bounds)), key=lambda r: r.index)

    def change(self, index: int, change: Callable[[PartRow], Mapping[str, Any] | None]) -> tuple[PartRow, bool]:
        """Apply ``change`` to part ``index``'s row (its new fields, or None for none) with the ETag read.

        A final row (Committed, Failed) is never changed. Returns the row as it now is and whether
        this call changed it.
        """
        for _ in range(8):
            entity = self._state.get(self.pk, self._rk(index))
            if entity is None:
                raise AttemptOver(f"attempt {self.attempt} has no part {index}")
            row = PartRow.of(entity)
            fields = None if row.status.final else change(row)
            if fields is None:
                return row, False
            try:
                updated = self._state.update(entity, {**entity.data, **fields})
            except ETagMismatch:
                continue  # another delivery wrote it: decide again on what it wrote
            return PartRow.of(updated), True
        raise TransientError(f"part {index} of attempt {self.attempt}: its row kept changing")


def parts_of(state: StateStore, job_id: str) -> list[PartRow]:
    """Every part row of every attempt of ``job_id`` (attempt by attempt, then by index)."""
    rows = [e for e in state.partition(layout.backup_parts(job_id)) if "." in e.row_key]
    return [PartRow.of(e) for e in sorted(rows, key=lambda e: e.row_key)]


def sweep_ended(state: StateStore, jobs: JobStore, *, max_jobs: int = SWEEP_JOBS) -> int:
    """Delete the part rows of backup jobs that have ended (or whose job row is gone); how many were deleted.

    The net under a coordinator that died, or could not delete its attempt's rows (``PartBoard.sweep``): a
    job's retry deletes only its own attempt's. One range query over the ``bparts-`` partitions (keys only), so
    the cost is the rows there: those of backups running now and such leftovers; then one read of each job,
    and at most ``max_jobs`` jobs' rows deleted per call (the rest the next time). A job still running keeps
    its rows: any of its attempts may be the one running.
    """
    bounds = {"lo": layout.BACKUP_PARTS_PREFIX, "hi": layout.BACKUP_PARTS_PREFIX[:-1] + "."}  # "-" < "."
    keys: dict[str, list[str]] = {}
    for entity in state.query("PartitionKey ge @lo and PartitionKey lt @hi", bounds, select=["PartitionKey", "RowKey"]):
        keys.setdefault(entity.partition_key, []).append(entity.row_key)
    deleted = swept = 0
    for pk, rows in keys.items():
        if swept >= max_jobs:
            break
        try:
            if not jobs.get(pk.removeprefix(layout.BACKUP_PARTS_PREFIX)).status.finished:
                continue
        except UserError:
            pass  # no such job (any more): nothing will read its rows
        # Parts first, attempts last, as PartBoard.sweep does.
        state.write_batch(pk, deletes=[rk for rk in rows if "." in rk])
        state.write_batch(pk, deletes=[rk for rk in rows if "." not in rk])
        deleted += len(rows)
        swept += 1
        log.info(
            "part rows of ended backup job %s deleted (%s)", pk.removeprefix(layout.BACKUP_PARTS_PREFIX), len(rows)
        )
    return deleted


def delete_blobs(blobs: BlobStore, names: Sequence[str]) -> None:
    """Delete the part blobs ``names``; one that cannot be deleted is logged and left to the orphan sweep."""
    for name in names:
        try:
            blobs.delete(name)
        except PgVaultError as exc:
            log.warning("could not delete part blob %s: %s", name, type(exc).__name__)
