"""Soft delete, undelete and the purge after PGVAULT_SOFT_DELETE_DAYS, on the in-memory table and
container, with ``now`` as a parameter (the Mon/Wed/Fri-with-archive world of tests/retention_travel.py)."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from shared.backups import BackupStarter
from shared.errors import ErrorCode, UserError
from shared.instances import Instance, InstanceService, InstanceStore, ProtectionStatus, RetainData
from shared.jobs import JobStatus, JobStore, Operation
from shared.protection import ProtectionService
from shared.recovery_points import PointState, RecoveryPointStore, shown
from shared.retention import CLAIM_TIMEOUT, RetentionSweep, SweepStep
from shared.storage import layout
from shared.storage.memory import MemoryBlobStore, MemoryTables
from shared.storage.tables import Entity
from tests import retention_travel as travel

NAME = travel.NAME
SPEC = {"server": "db.example.com", "database": NAME, "secretUri": "env:PGVAULT_SECRET_X", "policyName": "mwf"}
END = travel.START + timedelta(weeks=8)
NOW = END + timedelta(hours=1)


@pytest.fixture
def world() -> travel.World:
    tables, blobs = MemoryTables(), MemoryBlobStore()
    world = travel.build_world(tables.table("state"), blobs, lambda: (tables.table("state"), blobs))
    world.record_until(END, END)
    return world


def _point_ids(world: travel.World) -> set[str]:
    return {p.recovery_point_id for p in RecoveryPointStore(world.state).of(NAME, include_deleting=True)}


def _dump_blobs(world: travel.World) -> set[str]:
    return {name for name, _ in world.blobs.listing() if name.startswith(f"{NAME}/")}


def _instance(world: travel.World) -> Instance | None:
    return InstanceStore(world.state).find(NAME)


def _refused(code: ErrorCode, call: object) -> UserError:
    assert callable(call)
    with pytest.raises(UserError) as refused:
        call()
    assert refused.value.code is code, refused.value.message
    return refused.value


def test_stop_with_delete_soft_deletes_keeps_every_point_and_undelete_brings_them_all_back(
    world: travel.World,
) -> None:
    before, blobs = _point_ids(world), _dump_blobs(world)
    assert len(before) > 10
    protection = ProtectionService(world.state, world.blobs, soft_delete_days=45)
    stopped, job = protection.stop(NAME, {"retainData": "delete"}, NOW)

    assert stopped.protection_status is ProtectionStatus.SOFT_DELETED and stopped.retain_data is RetainData.DELETE
    assert stopped.purge_at == NOW + timedelta(days=45)
    assert job is not None and (job.operation, job.status) == (Operation.DELETE, JobStatus.COMPLETED)
    assert job.details["softDeleted"] is True
    wire = stopped.to_wire()
    assert wire.currentProtectionState == "SoftDeleted" and wire.deletionInfo is not None
    assert (wire.deletionInfo.deletionTime, wire.deletionInfo.scheduledPurgeTime) == (NOW, NOW + timedelta(days=45))
    listed = shown(world.state, NAME)
    assert {p.recoveryPointId for p in listed} == before
    assert {(p.state, p.purgeTime) for p in listed} == {(PointState.SOFT_DELETED, NOW + timedelta(days=45))}
    # A repeated request answers the same job and changes nothing.
    again, same = protection.stop(NAME, {"retainData": "delete"}, NOW + timedelta(minutes=1))
    assert same is not None and same.job_id == job.job_id and again.purge_at == stopped.purge_at

    # Soft-deleted: no backups, no resume, no other stop, no re-validation, no reconfiguration.
    starter = BackupStarter(world.state, None)  # type: ignore[arg-type] # refused before anything is queued
    _refused(ErrorCode.BACKUP_INSTANCE_SOFT_DELETED, lambda: starter.on_demand(NAME, None, NOW))
    _refused(ErrorCode.BACKUP_INSTANCE_SOFT_DELETED, lambda: protection.resume(NAME, None, NOW))
    _refused(ErrorCode.BACKUP_INSTANCE_SOFT_DELETED, lambda: protection.stop(NAME, {"retainData": "forever"}, NOW))
    instances = InstanceService(world.state, lambda j, i: None)
    _refused(ErrorCode.BACKUP_INSTANCE_SOFT_DELETED, lambda: instances.revalidate(NAME, NOW))
    _refused(
        ErrorCode.BACKUP_INSTANCE_SOFT_DELETED,
        lambda: instances.configure_one(NAME, SPEC, NOW, allow_env_secrets=True, vault_region=None),
    )

    # Sweeps during the soft-delete days touch nothing, though lifecycle events of its points fall due
    # (the first expiry comes five weeks after NOW).
    held = 0
    for day in range(0, 45, 3):
        report = RetentionSweep(world.state, world.blobs).sweep(NOW + timedelta(days=day, hours=1))
        assert report.instances_deleted == [] and not report.acted
        held += report.held
    assert held > 0
    assert _point_ids(world) == before and _dump_blobs(world) == blobs

    undeleted = protection.undelete(NAME, None, NOW + timedelta(days=44, hours=23))
    assert (undeleted.protection_status, undeleted.retain_data) == (ProtectionStatus.STOPPED, RetainData.FOREVER)
    assert undeleted.to_wire().deletionInfo is None and undeleted.delete_job_id is None
    assert {p.recoveryPointId for p in shown(world.state, NAME)} == before
    assert PointState.SOFT_DELETED not in {p.state for p in shown(world.state, NAME)}
    _refused(ErrorCode.CONFLICT, lambda: protection.undelete(NAME, None, NOW + timedelta(days=45)))
    # Past the purge time nothing goes: it is an instance stopped with retain forever now.
    RetentionSweep(world.state, world.blobs).sweep(NOW + timedelta(days=60))
    assert _point_ids(world) == before
    resumed = protection.resume(NAME, {}, NOW + timedelta(days=60))
    assert resumed.protection_status is ProtectionStatus.PROTECTED and resumed.retain_data is None


def test_after_the_soft_delete_days_the_sweep_purges_each_point_as_a_delete_job_once_then_the_instance(
    world: travel.World,
) -> None:
    points = _point_ids(world)
    protection = ProtectionService(world.state, world.blobs, soft_delete_days=30)
    stopped, _ = protection.stop(NAME, {"retainData": "delete"}, NOW)
    purge_at = NOW + timedelta(days=30)
    assert stopped.purge_at == purge_at

    # Protecting the same database again names the soft-deleted instance and its purge time.
    instances = InstanceService(world.state, lambda j, i: None)
    refused = _refused(
        ErrorCode.BACKUP_INSTANCE_SOFT_DELETED,
        lambda: instances.configure_one("orders2", SPEC, NOW, allow_env_secrets=True, vault_region=None),
    )
    assert refused.http_status == 409 and refused.target == "body.database"
    assert NAME in refused.message and purge_at.isoformat() in refused.message
    assert "undelete" in refused.recommended_action.lower()

    assert RetentionSweep(world.state, world.blobs).sweep(purge_at - timedelta(seconds=1)).instances_deleted == []
    assert _point_ids(world) == points

    # The purge in small runs, one run killed after deleting a blob: each point is deleted once.
    class Crash(Exception):
        pass

    kills = [3]

    def killer(step: SweepStep, _point: object) -> None:
        if step is SweepStep.BLOB_DONE:
            kills[0] -= 1
            if kills[0] == 0:
                raise Crash

    first = RetentionSweep(world.state, world.blobs, max_actions=2)
    report = first.sweep(purge_at)
    assert report.more and report.instances_deleted == []
    begun = _instance(world)
    assert begun is not None and begun.purge_job_id is not None
    assert begun.to_wire().currentProtectionState == "SoftDeleting"
    # Once the purge has begun, undelete is refused: its points are going.
    late = _refused(ErrorCode.CONFLICT, lambda: protection.undelete(NAME, None, purge_at))
    assert "purged" in late.message
    with pytest.raises(Crash):
        RetentionSweep(world.state, world.blobs, on_step=killer).sweep(purge_at + timedelta(minutes=1))
    at = purge_at + CLAIM_TIMEOUT + timedelta(minutes=2)
    for step in range(20):
        if _instance(world) is None:
            break
        RetentionSweep(world.state, world.blobs, max_actions=7).sweep(at + timedelta(minutes=step))
    assert _instance(world) is None
    assert _point_ids(world) == set() and _dump_blobs(world) == set()

    jobs = JobStore(world.state)
    history = list(jobs.history(NAME))
    point_deletes = Counter(
        j.recovery_point_id for j in history if j.operation is Operation.DELETE and j.recovery_point_id
    )
    assert set(point_deletes) == points
    finished = [jobs.get(j.job_id) for j in history if j.operation is Operation.DELETE and j.recovery_point_id]
    assert all(j.details.get("trigger") == "SoftDeletePurge" for j in finished)
    completed = Counter(j.recovery_point_id for j in finished if j.status is JobStatus.COMPLETED)
    assert set(completed.values()) == {1}  # the killed run's job gave way to exactly one that completed
    purge = jobs.get(begun.purge_job_id)
    assert (purge.operation, purge.status, purge.details["trigger"]) == (
        Operation.DELETE,
        JobStatus.COMPLETED,
        "SoftDeletePurge",
    )
    # The claim went with it: the database can be protected again.
    again = instances.configure_one("orders2", SPEC, at + timedelta(hours=1), allow_env_secrets=True, vault_region=None)
    assert again.instance is not None and InstanceStore(world.state).holder(again.instance.spec) == "orders2"


def test_an_undelete_that_wins_the_race_with_the_purge_keeps_every_point(world: travel.World) -> None:
    points = _point_ids(world)
    protection = ProtectionService(world.state, world.blobs, soft_delete_days=14)
    protection.stop(NAME, {"retainData": "delete"}, NOW)
    seen_by_sweep = _instance(world)  # the sweep read the instance, then the undelete came first
    assert seen_by_sweep is not None
    protection.undelete(NAME, None, NOW + timedelta(days=14))
    done, used = RetentionSweep(world.state, world.blobs).purge_instance(seen_by_sweep, NOW + timedelta(days=15))
    assert (done, used) == (False, 0)
    assert _point_ids(world) == points
    current = _instance(world)
    assert current is not None and current.protection_status is ProtectionStatus.STOPPED


def test_an_instance_stopped_with_delete_before_soft_delete_existed_is_purged_by_the_next_sweep(
    world: travel.World,
) -> None:
    entity = world.state.get(layout.INSTANCE, layout.row_key(NAME))
    assert entity is not None
    old_style = {**entity.data, "protectionStatus": "ProtectionStopped", "retainData": "delete", "stoppedAt": NOW}
    for key in ("deletedAt", "purgeAt", "purgeJobId"):
        old_style.pop(key, None)
    world.state.update(Entity(entity.partition_key, entity.row_key, {}, entity.etag), old_style)
    legacy = _instance(world)
    assert legacy is not None and legacy.soft_deleted and legacy.purge_at == NOW
    for step in range(10):
        if _instance(world) is None:
            break
        RetentionSweep(world.state, world.blobs).sweep(NOW + timedelta(minutes=step))
    assert _instance(world) is None and _point_ids(world) == set()


def test_a_soft_deleted_point_cannot_be_restored_until_undeleted(world: travel.World) -> None:
    from shared.restore.service import RestoreService

    protection = ProtectionService(world.state, world.blobs)
    protection.stop(NAME, {"retainData": "delete"}, NOW)
    restores = RestoreService(world.state, world.blobs, None, lambda: NOW)  # type: ignore[arg-type]
    point = next(iter(_point_ids(world)))
    refused = _refused(ErrorCode.BACKUP_INSTANCE_SOFT_DELETED, lambda: restores.start(NAME, {"x": point}, NOW))
    assert "undelete" in refused.recommended_action.lower()
    _refused(ErrorCode.BACKUP_INSTANCE_SOFT_DELETED, lambda: restores.start_verify(NAME, {}, NOW))
