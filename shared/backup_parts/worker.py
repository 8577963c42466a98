"""The part worker: the part queue's trigger on any instance dumps one data part into its blob and
records it, or drops a message whose attempt is over, whose snapshot is gone or that is not the one sent."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shared.backup_parts import digests
from shared.backup_parts.board import (
    AttemptOver,
    AttemptRow,
    AttemptStatus,
    PartBoard,
    PartRow,
    PartStatus,
    delete_blobs,
)
from shared.backup_parts.messages import PART_QUEUE, PartMessage
from shared.errors import ErrorCode, PgVaultError, TransientError, UserError
from shared.instances import InstanceStore
from shared.pg.dump import ZSTD_LEVEL, SnapshotGone, digest_stream, dump_to_blob
from shared.pg.parts import (
    PART_ZSTD_THREADS,
    TableSize,
    data_part_args,
)
from shared.pg.tools import pick_tool
from shared.secrets import SecretProvider
from shared.stopping import StopSignal
from shared.storage import layout
from shared.storage.blobs import BlobStore
from shared.storage.ports import BlobExists, StateStore, StreamResult
from shared.validation import credentials, dump_env_for

log = logging.getLogger(__name__)


# How often a worker dumping a part reads its attempt's row.
WATCH_SECONDS = 10.0


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
        try:
            return self._deliver(board, msg, delivery=delivery, last_try=last_try)
        except AttemptOver as exc:  # the part's row is gone: its attempt ended and its rows were swept meanwhile
            return self._drop(board, msg, str(exc))

    def _deliver(self, board: PartBoard, msg: PartMessage, *, delivery: int, last_try: bool) -> PartOutcome:
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
            self._keep_digests(msg, committed[0])
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
            over = self._over(board, msg)
            if over is not None:  # its attempt ended meanwhile: no digests to keep for it (a blob nobody deletes)
                return self._drop(board, msg, over)
            self._keep_digests(msg, found[0])  # the committed blob's, never this delivery's own stream's
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
        if attempt.status is not AttemptStatus.RUNNING:
            return f"its attempt is {attempt.status.value}"
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
            dump = functools.partial(
                dump_to_blob,
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
            if msg.digests:  # the same stream digests a threaded part's are (shared.pg.parts)
                result, streamed = digest_stream(dump, msg.blobName)
            else:
                result, streamed = dump(), None
        stream: StreamResult = result.stream
        if msg.digests:  # this delivery committed the blob: its stream's digests are the part's
            digests.save(self._blobs, msg.blobName, stream.sha256, streamed)
        return stream.sha256, stream.stored_bytes, result.raw_bytes

    def _keep_digests(self, msg: PartMessage, sha256: str) -> None:
        """Make sure the committed part blob (``sha256``) has its digests kept before its row is recorded: the
        committing delivery's, or, if it died before keeping them, those of the blob read back from the vault."""
        if not msg.digests:
            return
        found, _ = digests.load(self._blobs, msg.blobName, sha256)
        if not found:
            log.info("part %s of job %s committed without its digests: digesting its blob", msg.part, msg.jobId)
            digests.save(self._blobs, msg.blobName, sha256, digests.of_committed(self._blobs, msg.blobName, sha256))

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
            if watcher is not threading.current_thread():
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
        row, changed = board.change(msg.part, lambda _: fields)  # AttemptOver when swept: see run
        if changed:
            log.info("part %s of job %s committed (%s raw bytes, %s stored)", msg.part, msg.jobId, raw, stored)
            if board.status() is AttemptStatus.FAILED:  # the coordinator gave up meanwhile: nothing will name it
                delete_blobs(self._blobs, _blobs_of(msg))
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
        """Leave the part: record it Failed (``fail``) for the coordinator; delete its blob only when no point can
        name it: its attempt Failed, or Running with the part's row there and not Committed. Rows that are gone
        (an ended attempt's, swept) say nothing, so then nothing is deleted: the orphan sweep has what is left."""
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
            try:
                row, _ = board.change(msg.part, lambda _: failed)
            except AttemptOver:
                row = None  # swept meanwhile
        status = board.status()
        uncommitted = row is not None and row.status is not PartStatus.COMMITTED
        if status is AttemptStatus.FAILED or (uncommitted and status is AttemptStatus.RUNNING):  # Failed is final
            delete_blobs(self._blobs, _blobs_of(msg))
        return PartOutcome.DROPPED


def _blobs_of(msg: PartMessage) -> list[str]:
    """The part's blob and, when it digests its stream, its digests sidecar."""
    return [msg.blobName, *(digests.names([msg.blobName]) if msg.digests else [])]


def _refused(row: PartRow | None, msg: PartMessage) -> str | None:
    """Why a worker must not dump part ``msg`` whose row is ``row``; None when it may."""
    if row is None:
        return "its attempt has no such part"
    if not row.sent_as(msg):  # a copy with other tables, plan or blob: _drop touches nothing it names
        return "it is not the message its coordinator sent"
    if row.status is PartStatus.FAILED:
        return f"it failed ({row.error})"
    return None


def _matches(msg: PartMessage, attempt: AttemptRow) -> bool:
    """Whether the message names the instance, blob and snapshot its attempt's row says its part has."""
    blob = attempt.blob_name
    return (
        blob is not None
        and msg.blobName == layout.part_blob_name(str(blob), msg.part)
        and msg.snapshot == attempt.snapshot
        and msg.instance == attempt.instance
    )
