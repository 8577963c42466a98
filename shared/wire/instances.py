"""Backup instances: what configure accepts, and how an instance is shown."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field

from shared.instances import ProtectionStatus, Readiness, RetainData
from shared.jobs import JobStatus
from shared.wire.common import NAME_PATTERN, ErrorDetail, Port, Request, Response, UtcTime


class InstanceSpec(Request):
    """One database to protect."""

    name: str | None = Field(None, pattern=NAME_PATTERN, description="default: <server's first label>-<database>")
    server: str = Field(
        min_length=1,
        description="one host name or IP address; when the secret names a Server (and Port), the same server and "
        "port (host case, a trailing dot and the default port 5432 aside), else 400 InvalidRequest naming both; a "
        "secret without a Server only for hosts matching PGVAULT_ALLOWED_SERVERS",
    )
    port: Port = 5432
    database: str = Field(min_length=1)
    secretUri: str = Field(
        description="https://<vault>.vault.azure.net/secrets/<name>[/<version>], or env:PGVAULT_SECRET_<NAME> when "
        "PGVAULT_ALLOW_ENV_SECRETS=true (only variables with that prefix)"
    )
    policyName: str = Field(pattern=NAME_PATTERN)
    serverRegion: str | None = None


class ConfigureManyRequest(Request):
    """Protect many databases at once; each entry is checked on its own."""

    instances: list[InstanceSpec] = Field(min_length=1)


def _any_case(value: Any) -> Any:
    if isinstance(value, str):
        return next((r for r in RetainData if r.value.lower() == value.lower()), value)
    return value


class StopProtectionRequest(Request):
    """``:stopProtection``: what happens to the instance's recovery points (the value in any letter case)."""

    retainData: Annotated[RetainData, BeforeValidator(_any_case)]


class BackupReadiness(Response):
    """Whether the instance can be backed up, as its last validation found."""

    status: Readiness
    jobId: str | None
    error: ErrorDetail | None


class LastBackup(Response):
    """The instance's last finished backup."""

    time: UtcTime
    status: JobStatus
    jobId: str
    recoveryPointId: str | None
    retentionTag: str | None


class DeletionInfo(Response):
    """A soft-deleted instance's deletion (Azure's ``deletionInfo`` of a deleted backup instance)."""

    deletionTime: UtcTime
    scheduledPurgeTime: UtcTime = Field(
        description="when the retention sweep starts deleting its recovery points for real (deletionTime + "
        "PGVAULT_SOFT_DELETE_DAYS); :undelete brings it back until then"
    )
    deleteJobId: str | None
    purgeJobId: str | None = Field(description="the Delete job of the purge, once it has begun (then no undelete)")


class Storage(Response):
    """What the instance's recovery points take (the vault-standard size of each: ``sizeInBytes``), as of
    the last point added or removed; absent for an instance no point was added to or removed from since
    this was kept."""

    recoveryPoints: int
    latestPointSizeInBytes: int | None
    """The newest point's size; null without points."""
    latestPointTime: UtcTime | None
    totalSizeInBytes: int
    """All listed points together."""


class BackupInstance(Response):
    """A protected (or stopped) database. ``lastBackup`` and ``nextScheduledBackup`` come with GET."""

    currentProtectionState: str = Field(
        description="Azure's: the protectionStatus, refined for a stopped instance (ProtectionStopped, "
        "BackupSchedulesSuspended), SoftDeleted (kept until its purge), SoftDeleting (being purged)"
    )
    retainData: RetainData | None
    stoppedAt: UtcTime | None
    name: str
    server: str
    port: int
    database: str
    secretUri: str
    policyName: str
    serverRegion: str | None
    protectionStatus: ProtectionStatus
    backupReadiness: BackupReadiness
    deletionInfo: DeletionInfo | None = Field(None, description="set while protectionStatus is SoftDeleted")
    lastBackup: LastBackup | None = None
    nextScheduledBackup: UtcTime | None = None
    protectedServer: str | None = Field(
        None, description="the protected server whose discovery configured this instance (absent when configured alone)"
    )
    storage: Storage | None = None
    """The list's and GET's: how many points, the newest one's size, all together (null: not known yet)."""


class BackupInstanceList(Response):
    """A page of backup instances by name; ``nextLink`` (absent on the last page) fetches the next."""

    value: list[BackupInstance]
    nextLink: str | None = None


class Configured(Response):
    """The outcome of one configure entry: Validating with its job, or Failed with why."""

    name: str | None
    status: Literal["Validating", "Failed"]
    validationJobId: str | None = None
    instance: BackupInstance | None = None
    error: ErrorDetail | None = None


class ConfiguredList(Response):
    """Each entry's outcome, in request order."""

    value: list[Configured]


class DeletionAccepted(Response):
    """``:stopProtection`` with ``retainData: delete``: the (completed) Delete job that soft-deleted the
    instance, and the instance as it is now (SoftDeleted, with its ``deletionInfo``)."""

    jobId: str
    instance: BackupInstance
