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
from shared.policy import DataStore
from shared.request_body import ANY, OneOf, Shape, check_fields
from shared.secrets import validate_secret_reference

RESTORE_REQUEST = "AzureBackupRecoveryPointBasedRestoreRequest"
REHYDRATION_REQUEST = "AzureBackupRestoreWithRehydrationRequest"
DATABASE_TARGET = "RestoreTargetInfo"
FILES_TARGET = "RestoreFilesTargetInfo"
SECRET_CREDENTIALS = "SecretStoreBasedAuthCredentials"  # noqa: S105 - an Azure type name
# Azure's limits on how long a rehydrated copy is kept (docs/rules.md C8).
MIN_REHYDRATION = timedelta(days=10)
MAX_REHYDRATION = timedelta(days=30)
DEFAULT_REHYDRATION = "P15D"
# PostgreSQL identifiers: at most 63 bytes (NAMEDATALEN - 1).
MAX_IDENTIFIER_BYTES = 63
_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,900}$")
_RESERVED_DATABASES = {"template0", "template1", "postgres", "azure_maintenance", "azure_sys"}

# The fields of Azure's restore request (Microsoft.DataProtection, API 2025-01-01) and pgvault's
# additions; anything else is refused. Fields Azure documents that change nothing here (the ARM id
# and location of the datasource, the restore region) are accepted and recorded nowhere.
_DATASOURCE: Shape = dict.fromkeys(
    (
        "objectType",
        "datasourceType",
        "resourceID",
        "resourceLocation",
        "resourceName",
        "resourceProperties",
        "resourceType",
        "resourceUri",
    ),
    ANY,
)
# SecretStoreResource also has "value" in Azure: refused, a secret never travels in a request.
_CREDENTIALS: Shape = {"objectType": ANY, "secretStoreResource": {"secretStoreType": ANY, "uri": ANY}}
_OPTIONS: Shape = dict.fromkeys(("noOwner", "noAcl", "schemas", "tables", "fileFormat"), ANY)
_DATABASE_TARGET: dict[str, Shape] = {
    "objectType": ANY,
    "recoveryOption": ANY,
    "restoreLocation": ANY,
    "datasourceInfo": _DATASOURCE,
    "datasourceSetInfo": _DATASOURCE,
    "datasourceAuthCredentials": _CREDENTIALS,
}
_FILES_TARGET: dict[str, Shape] = {
    "objectType": ANY,
    "recoveryOption": ANY,
    "restoreLocation": ANY,
    "targetDetails": dict.fromkeys(
        ("url", "filePrefix", "restoreTargetLocationType", "targetResourceArmId", "connectionStringSecretUri"), ANY
    ),
}
RESTORE_BODY: Shape = {
    "objectType": ANY,
    "recoveryPointId": ANY,
    "sourceDataStoreType": ANY,
    "sourceResourceId": ANY,
    "rehydrationPriority": ANY,
    "rehydrationRetentionDuration": ANY,
    "restoreTargetInfo": OneOf("objectType", {DATABASE_TARGET: _DATABASE_TARGET, FILES_TARGET: _FILES_TARGET}),
    "restoreOptions": _OPTIONS,
}
VERIFY_BODY: Shape = {
    "recoveryPointId": ANY,
    "sourceDataStoreType": ANY,
    "secretUri": ANY,
    "datasourceAuthCredentials": _CREDENTIALS,
    "restoreOptions": _OPTIONS,
}


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

    @property
    def manifest_file_name(self) -> str:
        """The manifest a files restore writes beside the dump."""
        return f"{self.file_prefix}.manifest.json"


def _bad(message: str, target: str) -> UserError:
    return UserError(ErrorCode.INVALID_REQUEST, f"{target}: {message}", target=target)


def _obj(doc: dict[str, Any], key: str, path: str, *, required: bool = True) -> dict[str, Any]:
    value = doc.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise _bad("must be an object", f"{path}{key}")
    return value


def _text(doc: dict[str, Any], key: str, path: str, *, required: bool = True) -> str | None:
    value = doc.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad("must be a non-empty string", f"{path}{key}")
    return value.strip()


def _names(value: Any, target: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _bad("must be a list of names", target)
    out = tuple(v.strip() for v in value)
    for name in out:
        if len(name.encode()) > 2 * MAX_IDENTIFIER_BYTES + 1 or "\x00" in name:
            raise _bad(f"{name!r} is not a PostgreSQL name", target)
    return out


def parse_options(doc: Any, *, allow_partial: bool = True) -> tuple[RestoreOptions, str]:
    """pgvault's ``restoreOptions``: (pg_restore options, file format ``dump``|``zstd``)."""
    if doc is None:
        return RestoreOptions(), "dump"
    if not isinstance(doc, dict):
        raise _bad("must be an object", "restoreOptions")
    check_fields(doc, _OPTIONS, root="restoreOptions")
    flags = {}
    for key in ("noOwner", "noAcl"):
        value = doc.get(key, True)
        if not isinstance(value, bool):
            raise _bad("must be true or false", f"restoreOptions.{key}")
        flags[key] = value
    schemas = _names(doc.get("schemas"), "restoreOptions.schemas")
    tables = _names(doc.get("tables"), "restoreOptions.tables")
    if (schemas or tables) and not allow_partial:
        raise _bad("a verification restores the whole point; leave schemas and tables out", "restoreOptions")
    qualified = {t.rpartition(".")[0] for t in tables if "." in t}
    if len(qualified) > 1 or (qualified and schemas and not qualified <= set(schemas)):
        raise _bad(
            "pg_restore selects tables by name within the selected schemas: qualify tables with one schema, "
            "listed in restoreOptions.schemas if that is given, or send one request per schema",
            "restoreOptions.tables",
        )
    fmt = doc.get("fileFormat", "dump")
    if fmt not in ("dump", "zstd"):
        raise _bad("must be 'dump' (pg_restore-ready) or 'zstd' (as stored)", "restoreOptions.fileFormat")
    return RestoreOptions(flags["noOwner"], flags["noAcl"], schemas, tables), str(fmt)


def _secret_of(credentials: dict[str, Any], path: str, allow_env: bool) -> str:
    kind = credentials.get("objectType", SECRET_CREDENTIALS)
    if kind != SECRET_CREDENTIALS:
        raise _bad(f"must be {SECRET_CREDENTIALS!r}", f"{path}objectType")
    store = _obj(credentials, "secretStoreResource", path)
    store_type = store.get("secretStoreType", "AzureKeyVault")
    if store_type != "AzureKeyVault":
        raise _bad("must be 'AzureKeyVault'", f"{path}secretStoreResource.secretStoreType")
    uri = str(_text(store, "uri", f"{path}secretStoreResource."))
    try:
        validate_secret_reference(uri, allow_env)
    except UserError as exc:
        raise UserError(exc.code, exc.message, target=f"{path}secretStoreResource.uri") from exc
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


def _rehydration(body: dict[str, Any], kind: str) -> tuple[RehydrationPriority | None, str | None]:
    priority_raw = body.get("rehydrationPriority")
    duration_raw = body.get("rehydrationRetentionDuration")
    if kind != REHYDRATION_REQUEST:
        if priority_raw is not None or duration_raw is not None:
            raise _bad(f"rehydration fields need objectType {REHYDRATION_REQUEST!r}", "objectType")
        return None, None
    if priority_raw not in ("Standard", "High"):
        raise _bad("must be 'Standard' or 'High'", "rehydrationPriority")
    duration = DEFAULT_REHYDRATION if duration_raw is None else duration_raw
    try:
        parsed = isodate.parse_duration(duration) if isinstance(duration, str) else None
    except (isodate.ISO8601Error, ValueError, OverflowError):
        parsed = None
    if not isinstance(parsed, timedelta) or not MIN_REHYDRATION <= parsed <= MAX_REHYDRATION:
        raise _bad("must be an ISO 8601 duration from P10D to P30D (default P15D)", "rehydrationRetentionDuration")
    return RehydrationPriority(priority_raw), str(duration)


def parse_restore_request(body: Any, *, allow_env: bool) -> RestoreRequest:
    """The restore request in ``body``, checked; ``InvalidRequest`` naming the first wrong field."""
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object (Azure's restore request)", "body")
    check_fields(body, RESTORE_BODY)
    kind = body.get("objectType", RESTORE_REQUEST)
    if kind not in (RESTORE_REQUEST, REHYDRATION_REQUEST):
        raise _bad(f"must be {RESTORE_REQUEST!r} or {REHYDRATION_REQUEST!r}", "objectType")
    rp_id = str(_text(body, "recoveryPointId", ""))
    store_raw = body.get("sourceDataStoreType", "VaultStore")
    if store_raw not in ("VaultStore", "ArchiveStore"):
        raise _bad("must be 'VaultStore' or 'ArchiveStore'", "sourceDataStoreType")
    priority, duration = _rehydration(body, kind)
    options, fmt = parse_options(body.get("restoreOptions"))
    target = _obj(body, "restoreTargetInfo", "")
    option = target.get("recoveryOption", "FailIfExists")
    if option != "FailIfExists":
        raise _bad(
            "must be 'FailIfExists' (an existing database or file is never overwritten)",
            "restoreTargetInfo.recoveryOption",
        )
    common: dict[str, Any] = {
        "recovery_point_id": rp_id,
        "source_datastore": DataStore(store_raw),
        "options": options,
        "file_format": fmt,
        "rehydration_priority": priority,
        "rehydration_duration": duration,
    }
    target_type = target.get("objectType")
    if target_type == DATABASE_TARGET:
        info = _obj(target, "datasourceInfo", "restoreTargetInfo.")
        name = _database_name(
            str(_text(info, "resourceName", "restoreTargetInfo.datasourceInfo.")),
            "restoreTargetInfo.datasourceInfo.resourceName",
        )
        creds = _obj(target, "datasourceAuthCredentials", "restoreTargetInfo.")
        secret = _secret_of(creds, "restoreTargetInfo.datasourceAuthCredentials.", allow_env)
        if fmt != "dump":
            raise _bad("fileFormat applies to restores as files only", "restoreOptions.fileFormat")
        return RestoreRequest(kind=TargetKind.DATABASE, database=name, secret_uri=secret, **common)
    if target_type == FILES_TARGET:
        details = _obj(target, "targetDetails", "restoreTargetInfo.")
        where = details.get("restoreTargetLocationType", "AzureBlobs")
        if where != "AzureBlobs":
            raise _bad("must be 'AzureBlobs'", "restoreTargetInfo.targetDetails.restoreTargetLocationType")
        url = str(_text(details, "url", "restoreTargetInfo.targetDetails."))
        parse_container_url(url, "restoreTargetInfo.targetDetails.url")
        prefix = str(_text(details, "filePrefix", "restoreTargetInfo.targetDetails."))
        if not _PREFIX.match(prefix) or ".." in prefix or prefix.endswith("/"):
            raise _bad(
                "must be letters, digits, '_', '-', '.', '/' (a blob name prefix)",
                "restoreTargetInfo.targetDetails.filePrefix",
            )
        cs_secret = None
        if details.get("connectionStringSecretUri") is not None:
            cs_secret = str(_text(details, "connectionStringSecretUri", "restoreTargetInfo.targetDetails."))
            try:
                validate_secret_reference(cs_secret, allow_env)
            except UserError as exc:
                raise UserError(
                    exc.code, exc.message, target="restoreTargetInfo.targetDetails.connectionStringSecretUri"
                ) from exc
        return RestoreRequest(
            kind=TargetKind.FILES,
            container_url=url,
            file_prefix=prefix,
            connection_string_secret_uri=cs_secret,
            **common,
        )
    raise _bad(f"must be {DATABASE_TARGET!r} or {FILES_TARGET!r}", "restoreTargetInfo.objectType")


def parse_verify_request(body: Any, *, allow_env: bool) -> RestoreRequest:
    """``:verifyRestore``: ``{"recoveryPointId", "datasourceAuthCredentials": {...}}`` (or ``"secretUri"``).

    The scratch database goes on the server of that secret; its name is pgvault's.
    """
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object", "body")
    check_fields(body, VERIFY_BODY)
    rp_id = str(_text(body, "recoveryPointId", ""))
    if "secretUri" in body:
        secret = str(_text(body, "secretUri", ""))
        try:
            validate_secret_reference(secret, allow_env)
        except UserError as exc:
            raise UserError(exc.code, exc.message, target="secretUri") from exc
    else:
        secret = _secret_of(_obj(body, "datasourceAuthCredentials", ""), "datasourceAuthCredentials.", allow_env)
    options, _ = parse_options(body.get("restoreOptions"), allow_partial=False)
    store_raw = body.get("sourceDataStoreType", "VaultStore")
    if store_raw not in ("VaultStore", "ArchiveStore"):
        raise _bad("must be 'VaultStore' or 'ArchiveStore'", "sourceDataStoreType")
    return RestoreRequest(rp_id, DataStore(store_raw), TargetKind.VERIFY, options, secret_uri=secret)
