"""The composition root: one ``Vault`` per process, built from the settings on first use.

Handlers ask for ``current_vault()`` when they run, never at import, so importing the app does
no I/O and a misconfigured app fails with every settings problem named.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.alerts.service import AlertService
from shared.approvals import Approvals
from shared.audit import AuditLog
from shared.backup_parts import PartWorker
from shared.backup_runner import BackupRunner
from shared.backups import BackupStarter
from shared.fanout import BackupLimits
from shared.health import CheckStatus, tools_check
from shared.hung_jobs import HungJobs
from shared.immutability import enforce_lock
from shared.instances import InstanceService, InstanceStore
from shared.jobs import JobStore
from shared.pg.tools import Tool, list_tools
from shared.policies import PolicyService
from shared.protected_servers import PostgresLister, ProtectedServerService
from shared.protection import ProtectionService
from shared.recovery_points import RecoveryPointStore
from shared.restore.files import ExportRules
from shared.restore.service import RestoreService
from shared.retention import RetentionSweep
from shared.secrets import EnvSecretProvider, KeyVaultSecretProvider, SecretProvider, SecretResolver
from shared.settings import Settings, load_settings
from shared.storage import layout
from shared.storage.blobs import BlobStore
from shared.storage.clients import StorageAccount
from shared.storage.queues import QueueSender
from shared.storage.tables import StateStore, StateTable
from shared.telemetry import configure_telemetry
from shared.validate_for_backup import ValidateForBackup
from shared.validation import ValidationService, enqueue_validation

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC: the one place the product reads the clock."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Vault:
    """The adapters of this vault, ready to use (table, container and queues exist), and the one
    place that builds the stores and services on them: handlers ask the vault, never build one."""

    settings: Settings
    state: StateStore
    backups: BlobStore
    queues: QueueSender
    secrets: SecretProvider
    clock: Callable[[], datetime] = utc_now
    account: StorageAccount | None = None
    """The storage account (restores as files into the vault's own account use it); None in tests
    that run on in-memory adapters."""

    @classmethod
    def connect(cls, settings: Settings, clock: Callable[[], datetime] = utc_now) -> Vault:
        """Open the storage account the settings name and create what is missing."""
        account = StorageAccount.from_settings(settings)
        state = StateTable(account.table_service(), settings.state_table)
        state.ensure()
        # A Locked vault stays Locked whatever the setting says later (SettingsError otherwise).
        enforce_lock(state, settings.immutability, clock())
        backups = BlobStore(account.blob_service(), settings.backup_container)
        backups.ensure()
        queues = QueueSender(account.queue_service())
        for name in layout.QUEUES:
            queues.ensure(name)
            # The poison queues have triggers of their own (shared/hung_jobs.py): make them exist
            # before the host first moves a message there.
            queues.ensure(name + layout.POISON_SUFFIX)
        secrets = SecretResolver(
            KeyVaultSecretProvider.with_app_identity(), EnvSecretProvider(settings.allow_env_secrets)
        )
        return cls(settings, state, backups, queues, secrets, clock, account)

    # -- stores ---------------------------------------------------------------------------------

    @property
    def instances(self) -> InstanceStore:
        """Backup instances and their claims."""
        return InstanceStore(self.state)

    @property
    def jobs(self) -> JobStore:
        """Jobs and their per-instance index."""
        return JobStore(self.state)

    @property
    def points(self) -> RecoveryPointStore:
        """Recovery points and the retention due index."""
        return RecoveryPointStore(self.state)

    @property
    def policies(self) -> PolicyService:
        """Backup policies."""
        return PolicyService(self.state, immutability=self.settings.immutability)

    # -- services -------------------------------------------------------------------------------

    def instance_service(self) -> InstanceService:
        """Configure instances; each configuration queues its validation."""
        return InstanceService(self.state, enqueue_validation(self.queues))

    def validate_for_backup(self) -> ValidateForBackup:
        """Validate would-be instances without configuring them (``backupInstances:validateForBackup``)."""
        return ValidateForBackup(self.state, enqueue_validation(self.queues))

    def validation(self) -> ValidationService:
        """The validation worker's service."""
        s = self.settings
        return ValidationService(
            self.state, self.secrets, self.clock, pg_bin_dir=s.pg_bin_dir, allowed_servers=s.allowed_servers
        )

    def backup_runner(self) -> BackupRunner:
        """The backup worker's service."""
        s = self.settings
        return BackupRunner(
            self.state,
            self.backups,
            self.secrets,
            self.clock,
            pg_bin_dir=s.pg_bin_dir,
            function_timeout=s.function_timeout,
            manifest=s.backup_manifest,
            manifest_from_stream=s.backup_manifest_from_stream,
            allowed_servers=s.allowed_servers,
            parallelism=s.backup_parallelism,
            parallel_min_bytes=s.parallel_backup_min_bytes,
            queues=self.queues,
            limits=self.backup_limits,
            parts_across_instances=s.backup_parts_across_instances,
            part_bytes=s.backup_part_bytes,
        )

    def backup_parts(self) -> PartWorker:
        """The part worker's service: the data parts of backups dumped across instances."""
        s = self.settings
        return PartWorker(
            self.state,
            self.backups,
            self.secrets,
            self.clock,
            pg_bin_dir=s.pg_bin_dir,
            allowed_servers=s.allowed_servers,
        )

    def backup_starter(self) -> BackupStarter:
        """On-demand and scheduled backups: record the job, queue it."""
        return BackupStarter(self.state, self.queues, self.backup_limits)

    @property
    def backup_limits(self) -> BackupLimits:
        """How many backups run at once per server and in the vault."""
        return BackupLimits(self.settings.max_backups_per_server, self.settings.max_backups)

    def restore(self) -> RestoreService:
        """Restores, verifications and rehydrations."""
        s = self.settings
        return RestoreService(
            self.state,
            self.backups,
            self.secrets,
            self.clock,
            queues=self.queues,
            vault_account=self.account,
            pg_bin_dir=s.pg_bin_dir,
            allow_env_secrets=s.allow_env_secrets,
            exports=ExportRules.from_settings(s),
            parallelism=s.backup_parallelism,
        )

    def protection(self) -> ProtectionService:
        """Stop, resume and undelete protection."""
        s = self.settings
        return ProtectionService(
            self.state, self.backups, soft_delete_days=s.soft_delete_days, immutability=s.immutability
        )

    def protected_servers(self) -> ProtectedServerService:
        """Whole servers protected: their databases configured, discovered, stopped when dropped."""
        s = self.settings
        return ProtectedServerService(
            self.state,
            self.instance_service(),
            self.protection(),
            PostgresLister(self.secrets, s.allowed_servers),
            secrets=self.secrets,
            allow_env_secrets=s.allow_env_secrets,
            vault_region=s.region,
            allowed_servers=s.allowed_servers,
            schedule=s.discovery_schedule,
        )

    def retention(self) -> RetentionSweep:
        """The retention sweep."""
        return RetentionSweep(self.state, self.backups, immutability=self.settings.immutability)

    def alerts(self) -> AlertService:
        """Alerts: their deliveries to the webhook, the missed-backup check, the list."""
        s = self.settings
        return AlertService(
            self.state,
            vault_name=s.vault_name,
            webhook_url=s.alert_webhook_url,
            grace=s.missed_backup_grace,
            link_base=s.public_url,
        )

    def audit(self) -> AuditLog:
        """The audit trail of mutating calls."""
        return AuditLog(self.state, self.settings.access.audit_retention_days)

    def approvals(self) -> Approvals:
        """Approval requests of critical operations (multi-user authorization)."""
        access = self.settings.access
        return Approvals(self.state, enabled=access.multi_user_authorization, window=access.approval_window)

    def hung_jobs(self) -> HungJobs:
        """Jobs whose queue message was poisoned or lost."""
        return HungJobs(self.state, self.queues, function_timeout=self.settings.function_timeout)


_lock = threading.Lock()
_vault: Vault | None = None


def current_vault() -> Vault:
    """This process's vault, connected on first call (SettingsError if the settings are wrong)."""
    global _vault  # noqa: PLW0603 - one composition root per process, as the host runs one app
    with _lock:
        if _vault is None:
            settings = load_settings()
            configure_telemetry(os.environ)
            log_client_tools(settings)
            _vault = Vault.connect(settings)
        return _vault


def log_client_tools(settings: Settings) -> list[str]:
    """Log, once per process at start, which pg_dump / pg_restore / psql versions this app can use.

    Returns the lines logged. No pg_dump at all is a warning: every validation and backup would
    fail with ``UserErrorPgDumpVersionTooOld``; so are tools whose libpq cannot refuse a cleartext
    password (older than 16).
    """
    lines = []
    old: list[Tool] = []
    # The tools check runs each tool's --version once (cached for the process) and, for the wheel's
    # tools, first makes them executable (shared/pg/tools.py runnable_bin_dir).
    tools_state = tools_check(settings.pg_bin_dir)
    usable_dir = settings.pg_bin_dir if settings.pg_bin_dir is None or settings.pg_bin_dir.is_dir() else None
    for name in ("pg_dump", "pg_restore", "psql"):
        tools = list_tools(name, usable_dir)
        if tools:
            found = ", ".join(f"{t.version_text.split()[-1]} ({t.path})" for t in tools)
            lines.append(f"{name} found: {found}")
            log.info("%s found: %s", name, found)
            old.extend(t for t in tools if not t.refuses_cleartext and name != "psql")
        elif name == "psql":
            lines.append("psql not found")  # the grant scripts' wrappers need it on the admin's machine, not here
            log.info("psql not found")
        else:
            where = f"PGVAULT_PG_BIN_DIR={settings.pg_bin_dir}, " if settings.pg_bin_dir else ""
            lines.append(f"{name} not found")
            log.warning(
                "%s not found (%sPATH, /usr/lib/postgresql/*/bin): validations and backups will fail with "
                "UserErrorPgDumpVersionTooOld",
                name,
                where,
            )
    if old:
        # PGREQUIREAUTH needs libpq 16: these tools get a password only over TLS that verifies the server.
        line = (
            "client tools with a libpq older than 16 (they cannot refuse a cleartext password, so they get a "
            "password only for servers verified by TLS or on this machine): "
            + ", ".join(f"{t.path} (libpq {t.libpq or 'unknown'})" for t in old)
        )
        lines.append(line)
        log.warning("%s", line)
    if tools_state.status is not CheckStatus.HEALTHY:
        line = f"client tools degraded: {tools_state.detail.get('reason')}"
        lines.append(line)
        log.warning("%s", line)
    return lines
