"""Multi-part recovery points: one database dumped by N ``pg_dump`` processes on one snapshot, and
restored by N ``pg_restore`` processes.

Backup. One connection exports a snapshot (``pg_export_snapshot()`` in a read-only REPEATABLE
READ transaction) and holds it until the last part is committed. The user tables are split by
size (``pg_table_size``, greedy largest first into N bins) so the parts finish together; each bin
is a *data part*, ``pg_dump -Fc --data-only --snapshot=S --table=...``, streamed through zstd into
a blob of its own (``dump_to_blob``: no temporary file). The *schema part* is everything else,
``pg_dump -Fc --snapshot=S --exclude-table-data=...`` of the same tables: the definitions (pre-
and post-data), sequences, large objects, extension configuration data. Its blob is the point's
``blob_name``; part ``i``'s blob is ``part_blob_name(blob_name, i)``, a name that follows every
rename of the point's blob (archive copy suffix, rehydration prefix). A part whose pg_dump is
killed (``DumpKilled``) or whose server went away is dumped again on the same snapshot, up to
``PART_ATTEMPTS`` times; any other failure stops every part. The caller records one recovery
point only after every part is committed with its checksum.

Table names reach pg_dump as patterns of double-quoted identifiers (``"s"."t"``, quotes doubled):
inside double quotes a pattern matches literally. They go on the command line rather than in a
``--filter`` file because ``--filter`` exists only from pg_dump 17, and the tool picker may pick
any major from 12 (the lowest that is at least the server's).

Restore. The schema part is downloaded (checked, decompressed) to a temporary file, since
``pg_restore -j`` needs a seekable archive; then ``--section=pre-data`` from it, then the data of
every part concurrently (each part streamed from its blob into its own ``pg_restore``, and the
schema part's own data section), then ``--section=post-data -j N`` (indexes, constraints,
triggers). Foreign keys come in post-data, so the parts' data may load in any order.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import heapq
import logging
import os
import shlex
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from shared.errors import PgVaultError, TransientError
from shared.pg.connect import connect
from shared.pg.digests import table_digests
from shared.pg.dump import ZSTD_LEVEL, DumpResult, digest_stream, dump_to_blob
from shared.pg.restore import RestoreOptions, RestoreReport, merge_reports, restore_file, restore_stream
from shared.recovery_points import Part
from shared.stopping import StopSignal, check
from shared.storage.layout import part_blob_name
from shared.storage.ports import BlobReader, BlockSinks

log = logging.getLogger(__name__)

# Databases smaller than this (pg_database_size) are dumped as one stream (PGVAULT_PARALLEL_BACKUP_MIN_BYTES).
# bench/parts.py on 2 cores (bench/README.md, issue 18): at 323 and 634 MB two parts back up in the
# same wall time as one stream for 11-14% more CPU, and since a one-stream restore runs post-data
# with --jobs too (shared.pg.restore.restore_blob) they restore no faster: parts pay from gigabytes.
DEFAULT_PARALLEL_MIN_BYTES = 2 * 1024**3
# Tries of one part's pg_dump within one attempt of the backup (the first and two more).
PART_ATTEMPTS = 3
# zstd threads of each part's compressor: N parts already keep N cores busy.
PART_ZSTD_THREADS = 1
_STDERR_KEEP = 256 * 1024
# The stream digest of a table named in an archive's table of contents whose data block is not in it.
_NO_BLOCK = hashlib.sha256(b"").hexdigest()

# Leaf tables holding rows (relkind 'r'; a partitioned table's rows are in its partitions), not
# members of an extension (pg_dump dumps their configuration data with the extension), with the
# size of their heap and TOAST (what pg_dump reads; indexes are not dumped as data).
_TABLE_SIZES = """
SELECT n.nspname, c.relname, pg_table_size(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'e')
ORDER BY 3 DESC, 1, 2
"""


def quote_pattern(schema: str, table: str) -> str:
    """A pg_dump ``--table`` pattern that matches exactly ``schema.table`` (double-quoted, quotes doubled)."""
    return '"{}"."{}"'.format(schema.replace('"', '""'), table.replace('"', '""'))


@dataclass(frozen=True)
class TableSize:
    """One user table and the bytes pg_dump reads of it."""

    schema: str
    name: str
    bytes: int

    @property
    def qualified(self) -> str:
        """``schema.table`` as the manifests name tables."""
        return f"{self.schema}.{self.name}"

    @property
    def pattern(self) -> str:
        return quote_pattern(self.schema, self.name)


def table_sizes(conn: psycopg.Connection[Any]) -> list[TableSize]:
    """Every user table with rows of its own, largest first."""
    return [TableSize(str(s), str(t), int(b or 0)) for s, t, b in conn.execute(_TABLE_SIZES).fetchall()]


def split_by_size(tables: Sequence[TableSize], bins: int) -> list[tuple[TableSize, ...]]:
    """``tables`` in at most ``bins`` groups of about equal bytes (greedy: largest table into the lightest bin).

    The largest-first greedy rule is within 4/3 of the best split; empty groups are left out.
    """
    # Ties go to the bin with fewer tables: empty tables spread too, and no bin stays empty needlessly.
    heap: list[tuple[int, int, int, list[TableSize]]] = [(0, 0, i, []) for i in range(max(1, bins))]
    for table in sorted(tables, key=lambda t: (-t.bytes, t.schema, t.name)):
        weight, count, i, members = heapq.heappop(heap)
        members.append(table)
        heapq.heappush(heap, (weight + table.bytes, count + 1, i, members))
    groups = [tuple(members) for *_, members in sorted(heap, key=lambda h: h[2]) if members]
    return sorted(groups, key=lambda g: -sum(t.bytes for t in g))


def data_part_args(tables: Sequence[TableSize]) -> list[str]:
    """pg_dump arguments of a data part: only the rows of ``tables``."""
    return ["--data-only", *(f"--table={t.pattern}" for t in tables)]


def schema_part_args(tables: Sequence[TableSize]) -> list[str]:
    """pg_dump arguments of the schema part: everything but the rows the data parts hold."""
    return [f"--exclude-table-data={t.pattern}" for t in tables]


@dataclass(frozen=True)
class PartedDump:
    """What a multi-part dump committed: the schema part (the point's blob) and the data parts."""

    schema: DumpResult
    parts: tuple[Part, ...]
    tables: dict[str, Any] | None
    """The per-table digests of the snapshot (the manifest), None when not asked for or failed."""

    @property
    def stored_bytes(self) -> int:
        return self.schema.stream.stored_bytes + sum(p.stored_bytes for p in self.parts)

    @property
    def raw_bytes(self) -> int:
        return self.schema.raw_bytes + sum(p.raw_bytes for p in self.parts)


class NoSnapshot(PgVaultError):
    """The server cannot export a snapshot (``pg_export_snapshot()`` failed): parts could not agree; dump in one."""


class _Progress:
    """The raw bytes of every part summed, reported from one thread at a time."""

    def __init__(self, report: Callable[[int], None] | None) -> None:
        self._report = report
        self._lock = threading.Lock()
        self._bytes: dict[int, int] = {}

    def of(self, index: int) -> Callable[[int], None]:
        def update(raw: int) -> None:
            with self._lock:
                self._bytes[index] = raw
                if self._report is not None:
                    self._report(sum(self._bytes.values()))

        return update


@contextlib.contextmanager
def linked(outer: StopSignal | None) -> Iterator[StopSignal]:
    """A stop signal of this dump's own, set too when ``outer`` is (a cancel, the lock lost)."""
    inner = StopSignal()
    if outer is None:
        yield inner
        return

    def forward() -> None:
        assert outer is not None and outer.reason is not None
        inner.set(outer.reason)

    with outer.on_stop(forward):
        yield inner


def _discard(sinks: BlockSinks, names: Sequence[str]) -> None:
    delete = getattr(sinks, "delete", None)
    if delete is None:
        return
    for name in names:
        try:
            delete(name)
        except PgVaultError as exc:
            log.warning("could not delete part %s: %s", name, type(exc).__name__)


class _PartDumper:
    """The parts of one dump, each dumped (and retried) on the one snapshot, committed one at a time."""

    def __init__(
        self,
        dump: Callable[..., DumpResult],
        snapshot: str,
        metadata: Mapping[str, str],
        progress: _Progress,
        before_commit: Callable[[], None] | None,
        *,
        from_stream: bool = False,
    ) -> None:
        self._dump = dump
        self._from_stream = from_stream
        # part index -> the stream digests of its archive (None: unreadable), when from_stream
        self.digests: dict[int, dict[str, Any] | None] = {}
        self._snapshot = snapshot
        self._metadata = metadata
        self._progress = progress
        self._before_commit = before_commit
        self._lock = threading.Lock()
        self.committed: list[str] = []

    def _commit_check(self) -> None:
        if self._before_commit is not None:
            with self._lock:  # the lock's renewal is ETag-guarded: one part at a time
                self._before_commit()

    def __call__(self, index: int, name: str, args: list[str], expected: int, signal: StopSignal) -> DumpResult:
        """Dump part ``index`` into ``name``; a killed pg_dump or a server gone is dumped again."""
        for attempt in range(1, PART_ATTEMPTS + 1):
            dump = functools.partial(
                self._dump,
                name,
                {**self._metadata, "part": str(index)},
                on_progress=self._progress.of(index),
                expected_bytes=expected,
                snapshot=self._snapshot,
                stop=signal,
                before_commit=self._commit_check,
                extra_args=args,
            )
            try:
                if self._from_stream:  # each attempt digests its own stream afresh
                    result, tables = digest_stream(dump, name)
                    self.digests[index] = tables
                else:
                    result = dump()
            except TransientError as exc:
                check(signal)  # another part failed, a cancel came: no retry
                if attempt == PART_ATTEMPTS:
                    raise
                log.warning("%s: part %s failed (%s); dumping it again on the same snapshot", name, index, exc)
                continue
            with self._lock:
                self.committed.append(name)
            return result
        raise AssertionError("unreachable")


def _first_failure(futures: Sequence[Future[Any]], signal: StopSignal) -> tuple[list[Any], BaseException | None]:
    """Every future's result in order; the first failure stops the others (``signal``) and is returned."""
    results: list[Any] = []
    failure: BaseException | None = None
    for future in futures:
        try:
            results.append(future.result())
        except BaseException as exc:
            if failure is None:
                failure = exc
                signal.set(exc if isinstance(exc, PgVaultError) else TransientError(f"a part failed: {exc!r}"))
    return results, failure


def merge_digests(blob_name: str, digests: Mapping[int, dict[str, Any] | None], count: int) -> dict[str, Any] | None:
    """One manifest of every part's stream digests; None if any part's stream could not be read.

    A table's data block is in one part's archive only; another archive may name it in its table of
    contents without a block (digested as nothing at all), so the part with the block wins.
    """
    if len(digests) < count or any(d is None for d in digests.values()):
        log.warning("%s: no manifest, a part's dump stream could not be digested", blob_name)
        return None
    merged: dict[str, Any] = {}
    for index in sorted(digests):
        for table, digest in (digests[index] or {}).items():
            if table not in merged or merged[table]["hash"] == _NO_BLOCK:
                merged[table] = digest
    return dict(sorted(merged.items()))


# PostgreSQL 17 added transaction_timeout (postgresql.org/docs/17/runtime-config-client.html).
_TRANSACTION_TIMEOUT_SINCE = 170000


@contextlib.contextmanager
def exported_snapshot(libpq: Mapping[str, Any]) -> Iterator[tuple[psycopg.Connection[Any], str]]:
    """A read-only repeatable-read session of the database and the snapshot it exported, held while the block
    runs (every part's ``pg_dump --snapshot`` reads it) and ended after; ``NoSnapshot`` when the server cannot
    export one."""
    with connect(libpq) as snap:
        # The session idles while the parts run (hours, across instances): a server's or role's idle or
        # transaction timeout would end it and the snapshot with it. Both are the session's own to set.
        try:
            snap.execute("SET idle_in_transaction_session_timeout = 0")
            if snap.info.server_version >= _TRANSACTION_TIMEOUT_SINCE:
                snap.execute("SET transaction_timeout = 0")
        except psycopg.Error as exc:
            raise NoSnapshot(f"cannot keep a snapshot's session open: {exc}") from exc
        snap.autocommit = False
        snap.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        snap.read_only = True
        try:
            snapshot = str(snap.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
        except psycopg.Error as exc:
            raise NoSnapshot(f"cannot export a snapshot: {exc}") from exc
        yield snap, snapshot
        with contextlib.suppress(psycopg.Error):
            snap.rollback()


def dump_in_parts(
    pg_dump: Path,
    libpq: Mapping[str, Any],
    env: Mapping[str, str],
    sinks: BlockSinks,
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
) -> PartedDump:
    """Dump the database into a schema part (``blob_name``) and up to ``parallelism`` data parts.

    Every part reads the one snapshot exported here (``NoSnapshot`` before anything is written if the
    server cannot export one); the per-table digests (``digests``) are read from each part's
    stream as it passes (``from_stream``, method ``copy-sha256``: each table's rows are in exactly
    one part's archive) or, with ``from_stream=False``, computed on the exporting connection
    meanwhile. Either every part is committed with its checksum and the parts are returned, or the
    error is raised and the parts committed so far are deleted. ``before_commit`` runs before each
    part's commit, one part at a time.
    """
    with exported_snapshot(libpq) as (snap, snapshot):
        groups = split_by_size(table_sizes(snap), parallelism)
        in_parts = [t for g in groups for t in g]
        # The data parts share one budget of read-ahead and blocks in flight (the schema part is small).
        dump = functools.partial(
            dump_to_blob, pg_dump, env, sinks, level=level, threads=PART_ZSTD_THREADS, streams=len(groups)
        )
        log.info("%s: %s tables in %s data parts and a schema part", blob_name, len(in_parts), len(groups))
        streamed = digests and from_stream
        parts = _PartDumper(dump, snapshot, metadata, _Progress(on_progress), before_commit, from_stream=streamed)
        with linked(stop) as signal, ThreadPoolExecutor(len(groups) + 2, thread_name_prefix="part") as pool:
            pending_digests = pool.submit(table_digests, snap) if digests and not streamed else None
            futures = [pool.submit(parts, 0, blob_name, schema_part_args(in_parts), 0, signal)]
            for i, group in enumerate(groups, start=1):
                name, expected = part_blob_name(blob_name, i), sum(t.bytes for t in group)
                futures.append(pool.submit(parts, i, name, data_part_args(group), expected, signal))
            results, failure = _first_failure(futures, signal)
            tables: dict[str, Any] | None = None
            if pending_digests is not None:
                if failure is not None:
                    snap.cancel_safe()
                try:
                    tables = pending_digests.result()
                except psycopg.Error as exc:
                    log.warning("%s: no manifest, the table digests failed: %s", blob_name, exc)
            if failure is not None:
                _discard(sinks, parts.committed)
                raise failure
            if streamed:
                tables = merge_digests(blob_name, parts.digests, len(groups) + 1)
    data = tuple(
        Part(i, r.stream.sha256, r.stream.stored_bytes, r.raw_bytes, tuple(t.qualified for t in groups[i - 1]))
        for i, r in enumerate(results[1:], start=1)
    )
    return PartedDump(results[0], data, tables)


# --- restore ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartSource:
    """A blob to restore from and the checksum it must match."""

    blob_name: str
    sha256: str


class _Bytes:
    """Bytes read of several blobs at once, summed, reported from one thread at a time."""

    def __init__(self, report: Callable[[int], None] | None) -> None:
        self._report = report
        self._lock = threading.Lock()
        self._read: dict[str, int] = {}

    def of(self, name: str) -> Callable[[int], None] | None:
        if self._report is None:
            return None

        def update(read: int) -> None:
            with self._lock:
                self._read[name] = read
                assert self._report is not None
                self._report(sum(self._read.values()))

        return update


def restore_in_parts(
    pg_restore: Path,
    env: Mapping[str, str],
    blobs: BlobReader,
    schema: PartSource,
    parts: Sequence[PartSource],
    *,
    options: RestoreOptions,
    jobs: int,
    on_bytes: Callable[[int], None] | None = None,
    stop: StopSignal | None = None,
    workdir: Path | None = None,
) -> RestoreReport:
    """Restore a multi-part point: pre-data, every part's data at once, then post-data with ``-j jobs``.

    Every blob is checked against its checksum as it downloads (``IntegrityError`` from
    ``read_verified``); the first failure stops every ``pg_restore`` and is raised. What was
    written is the caller's to throw away.
    """
    counted = _Bytes(on_bytes)
    fd, raw_path = tempfile.mkstemp(prefix="pgvault-schema-", suffix=".dump", dir=workdir)
    path = Path(raw_path)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in blobs.read_verified(schema.blob_name, schema.sha256, on_bytes=counted.of(schema.blob_name)):
                check(stop)
                out.write(chunk)
        reports = [restore_file(pg_restore, env, path, options, ["--section=pre-data"], stop=stop)]
        if reports[0].errors:
            return merge_reports(reports)
        with linked(stop) as signal, ThreadPoolExecutor(len(parts) + 1, thread_name_prefix="restore-part") as pool:
            futures = [pool.submit(restore_file, pg_restore, env, path, options, ["--section=data"], stop=signal)]
            for part in parts:
                chunks = blobs.read_verified(
                    part.blob_name, part.sha256, on_bytes=counted.of(part.blob_name), streams=len(parts)
                )
                futures.append(pool.submit(restore_stream, pg_restore, env, chunks, options, stop=signal))
            done, failure = _first_failure(futures, signal)
            if failure is not None:
                raise failure
            reports.extend(done)
        if any(r.errors for r in reports):
            return merge_reports(reports)
        reports.append(
            restore_file(pg_restore, env, path, options, ["--section=post-data", f"--jobs={max(1, jobs)}"], stop=stop)
        )
        return merge_reports(reports)
    finally:
        with contextlib.suppress(OSError):
            path.unlink()


def restore_command_lines(
    schema_file: str, part_files: Sequence[str], options: RestoreOptions, jobs: int, *, zstd: bool = False
) -> list[str]:
    """The shell commands that restore a multi-part point written as files, in order, into the
    database the ``PG*`` variables name: pre-data, the data of every file, post-data (``--jobs``,
    which needs a seekable file: not for the zstd form, whose files are piped through ``zstd -dc``)."""
    base = shlex.join(["pg_restore", *options.args()]) + ' --dbname "$PGDATABASE"'

    def run(path: str, *args: str) -> str:
        tail = " ".join(args)
        if zstd:
            return f"zstd -dc {shlex.quote(path)} | {base}" + (f" {tail}" if tail else "")
        return f"{base} " + (f"{tail} " if tail else "") + shlex.quote(path)

    post = ("--section=post-data",) if zstd else ("--section=post-data", f"--jobs={max(1, jobs)}")
    lines = [run(schema_file, "--section=pre-data"), run(schema_file, "--section=data")]
    lines += [run(name) for name in part_files]
    lines.append(run(schema_file, *post))
    return lines


__all__ = [
    "NoSnapshot",
    "Part",
    "PartSource",
    "PartedDump",
    "TableSize",
    "dump_in_parts",
    "merge_digests",
    "part_blob_name",
    "quote_pattern",
    "restore_command_lines",
    "restore_file",
    "restore_in_parts",
    "split_by_size",
    "table_sizes",
]
