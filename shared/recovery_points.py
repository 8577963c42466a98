"""Recovery points: what a successful backup leaves, and what restores read.

A recovery point is written only after its blob is committed and its checksum recorded (the
backup worker's last step), with an insert keyed by an id derived from the backup job, so a
job that runs twice leaves one point. Points of an instance share a partition; ids start with
the inverted backup time, so the partition reads newest first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from shared.errors import ErrorCode, UserError
from shared.policy import DataStore, Lifecycle
from shared.storage import layout
from shared.storage.tables import Entity, EntityExists, StateTable


def recovery_point_id(job_id: str) -> str:
    """The id of the point a backup job makes: the job id, so a repeated job finds its point."""
    return job_id


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


@dataclass(frozen=True)
class RecoveryPoint:
    """One restorable copy of a database."""

    recovery_point_id: str
    instance: str
    time: datetime
    datastore: DataStore
    retention_tag: str
    vault_expiry: datetime
    archive_move: datetime | None
    archive_expiry: datetime | None
    deletion: datetime
    blob_name: str
    size_in_bytes: int
    raw_bytes: int
    sha256: str
    server_version: str
    pg_dump_version: str
    job_id: str
    on_demand: bool = False
    etag: str | None = None

    @classmethod
    def from_lifecycle(
        cls,
        rp_id: str,
        instance: str,
        life: Lifecycle,
        *,
        blob_name: str,
        size_in_bytes: int,
        raw_bytes: int,
        sha256: str,
        server_version: str,
        pg_dump_version: str,
        job_id: str,
        on_demand: bool,
    ) -> RecoveryPoint:
        """A new point in vault-standard, with the dates its policy's lifecycle gives."""
        return cls(
            rp_id,
            instance,
            life.backup_time,
            DataStore.VAULT_STORE,
            life.tag,
            life.vault_expiry,
            life.vault_expiry if life.archive_copy is not None else None,
            life.archive_expiry,
            life.deletion,
            blob_name,
            size_in_bytes,
            raw_bytes,
            sha256,
            server_version,
            pg_dump_version,
            job_id,
            on_demand,
        )

    def to_dict(self) -> dict[str, Any]:
        """The public recovery point shape of DESIGN.md §3."""
        return {
            "recoveryPointId": self.recovery_point_id,
            "instance": self.instance,
            "time": _iso(self.time),
            "datastore": self.datastore.value,
            "retentionTag": self.retention_tag,
            "expiry": _iso(self.vault_expiry if self.datastore is DataStore.VAULT_STORE else self.archive_expiry),
            "vaultExpiry": _iso(self.vault_expiry),
            "archiveMove": _iso(self.archive_move),
            "archiveExpiry": _iso(self.archive_expiry),
            "deletion": _iso(self.deletion),
            "sizeInBytes": self.size_in_bytes,
            "rawBytes": self.raw_bytes,
            "sha256": self.sha256,
            "serverVersion": self.server_version,
            "pgDumpVersion": self.pg_dump_version,
            "jobId": self.job_id,
            "onDemand": self.on_demand,
        }

    def _data(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "time": self.time,
            "datastore": self.datastore.value,
            "retentionTag": self.retention_tag,
            "vaultExpiry": self.vault_expiry,
            "archiveMove": self.archive_move,
            "archiveExpiry": self.archive_expiry,
            "deletion": self.deletion,
            "blobName": self.blob_name,
            "sizeInBytes": self.size_in_bytes,
            "rawBytes": self.raw_bytes,
            "sha256": self.sha256,
            "serverVersion": self.server_version,
            "pgDumpVersion": self.pg_dump_version,
            "jobId": self.job_id,
            "onDemand": self.on_demand,
        }

    @classmethod
    def _from(cls, e: Entity) -> RecoveryPoint:
        return cls(
            e.row_key,
            str(e["instance"]),
            e["time"],
            DataStore(e["datastore"]),
            str(e["retentionTag"]),
            e["vaultExpiry"],
            e.get("archiveMove"),
            e.get("archiveExpiry"),
            e["deletion"],
            str(e["blobName"]),
            int(e["sizeInBytes"]),
            int(e["rawBytes"]),
            str(e["sha256"]),
            str(e["serverVersion"]),
            str(e["pgDumpVersion"]),
            str(e["jobId"]),
            bool(e.get("onDemand", False)),
            e.etag,
        )


class RecoveryPointStore:
    """Recovery points in the state table."""

    def __init__(self, state: StateTable) -> None:
        self._state = state

    def add(self, point: RecoveryPoint) -> tuple[RecoveryPoint, bool]:
        """Record ``point``; if a point with its id exists (the job ran twice), return that one and False."""
        pk = layout.recovery_points(point.instance)
        try:
            entity = self._state.insert(pk, point.recovery_point_id, point._data())
        except EntityExists:
            return self.get(point.instance, point.recovery_point_id), False
        return replace(point, etag=entity.etag), True

    def get(self, instance: str, rp_id: str) -> RecoveryPoint:
        """Point ``rp_id`` of ``instance``; ``NotFound`` if there is none."""
        entity = self._state.get(layout.recovery_points(instance), rp_id)
        if entity is None:
            raise UserError(
                ErrorCode.NOT_FOUND,
                f"recovery point {rp_id!r} of {instance!r} does not exist",
                target="recoveryPointId",
            )
        return RecoveryPoint._from(entity)

    def of(self, instance: str) -> Iterator[RecoveryPoint]:
        """Every point of ``instance``, newest first."""
        return (RecoveryPoint._from(e) for e in self._state.partition(layout.recovery_points(instance)))
