"""Backup parts across instances: the data parts of a multi-part backup as queue messages any instance takes.

With ``PGVAULT_BACKUP_PARTS_ACROSS_INSTANCES`` a multi-part backup (``shared.pg.parts``) no longer
dumps its data parts on threads of the invocation running the job. The *coordinator* (that
invocation, under the instance's lock and its heartbeat) exports the snapshot and holds its
transaction open, splits the tables into ``part_count`` parts, records the attempt and one row per
part in the state table, sends one message per data part to ``pgvault-backup-part``, dumps the
schema part itself, and waits, polling the part rows. Any instance's part trigger (``PartWorker``)
takes a message, resolves the job's credentials as the backup does (the instance's secret, its
server), runs the part's ``pg_dump --snapshot`` straight into the part's blob and records the part
(checksum, sizes) with an ETag-guarded write. When every part is recorded the coordinator closes
the snapshot and the backup records its point as a threaded one does: the same ``Part`` records,
manifest, restore, verification, retention, archive and files code.

The coordinator does not take part messages itself: the part trigger of its own instance does,
as many at once as host.json's ``batchSize`` + ``newBatchThreshold`` allow, so one instance alone
still dumps parts side by side and a second instance simply takes more of them.

What keeps it right when storage fails or a process is killed:

- Nothing secret travels: a message holds the job, the attempt (its lock token), the part's blob,
  the snapshot id and the part's tables (or, past ``INLINE_LIMIT``, the name of a plan blob that
  holds them: Azure's 64 KiB message limit). The worker reads the password from the secret.
- A message is trusted for nothing: each part's row keeps the digest of the message its coordinator
  sent (``PartMessage.digest``), and a message that is not that one, field for field (a copy with other
  tables, another plan, blob or version), is dropped touching nothing; the attempt's row and the
  instance's lock bind the attempt, snapshot, blob and instance (``_matches``, ``_over``).
- Each attempt has rows and blobs of its own (the lock token is in their names): a part of an
  older attempt can never be counted for a newer one.
- A part's blob is committed only if none of that name exists (``if_missing``): of two deliveries
  of one message at most one commits; the other records the part from the committed blob's own
  metadata (its SHA-256 and sizes, written in the same commit), so the recorded checksum is always
  that of the one committed version.
- The coordinator died: its snapshot is gone, ``pg_dump`` says so (``SnapshotGone``), and the
  part is marked Failed and its message dropped, with nothing left behind; the job's own retry
  makes a fresh attempt. A part whose attempt is over (Done, Failed, its lock held by another
  attempt) is dropped too; a worker already dumping stops within ``WATCH_SECONDS``.
- A part whose ``pg_dump`` is killed is taken again (the message comes back after its visibility
  timeout) while the snapshot lives; on its last delivery a failure is recorded, so the
  coordinator fails the attempt at once. It also fails it when a part fails for good, when one
  delivery of a part has run longer than ``PART_TIMEOUT``, when the attempt's time is up, and on a
  cancel or a lost lock (``shared.stopping``); it then marks the attempt Failed and deletes every
  part blob of it.
- A worker deletes a part's blob only when no point can name it: its row is not Committed and its
  attempt is not Done. Leftovers (a worker killed between commit and record of a failed attempt)
  end in ``.pgdump.zst`` and are collected by the orphan sweep like any unreferenced dump.

Rows stay after the job (a few per backup, like its job row); they say which worker took which
part and how many deliveries it needed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import psycopg
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import ErrorCode, PgVaultError, TransientError, UserError
from shared.instances import InstanceStore
from shared.pg.digests import table_digests
from shared.pg.dump import ZSTD_LEVEL, DumpResult, SnapshotGone, dump_to_blob
from shared.pg.parts import (
    PART_ZSTD_THREADS,
    PartedDump,
    TableSize,
    data_part_args,
    exported_snapshot,
    linked,
    quote_pattern,
    schema_part_args,
    split_by_size,
    table_sizes,
)
from shared.pg.tools import pick_tool
from shared.recovery_points import Part
from shared.secrets import SecretProvider
from shared.stopping import StopSignal, check
from shared.storage import layout
from shared.storage.blobs import BlobStore
from shared.storage.limits import MAX_QUEUE_MESSAGE_BYTES, MAX_TABLE_BATCH_ENTITIES
from shared.storage.ports import BlobExists, Entity, ETagMismatch, StateStore, StreamResult
from shared.storage.queues import QueueSender, payload_size
from shared.validation import credentials, dump_env_for

log = logging.getLogger(__name__)

PART_QUEUE = layout.BACKUP_PART_QUEUE
# Bytes of tables (pg_table_size) per data part, at most (PGVAULT_BACKUP_PART_BYTES): 128 GiB dumps in
# 7-15 minutes of one instance's time (bench/README.md, "A 2 TB database on paper"), well within the
# ~60 minutes Flex Consumption and Premium give a running function when they scale in.
DEFAULT_PART_BYTES = 128 * 1024**3
# Data parts of one backup, at most: part blobs are numbered with three digits (layout.part_blob_name).
MAX_PARTS = 999
# One delivery of a part may dump this long before the coordinator gives the attempt up: well within
# the ~60 minutes of grace at scale-in (learn.microsoft.com/azure/azure-functions/flex-consumption-plan,
# "Execution time limits"), so a part that runs longer is stuck rather than slow.
PART_TIMEOUT = timedelta(minutes=45)
# How often the coordinator reads its parts' rows, and a worker its attempt's row.
POLL_SECONDS = 2.0
WATCH_SECONDS = 10.0
# Above this a message carries a pointer to the plan blob instead of its tables (64 KiB, base64-encoded,
# Azure's limit: learn.microsoft.com/azure/storage/queues/scalability-targets), with room to spare.
INLINE_LIMIT = MAX_QUEUE_MESSAGE_BYTES - 4096
_ROW_DIGITS = 4


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


class PartOutcome(StrEnum):
    """What one delivery of a part message did."""

    COMMITTED = "Committed"
    """This delivery recorded the part."""
    DUPLICATE = "Duplicate"
    """The part was recorded already (another delivery of the message): nothing changed."""
    DROPPED = "Dropped"
    """The part's attempt is over or its snapshot gone: nothing dumped, nothing left behind."""
    FAILED = "Failed"
    """The part failed for good (recorded, so the coordinator fails the attempt)."""


class AttemptOver(PgVaultError):
    """The part's attempt ended (failed, finished, its lock taken over) while the part was dumped."""


class PartMessage(BaseModel):
    """A message of ``pgvault-backup-part``: one data part of one attempt. Never a credential."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    jobId: str
    instance: str
    attempt: str = Field(pattern=r"^[0-9a-f]{1,64}$")
    """The attempt's lock token (also in its blob names)."""
    part: int = Field(ge=1, le=MAX_PARTS)
    blobName: str
    snapshot: str
    serverMajor: int
    pgDumpVersion: str
    """The coordinator's pg_dump (``--version``): every part of a point is dumped by the same one."""
    expectedBytes: int = 0
    tables: list[tuple[str, str]] | None = None
    """(schema, table) of every table whose rows the part holds; None when ``plan`` names them."""
    plan: str | None = None
    """The blob holding every part's tables (``{"<part>": [[schema, table], ...]}``) when a message cannot."""

    def wire(self) -> dict[str, Any]:
        """The message as it goes on the queue (``QueueSender.send``; measured with ``payload_size``)."""
        return self.model_dump(mode="json", exclude_none=True)

    def digest(self) -> str:
        """SHA-256 of the message as its coordinator made it: the part's row keeps it, so a worker acts only on
        a message that is, field for field, the one sent (not a copy with other tables, plan or blob)."""
        return hashlib.sha256(self.model_dump_json(exclude_none=True).encode()).hexdigest()


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
        )


def part_count(total_bytes: int, parallelism: int, part_bytes: int) -> int:
    """How many data parts a database of ``total_bytes`` of tables is split into across instances:
    at least ``parallelism`` (what one instance runs at once), and enough that none is planned above
    ``part_bytes``; at most ``MAX_PARTS``. (A single table larger than ``part_bytes`` is still one part.)"""
    wanted = max(parallelism, math.ceil(total_bytes / max(1, part_bytes)))
    return max(1, min(MAX_PARTS, wanted))


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
        entity = self._state.get(self.pk, self.attempt)
        return None if entity is None else AttemptStatus(entity["status"])

    def recorded(self) -> Entity | None:
        """The attempt's row as the coordinator wrote it (status, snapshot, the schema part's blob)."""
        return self._state.get(self.pk, self.attempt)

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


@dataclass(frozen=True)
class PartsJob:
    """The attempt a coordinator runs: which job, instance and lock token, and which pg_dump."""

    job_id: str
    instance: str
    attempt: str
    server_major: int
    pg_dump_version: str


def _delete(blobs: BlobStore, names: Sequence[str]) -> None:
    for name in names:
        try:
            blobs.delete(name)
        except PgVaultError as exc:
            log.warning("could not delete part blob %s: %s", name, type(exc).__name__)


class PartCoordinator:
    """The invocation running a backup job: holds the snapshot, sends the parts, waits for them."""

    def __init__(
        self,
        state: StateStore,
        blobs: BlobStore,
        queues: QueueSender,
        clock: Callable[[], datetime],
        *,
        part_bytes: int = DEFAULT_PART_BYTES,
        part_timeout: timedelta = PART_TIMEOUT,
        poll_seconds: float = POLL_SECONDS,
        inline_limit: int = INLINE_LIMIT,
    ) -> None:
        self._state = state
        self._blobs = blobs
        self._queues = queues
        self._clock = clock
        self._part_bytes = part_bytes
        self._part_timeout = part_timeout
        self._poll = poll_seconds
        self._inline_limit = inline_limit

    def dump(
        self,
        about: PartsJob,
        pg_dump: Path,
        libpq: Mapping[str, Any],
        env: Mapping[str, str],
        blob_name: str,
        *,
        parallelism: int,
        metadata: Mapping[str, str],
        on_progress: Callable[[int], None] | None = None,
        level: int = ZSTD_LEVEL,
        digests: bool = True,
        stop: StopSignal | None = None,
        before_commit: Callable[[], None] | None = None,
        deadline: datetime | None = None,
    ) -> PartedDump:
        """Dump the database into a schema part (``blob_name``, here) and data parts (on any instance).

        Either every part is committed and recorded, the attempt is Done and the parts are returned,
        or the attempt is marked Failed, every blob of it deleted and the error raised (``NoSnapshot``
        before anything is written when the server cannot export a snapshot).
        """
        with exported_snapshot(libpq) as (snap, snapshot):
            tables = table_sizes(snap)
            groups = split_by_size(tables, part_count(sum(t.bytes for t in tables), parallelism, self._part_bytes))
            names = [part_blob_name(blob_name, i) for i in range(1, len(groups) + 1)]
            log.info(
                "backup job %s instance %s: %s tables in %s data parts on the part queue, and a schema part here",
                about.job_id,
                about.instance,
                len(tables),
                len(groups),
            )
            board = PartBoard(self._state, about.job_id, about.attempt)
            plan: str | None = None
            with linked(stop) as signal, ThreadPoolExecutor(2, thread_name_prefix="coordinator") as pool:
                pending_digests: Future[dict[str, Any]] | None = None
                schema: Future[DumpResult] | None = None
                try:
                    messages, planned = self._messages(about, blob_name, snapshot, groups)
                    board.open(
                        instance=about.instance,
                        snapshot=snapshot,
                        blob_name=blob_name,
                        messages=messages,
                        now=self._clock(),
                    )
                    plan = self._send(messages, planned)
                    if digests:
                        pending_digests = pool.submit(table_digests, snap)
                    schema = pool.submit(
                        functools.partial(
                            dump_to_blob, pg_dump, env, self._blobs, level=level, threads=PART_ZSTD_THREADS
                        ),
                        blob_name,
                        {**metadata, "part": "0"},
                        snapshot=snapshot,
                        stop=signal,
                        before_commit=before_commit,
                        extra_args=schema_part_args([t for g in groups for t in g]),
                    )
                    rows = self._wait(
                        board, len(groups), schema, signal=signal, deadline=deadline, on_progress=on_progress
                    )
                    result = schema.result()
                    manifest: dict[str, Any] | None = None
                    if pending_digests is not None:
                        try:
                            manifest = pending_digests.result()
                        except psycopg.Error as exc:
                            log.warning("%s: no manifest, the table digests failed: %s", blob_name, exc)
                    board.finish(AttemptStatus.DONE, self._clock())
                except BaseException as exc:
                    self._give_up(
                        board, signal, exc, snap=snap, futures=(schema, pending_digests), names=[blob_name, *names]
                    )
                    raise
                finally:
                    if plan is not None:
                        _delete(self._blobs, [plan])
        parts = tuple(
            Part(r.index, str(r.sha256), r.stored_bytes, r.raw_bytes, tuple(t.qualified for t in groups[r.index - 1]))
            for r in rows
        )
        return PartedDump(result, parts, manifest)

    def _give_up(
        self,
        board: PartBoard,
        signal: StopSignal,
        exc: BaseException,
        *,
        snap: psycopg.Connection[Any],
        futures: Sequence[Future[Any] | None],
        names: Sequence[str],
    ) -> None:
        """The attempt failed: Failed on its row first (so workers stop and drop), then our own work stopped and
        every blob of the attempt deleted (a part committed after this deletes its own: ``PartWorker._record``)."""
        signal.set(exc if isinstance(exc, PgVaultError) else TransientError(f"the parts failed: {exc!r}"))
        with contextlib.suppress(PgVaultError):
            board.finish(AttemptStatus.FAILED, self._clock())
        if any(f is not None and not f.done() for f in futures):
            snap.cancel_safe()  # the digests' query
        for future in futures:
            if future is not None:
                with contextlib.suppress(BaseException):
                    future.result()
        _delete(self._blobs, names)

    def _messages(
        self, about: PartsJob, blob_name: str, snapshot: str, groups: Sequence[Sequence[TableSize]]
    ) -> tuple[list[PartMessage], dict[str, Any] | None]:
        """One message per data part, and the plan (every part's tables) when the messages point at it instead."""
        common: dict[str, Any] = {
            "jobId": about.job_id,
            "instance": about.instance,
            "attempt": about.attempt,
            "snapshot": snapshot,
            "serverMajor": about.server_major,
            "pgDumpVersion": about.pg_dump_version,
        }
        messages = [
            PartMessage(
                **common,
                part=i,
                blobName=part_blob_name(blob_name, i),
                expectedBytes=sum(t.bytes for t in group),
                tables=[(t.schema, t.name) for t in group],
            )
            for i, group in enumerate(groups, start=1)
        ]
        if not any(payload_size(m.wire()) > self._inline_limit for m in messages):
            return messages, None
        plan = layout.plan_name_for(blob_name)
        doc = {str(m.part): m.tables for m in messages}
        return [m.model_copy(update={"tables": None, "plan": plan}) for m in messages], doc

    def _send(self, messages: Sequence[PartMessage], planned: dict[str, Any] | None) -> str | None:
        """The plan blob (when the messages point at one), then the messages; the plan blob's name."""
        plan = messages[0].plan if planned is not None else None
        if plan is not None:
            self._blobs.put(plan, json.dumps(planned, separators=(",", ":")).encode(), content_type="application/json")
        for message in messages:
            self._queues.send(PART_QUEUE, message.wire())
        return plan

    def _wait(
        self,
        board: PartBoard,
        count: int,
        schema: Future[DumpResult],
        *,
        signal: StopSignal,
        deadline: datetime | None,
        on_progress: Callable[[int], None] | None,
    ) -> list[PartRow]:
        """Poll the parts until every one is Committed (and the schema part done); raise what ends the attempt."""
        woken, reported = threading.Event(), 0
        with signal.on_stop(woken.set):
            while True:
                check(signal)
                if schema.done() and schema.exception() is not None:
                    raise schema.exception()  # type: ignore[misc]
                rows = board.rows()
                now = self._clock()
                for row in rows:
                    if row.status is PartStatus.FAILED:
                        why = f"part {row.index} failed: {row.error}"
                        if row.user_error:
                            raise UserError(_code(row.error_code), why)
                        raise TransientError(why, code=_code(row.error_code))
                    if row.status is PartStatus.RUNNING and row.started and now - row.started > self._part_timeout:
                        raise TransientError(f"part {row.index} ran longer than {self._part_timeout} on one delivery")
                if deadline is not None and now > deadline:
                    raise TransientError("the parts did not all finish within this attempt's time")
                committed = [r for r in rows if r.status is PartStatus.COMMITTED]
                done = sum(r.raw_bytes for r in committed)
                if on_progress is not None and done != reported:  # one job write per part recorded, not per poll
                    on_progress(done)
                    reported = done
                if len(committed) == count and schema.done():
                    return committed
                woken.wait(self._poll)


def _code(text: str | None) -> ErrorCode:
    return next((c for c in ErrorCode if c.value == text), ErrorCode.INTERNAL)


def part_blob_name(blob_name: str, index: int) -> str:
    return layout.part_blob_name(blob_name, index)


def default_worker_id() -> str:
    """Who takes parts in this process: the Functions instance (``WEBSITE_INSTANCE_ID``), else host and pid."""
    return os.environ.get("WEBSITE_INSTANCE_ID") or f"{socket.gethostname()}:{os.getpid()}"


class PartWorker:
    """Takes one part message (the part queue's trigger calls ``run``) and dumps, records or drops it."""

    def __init__(
        self,
        state: StateStore,
        blobs: BlobStore,
        secrets: SecretProvider,
        clock: Callable[[], datetime],
        *,
        pg_bin_dir: Path | None = None,
        allowed_servers: Sequence[str] = (),
        level: int = ZSTD_LEVEL,
        worker_id: str | None = None,
        watch_every: float = WATCH_SECONDS,
    ) -> None:
        self._state = state
        self._blobs = blobs
        self._secrets = secrets
        self._clock = clock
        self._pg_bin_dir = pg_bin_dir
        self._allowed_servers = tuple(allowed_servers)
        self._level = level
        self._worker = worker_id or default_worker_id()
        self._watch_every = watch_every

    @staticmethod
    def parse(payload: Mapping[str, Any]) -> PartMessage:
        """The message, or ValueError naming the field at fault (the host retries, then poisons it)."""
        try:
            return PartMessage.model_validate(payload)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "message"
            raise ValueError(f"not a backup part message: {field}: {first['msg']}") from exc

    def run(self, payload: Mapping[str, Any], *, delivery: int, last_try: bool) -> PartOutcome:
        """Dump part ``payload`` and record it; or drop it when its attempt is over or its snapshot gone.

        Raises ``TransientError`` for the queue to deliver the message again (a killed ``pg_dump``,
        storage failing) unless ``last_try``, when the failure is recorded instead.
        """
        msg = self.parse(payload)
        board = PartBoard(self._state, msg.jobId, msg.attempt)
        over = self._over(board, msg)
        if over is not None:
            return self._drop(board, msg, over)
        row = board.part(msg.part)
        refused = _refused(row, msg)
        if refused is not None:
            return self._drop(board, msg, refused)
        assert row is not None
        if row.status is PartStatus.COMMITTED:
            return PartOutcome.DUPLICATE
        committed = self._committed(msg)
        if committed is not None:  # an earlier delivery committed it and died before recording it
            return self._record(board, msg, committed)
        row, _ = board.change(msg.part, lambda _: self._running(delivery))
        if row.status is PartStatus.COMMITTED:  # a delivery running at the same time recorded it just now
            return PartOutcome.DUPLICATE
        return self._take(board, msg, last_try=last_try)

    def _take(self, board: PartBoard, msg: PartMessage, *, last_try: bool) -> PartOutcome:
        """Dump the part and record it; each way it can fail mapped to drop, fail or retry."""
        try:
            result = self._dump(board, msg)
        except BlobExists:
            # Another delivery of this message committed first: its blob is the part.
            found = self._committed(msg)
            if found is None:
                raise TransientError(f"{msg.blobName} was committed and is gone") from None
            result = found
        except SnapshotGone as exc:
            return self._drop(board, msg, str(exc), fail=exc)
        except AttemptOver as exc:
            return self._drop(board, msg, str(exc))
        except UserError as exc:
            return self._fail(board, msg, exc, user=True)
        except TransientError as exc:
            if not last_try:
                log.warning("part %s of job %s: %s; the queue delivers it again", msg.part, msg.jobId, exc)
                raise
            return self._fail(board, msg, exc, user=False)
        return self._record(board, msg, result)

    def poisoned(self, payload: Mapping[str, Any]) -> None:
        """A part message that failed every try (its worker died each time): the part fails, the attempt with it."""
        try:
            msg = self.parse(payload)
        except ValueError as exc:
            log.error("poison message of %s dropped: %s", PART_QUEUE, exc)
            return
        board = PartBoard(self._state, msg.jobId, msg.attempt)
        self._drop(board, msg, "its message failed every try", fail=TransientError("its message failed every try"))

    # --- one delivery -----------------------------------------------------------------------------

    def _over(self, board: PartBoard, msg: PartMessage) -> str | None:
        """Why the part's attempt can no longer use it, or None while it waits for it."""
        attempt = board.recorded()
        if attempt is None:
            return "its attempt has no record"
        if not _matches(msg, attempt):  # a hand-made or garbled message: _drop touches nothing it names
            return "its blob or snapshot is not what its attempt recorded"
        if attempt["status"] != AttemptStatus.RUNNING.value:
            return f"its attempt is {attempt['status']}"
        lock = self._state.get(layout.LOCK, layout.row_key(msg.instance))
        if lock is None or lock.get("token") != msg.attempt:
            return "its attempt no longer holds the instance's lock"
        return None

    def _running(self, delivery: int) -> dict[str, Any]:
        return {
            "status": PartStatus.RUNNING.value,
            "started": self._clock(),
            "deliveries": delivery,
            "worker": self._worker,
        }

    def _committed(self, msg: PartMessage) -> tuple[str, int, int] | None:
        """(SHA-256, stored, raw bytes) of the committed part blob, from its own metadata (written in the same
        commit as its blocks); None when there is none."""
        info = self._blobs.info(msg.blobName)
        if info is None:
            return None
        meta = info.metadata
        if "sha256" not in meta or meta.get("jobid") != msg.jobId or meta.get("part") != str(msg.part):
            raise TransientError(f"{msg.blobName} exists but is not part {msg.part} of job {msg.jobId}")
        return str(meta["sha256"]), int(meta.get("storedbytes", 0)), int(meta.get("rawbytes", 0))

    def _dump(self, board: PartBoard, msg: PartMessage) -> tuple[str, int, int]:
        instance = InstanceStore(self._state).get(msg.instance)
        params = credentials(self._secrets, instance)
        tool = pick_tool("pg_dump", msg.serverMajor, self._pg_bin_dir)
        if tool.version_text != msg.pgDumpVersion:
            raise UserError(
                ErrorCode.PG_DUMP_VERSION_TOO_OLD,
                f"this instance's pg_dump ({tool.version_text}) is not the one that dumps the rest of the backup "
                f"({msg.pgDumpVersion}): the parts of one point are dumped by one pg_dump",
                recommended_action="Deploy the same PostgreSQL client tools (PGVAULT_PG_BIN_DIR) on every instance.",
            )
        env = dump_env_for(instance, params, tool, self._allowed_servers)
        tables = msg.tables if msg.tables is not None else self._planned(msg)
        sizes = [TableSize(s, t, 0) for s, t in tables]
        metadata = {"instance": layout.row_key(msg.instance), "jobid": msg.jobId, "part": str(msg.part)}
        with self._watching(board, msg) as signal:
            result = dump_to_blob(
                tool.path,
                env,
                self._blobs,
                msg.blobName,
                metadata,
                level=self._level,
                threads=PART_ZSTD_THREADS,
                expected_bytes=msg.expectedBytes,
                snapshot=msg.snapshot,
                stop=signal,
                before_commit=lambda: self._confirm(board, msg),
                extra_args=data_part_args(sizes),
                if_missing=True,
            )
        stream: StreamResult = result.stream
        return stream.sha256, stream.stored_bytes, result.raw_bytes

    def _planned(self, msg: PartMessage) -> list[tuple[str, str]]:
        doc = self._blobs.get_json(msg.plan) if msg.plan else None
        if not isinstance(doc, dict) or str(msg.part) not in doc:
            raise AttemptOver(f"the plan of part {msg.part} is gone ({msg.plan})")
        return [(str(s), str(t)) for s, t in doc[str(msg.part)]]

    def _confirm(self, board: PartBoard, msg: PartMessage) -> None:
        over = self._over(board, msg)
        if over is not None:
            raise AttemptOver(f"part {msg.part} of job {msg.jobId} not committed: {over}")

    @contextlib.contextmanager
    def _watching(self, board: PartBoard, msg: PartMessage) -> Iterator[StopSignal]:
        """A stop signal set (pg_dump killed) when the attempt ends while the part is dumped."""
        signal, done = StopSignal(), threading.Event()

        def watch() -> None:
            while not done.wait(self._watch_every):
                try:
                    over = self._over(board, msg)
                except PgVaultError:
                    continue  # storage hiccup: look again; the commit checks once more anyway
                if over is not None:
                    signal.set(AttemptOver(f"part {msg.part} of job {msg.jobId} stopped: {over}"))
                    return

        watcher = threading.Thread(target=watch, name=f"part-watch-{msg.part}", daemon=True)
        watcher.start()
        try:
            yield signal
        finally:
            done.set()
            watcher.join(timeout=5)

    def _record(self, board: PartBoard, msg: PartMessage, committed: tuple[str, int, int]) -> PartOutcome:
        sha256, stored, raw = committed
        fields = {
            "status": PartStatus.COMMITTED.value,
            "sha256": sha256,
            "storedBytes": stored,
            "rawBytes": raw,
            "committed": self._clock(),
        }
        row, changed = board.change(msg.part, lambda _: fields)
        if changed:
            log.info("part %s of job %s committed (%s raw bytes, %s stored)", msg.part, msg.jobId, raw, stored)
            if board.status() is AttemptStatus.FAILED:  # the coordinator gave up meanwhile: nothing will name it
                _delete(self._blobs, [msg.blobName])
            return PartOutcome.COMMITTED
        if row.status is PartStatus.COMMITTED:
            if row.sha256 != sha256:  # cannot happen with one committed version; say so loudly if it does
                log.error("part %s of job %s: recorded %s, blob holds %s", msg.part, msg.jobId, row.sha256, sha256)
            return PartOutcome.DUPLICATE
        return self._drop(board, msg, f"it failed meanwhile ({row.error})")

    def _fail(self, board: PartBoard, msg: PartMessage, exc: PgVaultError, *, user: bool) -> PartOutcome:
        log.warning("part %s of job %s failed for good: %s", msg.part, msg.jobId, exc)
        self._drop(board, msg, str(exc), fail=exc, user=user)
        return PartOutcome.FAILED

    def _drop(
        self, board: PartBoard, msg: PartMessage, why: str, *, fail: PgVaultError | None = None, user: bool = False
    ) -> PartOutcome:
        """Leave the part: record it Failed (``fail``) for the coordinator; delete its blob unless a point may
        name it (its row Committed, or its attempt Done)."""
        log.info("part %s of job %s dropped: %s", msg.part, msg.jobId, why)
        attempt = board.recorded()
        if attempt is None or not _matches(msg, attempt):
            return PartOutcome.DROPPED  # no record says which blob is the part's: nothing is deleted
        row = board.part(msg.part)
        if row is not None and not row.sent_as(msg):
            return PartOutcome.DROPPED  # not the message sent for this part: it may neither fail it nor delete
        if fail is not None and row is not None:
            code = getattr(fail, "code", ErrorCode.INTERNAL)
            failed = {
                "status": PartStatus.FAILED.value,
                "error": str(fail)[:1024],
                "errorCode": code.value,
                "userError": user,
                "worker": self._worker,
            }
            row, _ = board.change(msg.part, lambda _: failed)
        if (row is None or row.status is not PartStatus.COMMITTED) and board.status() is not AttemptStatus.DONE:
            _delete(self._blobs, [msg.blobName])
        return PartOutcome.DROPPED


def _refused(row: PartRow | None, msg: PartMessage) -> str | None:
    """Why a worker must not dump part ``msg`` whose row is ``row``; None when it may."""
    if row is None:
        return "its attempt has no such part"
    if not row.sent_as(msg):  # a copy with other tables, plan or blob: _drop touches nothing it names
        return "it is not the message its coordinator sent"
    if row.status is PartStatus.FAILED:
        return f"it failed ({row.error})"
    return None


def _matches(msg: PartMessage, attempt: Entity) -> bool:
    """Whether the message names the blob and snapshot its attempt's row says its part has."""
    blob = attempt.get("blobName")
    return (
        blob is not None
        and msg.blobName == part_blob_name(str(blob), msg.part)
        and msg.snapshot == attempt.get("snapshot")
    )


__all__ = [
    "DEFAULT_PART_BYTES",
    "INLINE_LIMIT",
    "MAX_PARTS",
    "PART_QUEUE",
    "PART_TIMEOUT",
    "AttemptOver",
    "AttemptStatus",
    "PartBoard",
    "PartCoordinator",
    "PartMessage",
    "PartOutcome",
    "PartRow",
    "PartStatus",
    "PartWorker",
    "PartsJob",
    "part_count",
    "parts_of",
    "quote_pattern",
]
