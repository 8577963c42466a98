"""A recovery point as the API shows it."""

from __future__ import annotations

from pydantic import Field

from shared.policy.model import CopyOption, DataStore
from shared.recovery_points import Integrity, PointState
from shared.wire.common import Response, UtcTime


class Corruption(Response):
    """When a read found the point's blob failing its SHA-256, and what it found."""

    detectedTime: UtcTime
    reason: str | None


class RecoveryPoint(Response):
    """One restorable copy of a database."""

    recoveryPointId: str
    instance: str
    time: UtcTime
    datastore: DataStore
    retentionTag: str
    expiry: UtcTime | None
    """When it leaves its current datastore: vaultExpiry in VaultStore, archiveExpiry in ArchiveStore."""
    vaultExpiry: UtcTime
    archiveMove: UtcTime | None
    archiveExpiry: UtcTime | None
    deletion: UtcTime
    sizeInBytes: int
    rawBytes: int
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    serverVersion: str
    pgDumpVersion: str
    jobId: str
    onDemand: bool
    state: PointState = Field(description="where the point is in its retention life (the sweep's state machine)")
    copyOption: CopyOption | None
    """How the policy's rule copies it to ArchiveStore (null when it never goes there)."""
    inArchiveStore: bool
    """Whether a copy is (or is being put) in ArchiveStore."""
    integrity: Integrity = Field(
        description="Corrupted once a read found its blob failing its SHA-256; a Corrupted point is refused as a "
        "restore source (409 RecoveryPointCorrupted)"
    )
    corruption: Corruption | None
    parts: int = Field(
        default=1,
        description="how many blobs hold the backup: 1, or a schema part and N data parts dumped in parallel on one "
        "snapshot (PGVAULT_BACKUP_PARALLELISM); sha256 is then the schema part's, sizeInBytes and rawBytes the sums",
    )
    purgeTime: UtcTime | None = Field(
        None,
        description="set when state is SoftDeleted (its instance is soft-deleted): when the retention sweep "
        "deletes it unless the instance is undeleted first",
    )
    roleCount: int | None = Field(
        None,
        description="how many cluster roles (owners, grantees and their groups) are stored with the point; null for "
        "points taken before pgvault stored roles",
    )
    rolesSha256: str | None = Field(None, description="the SHA-256 of the stored roles document")


class RecoveryPointList(Response):
    """The instance's recovery points, newest first."""

    value: list[RecoveryPoint]
