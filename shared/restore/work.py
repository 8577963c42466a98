"""The work of one restore job: into a database (or a scratch one, verified), or as files.

``RestoreWork`` runs under the target's lock, which ``Heartbeat`` keeps alive from a thread of
its own. Into a database: ``CREATE DATABASE`` marked with the job's id (a retry knows its own),
blob → SHA-256 → zstd → ``pg_restore`` stdin, ignorable errors as warnings, anything else (a
checksum mismatch included) fails the job and drops the database it created. Verification
restores into a scratch database, compares per-table row counts and hashes with the backup's
manifest and drops it. As files: the dump is committed only after its checksum matched, then
its manifest with the exact ``pg_restore`` command.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from shared.errors import ErrorCode, PgVaultError, TransientError, UserError
from shared.instances import InstanceStore
from shared.jobs import Job, JobStatus
from shared.jobs.runner import JobRun
from shared.pg.archive import METHOD_COPY, stream_digests
from shared.pg.connect import connect
from shared.pg.connstring import ConnectionParams, check_server, parse_connection_string
from shared.pg.digests import compare_digests, methods_of, table_digests
from shared.pg.dump import map_dump_error
from shared.pg.parts import PartSource, restore_command_lines, restore_in_parts
from shared.pg.privileges import check_create_db, quote_ident
from shared.pg.restore import (
    MARKER,
    RestoreOptions,
    create_database,
    create_schemas,
    database_exists,
    database_marker,
    drop_database,
    error_for,
    restore_blob,
)
from shared.pg.roles import CREATE_MISSING, Roles, create_missing
from shared.pg.tools import Tool, pick_tool
from shared.recovery_points import RecoveryPoint, RecoveryPointStore
from shared.restore import files
from shared.restore.request import RestoreRequest, TargetKind
from shared.restore.selection import missing_after_restore
from shared.secrets import SecretProvider
from shared.storage.blobs import BlobStore
from shared.storage.clients import StorageAccount
from shared.storage.layout import manifest_name_for
from shared.storage.ports import BlobExists, IntegrityError

log = logging.getLogger(__name__)

DEFAULT_PORT = 5432
# The database a target login connects to in order to create or drop others.
MAINTENANCE_DB = "postgres"
VERIFY_PREFIX = "pgvault_verify_"


def pg_dump_major(version_text: str) -> int:
    """The major version in ``pg_dump (PostgreSQL) 15.8 ...``."""
    for word in version_text.split():
        head = word.split(".")[0]
        if head.isdigit() and "." in word:
            return int(head)
    for word in version_text.split():
        if word.isdigit():
            return int(word)
    return 0


def target_server(params: ConnectionParams, target: str) -> tuple[str, int]:
    """The server a restore target secret names (its Server and Port): a restore goes nowhere else.

    The secret's password goes to that server only (``check_server``, as for backups), so a
    target secret without one Server is refused.
    """
    if not params.host:
        raise UserError(
            ErrorCode.SECRET_VALUE_IN_UNSUPPORTED_FORMAT,
            "the target secret names no server: a restore goes to the server in its connection string",
            target=target,
            recommended_action="Put Server=<host>;Port=<port> in the target's connection string.",
        )
    check_server(params, params.host, params.port, target=target)
    return params.host, params.port or DEFAULT_PORT


def target_params(secrets: SecretProvider, secret_uri: str, field: str) -> ConnectionParams:
    """The connection parameters in a restore target's secret; errors name ``field``."""
    try:
        return parse_connection_string(secrets.get_secret(secret_uri))
    except UserError as exc:
        raise UserError(exc.code, exc.message, target=field, recommended_action=exc.recommended_action) from exc


def check_target(conn: psycopg.Connection[Any], params: ConnectionParams, database: str | None) -> None:
    """The target user may create databases, and ``database`` (when given) does not exist yet."""
    if not check_create_db(conn, params.user):
        raise UserError(
            ErrorCode.MISSING_DB_PERMISSIONS,
            f"{params.user} may not create databases on the target server (restore needs CREATEDB)",
            recommended_action=f"Have an administrator run: ALTER ROLE {quote_ident(params.user)} CREATEDB; "
            "or use a target secret whose user has CREATEDB.",
        )
    if database is not None and database_exists(conn, database):
        raise UserError(
            ErrorCode.DATABASE_NAME_ALREADY_IN_USE,
            f"database {database!r} exists on the target server; a restore never overwrites a database",
            target="restoreTargetInfo.datasourceInfo.resourceName",
        )


@dataclass(frozen=True)
class Context:
    """What a restore's work needs of the vault."""

    instances: InstanceStore
    backups: BlobStore
    secrets: SecretProvider
    clock: Callable[[], datetime]
    pg_bin_dir: Path | None = None
    vault_account: StorageAccount | None = None
    # Where restores as files may write (none: nowhere).
    exports: files.ExportRules = field(default_factory=files.ExportRules)
    points: RecoveryPointStore | None = None
    # pg_restore processes of a multi-part point's restore (and post-data's --jobs).
    parallelism: int = 2


class RestoreWork:
    """One restore job's work, with its steps and progress."""

    def __init__(self, ctx: Context, run: JobRun) -> None:
        assert run.heartbeat is not None  # a restore always runs under its target's lock
        self.s, self.run, self.heartbeat = ctx, run, run.heartbeat

    @property
    def job(self) -> Job:
        """The job's latest record."""
        return self.run.job

    def progress(self, total: int) -> Callable[[int], None]:
        """Record bytes read, every twentieth of ``total`` (and always check for a stop)."""
        last = [0]

        def report(read: int) -> None:
            self.run.check()  # a cancel, or the lock lost to another worker
            if read < total and read - last[0] < total / 20:
                return
            last[0] = read
            self.run.progress(read, total)

        return report

    # --- into a database --------------------------------------------------------------------

    def database(self, request: RestoreRequest, point: RecoveryPoint, blob: str) -> Job:
        verify = request.kind is TargetKind.VERIFY
        self.run.begin("CheckTarget")
        assert request.secret_uri is not None
        params = target_params(self.s.secrets, request.secret_uri, "secretUri")
        host, port = target_server(params, "secretUri")
        name = request.database if not verify else f"{VERIFY_PREFIX}{self.job.job_id[-12:]}"
        assert name is not None
        admin = params.libpq_kwargs(host=host, port=port, dbname=params.database or MAINTENANCE_DB)
        tool = pick_tool("pg_restore", pg_dump_major(point.pg_dump_version), self.s.pg_bin_dir)
        expected: dict[str, Any] | None = self._manifest(point) if verify else None
        with connect(admin) as conn:
            check_target(conn, params, None)
            marker = database_marker(conn, name) if database_exists(conn, name) else None
            if marker == MARKER.format(job_id=self.job.job_id):
                # An earlier try of this very job died mid-restore: its database goes, and we start over.
                drop_database(conn, name)
            elif marker is not None or database_exists(conn, name):
                raise UserError(
                    ErrorCode.DATABASE_NAME_ALREADY_IN_USE,
                    f"database {name!r} exists on {host}:{port}; a restore never overwrites a database",
                    target="restoreTargetInfo.datasourceInfo.resourceName",
                )
        self.run.done()
        self.run.begin("CreateDatabase")
        with connect(admin) as conn:
            if not create_database(conn, name, self.job.job_id):
                raise UserError(
                    ErrorCode.DATABASE_NAME_ALREADY_IN_USE,
                    f"database {name!r} was created on {host}:{port} by someone else meanwhile",
                    target="restoreTargetInfo.datasourceInfo.resourceName",
                )
        self.run.done()
        try:
            return self._restore_into(
                request=request,
                point=point,
                blob=blob,
                params=params,
                where=(host, port, name),
                tool=tool,
                expected=expected,
            )
        except BaseException:
            self._drop(admin, name)
            raise

    def _drop(self, admin: dict[str, Any], name: str) -> None:
        try:
            with connect(admin) as conn:
                drop_database(conn, name)
            log.info("restore job %s: dropped database %s", self.job.job_id, name)
        except (PgVaultError, psycopg.Error) as exc:
            log.error("restore job %s: could not drop database %s: %s", self.job.job_id, name, exc)

    def _restore_into(
        self,
        *,
        request: RestoreRequest,
        point: RecoveryPoint,
        blob: str,
        params: ConnectionParams,
        where: tuple[str, int, str],
        tool: Tool,
        expected: dict[str, Any] | None,
    ) -> Job:
        host, port, name = where
        options = request.options
        roles = self._roles_step(point, params, host, port, options)
        self.run.begin("Restore")
        schemas = [*options.schemas, *{t.rpartition(".")[0] for t in options.tables if "." in t}]
        if schemas:
            with connect(params.libpq_kwargs(host=host, port=port, dbname=name)) as conn:
                create_schemas(conn, schemas)
        env = params.child_env(host=host, port=port, dbname=name, refuses_cleartext=tool.refuses_cleartext)
        try:
            if point.parts:
                report = restore_in_parts(
                    tool.path,
                    env,
                    self.s.backups,
                    PartSource(blob, point.sha256),
                    [PartSource(b, sha) for b, sha in point.part_blobs(blob)],
                    options=options,
                    jobs=self.s.parallelism,
                    on_bytes=self.progress(point.size_in_bytes),
                    stop=self.heartbeat.signal,
                )
            else:
                report = restore_blob(
                    tool.path,
                    env,
                    self.s.backups,
                    blob,
                    point.sha256,
                    options=options,
                    on_bytes=self.progress(point.size_in_bytes),
                    stop=self.heartbeat.signal,
                    jobs=self.s.parallelism,  # post-data with pg_restore --jobs (restore_blob says how)
                )
        except IntegrityError as exc:
            raise self._corrupted(point, exc) from exc
        if not report.ok:
            raise error_for(report)
        warnings = [*report.warnings, *self._missing(options, params.libpq_kwargs(host=host, port=port, dbname=name))]
        self.run.done()
        details: dict[str, Any] = {
            **self.job.details,
            "target": {"server": host, "port": port, "database": name},
            "pgRestoreVersion": tool.version_text,
            "warnings": warnings,
            "roles": roles,
            **({"notes": list(report.notes)} if report.notes else {}),
        }
        if expected is not None:
            self.run.begin("Compare")
            actual = self._digests(params, host, port, name, methods_of(expected))
            problems = compare_digests(expected, actual)
            details["verification"] = {"tablesCompared": len(expected), "mismatches": problems}
            self._drop(params.libpq_kwargs(host=host, port=port, dbname=params.database or MAINTENANCE_DB), name)
            details["scratchDatabaseDropped"] = True
            if problems:
                self.run.save(details=details)
                first = problems[0]
                raise UserError(
                    ErrorCode.RESTORE_VERIFICATION_FAILED,
                    f"{len(problems)} table(s) differ from the backup's manifest, first {first['table']}: "
                    f"{first['problem']}",
                )
            self.run.done()
        status = JobStatus.COMPLETED_WITH_WARNINGS if warnings else JobStatus.COMPLETED
        log.info("restore job %s into %s:%s/%s: %s", self.job.job_id, host, port, name, status)
        return self.run.finish(status, progress=1.0, bytes=point.size_in_bytes, details=details)

    def stored_roles(self, point: RecoveryPoint) -> Roles | None:
        """The roles stored with ``point`` (None for a point taken before pgvault stored roles).

        ``RecoveryPointCorrupted`` when the roles blob is gone or fails its recorded SHA-256 (the dump
        itself may be fine: the point is not marked, and a MapToTargetUser restore still works).
        """
        if point.roles_blob_name is None or point.roles_sha256 is None:
            return None
        document = self.s.backups.get_json(point.roles_blob_name)
        try:
            if document is None:
                raise ValueError("the stored roles are missing")
            return Roles.from_stored(document, point.roles_sha256)
        except ValueError as exc:
            raise UserError(
                ErrorCode.RECOVERY_POINT_CORRUPTED,
                f"recovery point {point.recovery_point_id}: {exc} ({point.roles_blob_name})",
                target="restoreOptions.roles",
                recommended_action="Restore with restoreOptions.roles MapToTargetUser, or restore another point.",
            ) from None

    def _roles_step(
        self, point: RecoveryPoint, params: ConnectionParams, host: str, port: int, options: RestoreOptions
    ) -> dict[str, Any]:
        """Step CreateRoles (CreateMissing only): the point's missing roles created; what the job says of roles."""
        if options.roles != CREATE_MISSING:
            if options.no_owner:
                return {"mode": options.roles, "owner": params.user}
            return {"mode": options.roles, "owner": None, "note": "noOwner false: owners kept as in the backup"}
        self.run.begin("CreateRoles")
        roles = self.stored_roles(point)
        if roles is None:
            self.run.done()
            return {
                "mode": CREATE_MISSING,
                "created": [],
                "note": "the recovery point holds no roles (taken before pgvault stored them): owners missing on the "
                "target are warnings",
            }
        admin = params.libpq_kwargs(host=host, port=port, dbname=params.database or MAINTENANCE_DB)
        with connect(admin) as conn:
            plan, failed = create_missing(conn, roles)
        self.run.done()
        log.info(
            "restore job %s: roles created %s, existing %s, not created %s",
            self.job.job_id, len(plan.create), len(plan.existing), len(plan.not_created),
        )  # fmt: skip
        outcome: dict[str, Any] = {
            "mode": CREATE_MISSING,
            "created": list(plan.create),
            "existing": list(plan.existing),
            "skippedAttributes": plan.skipped_attributes,
        }
        if plan.granted_to_target_user:
            outcome["grantedToTargetUser"] = list(plan.granted_to_target_user)
        if plan.not_created:
            outcome["notCreated"] = list(plan.not_created)
            outcome["note"] = f"{params.user} is neither a superuser nor has CREATEROLE: no role was created"
        if failed:
            outcome["failed"] = failed
        return outcome

    def _digests(
        self, params: ConnectionParams, host: str, port: int, name: str, methods: dict[str, str]
    ) -> dict[str, Any]:
        """The restored copy's digests, each table by its manifest's method.

        A manifest read from the dump stream (``copy-sha256``, every table alike) is compared with the
        restored copy dumped the same way (``pg_dump --data-only`` through ``shared.pg.archive``), by a
        ``pg_dump`` fit for the server the copy is on; the SQL methods are computed on the copy itself.
        """
        with connect(params.libpq_kwargs(host=host, port=port, dbname=name), autocommit=False) as conn:
            if not methods or any(m != METHOD_COPY for m in methods.values()):
                return table_digests(conn, methods)
            major = conn.info.server_version // 10000
        dumper = pick_tool("pg_dump", major, self.s.pg_bin_dir)
        env = params.child_env(host=host, port=port, dbname=name, refuses_cleartext=dumper.refuses_cleartext)
        try:
            return stream_digests(dumper.path, env)
        except subprocess.CalledProcessError as exc:
            raise map_dump_error(exc.stderr.decode(errors="replace"), exc.returncode, name) from exc

    def _missing(self, options: RestoreOptions, restored: dict[str, Any]) -> list[str]:
        """Warnings naming what a partial restore asked for and did not get; ``InvalidRequest`` if it got nothing."""
        if not (options.schemas or options.tables):
            return []
        with connect(restored) as conn:
            missing = missing_after_restore(conn, options)
        asked = len(options.tables) or len(options.schemas)
        if missing and len(missing) == asked:
            raise UserError(
                ErrorCode.INVALID_REQUEST,
                f"restoreOptions: nothing asked for is in the backup ({', '.join(missing)}); the restored "
                "database was empty and is dropped",
                target="restoreOptions",
                recommended_action="Name schemas and tables as the backup has them (schema.table) and restore again.",
            )
        return [f"not in the backup, so not restored: {what}" for what in missing]

    def _corrupted(self, point: RecoveryPoint, exc: IntegrityError) -> UserError:
        """Mark ``point`` Corrupted (listed so, never offered as a restore source again); the job's error."""
        reason = f"{exc} (found by {self.job.operation.value} job {self.job.job_id})"
        if self.s.points is not None:
            try:
                self.s.points.mark_corrupted(point.instance, point.recovery_point_id, reason, self.s.clock())
            except PgVaultError as mark_failed:  # the job still fails with the code; the next read marks it
                log.error(
                    "restore job %s: could not mark point %s Corrupted: %s",
                    self.job.job_id,
                    point.recovery_point_id,
                    type(mark_failed).__name__,
                )
        log.error("restore job %s: recovery point %s is corrupted: %s", self.job.job_id, point.recovery_point_id, exc)
        return UserError(
            ErrorCode.RECOVERY_POINT_CORRUPTED,
            f"recovery point {point.recovery_point_id} failed its checksum; it is now marked Corrupted: {exc}",
        )

    def _manifest(self, point: RecoveryPoint) -> dict[str, Any]:
        doc = self.s.backups.get_json(manifest_name_for(point.blob_name))
        if not isinstance(doc, dict) or not isinstance(doc.get("tables"), dict):
            raise UserError(
                ErrorCode.RESTORE_VERIFICATION_FAILED,
                f"recovery point {point.recovery_point_id} has no manifest to compare with "
                "(taken before pgvault recorded manifests)",
                recommended_action="Verify a newer recovery point.",
            )
        return dict(doc["tables"])

    # --- as files -----------------------------------------------------------------------------

    def files(self, request: RestoreRequest, point: RecoveryPoint, blob: str) -> Job:
        assert request.container_url is not None and request.file_prefix is not None
        if self.s.vault_account is None:
            raise RuntimeError("RestoreService needs the vault's storage account for restores as files")
        self.run.begin("CheckTarget")
        # Checked again here: the settings may have changed since the request was accepted.
        container = files.target_container(request, self.s.exports, self.s.vault_account, self.s.secrets)
        files.probe_writable(container, request.file_prefix, request.container_url)
        earlier = self._own_file(container, request.file_name)
        for name in (request.manifest_file_name, *([request.roles_file_name] if point.roles_blob_name else [])):
            if files.owner_of(container, name) not in (None, self.job.job_id):
                raise files.FileExists(name)
        self.run.done()

        self.run.begin("Write")
        decompress = request.file_format == "dump"
        # A multi-part point is written as its files: the schema part, then each data part beside it.
        sources = [(request.file_name, blob, point.sha256), *self._part_files(request, point, blob)]
        written: list[Written] = []
        done = 0
        for name, source, sha256 in sources:
            own = earlier if name == request.file_name else self._own_file(container, name)
            own = own or self._write_dump(container, name, point, (source, sha256), decompress=decompress, done=done)
            written.append(own)
            done += written[-1].stored_bytes
        self.run.done()
        try:
            return self._files_written(request, point, container, written)
        except BaseException:
            # The job will not say Completed (a cancel came, storage failed): its files go.
            self._remove(
                container, [*(name for name, _, _ in sources), request.roles_file_name, request.manifest_file_name]
            )
            raise

    @staticmethod
    def _part_files(request: RestoreRequest, point: RecoveryPoint, blob: str) -> list[tuple[str, str, str]]:
        """(file, blob, sha256) of each data part of ``point`` read from ``blob`` (the point's or a copy's)."""
        return [(request.part_file_name(i), b, sha) for i, (b, sha) in enumerate(point.part_blobs(blob), start=1)]

    def _files_written(
        self, request: RestoreRequest, point: RecoveryPoint, container: BlobStore, files_written: list[Written]
    ) -> Job:
        decompress = request.file_format == "dump"
        self.run.begin("Manifest")
        path = request.file_name
        written = files_written[0]
        restore_cmd = request.options.command(path if decompress else None)
        if not decompress:
            restore_cmd = f"zstd -dc {shlex.quote(path)} | {restore_cmd}"
        part_names = [request.part_file_name(i) for i in range(1, len(files_written))]
        extra: dict[str, Any] = {}
        if part_names:
            lines = restore_command_lines(path, part_names, request.options, self.s.parallelism, zstd=not decompress)
            restore_cmd = " && ".join(lines)
            extra = {
                "parts": [
                    {"file": name, "bytes": w.stored_bytes, "sha256": w.sha256}
                    for name, w in zip(part_names, files_written[1:], strict=True)
                ],
                "restoreCommands": lines,
            }
        manifest = {
            "source": {
                "instance": point.instance,
                "recoveryPointId": point.recovery_point_id,
                "backupTime": point.time.isoformat(),
                **self._instance_source(point.instance),
            },
            "serverVersion": point.server_version,
            "pgDumpVersion": point.pg_dump_version,
            "file": path,
            "format": "pg_dump custom" + (" (zstd-compressed)" if not decompress else ""),
            "bytes": written.stored_bytes,
            "sha256": written.sha256,
            "restoreCommand": restore_cmd,
            **extra,
            "restoredBy": self.job.job_id,
        }
        schemas = [*request.options.schemas, *{t.rpartition(".")[0] for t in request.options.tables if "." in t}]
        if schemas:
            # pg_restore --schema restores a schema's objects, not the schema itself.
            manifest["beforeRestore"] = [f"CREATE SCHEMA IF NOT EXISTS {quote_ident(n)};" for n in schemas]
        written_files = [request.file_name, *part_names, request.manifest_file_name]
        roles = self.stored_roles(point)
        if roles is not None:
            # Run before the restore by a user with CREATEROLE; CREATE ROLE of a role that exists fails harmlessly.
            manifest["rolesFile"] = request.roles_file_name
            manifest["rolesCommand"] = f'psql -X --dbname "$PGDATABASE" -f {shlex.quote(request.roles_file_name)}'
            if files.owner_of(container, request.roles_file_name) != self.job.job_id:
                about = f"recovery point {point.recovery_point_id} of {point.instance}, taken {point.time.isoformat()}"
                files.write_text(container, request.roles_file_name, roles.to_sql(about), self.job.job_id)
            written_files.insert(len(written_files) - 1, request.roles_file_name)  # before the manifest
        if files.owner_of(container, request.manifest_file_name) != self.job.job_id:
            files.write_manifest(container, request.manifest_file_name, manifest, self.job.job_id)
        self.run.done()
        return self.run.finish(
            JobStatus.COMPLETED,
            progress=1.0,
            bytes=sum(w.stored_bytes for w in files_written),
            details={
                **self.job.details,
                "files": written_files,
                "sha256": written.sha256,
                "restoreCommand": restore_cmd,
            },
        )

    def _remove(self, container: BlobStore, names: list[str]) -> None:
        """Delete files this job wrote (best effort: a file left says in its metadata which job wrote it)."""
        for name in names:
            try:
                if files.owner_of(container, name) != self.job.job_id:
                    continue  # never another's file, even one that appeared under the same name meanwhile
            except TransientError:
                log.warning("restore job %s: could not check %s before removing it; left", self.job.job_id, name)
                continue
            try:
                container.delete(name)
            except PgVaultError as exc:
                log.warning("restore job %s: could not remove %s: %s", self.job.job_id, name, type(exc).__name__)

    def _instance_source(self, instance: str) -> dict[str, Any]:
        try:
            spec = self.s.instances.get(instance).spec
        except UserError:
            return {}
        return {"server": spec.server, "port": spec.port, "database": spec.database}

    def _write_dump(
        self,
        container: BlobStore,
        name: str,
        point: RecoveryPoint,
        source: tuple[str, str],
        *,
        decompress: bool,
        done: int = 0,
    ) -> Written:
        """Stream one blob of the point (``source``: blob, sha256) into file ``name``, created only once its
        checksum matched (If-None-Match: *). ``done``: bytes of the point's earlier files (for progress)."""
        writer = container.writer(name, expected_bytes=point.raw_bytes)
        report = self.progress(point.size_in_bytes)
        try:
            chunks = self.s.backups.read_verified(
                source[0], source[1], decompress=decompress, on_bytes=lambda read: report(done + read)
            )
            for chunk in chunks:
                writer.write(chunk)
        except IntegrityError as exc:
            writer.close()  # nothing committed: a corrupted point never appears as a file
            raise self._corrupted(point, exc) from exc
        except BaseException:
            writer.close()
            raise
        try:
            self.heartbeat.confirm()  # no file appears after a cancel, nor from a worker taken over
        except BaseException:
            writer.close()
            raise
        try:
            result = writer.commit(
                {"jobid": self.job.job_id, "recoverypointid": point.recovery_point_id},
                content_type="application/octet-stream" if decompress else "application/zstd",
                if_missing=True,
            )
        except BlobExists as exc:
            raise files.FileExists(name) from exc
        return Written(result.sha256, result.stored_bytes)

    def _own_file(self, container: BlobStore, name: str) -> Written | None:
        """FailIfExists for files: the dump an earlier try of this job committed (kept as it is), None
        when there is none; ``FileExists`` when someone else's file has the name."""
        owner = files.owner_of(container, name)
        if owner is None:
            return None
        if owner != self.job.job_id:
            raise files.FileExists(name)
        info = container.info(name)
        meta = info.metadata if info is not None else {}
        log.info("restore job %s: %s was committed by an earlier try; kept", self.job.job_id, name)
        return Written(str(meta.get("sha256", "")), int(meta.get("storedbytes", 0)))


@dataclass(frozen=True)
class Written:
    """The dump file of a files restore, as committed: its SHA-256 and size."""

    sha256: str
    stored_bytes: int
