"""The coordinator: the invocation running a backup job holds the snapshot, sends the data parts as
messages, dumps the schema part and waits on the part rows."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from shared.backup_parts import digests as part_digests
from shared.backup_parts.board import AttemptStatus, PartBoard, PartRow, PartStatus, delete_blobs
from shared.backup_parts.messages import INLINE_LIMIT, MAX_PARTS, PART_QUEUE, PartMessage
from shared.errors import ErrorCode, PgVaultError, TransientError, UserError
from shared.pg.digests import table_digests
from shared.pg.dump import ZSTD_LEVEL, DumpResult, digest_stream, dump_to_blob
from shared.pg.parts import (
    PART_ZSTD_THREADS,
    PartedDump,
    TableSize,
    exported_snapshot,
    linked,
    merge_digests,
    schema_part_args,
    split_by_size,
    table_sizes,
)
from shared.recovery_points import Part
from shared.stopping import StopSignal, check
from shared.storage import layout
from shared.storage.blobs import BlobStore
from shared.storage.ports import StateStore
from shared.storage.queues import QueueSender, payload_size

log = logging.getLogger(__name__)


# Bytes of tables (pg_table_size) per data part, at most (PGVAULT_BACKUP_PART_BYTES): 128 GiB dumps in
# 7-15 minutes of one instance's time (bench/README.md, "A 2 TB database on paper"), well within the
# ~60 minutes Flex Consumption and Premium give a running function when they scale in.
DEFAULT_PART_BYTES = 128 * 1024**3
# One delivery of a part may dump this long before the coordinator gives the attempt up: well within
# the ~60 minutes of grace at scale-in (learn.microsoft.com/azure/azure-functions/flex-consumption-plan,
# "Execution time limits"), so a part that runs longer is stuck rather than slow. Measured by the storage
# service's clock (``PartRow.running_for``): the worker's and the coordinator's may each be off it.
PART_TIMEOUT = timedelta(minutes=45)
# How often the coordinator reads its parts' rows.
POLL_SECONDS = 2.0


def part_count(total_bytes: int, parallelism: int, part_bytes: int) -> int:
    """How many data parts a database of ``total_bytes`` of tables is split into across instances:
    at least ``parallelism`` (what one instance runs at once), and enough that none is planned above
    ``part_bytes``; at most ``MAX_PARTS``. (A single table larger than ``part_bytes`` is still one part.)"""
    wanted = max(parallelism, math.ceil(total_bytes / max(1, part_bytes)))
    return max(1, min(MAX_PARTS, wanted))


@dataclass(frozen=True)
class PartsJob:
    """The attempt a coordinator runs: which job, instance and lock token, and which pg_dump."""

    job_id: str
    instance: str
    attempt: str
    server_major: int
    pg_dump_version: str


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
        from_stream: bool = True,
        stop: StopSignal | None = None,
        before_commit: Callable[[], None] | None = None,
        deadline: datetime | None = None,
    ) -> PartedDump:
        """Dump the database into a schema part (``blob_name``, here) and data parts (on any instance).

        Either every part is committed and recorded, the attempt is Done and the parts are returned,
        or the attempt is marked Failed, every blob of it deleted and the error raised (``NoSnapshot``
        before anything is written when the server cannot export a snapshot). The manifest (``digests``) is
        read from the parts' streams as they are dumped (``from_stream``, method ``copy-sha256``: each worker
        digests its part, this invocation the schema part, and the digests are merged as ``dump_in_parts``
        merges its threads'), or with ``from_stream=False`` computed on the snapshot's session meanwhile.
        """
        with exported_snapshot(libpq) as (snap, snapshot):
            tables = table_sizes(snap)
            groups = split_by_size(tables, part_count(sum(t.bytes for t in tables), parallelism, self._part_bytes))
            names = [layout.part_blob_name(blob_name, i) for i in range(1, len(groups) + 1)]
            streamed = digests and from_stream
            sidecars = part_digests.names(names) if streamed else []
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
                schema: Future[tuple[DumpResult, dict[str, Any] | None]] | None = None
                try:
                    messages, planned = self._messages(about, blob_name, snapshot, groups, digests=streamed)
                    board.open(
                        instance=about.instance,
                        snapshot=snapshot,
                        blob_name=blob_name,
                        messages=messages,
                        now=self._clock(),
                    )
                    plan = self._send(messages, planned)
                    if digests and not streamed:
                        pending_digests = pool.submit(table_digests, snap)
                    dump = functools.partial(
                        dump_to_blob,
                        pg_dump,
                        env,
                        self._blobs,
                        blob_name,
                        {**metadata, "part": "0"},
                        level=level,
                        threads=PART_ZSTD_THREADS,
                        snapshot=snapshot,
                        stop=signal,
                        before_commit=before_commit,
                        extra_args=schema_part_args([t for g in groups for t in g]),
                    )
                    schema = pool.submit(_schema_part, dump, blob_name, digest=streamed)
                    rows = self._wait(
                        board, len(groups), schema, signal=signal, deadline=deadline, on_progress=on_progress
                    )
                    result, schema_digests = schema.result()
                    manifest: dict[str, Any] | None = None
                    if pending_digests is not None:
                        try:
                            manifest = pending_digests.result()
                        except psycopg.Error as exc:
                            log.warning("%s: no manifest, the table digests failed: %s", blob_name, exc)
                    if streamed:
                        manifest = self._merged(blob_name, schema_digests, rows, len(groups))
                    board.finish(AttemptStatus.DONE, self._clock())
                except BaseException as exc:
                    self._give_up(
                        board,
                        signal,
                        exc,
                        snap=snap,
                        futures=(schema, pending_digests),
                        names=[blob_name, *names, *sidecars],
                    )
                    raise
                finally:
                    if plan is not None:
                        delete_blobs(self._blobs, [plan])
            if sidecars:  # merged into the manifest (or not readable): the point needs them no more
                delete_blobs(self._blobs, sidecars)
        log.info(
            "backup job %s instance %s: %s data parts recorded (parts per worker %s, %s deliveries)",
            about.job_id,
            about.instance,
            len(rows),
            dict(Counter(str(r.worker) for r in rows)),
            sum(r.deliveries for r in rows),
        )
        self._sweep(board)
        parts = tuple(
            Part(r.index, str(r.sha256), r.stored_bytes, r.raw_bytes, tuple(t.qualified for t in groups[r.index - 1]))
            for r in rows
        )
        return PartedDump(result, parts, manifest)

    def _merged(
        self, blob_name: str, schema: dict[str, Any] | None, rows: Sequence[PartRow], count: int
    ) -> dict[str, Any] | None:
        """The manifest from the schema part's digests and every data part's (kept by its worker beside its blob,
        for the committed blob the part's row records); None if any part's are missing or unreadable."""
        found: dict[int, dict[str, Any] | None] = {0: schema}
        for row in rows:
            name = layout.part_blob_name(blob_name, row.index)
            kept, tables = part_digests.load(self._blobs, name, str(row.sha256))
            if kept:
                found[row.index] = tables
            else:
                log.warning("%s: part %s has no digests of its committed blob", blob_name, row.index)
                found[row.index] = None
        return merge_digests(blob_name, found, count + 1)

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
        """The attempt failed: Failed on its row first (so workers stop and drop), then our own work stopped,
        every blob of the attempt deleted and its rows too. A part committed meanwhile (its worker confirmed the
        attempt just before) deletes its own while the attempt's row says Failed (``PartWorker._record``); once
        the rows are gone it touches nothing, and the orphan sweep collects it."""
        signal.set(exc if isinstance(exc, PgVaultError) else TransientError(f"the parts failed: {exc!r}"))
        try:
            board.finish(AttemptStatus.FAILED, self._clock())
            ended = True
        except PgVaultError:
            ended = False  # still Running on its row: its rows stay for the retention sweep, once the job ends
        if any(f is not None and not f.done() for f in futures):
            snap.cancel_safe()  # the digests' query
        for future in futures:
            if future is not None:
                with contextlib.suppress(BaseException):
                    future.result()
        delete_blobs(self._blobs, names)
        if ended:
            self._sweep(board)

    def _sweep(self, board: PartBoard) -> None:
        """The attempt's rows deleted, now that it has ended for good (Done or Failed): no retry of the job uses
        them (each attempt has its own). Left to the retention sweep (``sweep_ended``) when storage fails."""
        try:
            board.sweep()
        except PgVaultError as exc:
            log.warning("attempt %s: its part rows stay for the retention sweep: %s", board.attempt, exc)

    def _messages(
        self,
        about: PartsJob,
        blob_name: str,
        snapshot: str,
        groups: Sequence[Sequence[TableSize]],
        *,
        digests: bool,
    ) -> tuple[list[PartMessage], dict[str, Any] | None]:
        """One message per data part, and the plan (every part's tables) when the messages point at it instead."""
        common: dict[str, Any] = {
            "jobId": about.job_id,
            "instance": about.instance,
            "attempt": about.attempt,
            "snapshot": snapshot,
            "serverMajor": about.server_major,
            "pgDumpVersion": about.pg_dump_version,
            **({"digests": True} if digests else {}),
        }
        messages = [
            PartMessage(
                **common,
                part=i,
                blobName=layout.part_blob_name(blob_name, i),
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
        schema: Future[Any],
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
                # The parts' ages by the storage service's clock: each worker's, like ours, may be off it.
                service = self._state.service_time() if any(r.status is PartStatus.RUNNING for r in rows) else now
                for row in rows:
                    if row.status is PartStatus.FAILED:
                        why = f"part {row.index} failed: {row.error}"
                        if row.user_error:
                            raise UserError(_code(row.error_code), why)
                        raise TransientError(why, code=_code(row.error_code))
                    ran = row.running_for(service, now)
                    if ran is not None and ran > self._part_timeout:
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


def _schema_part(
    dump: Callable[..., DumpResult], blob_name: str, *, digest: bool
) -> tuple[DumpResult, dict[str, Any] | None]:
    """The schema part dumped, with its stream digests when ``digest`` (its own data: sequences, extension
    configuration tables, and the tables the data parts name without their rows)."""
    if digest:
        return digest_stream(dump, blob_name)
    return dump(), None


def _code(text: str | None) -> ErrorCode:
    return next((c for c in ErrorCode if c.value == text), ErrorCode.INTERNAL)
