"""Restore requests as Azure shapes them, checked completely before anything is stored.

Accepted: ``AzureBackupRecoveryPointBasedRestoreRequest`` and
``AzureBackupRestoreWithRehydrationRequest`` (``rehydrationPriority`` ``Standard``/``High``,
``rehydrationRetentionDuration`` ``P10D``..``P30D``), with a ``restoreTargetInfo`` that is either
``RestoreTargetInfo`` (a new database: ``datasourceInfo.resourceName``, credentials in
``datasourceAuthCredentials.secretStoreResource.uri``; the server is the one in that secret) or
``RestoreFilesTargetInfo`` (``targetDetails.url`` of a container, ``filePrefix``,
``restoreTargetLocationType: AzureBlobs``). ``recoveryOption`` is ``FailIfExists``, Azure's only
option for PostgreSQL. pgvault's own additions: ``restoreOptions`` (``noOwner``, ``noAcl``,
``schemas``, ``tables``, ``fileFormat``) and ``targetDetails.connectionStringSecretUri``.
Anything else that is wrong is refused with ``InvalidRequest`` naming the field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import urlparse

import isodate

from shared.errors import ErrorCode, UserError
from shared.pg.restore import RestoreOptions
from shared.pg.roles import CREATE_MISSING, MAP_TO_TARGET_USER
from shared.policy import DataStore
from shared.secrets import validate_secret_reference
from shared.wire import restore as wire
from shared.wire.check import parse
from shared.wire.restore import REHYDRATION_REQUEST

# Azure's limits on how long a rehydrated copy is kept (docs/rules.md C8).
MIN_REHYDRATION = timedelta(days=10)
MAX_REHYDRATION = timedelta(days=30)
DEFAULT_REHYDRATION = "P15D"
# PostgreSQL identifiers: at most 63 bytes (NAMEDATALEN - 1).
MAX_IDENTIFIER_BYTES = 63
_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,900}$")
_RESERVED_DATABASES = {"template0", "template1", "postgres", "azure_maintenance", "azure_sys"}


class TargetKind(StrEnum):
    """What a restore writes."""

    DATABASE = "Database"
    """A new database on the server of the target secret."""
    FILES = "Files"
    """A pg_restore-ready dump and its manifest in a blob container."""
    VERIFY = "Verify"
    """A scratch database, compared with the backup's manifest, then dropped."""


class RehydrationPriority(StrEnum):
    """How fast Azure rehydrates an archived blob (hours either way)."""

    STANDARD = "Standard"
    HIGH = "High"


@dataclass(frozen=True)
class RestoreRequest:
    """A checked restore request, as a job keeps it (no secret values, only references)."""

    recovery_point_id: str
    source_datastore: DataStore
    kind: TargetKind
    options: RestoreOptions = field(default_factory=RestoreOptions)
    database: str | None = None
    secret_uri: str | None = None
    container_url: str | None = None
    file_prefix: str | None = None
    connection_string_secret_uri: str | None = None
    file_format: str = "dump"
    rehydration_priority: RehydrationPriority | None = None
    rehydration_duration: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The request as the job's details record it."""
        return {
            "recoveryPointId": self.recovery_point_id,
            "sourceDataStoreType": self.source_datastore.value,
            "kind": self.kind.value,
            "restoreOptions": {**self.options.to_dict(), "fileFormat": self.file_format},
            "database": self.database,
            "secretUri": self.secret_uri,
            "containerUrl": self.container_url,
            "filePrefix": self.file_prefix,
            "connectionStringSecretUri": self.connection_string_secret_uri,
            "rehydrationPriority": self.rehydration_priority.value if self.rehydration_priority else None,
            "rehydrationRetentionDuration": self.rehydration_duration,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RestoreRequest:
        """The request a job recorded with ``to_dict``."""
        opts = d.get("restoreOptions") or {}
        return cls(
            recovery_point_id=str(d["recoveryPointId"]),
            source_datastore=DataStore(d["sourceDataStoreType"]),
            kind=TargetKind(d["kind"]),
            options=RestoreOptions(
                bool(opts.get("noOwner", True)),
                bool(opts.get("noAcl", True)),
                tuple(opts.get("schemas") or ()),
                tuple(opts.get("tables") or ()),
                str(opts.get("roles") or MAP_TO_TARGET_USER),
            ),
            database=d.get("database"),
            secret_uri=d.get("secretUri"),
            container_url=d.get("containerUrl"),
            file_prefix=d.get("filePrefix"),
            connection_string_secret_uri=d.get("connectionStringSecretUri"),
            file_format=str(opts.get("fileFormat", "dump")),
            rehydration_priority=RehydrationPriority(d["rehydrationPriority"])
            if d.get("rehydrationPriority")
            else None,
            rehydration_duration=d.get("rehydrationRetentionDuration"),
        )

    @property
    def file_name(self) -> str:
        """The dump file a files restore writes."""
        return f"{self.file_prefix}.dump" + (".zst" if self.file_format == "zstd" else "")

    def part_file_name(self, index: int) -> str:
        """The file of data part ``index`` of a multi-part point (``<prefix>.part001.dump``) beside the dump."""
        return f"{self.file_prefix}.part{index:03d}.dump" + (".zst" if self.file_format == "zstd" else "")

    @property
    def roles_file_name(self) -> str:
        """The roles script a files restore writes beside the dump (for points that hold roles)."""
        return f"{self.file_prefix}.roles.sql"

    @property
    def manifest_file_name(self) -> str:
        """The manifest a files restore writes beside the dump."""
        return f"{self.file_prefix}.manifest.json"


def _bad(message: str, target: str) -> UserError:
    return UserError(ErrorCode.INVALID_REQUEST, f"{target}: {message}", target=target)


def _text(value: str | None, target: str) -> str:
    """``value`` without surrounding blanks; the model checked it is a string, this that it says something."""
    if value is None or not value.strip():
        raise _bad("must be a non-empty string", target)
    return value.strip()


def _names(value: list[str] | None, target: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not all(v.strip() for v in value):
        raise _bad("must be a list of names", target)
    out = tuple(v.strip() for v in value)
    for name in out:
        if len(name.encode()) > 2 * MAX_IDENTIFIER_BYTES + 1 or "\x00" in name:
            raise _bad(f"{name!r} is not a PostgreSQL name", target)
    return out


def parse_options(options: wire.RestoreOptions | None, *, allow_partial: bool = True) -> tuple[RestoreOptions, str]:
    """pgvault's ``restoreOptions``, as the model read them: (pg_restore options, file format ``dump``|``zstd``)."""
    if options is None:
        return RestoreOptions(), "dump"
    schemas = _names(options.schemas, "restoreOptions.schemas")
    tables = _names(options.tables, "restoreOptions.tables")
    if (schemas or tables) and not allow_partial:
        raise _bad("a verification restores the whole point; leave schemas and tables out", "restoreOptions")
    qualified = {t.rpartition(".")[0] for t in tables if "." in t}
    if len(qualified) > 1 or (qualified and schemas and not qualified <= set(schemas)):
        raise _bad(
            "pg_restore selects tables by name within the selected schemas: qualify tables with one schema, "
            "listed in restoreOptions.schemas if that is given, or send one request per schema",
            "restoreOptions.tables",
        )
    given = options.model_fields_set
    if options.roles == CREATE_MISSING:
        if "noOwner" in given and options.noOwner:
            raise _bad(
                "roles CreateMissing creates the owners so that they keep their objects; noOwner true would give "
                "everything to the target user: leave noOwner out, or use roles MapToTargetUser",
                "restoreOptions.noOwner",
            )
        no_acl = options.noAcl if "noAcl" in given else False
        return RestoreOptions(False, no_acl, schemas, tables, CREATE_MISSING), options.fileFormat
    return RestoreOptions(options.noOwner, options.noAcl, schemas, tables, options.roles), options.fileFormat


def _secret_of(credentials: wire.SecretStoreBasedAuthCredentials, path: str, allow_env: bool) -> str:
    target = f"{path}secretStoreResource.uri"
    uri = _text(credentials.secretStoreResource.uri, target)
    try:
        validate_secret_reference(uri, allow_env)
    except UserError as exc:
        raise UserError(exc.code, exc.message, target=target) from exc
    return uri


def _database_name(value: str, target: str) -> str:
    if len(value.encode()) > MAX_IDENTIFIER_BYTES:
        raise _bad(f"a PostgreSQL database name has at most {MAX_IDENTIFIER_BYTES} bytes", target)
    if "\x00" in value:
        raise _bad("must not contain NUL", target)
    if value.lower() in _RESERVED_DATABASES:
        raise _bad(f"{value!r} is reserved; choose a new database name", target)
    return value


def parse_container_url(url: str, target: str) -> tuple[str, str]:
    """``(account URL, container)`` of a container URL (``https://acct.blob.core.windows.net/c``, or
    path-style ``http://127.0.0.1:10000/devstoreaccount1/c`` as Azurite serves it)."""
    parsed = urlparse(url)
    if parsed.scheme not in ("https", "http") or not parsed.netloc or parsed.query or parsed.fragment:
        raise _bad("must be a container URL such as https://<account>.blob.core.windows.net/<container>", target)
    parts = [p for p in parsed.path.split("/") if p]
    if not parts or len(parts) > 2:
        raise _bad("must name one container (https://<account>.blob.core.windows.net/<container>)", target)
    container = parts[-1]
    if not re.match(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", container):
        raise _bad(f"{container!r} is not a valid container name (3-63 lowercase letters, digits, '-')", target)
    account = f"{parsed.scheme}://{parsed.netloc}/" + ("/".join(parts[:-1]) + "/" if len(parts) == 2 else "")
    return account, container


def _rehydration(request: wire.RestoreRequest) -> tuple[RehydrationPriority | None, str | None]:
    priority, duration = request.rehydrationPriority, request.rehydrationRetentionDuration
    if request.objectType != REHYDRATION_REQUEST:
        if priority is not None or duration is not None:
            raise _bad(f"rehydration fields need objectType {REHYDRATION_REQUEST!r}", "objectType")
        return None, None
    if priority is None:
        raise _bad("must be 'Standard' or 'High'", "rehydrationPriority")
    duration = DEFAULT_REHYDRATION if duration is None else duration
    try:
        parsed = isodate.parse_duration(duration)
    except (isodate.ISO8601Error, ValueError, OverflowError):
        parsed = None
    if not isinstance(parsed, timedelta) or not MIN_REHYDRATION <= parsed <= MAX_REHYDRATION:
        raise _bad("must be an ISO 8601 duration from P10D to P30D (default P15D)", "rehydrationRetentionDuration")
    return RehydrationPriority(priority), duration


def _database_target(target: wire.RestoreTargetInfo, allow_env: bool, fmt: str) -> dict[str, Any]:
    where = "restoreTargetInfo.datasourceInfo.resourceName"
    name = _database_name(_text(target.datasourceInfo.resourceName, where), where)
    secret = _secret_of(target.datasourceAuthCredentials, "restoreTargetInfo.datasourceAuthCredentials.", allow_env)
    if fmt != "dump":
        raise _bad("fileFormat applies to restores as files only", "restoreOptions.fileFormat")
    return {"kind": TargetKind.DATABASE, "database": name, "secret_uri": secret}


def _files_target(target: wire.RestoreFilesTargetInfo, allow_env: bool) -> dict[str, Any]:
    details, path = target.targetDetails, "restoreTargetInfo.targetDetails."
    url = _text(details.url, f"{path}url")
    parse_container_url(url, f"{path}url")
    prefix = _text(details.filePrefix, f"{path}filePrefix")
    if not _PREFIX.match(prefix) or ".." in prefix or prefix.endswith("/"):
        raise _bad("must be letters, digits, '_', '-', '.', '/' (a blob name prefix)", f"{path}filePrefix")
    cs_secret = None
    if details.connectionStringSecretUri is not None:
        cs_secret = _text(details.connectionStringSecretUri, f"{path}connectionStringSecretUri")
        try:
            validate_secret_reference(cs_secret, allow_env)
        except UserError as exc:
            raise UserError(exc.code, exc.message, target=f"{path}connectionStringSecretUri") from exc
    return {
        "kind": TargetKind.FILES,
        "container_url": url,
        "file_prefix": prefix,
        "connection_string_secret_uri": cs_secret,
    }


def parse_restore_request(body: Any, *, allow_env: bool) -> RestoreRequest:
    """The restore request in ``body``, checked; ``InvalidRequest`` naming the first wrong field."""
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object (Azure's restore request)", "body")
    request = parse(wire.RestoreRequest, body)
    priority, duration = _rehydration(request)
    options, fmt = parse_options(request.restoreOptions)
    target = request.restoreTargetInfo
    if isinstance(target, wire.RestoreTargetInfo):
        chosen = _database_target(target, allow_env, fmt)
    else:
        chosen = _files_target(target, allow_env)
    return RestoreRequest(
        recovery_point_id=_text(request.recoveryPointId, "recoveryPointId"),
        source_datastore=request.sourceDataStoreType,
        options=options,
        file_format=fmt,
        rehydration_priority=priority,
        rehydration_duration=duration,
        **chosen,
    )


def parse_verify_request(body: Any, *, allow_env: bool) -> RestoreRequest:
    """``:verifyRestore``: ``{"recoveryPointId", "datasourceAuthCredentials": {...}}`` (or ``"secretUri"``).

    The scratch database goes on the server of that secret; its name is pgvault's.
    """
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object", "body")
    request = parse(wire.VerifyRestoreRequest, body)
    rp_id = _text(request.recoveryPointId, "recoveryPointId")
    if request.secretUri is not None:
        secret = _text(request.secretUri, "secretUri")
        try:
            validate_secret_reference(secret, allow_env)
        except UserError as exc:
            raise UserError(exc.code, exc.message, target="secretUri") from exc
    elif request.datasourceAuthCredentials is not None:
        secret = _secret_of(request.datasourceAuthCredentials, "datasourceAuthCredentials.", allow_env)
    else:
        raise _bad("is required (or secretUri)", "datasourceAuthCredentials")
    options, _ = parse_options(request.restoreOptions, allow_partial=False)
    return RestoreRequest(rp_id, request.sourceDataStoreType, TargetKind.VERIFY, options, secret_uri=secret)
