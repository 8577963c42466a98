"""Application settings: one frozen record, built once from the environment.

Every missing or invalid setting is collected and reported in one ``SettingsError``, so a
misconfigured app says everything that is wrong at start-up rather than one thing per restart.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from shared.errors import SettingsError
from shared.immutability import Immutability, parse_immutability

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
# How long a soft-deleted instance's points are kept: Azure Backup allows 14 to 180 days.
SOFT_DELETE_DAYS = (14, 180)
DEFAULT_SOFT_DELETE_DAYS = 14
_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})$")


class AuthMode(StrEnum):
    """How callers of the HTTP API are known (DEPLOY.md, Authentication)."""

    FUNCTION_KEYS = "FunctionKeys"
    """The host checks a function key on every keyed route; every key caller is the emergency admin."""
    APP_SERVICE_AUTHENTICATION = "AppServiceAuthentication"
    """App Service Authentication (Microsoft Entra ID) signs callers in; the routes are anonymous to the
    host and pgvault reads the caller and its app roles from ``X-MS-CLIENT-PRINCIPAL``."""


# Azure Backup keeps a policy's points at most 10 years (docs/rules.md C1): the audit trail of the
# calls that made and changed them is kept at least that long (in days, leap days included).
MIN_AUDIT_RETENTION_DAYS = 3653
MAX_AUDIT_RETENTION_DAYS = 36500
DEFAULT_APPROVAL_HOURS = 24
MAX_APPROVAL_HOURS = 168
# Set by App Service on every Azure host (never by devhost): dev principals are refused there.
AZURE_HOST_MARKERS = ("WEBSITE_INSTANCE_ID", "WEBSITE_SITE_NAME")


@dataclass(frozen=True)
class AccessSettings:
    """Authentication mode, dev principals, multi-user authorization and audit retention."""

    auth_mode: AuthMode = AuthMode.FUNCTION_KEYS
    dev_principals: bool = False
    """Honour a test ``X-MS-CLIENT-PRINCIPAL`` in FunctionKeys mode (devhost only; refused in Azure)."""
    multi_user_authorization: bool = False
    approval_window: timedelta = timedelta(hours=DEFAULT_APPROVAL_HOURS)
    audit_retention_days: int = MIN_AUDIT_RETENTION_DAYS

    @property
    def principals_from_header(self) -> bool:
        """Whether the caller is read from ``X-MS-CLIENT-PRINCIPAL``."""
        return self.auth_mode is AuthMode.APP_SERVICE_AUTHENTICATION or self.dev_principals


def _whole(env: Mapping[str, str], name: str, problems: dict[str, str], *, default: int, low: int, high: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    if not re.fullmatch(r"\d{1,19}", raw) or not low <= int(raw) <= high:
        problems[name] = f"must be a whole number from {low} to {high}, got {raw!r}"
        return default
    return int(raw)


def load_access_settings(
    env: Mapping[str, str] | None = None, problems: dict[str, str] | None = None
) -> AccessSettings:
    """The access settings; with ``problems`` given, each problem is added there, else ``SettingsError``.

    ``PGVAULT_DEV_PRINCIPALS=true`` is refused where App Service runs the app: there only the
    platform may say who the caller is.
    """
    env = os.environ if env is None else env
    found: dict[str, str] = {} if problems is None else problems
    raw_mode = env.get("PGVAULT_AUTH_MODE", "").strip() or AuthMode.FUNCTION_KEYS.value
    mode = next((m for m in AuthMode if m.value.lower() == raw_mode.lower()), None)
    if mode is None:
        found["PGVAULT_AUTH_MODE"] = f"must be {' or '.join(m.value for m in AuthMode)}, got {raw_mode!r}"
        mode = AuthMode.FUNCTION_KEYS
    dev = _bool(env, "PGVAULT_DEV_PRINCIPALS", found)
    if dev and any(env.get(marker) for marker in AZURE_HOST_MARKERS):
        found["PGVAULT_DEV_PRINCIPALS"] = (
            "is for devhost only: in Azure the caller comes from App Service Authentication "
            "(PGVAULT_AUTH_MODE=AppServiceAuthentication); remove the setting"
        )
    mua = _bool(env, "PGVAULT_MULTI_USER_AUTHORIZATION", found)
    hours = _whole(env, "PGVAULT_APPROVAL_HOURS", found, default=DEFAULT_APPROVAL_HOURS, low=1, high=MAX_APPROVAL_HOURS)
    audit_days = _whole(
        env,
        "PGVAULT_AUDIT_RETENTION_DAYS",
        found,
        default=MIN_AUDIT_RETENTION_DAYS,
        low=MIN_AUDIT_RETENTION_DAYS,
        high=MAX_AUDIT_RETENTION_DAYS,
    )
    if problems is None and found:
        raise SettingsError(found)
    return AccessSettings(mode, dev, mua, timedelta(hours=hours), audit_days)


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
    # False: the SQL manifest (shared.pg.digests), a second read of every table.
    backup_manifest_from_stream: bool = True
    # Host patterns a secret without its own Server may be used for (empty: such a secret is refused).
    allowed_servers: tuple[str, ...] = ()
    # Storage accounts restore-as-files may write to (PGVAULT_EXPORT_ACCOUNTS); none: no exports.
    export_accounts: tuple[str, ...] = ()
    # The deployment's Key Vault (PGVAULT_KEY_VAULT_URI): the deep health check reads a probe secret there.
    key_vault_uri: str | None = None
    # pg_dump/pg_restore processes of one backup or restore (PGVAULT_BACKUP_PARALLELISM); 1: one stream.
    backup_parallelism: int = 1
    # Databases at least this big are backed up in parts (PGVAULT_PARALLEL_BACKUP_MIN_BYTES; why 2 GiB:
    # shared.pg.parts.DEFAULT_PARALLEL_MIN_BYTES).
    parallel_backup_min_bytes: int = 2 * 1024**3
    # A multi-part backup's data parts are queue messages any instance takes (PGVAULT_BACKUP_PARTS_ACROSS_INSTANCES).
    backup_parts_across_instances: bool = False
    # Across instances: at most this many bytes of tables per data part (PGVAULT_BACKUP_PART_BYTES).
    backup_part_bytes: int = 128 * 1024**3
    # When protected servers are discovered (PGVAULT_DISCOVERY_SCHEDULE, six-field NCRONTAB): hourly by default.
    discovery_schedule: str = "0 0 * * * *"
    # PGVAULT_SOFT_DELETE_DAYS: how long stop-with-delete keeps an instance's points before the purge.
    soft_delete_days: int = DEFAULT_SOFT_DELETE_DAYS
    # PGVAULT_IMMUTABILITY: whether points may be deleted early or their retention shortened.
    immutability: Immutability = Immutability.DISABLED
    # Where alerts are POSTed as JSON (PGVAULT_ALERT_WEBHOOK_URL); None: alerts are recorded and logged only.
    # It often holds a token (Slack, Teams): never printed.
    alert_webhook_url: str | None = None
    # How long after a scheduled slot a backup may still succeed before the slot is a missed backup.
    missed_backup_grace: timedelta = timedelta(hours=6)
    # The app's public address for links in alerts (https://<WEBSITE_HOSTNAME> in Azure); None: relative links.
    public_url: str | None = None
    # Who may call what, approvals of critical operations, the audit trail (shared/access.py).
    access: AccessSettings = field(default_factory=AccessSettings)
    # Backups running at once on one server (host and port) and in the whole vault (shared/fanout.py).
    max_backups_per_server: int = 2
    max_backups: int = 20

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


# A seat per backup is a row of the state table (shared/fanout.py): a few hundred keep a dispatch cheap.
MAX_BACKUP_LIMIT = 500


def _key_vault_uri(env: Mapping[str, str], problems: dict[str, str]) -> str | None:
    key_vault_uri = env.get("PGVAULT_KEY_VAULT_URI", "").strip() or None
    if key_vault_uri is not None and not _KEY_VAULT_URI.match(key_vault_uri):
        problems["PGVAULT_KEY_VAULT_URI"] = (
            f"must be a Key Vault URI such as https://kv-pgvault.vault.azure.net/ (or empty), got {key_vault_uri!r}"
        )
    return key_vault_uri


def _soft_delete_days(env: Mapping[str, str], problems: dict[str, str]) -> int:
    raw = env.get("PGVAULT_SOFT_DELETE_DAYS", "").strip()
    if not raw:
        return DEFAULT_SOFT_DELETE_DAYS
    low, high = SOFT_DELETE_DAYS
    if not raw.isdigit() or not low <= int(raw) <= high:
        problems["PGVAULT_SOFT_DELETE_DAYS"] = f"must be a whole number of days from {low} to {high}, got {raw!r}"
        return DEFAULT_SOFT_DELETE_DAYS
    return int(raw)


def _immutability(env: Mapping[str, str], problems: dict[str, str]) -> Immutability:
    try:
        return parse_immutability(env.get("PGVAULT_IMMUTABILITY"))
    except ValueError as exc:
        problems["PGVAULT_IMMUTABILITY"] = str(exc)
        return Immutability.DISABLED


# A grace longer than this would hide a week of missed weekly backups.
MAX_MISSED_BACKUP_GRACE = timedelta(days=7)


def _alert_webhook_url(env: Mapping[str, str], problems: dict[str, str]) -> str | None:
    raw = env.get("PGVAULT_ALERT_WEBHOOK_URL", "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    host = parts.hostname or ""
    # The URL is not repeated in the problem: a webhook URL often carries its token.
    if not host or parts.scheme not in ("https", "http") or (parts.scheme == "http" and not is_loopback(host)):
        problems["PGVAULT_ALERT_WEBHOOK_URL"] = (
            "must be an https:// URL (http:// only for a receiver on this machine), or empty for no webhook"
        )
        return None
    return raw


def _missed_backup_grace(env: Mapping[str, str], problems: dict[str, str]) -> timedelta:
    import isodate

    raw = env.get("PGVAULT_MISSED_BACKUP_GRACE", "").strip() or "PT6H"
    try:
        grace = isodate.parse_duration(raw)
    except (isodate.ISO8601Error, ValueError):
        grace = None
    if not isinstance(grace, timedelta) or not timedelta(0) < grace <= MAX_MISSED_BACKUP_GRACE:
        problems["PGVAULT_MISSED_BACKUP_GRACE"] = (
            f"must be an ISO 8601 duration in days, hours, minutes or seconds, longer than zero and at most "
            f"P7D (e.g. PT6H), got {raw!r}"
        )
        return timedelta(hours=6)
    return grace


def _public_url(env: Mapping[str, str]) -> str | None:
    # App Service and Functions set WEBSITE_HOSTNAME to the app's default host name.
    host = env.get("WEBSITE_HOSTNAME", "").strip()
    return f"https://{host}" if host else None


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
    from_stream = _bool(env, "PGVAULT_BACKUP_MANIFEST_FROM_STREAM", problems, default=True)
    export_accounts = _export_accounts(env, emulator_blob_endpoint(connection_string) is not None, problems)
    allowed_servers = _allowed_servers(env, problems)
    key_vault_uri = _key_vault_uri(env, problems)
    parallelism = _whole(env, "PGVAULT_BACKUP_PARALLELISM", problems, default=default_parallelism(), low=1, high=64)
    parallel_min = _whole(env, "PGVAULT_PARALLEL_BACKUP_MIN_BYTES", problems, default=2 * 1024**3, low=0, high=2**62)
    across = _bool(env, "PGVAULT_BACKUP_PARTS_ACROSS_INSTANCES", problems, default=False)
    part_bytes = _whole(env, "PGVAULT_BACKUP_PART_BYTES", problems, default=128 * 1024**3, low=1024**2, high=2**62)
    discovery_schedule = _ncrontab(env, "PGVAULT_DISCOVERY_SCHEDULE", "0 0 * * * *", problems)
    soft_delete_days = _soft_delete_days(env, problems)
    immutability = _immutability(env, problems)
    alert_webhook_url = _alert_webhook_url(env, problems)
    missed_backup_grace = _missed_backup_grace(env, problems)
    access = load_access_settings(env, problems)
    max_per_server = _whole(env, "PGVAULT_MAX_BACKUPS_PER_SERVER", problems, default=2, low=1, high=MAX_BACKUP_LIMIT)
    max_backups = _whole(env, "PGVAULT_MAX_BACKUPS", problems, default=20, low=1, high=MAX_BACKUP_LIMIT)
    if not {"PGVAULT_MAX_BACKUPS", "PGVAULT_MAX_BACKUPS_PER_SERVER"} & problems.keys() and max_backups < max_per_server:
        problems["PGVAULT_MAX_BACKUPS"] = (
            f"must be at least PGVAULT_MAX_BACKUPS_PER_SERVER ({max_per_server}), got {max_backups}"
        )

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
        backup_parallelism=parallelism,
        parallel_backup_min_bytes=parallel_min,
        backup_parts_across_instances=across,
        backup_part_bytes=part_bytes,
        discovery_schedule=discovery_schedule,
        soft_delete_days=soft_delete_days,
        immutability=immutability,
        alert_webhook_url=alert_webhook_url,
        missed_backup_grace=missed_backup_grace,
        public_url=_public_url(env),
        access=access,
        max_backups_per_server=max_per_server,
        max_backups=max_backups,
    )


def default_parallelism() -> int:
    """The cores this process may run on (its CPU affinity, not the host's count), at most 16."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(16, cores))
