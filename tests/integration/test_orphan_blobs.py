"""The retention sweep collects backup blobs that no recovery point references, once they are old enough.

Such a blob is what a backup attempt leaves when it commits and then loses (another attempt of the
same job recorded its point) or dies before recording its own. A younger one may still belong to
an attempt that is about to record its point, so only blobs older than ``MAX_JOB_LIFETIME`` go.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.backup_runner import blob_name_for
from shared.policy import DataStore, LifecycleEvent
from shared.recovery_points import Part, RecoveryPoint, RecoveryPointStore
from shared.restore.rehydration import copy_name_for
from shared.retention import ORPHAN_SCAN_EVERY, RetentionSweep
from shared.storage.blobs import ARCHIVE_COPY_SUFFIX
from shared.storage.layout import (
    manifest_name_for,
    part_blob_name,
    part_digests_name,
    plan_name_for,
    roles_name_for,
)
from shared.timeouts import MAX_JOB_LIFETIME
from tests.integration.world import Storage

pytestmark = pytest.mark.integration


def _long_lived(instance: str, blob: str, now: datetime, **extra: Any) -> RecoveryPoint:
    """Point rp1 of ``instance`` in ``blob``, living for years: its own lifecycle never runs in these tests."""
    far = now + timedelta(days=3650)
    return RecoveryPoint(
        "rp1",
        instance,
        now,
        DataStore.VAULT_STORE,
        "Default",
        far,
        None,
        None,
        far,
        blob,
        4,
        4,
        "0" * 64,
        "15.8",
        "pg_dump (PostgreSQL) 15.8",
        "rp1",
        **extra,
    )


def test_unreferenced_backup_blobs_older_than_the_longest_job_are_deleted_and_nothing_else(
    storage: Storage,
) -> None:
    state, blobs = storage.state, storage.backups
    now = datetime.now(UTC)
    kept = blob_name_for("orders", "rp1", "winner")
    lost = blob_name_for("orders", "rp1", "loser")  # the other attempt of the same job
    died = blob_name_for("orders", "rp2", "dead")  # an attempt that died between commit and point
    names = {
        kept: b"dump",
        manifest_name_for(kept): b"{}",
        roles_name_for(kept): b"{}",
        kept + ARCHIVE_COPY_SUFFIX: b"archive copy",
        copy_name_for(kept): b"rehydrated copy",
        lost: b"other dump",
        manifest_name_for(lost): b"{}",
        roles_name_for(lost): b"{}",
        died: b"half",
        "orders/notes.txt": b"not a backup",
    }
    for name, data in names.items():
        blobs.client.upload_blob(name, data)
    RecoveryPointStore(state).add(
        _long_lived(
            "orders", kept, now, archive_blob_name=kept + ARCHIVE_COPY_SUFFIX, roles_blob_name=roles_name_for(kept)
        )
    )

    # While an attempt could still be running, nothing goes.
    young = RetentionSweep(state, blobs).sweep(now + timedelta(hours=1))
    assert young.orphans_deleted == 0 and young.errors == []
    assert {b.name for b in blobs.client.list_blobs()} == set(names)

    # Past the longest a job can live (and past the scan interval): exactly the unreferenced dumps go.
    later = now + MAX_JOB_LIFETIME + ORPHAN_SCAN_EVERY + timedelta(hours=1)
    old = RetentionSweep(state, blobs).sweep(later)
    assert old.orphans_deleted == 4 and old.errors == []
    gone = {lost, manifest_name_for(lost), roles_name_for(lost), died}
    assert {b.name for b in blobs.client.list_blobs()} == set(names) - gone
    # A second sweep within the scan interval lists nothing again.
    assert RetentionSweep(state, blobs).sweep(later + timedelta(minutes=5)).orphans_deleted == 0


def test_a_parts_digests_and_plan_left_beside_a_point_are_kept_while_it_lives_and_deleted_with_it(
    storage: Storage,
) -> None:
    # A cross-instance backup's coordinator deletes its parts' digests sidecars and its plan once merged; one whose
    # delete failed stays beside the point (its name maps to the point's part, so the orphan sweep keeps it) until
    # the point is deleted. An attempt that lost leaves a part and its sidecar nobody references.
    state, blobs = storage.state, storage.backups
    now = datetime.now(UTC)
    kept = blob_name_for("ledger", "rp1", "winner")
    parts = [part_blob_name(kept, i) for i in (1, 2)]
    left = [part_digests_name(parts[0]), plan_name_for(kept)]
    lost = part_blob_name(blob_name_for("ledger", "rp1", "loser"), 1)
    for name in [kept, manifest_name_for(kept), *parts, *left, lost, part_digests_name(lost)]:
        blobs.client.upload_blob(name, b"{}")
    point, _ = RecoveryPointStore(state).add(
        _long_lived("ledger", kept, now, parts=tuple(Part(i, "0" * 64, 2, 2) for i in (1, 2)))
    )
    later = now + MAX_JOB_LIFETIME + ORPHAN_SCAN_EVERY + timedelta(hours=1)
    sweep = RetentionSweep(state, blobs)
    assert sweep.sweep(later).errors == []
    listed = {b.name for b in blobs.client.list_blobs(name_starts_with="ledger/")}
    assert listed == {kept, manifest_name_for(kept), *parts, *left}  # the loser's part and sidecar went
    sweep.advance(point, later, forced=LifecycleEvent.DELETE)  # the point's own deletion
    assert {b.name for b in blobs.client.list_blobs(name_starts_with="ledger/")} == set()
