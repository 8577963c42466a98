"""How long a recovery point lives and where. Pure functions of the policy, its tag and its time.

Arithmetic is calendar arithmetic on the backup instant in **UTC** (isodate): Azure keeps
recovery point times in UTC and counts retention from them, and UTC has no DST to make a
"P1M" 23 or 25 hours off a whole number of days. Years and months are added first, the day
clamped to the end of a shorter month (a backup on 31 January with P1M expires on 28/29
February at the same UTC time), then days (weeks are 7 days).

* VaultStore: the point lives in ``[backup_time, vault_expiry)``, ``vault_expiry = backup_time +
  vault duration``.
* CopyOnExpiryOption: at ``vault_expiry`` the point moves to ArchiveStore and lives there for the
  archive duration counted from the move (the archive's 6-month minimum is about time spent in
  the archive): ``[vault_expiry, vault_expiry + archive duration)``. It is in one store at a time.
* ImmediateCopyOption: the point is copied to ArchiveStore at backup time and lives there for the
  archive duration from then; it is in both stores until the vault copy expires.
* ``deletion`` is when the last copy goes: the later of the two expiries.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum

from shared.policy.model import CopyOption, DataStore, Policy

UTC = dt.UTC


class LifecycleEvent(StrEnum):
    """Something the retention sweep does to a point at a given instant."""

    ARCHIVE_COPY = "ArchiveCopy"
    """Copy to ArchiveStore, keeping the vault copy (ImmediateCopyOption)."""
    ARCHIVE_MOVE = "ArchiveMove"
    """Move from VaultStore to ArchiveStore (CopyOnExpiryOption)."""
    DELETE_VAULT = "DeleteVault"
    """Delete the VaultStore copy; another copy lives on in ArchiveStore."""
    DELETE_ARCHIVE = "DeleteArchive"
    """Delete the ArchiveStore copy; the vault copy lives on (ImmediateCopyOption, longer vault retention)."""
    DELETE = "Delete"
    """Delete the last copy: the point is gone."""


@dataclass(frozen=True)
class Lifecycle:
    """The whole life of one recovery point, all instants UTC-aware."""

    tag: str
    backup_time: dt.datetime
    vault_expiry: dt.datetime
    """When the VaultStore copy ends (deleted, or moved to the archive on expiry)."""
    copy_option: CopyOption | None = None
    """How the point reaches the archive; None when it never does."""
    archive_copy: dt.datetime | None = None
    """When the ArchiveStore copy is made: ``vault_expiry`` on expiry, ``backup_time`` when immediate."""
    archive_expiry: dt.datetime | None = None
    """When the ArchiveStore copy is deleted."""

    @property
    def deletion(self) -> dt.datetime:
        """When the point's last copy is deleted."""
        if self.archive_expiry is None:
            return self.vault_expiry
        return max(self.vault_expiry, self.archive_expiry)

    @property
    def archived(self) -> bool:
        """True when the point ever reaches ArchiveStore."""
        return self.archive_copy is not None

    def datastores_at(self, at: dt.datetime) -> frozenset[DataStore]:
        """The stores holding a copy of the point at instant ``at`` (empty before it exists or after deletion)."""
        stores: set[DataStore] = set()
        if self.backup_time <= at < self.vault_expiry:
            stores.add(DataStore.VAULT_STORE)
        archive_copy, archive_expiry = self.archive_copy, self.archive_expiry
        if archive_copy is not None and archive_expiry is not None and archive_copy <= at < archive_expiry:
            stores.add(DataStore.ARCHIVE_STORE)
        return frozenset(stores)

    def is_alive(self, at: dt.datetime) -> bool:
        """True when some copy of the point exists at ``at``."""
        return self.backup_time <= at < self.deletion

    def events(self) -> tuple[tuple[dt.datetime, LifecycleEvent], ...]:
        """What the retention sweep does to this point and when, in time order."""
        if self.copy_option is CopyOption.COPY_ON_EXPIRY:
            assert self.archive_expiry is not None
            return ((self.vault_expiry, LifecycleEvent.ARCHIVE_MOVE), (self.archive_expiry, LifecycleEvent.DELETE))
        if self.copy_option is CopyOption.IMMEDIATE:
            assert self.archive_expiry is not None
            copy = (self.backup_time, LifecycleEvent.ARCHIVE_COPY)
            # Whichever copy expires first is a partial delete; the later one is the final delete.
            if self.vault_expiry < self.archive_expiry:
                return (
                    copy,
                    (self.vault_expiry, LifecycleEvent.DELETE_VAULT),
                    (self.archive_expiry, LifecycleEvent.DELETE),
                )
            if self.archive_expiry < self.vault_expiry:
                return (
                    copy,
                    (self.archive_expiry, LifecycleEvent.DELETE_ARCHIVE),
                    (self.vault_expiry, LifecycleEvent.DELETE),
                )
            return (copy, (self.vault_expiry, LifecycleEvent.DELETE))
        return ((self.vault_expiry, LifecycleEvent.DELETE),)


def lifecycle(policy: Policy, tag: str, backup_time: dt.datetime) -> Lifecycle:
    """The lifecycle of a point tagged ``tag`` taken at ``backup_time`` (timezone-aware).

    Raises KeyError when the policy has no retention rule named ``tag``: tags come from
    :func:`shared.policy.tag_backup` or :func:`shared.policy.tag_on_demand`, which only give
    existing ones. Every expiry is at least the rule's duration after the time it counts from.
    """
    if backup_time.tzinfo is None:
        raise ValueError("backup_time must be timezone-aware")
    rule = policy.retention_rule(tag)
    taken = backup_time.astimezone(UTC)
    vault_expiry = rule.vault.delete_after.after(taken)
    option = rule.copy_option
    if option is None or rule.archive is None:
        return Lifecycle(tag=rule.name, backup_time=taken, vault_expiry=vault_expiry)
    copied = vault_expiry if option is CopyOption.COPY_ON_EXPIRY else taken
    return Lifecycle(
        tag=rule.name,
        backup_time=taken,
        vault_expiry=vault_expiry,
        copy_option=option,
        archive_copy=copied,
        archive_expiry=rule.archive.delete_after.after(copied),
    )
