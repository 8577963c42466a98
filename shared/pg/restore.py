"""``pg_restore`` fed from a stream, its messages read, and the databases it restores into.

The archive arrives as an iterator of chunks (the blob, checked and decompressed as it
downloads: ``shared.storage.blockstream.read_verified``) and goes straight to ``pg_restore``'s
stdin: no temporary file, memory bounded by the pipe. ``pg_restore`` goes on after an error and
exits 1 at the end (``errors ignored on restore: N``); some of those errors are harmless (a
setting the target server does not know, an owner role missing there), others mean the data is
not all there. ``classify`` tells them apart, so a restore can end ``CompletedWithWarnings`` or
``Failed`` on what actually happened rather than on the exit code alone (docs/platform-notes.md).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import itertools
import logging
import os
import queue
import re
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from shared.errors import ErrorCode, TransientError, UserError
from shared.pg.archive import ArchiveHead
from shared.pg.connect import refusal
from shared.pg.roles import MAP_TO_TARGET_USER
from shared.stopping import StopSignal, check
from shared.storage.ports import BlobReader

log = logging.getLogger(__name__)

_STDERR_KEEP = 256 * 1024
# Downloaded, decompressed chunks waiting for pg_restore (each up to a few MiB): bounds memory.
PREFETCH = 4
PIPE_BYTES = 1024 * 1024
# Seconds between looks at the stop signal while waiting for the next downloaded chunk.
STOP_POLL = 0.5
_PASSWORDISH = re.compile(r"(password\s*=\s*)\S+", re.IGNORECASE)
# Errors pg_restore reports that leave the data complete: they are listed as warnings.
IGNORABLE = (
    re.compile(r"unrecognized configuration parameter"),  # a newer pg_dump's SET on an older server
    re.compile(r'role "[^"]*" does not exist'),  # owners and grantees missing on the target server
    re.compile(r'must be (?:a )?member of role "[^"]*"'),  # owners kept (noOwner false) by a non-superuser
    re.compile(r'must be able to SET ROLE "[^"]*"'),  # the same, as PostgreSQL 16 and newer say it
    re.compile(r'schema "public" already exists'),
    re.compile(r"must be owner of (?:schema public|extension)"),
    re.compile(r'extension "[^"]*" already exists'),
)
# The session settings a newer pg_restore sends at the start of every restore (pg_dump's fixed
# preamble) that an older server does not know: transaction_timeout (17), default_toast_compression
# (14), default_table_access_method (12). They change nothing in the data, so they are notes of the
# job, not warnings (PostgreSQL 17's pg_restore into 12-16 would otherwise always warn).
SESSION_SETTINGS = re.compile(
    r"unrecognized configuration parameter "
    r'"(?:transaction_timeout|default_toast_compression|default_table_access_method)"'
)
# What pg_restore says when the target server itself went away (worth a retry).
_SERVER_GONE = (
    "server closed the connection",
    "terminating connection",
    "could not connect",
    "connection to server",
    "the database system is shutting down",
)


@dataclass(frozen=True)
class RestoreOptions:
    """What ``pg_restore`` is asked to do (the pgvault ``restoreOptions`` of a request)."""

    no_owner: bool = True
    no_acl: bool = True
    schemas: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    roles: str = MAP_TO_TARGET_USER
    """``CreateMissing``: the point's roles are created on the target first, owners and grants kept
    (``shared.pg.roles``); ``MapToTargetUser``: ``no_owner`` decides (the target user owns everything)."""

    def args(self) -> list[str]:
        """``pg_restore`` arguments for these options (no connection parameters: those go in env)."""
        out: list[str] = []
        if self.no_owner:
            out.append("--no-owner")
        if self.no_acl:
            out.append("--no-acl")
        table_schema: set[str] = set()
        names: list[str] = []
        for table in self.tables:
            schema, _, name = table.rpartition(".")
            if schema:
                table_schema.add(schema)
            names.append(name)
        for schema in (*self.schemas, *sorted(table_schema - set(self.schemas))):
            out.append(f"--schema={schema}")
        for name in names:
            out.append(f"--table={name}")
        return out

    def command(self, path: str | None) -> str:
        """The shell command that restores file ``path`` (stdin when None) with these options into
        the database the ``PG*`` environment variables name (``PGHOST``, ``PGUSER``, ``PGDATABASE``...)."""
        import shlex

        tail = f" {shlex.quote(path)}" if path is not None else ""
        return shlex.join(["pg_restore", *self.args()]) + ' --dbname "$PGDATABASE"' + tail

    def to_dict(self) -> dict[str, Any]:
        return {
            "noOwner": self.no_owner,
            "noAcl": self.no_acl,
            "schemas": list(self.schemas),
            "tables": list(self.tables),
            "roles": self.roles,
        }


@dataclass(frozen=True)
class RestoreReport:
    """What a finished ``pg_restore`` said: harmless warnings, and errors that lose data."""

    returncode: int
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # expected and harmless (SESSION_SETTINGS)
    stdin_closed_early: bool = False
    stderr_tail: str = field(default="", repr=False)

    @property
    def ok(self) -> bool:
        """Whether the data is all there (possibly with warnings)."""
        if self.errors:
            return False
        return self.returncode == 0 or bool(self.warnings or self.notes)


# One message of pg_restore: "pg_restore: error: ..." at a line's start or right after another
# message's prefix, or " error: ..." whose prefix went to the line before. With --jobs its processes
# share one stderr and write a message in several writes, so two messages can share a line.
_MESSAGE = re.compile(r"(?:pg_restore: ?|^\s*)(?:error|ERROR): (.*)$", re.MULTILINE)
# Its summary: "pg_restore: warning: errors ignored on restore: N" (N counts every error message).
_COUNTED = re.compile(r"errors ignored on restore: (\d+)")


def _clean(text: str) -> str:
    return _PASSWORDISH.sub(r"\1***", text).strip()


def classify(stderr: str, returncode: int, *, parallel: bool = False) -> RestoreReport:
    """Split ``pg_restore``'s messages into harmless warnings and data-losing errors.

    Every ``error:`` message counts: those matching ``SESSION_SETTINGS`` are notes, those matching
    ``IGNORABLE`` warnings, the rest errors. A non-zero exit with no error message at all (an
    unreadable archive, a crash) is an error of its own, and so is a count of errors in pg_restore's
    summary above the messages that could be read. A ``parallel`` run (``--jobs``) counts some
    errors twice in its summary, so there only the messages are read.
    """
    text = _clean(stderr)
    notes: list[str] = []
    warnings: list[str] = []
    errors: list[str] = []
    read = 0
    for m in _MESSAGE.finditer(text):
        message = m.group(1).strip()
        read += 1
        if SESSION_SETTINGS.search(message):
            notes.append(message)
        else:
            (warnings if any(p.search(message) for p in IGNORABLE) else errors).append(message)
    counted = max((int(n) for n in _COUNTED.findall(text)), default=0)
    if counted > read and not parallel:
        # Messages garbled past reading could be anything: the restore must not pass as complete.
        errors.append(f"pg_restore counted {counted} errors; {read} of them could be read from its output")
    if returncode != 0 and not (notes or warnings or errors):
        last = " | ".join(text.splitlines()[-3:]) or f"exit code {returncode}"
        errors.append(f"pg_restore failed: {last}")
    return RestoreReport(
        returncode,
        tuple(dict.fromkeys(warnings)),
        tuple(dict.fromkeys(errors)),
        tuple(dict.fromkeys(notes)),
        stderr_tail=text,
    )


def error_for(report: RestoreReport) -> UserError | TransientError:
    """The pgvault error a failed restore means."""
    first = report.errors[0] if report.errors else f"exit code {report.returncode}"
    more = f" (and {len(report.errors) - 1} more)" if len(report.errors) > 1 else ""
    for e in report.errors:
        refused = refusal(e, "pg_restore could not connect")
        if refused is not None:
            return refused
    if any(g in e for e in report.errors for g in _SERVER_GONE):
        return TransientError(
            f"the target server went away during pg_restore: {first}", code=ErrorCode.SERVER_CONNECTION_CLOSED
        )
    if any("permission denied" in e for e in report.errors):
        return UserError(
            ErrorCode.MISSING_DB_PERMISSIONS,
            f"pg_restore was refused: {first}{more}",
            recommended_action="Restore with a user that may create the objects of the backup (or as the "
            "database's owner), or keep noOwner/noAcl true.",
        )
    return UserError(ErrorCode.INTERNAL, f"pg_restore failed: {first}{more}")


def _drain(pipe: Any, sink: bytearray) -> threading.Thread:
    def run() -> None:
        for line in iter(pipe.readline, b""):
            sink.extend(line)
            if len(sink) > _STDERR_KEEP:
                del sink[: len(sink) - _STDERR_KEEP]

    thread = threading.Thread(target=run, name="pg_restore-stderr", daemon=True)
    thread.start()
    return thread


def _prefetch(chunks: Iterable[bytes], depth: int = PREFETCH, stop: StopSignal | None = None) -> Iterator[bytes]:
    """``chunks``, produced by a thread of their own (download, checksum, decompression) while the
    caller feeds pg_restore: the two overlap instead of taking turns. At most ``depth`` wait.
    A ``stop`` set while the download stalls is raised at once (checked every ``STOP_POLL`` s)."""
    items: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=depth)
    done = threading.Event()

    def produce() -> None:
        try:
            for chunk in chunks:
                if done.is_set():
                    return
                items.put(chunk)
            items.put(None)
        except BaseException as exc:  # handed to the consumer
            items.put(exc)

    worker = threading.Thread(target=produce, name="restore-download", daemon=True)
    worker.start()
    try:
        while True:
            try:
                item = items.get(timeout=STOP_POLL)
            except queue.Empty:
                check(stop)
                continue
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        done.set()
        # Unblock a producer waiting on a full queue; not when closed on that thread itself (the garbage
        # collector may finalise this generator there).
        while worker.is_alive() and worker is not threading.current_thread():
            with contextlib.suppress(queue.Empty):
                items.get_nowait()
            worker.join(timeout=0.05)


def _widen_pipe(pipe: Any) -> None:
    """A 1 MiB pipe instead of 64 KiB: fewer turns between us and pg_restore (Linux only)."""
    set_size = getattr(fcntl, "F_SETPIPE_SZ", 1031)
    with contextlib.suppress(OSError):
        fcntl.fcntl(pipe.fileno(), set_size, PIPE_BYTES)


def conninfo_dbname(name: str) -> str:
    """``dbname='...'``: a database name as a connection string, so a name holding ``=`` (which
    libpq would read as a connection string itself) or quotes reaches the server unchanged."""
    escaped = name.replace("\\", "\\\\").replace("'", "\\'")
    return f"dbname='{escaped}'"


def _pg_restore_argv(
    pg_restore: Path, env: Mapping[str, str], options: RestoreOptions, extra_args: Sequence[str], dbname: str | None
) -> list[str]:
    """``pg_restore`` with ``options`` and ``extra_args`` into ``dbname`` (else ``env``'s ``PGDATABASE``)."""
    argv = [str(pg_restore), *options.args(), *extra_args, "--no-password"]
    target = dbname if dbname is not None else env.get("PGDATABASE")
    if target is not None:
        argv += ["--dbname", conninfo_dbname(target)]
    return argv


def restore_stream(
    pg_restore: Path,
    env: Mapping[str, str],
    chunks: Iterable[bytes],
    options: RestoreOptions,
    *,
    dbname: str | None = None,
    stop: StopSignal | None = None,
    extra_args: Sequence[str] = (),
) -> RestoreReport:
    """Feed ``chunks`` (a custom-format archive) to ``pg_restore`` into the database ``env`` names.

    The iterator is always read to its end, even when ``pg_restore`` stops reading early (a
    partial restore), so a checksum check inside it runs; if it raises (a checksum mismatch,
    storage failing), ``pg_restore`` is killed and the error propagates. The password reaches
    the child only through ``env``. When ``stop`` is set (a cancel, the lock lost), pg_restore is
    killed at once and the signal's reason raised; what it wrote is the caller's to throw away.
    """
    child_env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", **env}
    argv = _pg_restore_argv(pg_restore, env, options, extra_args, dbname)
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=child_env
    )
    assert proc.stdin is not None and proc.stderr is not None
    stderr = bytearray()
    reader = _drain(proc.stderr, stderr)
    _widen_pipe(proc.stdin)
    closed_early = False
    killing = stop.on_stop(proc.kill) if stop is not None else contextlib.nullcontext()
    try:
        with killing:
            for chunk in _prefetch(chunks, stop=stop):
                check(stop)
                if closed_early:
                    continue
                try:
                    proc.stdin.write(chunk)
                except BrokenPipeError:
                    closed_early = True
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            returncode = proc.wait()
            check(stop)  # killed by the signal: its exit says nothing about the archive
    except BaseException:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        raise
    finally:
        with contextlib.suppress(BrokenPipeError, OSError):
            proc.stdin.close()
        reader.join(timeout=10)
        proc.stderr.close()
    report = classify(stderr.decode(errors="replace"), returncode)
    if closed_early and returncode == 0:
        log.info("pg_restore finished before the end of the archive (a partial restore); the rest was verified")
    return dataclasses.replace(report, stdin_closed_early=closed_early)


def merge_reports(reports: Sequence[RestoreReport]) -> RestoreReport:
    """One report of several pg_restore runs: every message kept, the worst exit code."""

    def union(pick: Callable[[RestoreReport], tuple[str, ...]]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(m for r in reports for m in pick(r)))

    worst = max((r.returncode for r in reports), key=abs, default=0)
    return RestoreReport(
        worst,
        union(lambda r: r.warnings),
        union(lambda r: r.errors),
        union(lambda r: r.notes),
        stdin_closed_early=any(r.stdin_closed_early for r in reports),
        stderr_tail="\n".join(r.stderr_tail for r in reports)[-_STDERR_KEEP:],
    )


def restore_file(
    pg_restore: Path,
    env: Mapping[str, str],
    path: Path,
    options: RestoreOptions,
    extra_args: Sequence[str],
    *,
    dbname: str | None = None,
    stop: StopSignal | None = None,
) -> RestoreReport:
    """``pg_restore`` of archive file ``path`` with ``extra_args`` (a section, ``-j N``) into ``env``'s database."""
    argv = _pg_restore_argv(pg_restore, env, options, extra_args, dbname)
    argv.append(str(path))
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8", **env},
    )
    killing = stop.on_stop(proc.kill) if stop is not None else contextlib.nullcontext()
    with killing:
        _, err = proc.communicate()
    check(stop)
    parallel = any(a.startswith("--jobs=") and a != "--jobs=1" for a in extra_args)
    return classify(err.decode(errors="replace"), proc.returncode, parallel=parallel)


def restore_blob(
    pg_restore: Path,
    env: Mapping[str, str],
    blobs: BlobReader,
    blob_name: str,
    sha256: str,
    *,
    options: RestoreOptions | None = None,
    on_bytes: Callable[[int], None] | None = None,
    stop: StopSignal | None = None,
    jobs: int = 1,
    workdir: Path | None = None,
) -> RestoreReport:
    """The pipeline of every restore: blob → SHA-256 check → zstd → ``pg_restore`` stdin.

    With ``jobs`` > 1 the stream restores the pre-data and data sections, and the post-data section
    (indexes, constraints, triggers: no data, only the table of contents' definitions) then runs with
    ``pg_restore --jobs`` from a file holding just the archive's header and table of contents, which
    the stream's first bytes give (``shared.pg.archive.ArchiveHead``; kilobytes to a few MiB):
    ``--jobs`` needs a seekable file, and a stream cannot build two indexes at once. A stream whose
    head cannot be read restores in one run as before.
    ``IntegrityError`` (from ``read_verified``) when the stored bytes do not match ``sha256``:
    by then pg_restore has been killed, and what it wrote must be thrown away by the caller.
    """
    options = options or RestoreOptions()
    chunks = iter(blobs.read_verified(blob_name, sha256, on_bytes=on_bytes))
    if jobs <= 1:
        return restore_stream(pg_restore, env, chunks, options, stop=stop)
    head, peeked = ArchiveHead(), []
    for chunk in chunks:  # the first chunks, until the table of contents is whole
        peeked.append(chunk)
        if head.feed(chunk):
            break
    stream = itertools.chain(peeked, chunks)
    if head.data is None:
        return restore_stream(pg_restore, env, stream, options, stop=stop)
    sections = ["--section=pre-data", "--section=data"]
    first = restore_stream(pg_restore, env, stream, options, stop=stop, extra_args=sections)
    if first.errors:
        return first
    fd, raw_path = tempfile.mkstemp(prefix="pgvault-toc-", suffix=".dump", dir=workdir)
    path = Path(raw_path)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(head.data)
        post = restore_file(pg_restore, env, path, options, ["--section=post-data", f"--jobs={jobs}"], stop=stop)
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
    return merge_reports([first, post])


# --- the target database ----------------------------------------------------------------------

# The comment a restore puts on the database it creates, so a retry knows the database is its own.
MARKER = "pgvault restore job {job_id}"


def database_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    """Whether database ``name`` exists on the server ``conn`` is connected to."""
    row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %(n)s", {"n": name}).fetchone()
    return row is not None


def database_marker(conn: psycopg.Connection[Any], name: str) -> str | None:
    """The comment on database ``name`` (None when there is none or no such database)."""
    row = conn.execute(
        "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %(n)s", {"n": name}
    ).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def create_database(conn: psycopg.Connection[Any], name: str, job_id: str) -> bool:
    """Create database ``name`` marked as this job's; False when the name is taken already."""
    try:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.errors.DuplicateDatabase:
        return False
    conn.execute(
        sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(name), sql.Literal(MARKER.format(job_id=job_id)))
    )
    return True


def drop_database(conn: psycopg.Connection[Any], name: str) -> None:
    """Drop database ``name`` (closing its sessions); nothing if it does not exist."""
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def create_schemas(conn: psycopg.Connection[Any], schemas: Sequence[str]) -> None:
    """Create ``schemas`` if missing: ``pg_restore --schema`` restores a schema's objects, not the schema."""
    for schema in schemas:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
