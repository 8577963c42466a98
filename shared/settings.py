"""Application settings: one frozen record, built once from the environment.

Every missing or invalid setting is collected and reported in one ``SettingsError``, so a
misconfigured app says everything that is wrong at start-up rather than one thing per restart.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from shared.errors import SettingsError

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no", ""}
# Azure resource names for a vault: letters, digits and hyphens, 2-50 characters.
_VAULT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{1,49}$")
_REGION = re.compile(r"^[a-z0-9]+$")
# Azure storage account names: 3-24 lowercase letters and digits.
_ACCOUNT = re.compile(r"^[a-z0-9]{3,24}$")
# A Key Vault's URI in any Azure cloud (vault.azure.net, vault.azure.cn, vault.usgovcloudapi.net, ...).
_KEY_VAULT_URI = re.compile(r"^https://[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]\.vault\.[a-z0-9.]+/?$")
# The storage emulator's well-known account (Azurite's default; public, documented by Microsoft).
EMULATOR_ACCOUNT = "devstoreaccount1"
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}

STORAGE_SETTING = "AzureWebJobsStorage"

# host.json's functionTimeout; PGVAULT_FUNCTION_TIMEOUT must say the same (the template sets both
# from one parameter). The Functions host stops a run at this limit; see shared/timeouts.py.
DEFAULT_FUNCTION_TIMEOUT = "00:30:00"
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})$")


@dataclass(frozen=True)
class Settings:
    """What the app needs to know about where it runs.

    ``storage_connection_string`` is set for Azurite or key-based accounts; otherwise
    ``storage_account_name`` (from ``AzureWebJobsStorage__accountName``) or the explicit service
    URIs are used with ``DefaultAzureCredential``.
    """

    storage_connection_string: str | None
    storage_account_name: str | None
    storage_blob_uri: str | None
    storage_queue_uri: str | None
    storage_table_uri: str | None
    vault_name: str
    region: str | None
    allow_env_secrets: bool
    pg_bin_dir: Path | None
    state_table: str
    backup_container: str
    schedule: str
    retention_schedule: str
    # None: no limit (functionTimeout -1, possible on Flex Consumption, Premium and Dedicated plans).
    function_timeout: timedelta | None = timedelta(minutes=30)
    # Per-table digests beside each dump, for :verifyRestore; a second read of every table.
    backup_manifest: bool = True
    # The manifest read from the dump stream as it passes (shared.pg.archive): no second read.
    backup_manifest_from_stream: bool = False
    # Host patterns a secret without its own Server may be used for (empty: such a secret is refused).
    allowed_servers: tuple[str, ...] = ()
    # Storage accounts restore-as-files may write to (PGVAULT_EXPORT_ACCOUNTS); none: no exports.
    export_accounts: tuple[str, ...] = ()
    # The deployment's Key Vault (PGVAULT_KEY_VAULT_URI): the deep health check reads a probe secret there.
    key_vault_uri: str | None = None

    @property
    def storage_account(self) -> str | None:
        """The name of the vault's own storage account, when the settings say it."""
        return storage_account_of(self)

    @property
    def storage_emulator_blob_endpoint(self) -> str | None:
        """The blob endpoint of the storage emulator the vault runs on; None on a real account."""
        return emulator_blob_endpoint(self.storage_connection_string)

    def __repr__(self) -> str:
        # The connection string can hold an account key: never print it.
        return (
            f"Settings(vault_name={self.vault_name!r}, region={self.region!r}, "
            f"storage={'connection string' if self.storage_connection_string else self.storage_account_name!r}, "
            f"allow_env_secrets={self.allow_env_secrets}, pg_bin_dir={self.pg_bin_dir})"
        )


def connection_string_parts(connection_string: str) -> dict[str, str]:
    """The ``Key=value`` pairs of a storage connection string."""
    if connection_string.strip() == "UseDevelopmentStorage=true":
        return {"AccountName": EMULATOR_ACCOUNT, "BlobEndpoint": f"http://127.0.0.1:10000/{EMULATOR_ACCOUNT}"}
    return dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (the storage emulator only ever runs there)."""
    return host.lower() in _LOOPBACK_HOSTS or host.startswith("127.")


def emulator_blob_endpoint(connection_string: str | None) -> str | None:
    """The blob endpoint when ``connection_string`` is the storage emulator's (a loopback BlobEndpoint)."""
    if not connection_string:
        return None
    endpoint = connection_string_parts(connection_string).get("BlobEndpoint", "").strip()
    host = urlsplit(endpoint).hostname if endpoint else None
    return endpoint if host is not None and is_loopback(host) else None


def storage_account_of(settings: Settings) -> str | None:
    """The vault's own account name: from the connection string, ``__accountName`` or the blob URI."""
    if settings.storage_connection_string:
        name = connection_string_parts(settings.storage_connection_string).get("AccountName")
        return name.strip().lower() if name else None
    if settings.storage_account_name:
        return settings.storage_account_name.lower()
    host = urlsplit(settings.storage_blob_uri or "").hostname or ""
    return host.split(".", 1)[0].lower() or None


def _export_accounts(env: Mapping[str, str], emulator: bool, problems: dict[str, str]) -> tuple[str, ...]:
    raw = env.get("PGVAULT_EXPORT_ACCOUNTS", "")
    names = tuple(dict.fromkeys(n.strip().lower() for n in raw.split(",") if n.strip()))
    bad = [n for n in names if not _ACCOUNT.match(n)]
    if bad:
        problems["PGVAULT_EXPORT_ACCOUNTS"] = (
            f"must be storage account names (3-24 lowercase letters or digits), comma-separated; got {bad[0]!r}"
        )
    elif EMULATOR_ACCOUNT in names and not emulator:
        problems["PGVAULT_EXPORT_ACCOUNTS"] = (
            f"{EMULATOR_ACCOUNT} is the storage emulator's account: it may be listed only when "
            f"{STORAGE_SETTING} is the emulator (local use)"
        )
    return names


def _bool(env: Mapping[str, str], name: str, problems: dict[str, str], default: bool = False) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    problems[name] = f"must be true or false, got {raw!r}"
    return default


def _ncrontab(env: Mapping[str, str], name: str, default: str | None, problems: dict[str, str]) -> str:
    from croniter import croniter

    raw = env.get(name, default)
    if raw is None:
        # A timer's %SETTING% schedule must exist, or the Functions host cannot index the timer.
        problems[name] = "missing: the timer's six-field NCRONTAB schedule, e.g. 0 */5 * * * *"
        return ""
    value = raw.strip()
    if len(value.split()) != 6 or not croniter.is_valid(value, second_at_beginning=True):
        problems[name] = (
            f"must be a six-field NCRONTAB expression (second minute hour day month weekday), got {value!r}"
        )
    return value


def _function_timeout(env: Mapping[str, str], problems: dict[str, str]) -> timedelta | None:
    raw = env.get("PGVAULT_FUNCTION_TIMEOUT", "").strip() or DEFAULT_FUNCTION_TIMEOUT
    if raw == "-1":
        return None
    m = _TIMESPAN.match(raw)
    if m is None or int(m.group(2)) > 23 or int(m.group(3)) > 59 or int(m.group(4)) > 59:
        problems["PGVAULT_FUNCTION_TIMEOUT"] = (
            f"must be the host's functionTimeout as [d.]hh:mm:ss (e.g. 02:00:00) or -1, got {raw!r}"
        )
        return timedelta(minutes=30)
    days, hours, minutes, seconds = (int(g or 0) for g in m.groups())
    limit = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    if limit <= timedelta(0):
        problems["PGVAULT_FUNCTION_TIMEOUT"] = f"must be longer than zero, got {raw!r}"
    return limit


# A host pattern: DNS labels of letters, digits, '-', '_' and the wildcards '*' and '?'.
_HOST_PATTERN = re.compile(r"^[a-z0-9_*?-]+(\.[a-z0-9_*?-]+)*$")


def _allowed_servers(env: Mapping[str, str], problems: dict[str, str]) -> tuple[str, ...]:
    raw = env.get("PGVAULT_ALLOWED_SERVERS", "")
    patterns = tuple(p.strip().lower().rstrip(".") for p in raw.split(",") if p.strip())
    bad = [p for p in patterns if not _HOST_PATTERN.match(p) or not any(c.isalnum() for c in p)]
    if bad:
        problems["PGVAULT_ALLOWED_SERVERS"] = (
            "must be comma-separated host patterns such as *.postgres.database.azure.com (letters, digits, '-', "
            f"'.', wildcards * and ?; a pattern of wildcards alone would allow every server), got {', '.join(bad)}"
        )
    return patterns


def _storage(
    env: Mapping[str, str], problems: dict[str, str]
) -> tuple[str | None, str | None, str | None, str | None, str | None]:
    """AzureWebJobsStorage: a connection string, or an identity-based connection (account name or URIs)."""
    connection_string = env.get(STORAGE_SETTING, "").strip() or None
    account_name = env.get(f"{STORAGE_SETTING}__accountName", "").strip() or None
    blob_uri = env.get(f"{STORAGE_SETTING}__blobServiceUri", "").strip() or None
    queue_uri = env.get(f"{STORAGE_SETTING}__queueServiceUri", "").strip() or None
    table_uri = env.get(f"{STORAGE_SETTING}__tableServiceUri", "").strip() or None
    if connection_string is None and account_name is None and not (blob_uri and queue_uri and table_uri):
        problems[STORAGE_SETTING] = (
            "missing: set a connection string (UseDevelopmentStorage=true for Azurite) or, for an "
            f"identity-based connection, {STORAGE_SETTING}__accountName"
        )
    elif connection_string is not None and connection_string != "UseDevelopmentStorage=true":
        parts = connection_string_parts(connection_string)
        if not ({"AccountName", "AccountKey"} <= parts.keys() or "SharedAccessSignature" in parts):
            problems[STORAGE_SETTING] = (
                "not a storage connection string: expected AccountName=...;AccountKey=... (with "
                "BlobEndpoint/QueueEndpoint/TableEndpoint for Azurite) or UseDevelopmentStorage=true"
            )
    return connection_string, account_name, blob_uri, queue_uri, table_uri


def _key_vault_uri(env: Mapping[str, str], problems: dict[str, str]) -> str | None:
    key_vault_uri = env.get("PGVAULT_KEY_VAULT_URI", "").strip() or None
    if key_vault_uri is not None and not _KEY_VAULT_URI.match(key_vault_uri):
        problems["PGVAULT_KEY_VAULT_URI"] = (
            f"must be a Key Vault URI such as https://kv-pgvault.vault.azure.net/ (or empty), got {key_vault_uri!r}"
        )
    return key_vault_uri


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and check every setting; raise ``SettingsError`` naming all problems at once."""
    env = os.environ if env is None else env
    problems: dict[str, str] = {}

    connection_string, account_name, blob_uri, queue_uri, table_uri = _storage(env, problems)
    vault_name = env.get("PGVAULT_VAULT_NAME", "pgvault").strip()
    if not _VAULT_NAME.match(vault_name):
        problems["PGVAULT_VAULT_NAME"] = (
            f"must be 2-50 letters, digits or hyphens, starting with a letter or digit; got {vault_name!r}"
        )
    region = env.get("PGVAULT_REGION", "").strip().lower() or None
    if region is not None and not _REGION.match(region):
        problems["PGVAULT_REGION"] = f"must be an Azure region name such as westeurope, got {region!r}"

    allow_env = _bool(env, "PGVAULT_ALLOW_ENV_SECRETS", problems)

    bin_dir_raw = env.get("PGVAULT_PG_BIN_DIR", "").strip()
    # A missing or broken tool folder is not a settings problem: the API, the jobs and restores as
    # files work without pg_dump, so /api/health reports the tools degraded and backups fail with
    # UserErrorPgToolsNotFound (shared/pg/tools.py) instead of every request failing here.
    pg_bin_dir = Path(bin_dir_raw) if bin_dir_raw else None

    state_table = env.get("PGVAULT_STATE_TABLE", "pgvaultstate").strip()
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]{2,62}", state_table):
        problems["PGVAULT_STATE_TABLE"] = f"must be 3-63 letters or digits starting with a letter, got {state_table!r}"
    container = env.get("PGVAULT_BACKUP_CONTAINER", "pgvault-backups").strip()
    if not re.fullmatch(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]", container):
        problems["PGVAULT_BACKUP_CONTAINER"] = (
            f"must be a blob container name (3-63 lowercase letters, digits, single hyphens), got {container!r}"
        )

    schedule = _ncrontab(env, "PGVAULT_SCHEDULER_SCHEDULE", None, problems)
    retention_schedule = _ncrontab(env, "PGVAULT_RETENTION_SCHEDULE", None, problems)
    function_timeout = _function_timeout(env, problems)
    backup_manifest = _bool(env, "PGVAULT_BACKUP_MANIFEST", problems, default=True)
    from_stream = _bool(env, "PGVAULT_BACKUP_MANIFEST_FROM_STREAM", problems, default=False)
    export_accounts = _export_accounts(env, emulator_blob_endpoint(connection_string) is not None, problems)
    allowed_servers = _allowed_servers(env, problems)
    key_vault_uri = _key_vault_uri(env, problems)

    if problems:
        raise SettingsError(problems)
    return Settings(
        storage_connection_string=connection_string,
        storage_account_name=account_name,
        storage_blob_uri=blob_uri,
        storage_queue_uri=queue_uri,
        storage_table_uri=table_uri,
        vault_name=vault_name,
        region=region,
        allow_env_secrets=allow_env,
        pg_bin_dir=pg_bin_dir,
        state_table=state_table,
        backup_container=container,
        schedule=schedule,
        retention_schedule=retention_schedule,
        function_timeout=function_timeout,
        backup_manifest=backup_manifest,
        backup_manifest_from_stream=from_stream,
        export_accounts=export_accounts,
        allowed_servers=allowed_servers,
        key_vault_uri=key_vault_uri,
    )
