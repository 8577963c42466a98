"""``pg_dump`` streamed through zstd into a block blob: no temporary file, no whole dump in memory.

``pg_dump -Fc -Z0`` writes an uncompressed custom-format archive to its stdout; we read it in
large chunks, compress with zstd on several threads and stage the result as blob blocks while
the dump goes on (see ``shared.storage.blockstream``). The password reaches the child only in
its environment. A failed dump commits nothing, and its stderr is mapped to an error code.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psycopg
import zstandard

from shared.errors import ErrorCode, PgVaultError, TransientError, UserError
from shared.pg.archive import ArchiveDigester, ArchiveError
from shared.pg.connect import connect, refusal
from shared.pg.digests import table_digests
from shared.process_memory import release_large_buffers
from shared.stopping import StopSignal, check
from shared.storage.ports import BlockSinks, StreamResult

log = logging.getLogger(__name__)

READ_BYTES = 4 * 1024 * 1024
# Chunks read ahead of the compressor (READ_BYTES each): enough to absorb its pauses.
READ_AHEAD = 4
# Chunks waiting for the stream digester's thread: it keeps up (the walk is one length read per row,
# the hashing C), and each chunk waiting is READ_BYTES held past zstd.
DIGEST_AHEAD = 1
# Measured with bench/backup.py (bench/README.md): level 1 on two threads is the fastest and still
# stores less than pg_dump's gzip (137 MB against 159 MB on the 1 GB reference database); level 3
# took 16-20% longer for 1-2% smaller output, negative levels doubled what goes over the wire.
ZSTD_LEVEL = 1
ZSTD_THREADS = 2
_STDERR_KEEP = 64 * 1024
_PASSWORDISH = re.compile(r"(password\s*=\s*)\S+", re.IGNORECASE)


@dataclass(frozen=True)
class DumpResult:
    """What a finished dump stored."""

    stream: StreamResult
    raw_bytes: int


def _stderr_reader(pipe: object, sink: bytearray) -> threading.Thread:
    def run() -> None:
        for line in iter(pipe.readline, b""):  # type: ignore[attr-defined]
            sink.extend(line)
            if len(sink) > _STDERR_KEEP:
                del sink[: len(sink) - _STDERR_KEEP]

    thread = threading.Thread(target=run, name="pg_dump-stderr", daemon=True)
    thread.start()
    return thread


def _read_ahead(pipe: IO[bytes], depth: int = READ_AHEAD) -> Iterator[bytes]:
    """The pipe's chunks, read by a thread of their own so pg_dump never waits on the compressor.

    At most ``depth`` chunks wait in between: memory stays bounded.
    """
    chunks: queue.Queue[bytes | BaseException] = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                chunk = pipe.read(READ_BYTES)
                chunks.put(chunk)
                if not chunk:
                    return
        except BaseException as exc:  # handed to the consumer
            chunks.put(exc)

    reader = threading.Thread(target=read, name="pg_dump-stdout", daemon=True)
    reader.start()
    try:
        while True:
            item = chunks.get()
            if isinstance(item, BaseException):
                raise item
            if not item:
                return
            yield item
    finally:
        stop.set()
        # Unblock a reader waiting on a full queue; not when closed on that thread itself (the garbage
        # collector may finalise this generator there).
        while reader.is_alive() and reader is not threading.current_thread():
            with contextlib.suppress(queue.Empty):
                chunks.get_nowait()
            reader.join(timeout=0.05)


def _connect_error(text: str, last: str, database: str) -> UserError | None:
    """The error of a pg_dump that could not connect or log in, if that is what ``text`` says."""
    refused = refusal(last, "pg_dump could not connect")
    if refused is not None:
        return refused
    if "password authentication failed" in text or re.search(r'role ".*" does not exist', text):
        return UserError(ErrorCode.DB_USER_AUTH_FAILED, f"pg_dump could not log in: {last}")
    if re.search(r'database ".*" does not exist', text):
        return UserError(ErrorCode.DB_NOT_FOUND, f"database {database!r} does not exist: {last}")
    return None


def map_dump_error(stderr: str, returncode: int, database: str) -> PgVaultError:
    """The error a failed ``pg_dump`` means, read from its messages (never showing a password)."""
    text = _PASSWORDISH.sub(r"\1***", stderr.strip())
    last = " | ".join(text.splitlines()[-3:]) or f"exit code {returncode}"
    login = _connect_error(text, last, database)
    if login is not None:
        return login
    if "invalid snapshot identifier" in text:
        return SnapshotGone(f"the snapshot this dump was to read is gone (its exporting session ended): {last}")
    if "server version mismatch" in text:
        return UserError(ErrorCode.PG_DUMP_VERSION_TOO_OLD, f"pg_dump is older than the server: {last}")
    denied = re.findall(r"permission denied for (?:table|relation|schema|sequence|large object) ([^\s]+)", text)
    if denied or "permission denied" in text or "row-level security" in text:
        objects = ", ".join(dict.fromkeys(denied)) or "some objects"
        return UserError(
            ErrorCode.MISSING_DB_PERMISSIONS,
            f"pg_dump was refused access to {objects} (objects created since the last validation are the usual "
            f"cause): {last}",
            recommended_action="Run the instance's grant script again (GET .../grantScript), then retry the backup.",
        )
    gone = (
        "server closed the connection",
        "terminating connection",
        "could not connect",
        "Connection refused",
        "connection to server",
        "SSL SYSCALL",
        "the database system is shutting down",
        "is starting up",
    )
    if any(g in text for g in gone):
        return TransientError(f"the server went away during pg_dump: {last}", code=ErrorCode.SERVER_CONNECTION_CLOSED)
    return UserError(ErrorCode.INTERNAL, f"pg_dump failed: {last}")


class DumpKilled(TransientError):
    """pg_dump died of a signal (killed, out of memory) without a word about the database: worth a retry."""


class SnapshotGone(TransientError):
    """``pg_dump --snapshot=S`` found no snapshot ``S``: the session that exported it ended (its backup attempt
    failed or its worker died). No dump on that snapshot can succeed any more; only a new attempt can."""


def _start_pg_dump(
    pg_dump: Path, env: Mapping[str, str], snapshot: str | None, extra_args: Sequence[str] = ()
) -> subprocess.Popen[bytes]:
    """pg_dump writing the custom format, uncompressed, to its stdout (zstd compresses it here).

    ``extra_args`` narrow what it dumps (a part's ``--data-only --table=...``, ``shared.pg.parts``).
    """
    argv = [str(pg_dump), "--format=custom", "--compress=0", "--no-password"]
    if snapshot is not None:
        argv.append(f"--snapshot={snapshot}")
    argv.extend(extra_args)
    return subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", **env},
    )


def dump_to_blob(
    pg_dump: Path,
    env: Mapping[str, str],
    sinks: BlockSinks,
    blob_name: str,
    metadata: Mapping[str, str],
    *,
    on_progress: Callable[[int], None] | None = None,
    progress_every: float = 5.0,
    level: int = ZSTD_LEVEL,
    threads: int = ZSTD_THREADS,
    expected_bytes: int = 0,
    snapshot: str | None = None,
    stop: StopSignal | None = None,
    before_commit: Callable[[], None] | None = None,
    extra_args: Sequence[str] = (),
    on_chunk: Callable[[bytes], None] | None = None,
    if_missing: bool = False,
    streams: int = 1,
) -> DumpResult:
    """Dump the database ``env`` points at into ``blob_name``, committed with ``metadata``.

    ``on_progress(raw_bytes)`` is called at most every ``progress_every`` seconds. Raises the
    mapped error if pg_dump fails (nothing committed) and kills pg_dump if the upload fails.
    ``snapshot`` (from ``pg_export_snapshot()``) makes pg_dump read that snapshot, so another
    session can read exactly what the dump holds (the backup's manifest). When ``stop`` is set
    (the job was cancelled, its lock taken over), pg_dump is killed at once and its reason raised:
    nothing is committed after the signal. ``extra_args`` go to pg_dump as they are. A pg_dump
    killed by a signal raises ``DumpKilled`` (a ``TransientError``). ``on_chunk`` sees every raw
    chunk of the archive in order (the stream digests, ``shared.pg.archive``). ``streams`` dumps
    running at once in this process (a multi-part backup) share one budget of buffers: the read-ahead
    (``READ_AHEAD`` chunks) and the blocks in flight are divided among them, at least one each.
    ``if_missing`` commits only if no blob of that name exists (``BlobExists`` otherwise, the existing
    blob untouched): two dumps into one name never both commit. A snapshot that is gone raises
    ``SnapshotGone``.
    """
    if streams > 1:
        release_large_buffers()  # parts at once: peak memory follows what they hold (shared.process_memory)
    proc = _start_pg_dump(pg_dump, env, snapshot, extra_args)
    assert proc.stdout is not None and proc.stderr is not None
    stderr = bytearray()
    reader = _stderr_reader(proc.stderr, stderr)
    writer = sinks.writer(blob_name, expected_bytes=expected_bytes, streams=streams)
    raw = 0
    last_report = time.monotonic()
    killing = stop.on_stop(proc.kill) if stop is not None else contextlib.nullcontext()
    try:
        with killing:
            compressor = zstandard.ZstdCompressor(level=level, threads=threads, write_checksum=True)
            with compressor.stream_writer(writer, closefd=False) as zstd_out:  # type: ignore[arg-type]
                for chunk in _read_ahead(proc.stdout, READ_AHEAD // max(1, streams)):
                    check(stop)
                    zstd_out.write(chunk)
                    if on_chunk is not None:
                        on_chunk(chunk)
                    raw += len(chunk)
                    if on_progress is not None and time.monotonic() - last_report >= progress_every:
                        last_report = time.monotonic()
                        on_progress(raw)
            returncode = proc.wait()
            reader.join(timeout=10)
            check(stop)  # pg_dump killed by the signal: its exit says nothing about the database
            if returncode < 0:
                raise DumpKilled(f"pg_dump was killed by signal {-returncode} while dumping into {blob_name}")
            if returncode != 0:
                raise map_dump_error(stderr.decode(errors="replace"), returncode, env.get("PGDATABASE", ""))
            if before_commit is not None:
                before_commit()  # e.g. the heartbeat confirms the lock and that no cancel came
            check(stop)
        result = writer.commit(
            {**metadata, "format": "pg_dump-custom", "codec": "zstd", "rawbytes": str(raw), "zstdlevel": str(level)},
            if_missing=if_missing,
        )
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        writer.close()
        raise
    finally:
        proc.stdout.close()
        proc.stderr.close()
    log.info(
        "dumped %s raw bytes into %s (%s stored, %s blocks, %.1f s)",
        raw,
        blob_name,
        result.stored_bytes,
        result.blocks,
        result.seconds,
    )
    return DumpResult(result, raw)


class _DigestThread:
    """Feeds the stream digester on a thread of its own, so the thread that feeds zstd only hands chunks on.

    At most ``DIGEST_AHEAD`` chunks wait (the same bytes objects zstd was given, kept alive only by
    this queue), so memory stays bounded; a digester that falls behind slows the dump down rather
    than growing. ``close`` waits for every chunk to be digested.
    """

    def __init__(self, digester: ArchiveDigester) -> None:
        self._chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=DIGEST_AHEAD)
        self._thread = threading.Thread(target=self._run, args=(digester,), name="manifest", daemon=True)
        self._thread.start()

    def _run(self, digester: ArchiveDigester) -> None:
        while (chunk := self._chunks.get()) is not None:
            digester.feed(chunk)  # never raises: a stream it cannot read is reported by tables()

    def __call__(self, chunk: bytes) -> None:
        self._chunks.put(chunk)

    def close(self) -> None:
        self._chunks.put(None)
        self._thread.join()


def digest_stream(
    dump: Callable[..., DumpResult], blob_name: str, *, on_thread: bool = False
) -> tuple[DumpResult, dict[str, Any] | None]:
    """``dump(on_chunk=...)`` with the stream digests of its archive (``shared.pg.archive``), None if unreadable.

    The digester runs on the thread that feeds zstd; ``on_thread`` gives it a thread of its own
    (``_DigestThread``). Measured on 2 cores (bench/digests.py) that is no faster, since the backup
    already keeps both cores busy and the walk holds the GIL, and it keeps two chunks more alive
    (+16 MB): so not by default; it is for hosts with cores to spare (not measured).
    """
    digester = ArchiveDigester()
    if on_thread:
        feeder = _DigestThread(digester)
        try:
            result = dump(on_chunk=feeder)
        finally:
            feeder.close()
    else:
        result = dump(on_chunk=digester.feed)
    try:
        return result, digester.tables()
    except ArchiveError as exc:
        log.warning("%s: no manifest, the dump stream could not be digested: %s", blob_name, exc)
        return result, None


def dump_with_manifest(
    pg_dump: Path,
    libpq: Mapping[str, Any],
    env: Mapping[str, str],
    sinks: BlockSinks,
    blob_name: str,
    *,
    metadata: Mapping[str, str],
    on_progress: Callable[[int], None] | None = None,
    expected_bytes: int = 0,
    level: int = ZSTD_LEVEL,
    digests: bool = True,
    stop: StopSignal | None = None,
    before_commit: Callable[[], None] | None = None,
    from_stream: bool = True,
    digest_on_thread: bool = False,
) -> tuple[DumpResult, dict[str, Any] | None]:
    """``dump_to_blob``, and the per-table digests of the same snapshot (None if they could not be made).

    By default (``from_stream``) the digests are read from the dump's own bytes as they pass
    (``shared.pg.archive``, method ``copy-sha256``; ``digest_on_thread``: see ``digest_stream``):
    the server pays nothing extra; a stream the parser cannot read gives no manifest. ``from_stream=False`` is the SQL
    manifest (``shared.pg.digests``): a second read of every table in the very snapshot pg_dump
    reads (exported here on a connection made with ``libpq``, imported by pg_dump with
    ``--snapshot``), on a thread of its own while the dump streams; a server that cannot export a
    snapshot still gets its backup, without a manifest. ``digests=False``: no manifest.
    """
    dump = functools.partial(
        dump_to_blob,
        pg_dump,
        env,
        sinks,
        blob_name,
        metadata,
        on_progress=on_progress,
        expected_bytes=expected_bytes,
        level=level,
        stop=stop,
        before_commit=before_commit,
    )
    if not digests:
        return dump(), None
    if from_stream:
        return digest_stream(dump, blob_name, on_thread=digest_on_thread)
    with connect(libpq, autocommit=False) as snap:
        snap.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        snap.read_only = True
        try:
            snapshot: str | None = str(snap.execute("SELECT pg_export_snapshot()").fetchone()[0])  # type: ignore[index]
        except psycopg.Error as exc:
            log.warning("%s: no manifest, cannot export a snapshot: %s", blob_name, exc)
            snap.rollback()
            snapshot = None
        with ThreadPoolExecutor(1, thread_name_prefix="manifest") as pool:
            pending = pool.submit(table_digests, snap) if snapshot is not None else None
            try:
                result = dump(snapshot=snapshot)
            except BaseException:
                snap.cancel_safe()
                raise
            try:
                tables = pending.result() if pending is not None else None
            except psycopg.Error as exc:
                log.warning("%s: no manifest, the table digests failed: %s", blob_name, exc)
                tables = None
        snap.rollback()
    return result, tables
