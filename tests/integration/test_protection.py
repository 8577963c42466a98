"""Stop and resume protection, and the immediate archive copy, on Azurite with ``now`` as a parameter."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devhost.services import Azurite
from shared.backups import BackupStarter
from shared.errors import ErrorCode, UserError
from shared.instances import InstanceService, ProtectionStatus
from shared.jobs import JobStatus, JobStore, Operation, new_job_id
from shared.policy import DataStore, Policy, lifecycle, simulate, tag_backup
from shared.protection import ProtectionService
from shared.recovery_points import PointState, RecoveryPoint, RecoveryPointStore
from shared.retention import RetentionSweep, SweepStep
from shared.storage import layout
from shared.storage.blobs import BlobStore
from shared.storage.queues import QueueSender
from shared.storage.tables import StateTable
from tests.examples import EXAMPLES
from tests.integration.world import open_storage

pytestmark = pytest.mark.integration
START = datetime(2025, 1, 6, 0, 0, tzinfo=UTC)  # a Monday; backups Mon/Wed/Fri 22:00 UTC
NAME = "orders"
SPEC = {"server": "db.example.com", "database": NAME, "secretUri": "env:PGVAULT_SECRET_X", "policyName": "mwf"}


@dataclass
class World:
    state: StateTable
    blobs: BlobStore
    queues: QueueSender
    policy: Policy

    @property
    def points(self) -> RecoveryPointStore:
        return RecoveryPointStore(self.state)

    def record(self, times: list[datetime]) -> list[RecoveryPoint]:
        """Record points at ``times`` the way the backup runner does (tag, lifecycle, blob first)."""
        earlier: list[datetime] = []
        made = []
        for t in times:
            tag = tag_backup(self.policy, t, earlier)
            earlier.append(t)
            rp_id = new_job_id(t, key=f"{NAME}@{t.isoformat()}")
            blob = f"{NAME}/{rp_id}.pgdump.zst"
            self.blobs.client.upload_blob(blob, b"fake dump", overwrite=True)
            point = RecoveryPoint.from_lifecycle(
                rp_id,
                NAME,
                lifecycle(self.policy, tag, t),
                blob_name=blob,
                size_in_bytes=9,
                raw_bytes=9,
                sha256="0" * 64,
                server_version="15.8",
                pg_dump_version="pg_dump (PostgreSQL) 15.8",
                job_id=rp_id,
                on_demand=False,
            )
            made.append(self.points.add(point)[0])
        return made

    def backups(self, weeks: int) -> list[datetime]:
        return [b.time for b in simulate(self.policy, START, START + timedelta(weeks=weeks)).backups]

    def blob_names(self) -> set[str]:
        return {b.name for b in self.blobs.client.list_blobs(name_starts_with=f"{NAME}/")}

    def instance(self) -> dict[str, Any]:
        return InstanceService(self.state, lambda job, instance: None).get(NAME).to_dict()


def _make_world(azurite: Azurite, policy_doc: dict[str, Any]) -> World:
    storage = open_storage(azurite, "prot", queues=[layout.BACKUP_QUEUE])
    policy = storage.put_policy("mwf", policy_doc, START).policy
    storage.protect(NAME, SPEC, START)
    return World(storage.state, storage.backups, storage.queues, policy)


def _example() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((EXAMPLES / "weekly-mon-wed-fri-with-archive.json").read_text())
    return doc


@pytest.fixture
def world(azurite: Azurite, unique: str) -> World:
    return _make_world(azurite, _example())


def test_stop_forever_takes_no_backups_and_deletes_nothing_until_resumed(world: World) -> None:
    made = world.record(world.backups(weeks=26))
    stopped_at = START + timedelta(weeks=26)
    service = ProtectionService(world.state, world.blobs)
    service.stop(NAME, {"retainData": "forever"}, stopped_at)
    shown = world.instance()
    assert (shown["protectionStatus"], shown["currentProtectionState"], shown["retainData"]) == (
        "ProtectionStopped",
        "ProtectionStopped",
        "forever",
    )

    starter = BackupStarter(world.state, world.queues)
    assert starter.schedule(stopped_at + timedelta(weeks=2)) == []
    with pytest.raises(UserError) as refused:
        starter.on_demand(NAME, None, stopped_at + timedelta(weeks=2))
    assert refused.value.code is ErrorCode.CONFLICT and "resumeProtection" in refused.value.recommended_action

    two_years_later = stopped_at + timedelta(weeks=104)
    report = RetentionSweep(world.state, world.blobs).sweep(two_years_later)
    assert report.held > 0 and not report.acted
    assert len(list(world.points.of(NAME))) == len(made)
    assert len(world.blob_names()) == len(made)

    resumed_at = two_years_later + timedelta(hours=1)
    assert service.resume(NAME, None, resumed_at).protection_status is ProtectionStatus.PROTECTED
    RetentionSweep(world.state, world.blobs).sweep(resumed_at)
    # Back under the policy: each retained point is where its lifecycle says it is now.
    expected = {
        p.recovery_point_id: p.lifecycle().datastores_at(resumed_at) for p in made if p.lifecycle().is_alive(resumed_at)
    }
    alive = {p.recovery_point_id: frozenset({p.datastore}) for p in world.points.of(NAME)}
    assert alive == expected and any(DataStore.ARCHIVE_STORE in s for s in alive.values())
    # No burst and no skipped jobs for the two stopped years: only the slots after the resume.
    started = starter.schedule(resumed_at + timedelta(weeks=1))
    assert len(started) == 1  # the latest slot of the first week (earlier ones of that week skipped)
    jobs = [j for j in JobStore(world.state).history(NAME) if j.operation is Operation.BACKUP]
    assert len(jobs) == 3  # the week's three slots, none of the stopped period's ~300
    assert all(j.created > resumed_at for j in jobs)


def test_stop_as_per_policy_lets_points_expire_but_keeps_the_latest_forever(world: World) -> None:
    made = world.record(world.backups(weeks=8))
    latest = max(made, key=lambda p: p.time)
    service = ProtectionService(world.state, world.blobs)
    service.stop(NAME, {"retainData": "asPerPolicy"}, START + timedelta(weeks=8))
    assert world.instance()["currentProtectionState"] == "BackupSchedulesSuspended"

    far = START + timedelta(days=365 * 12)  # past every lifecycle of the policy (10 years in the archive)
    sweep = RetentionSweep(world.state, world.blobs)
    sweep.sweep(far)
    left = list(world.points.of(NAME))
    assert [p.recovery_point_id for p in left] == [latest.recovery_point_id]
    assert world.blob_names() == {latest.blob_name}

    service.resume(NAME, {}, far)
    RetentionSweep(world.state, world.blobs).sweep(far)  # the policy applies again: it expired long ago
    assert list(world.points.of(NAME)) == [] and world.blob_names() == set()


def test_stop_with_delete_soft_deletes_then_the_sweep_purges_every_point_blob_first_then_the_instance(
    world: World,
) -> None:
    made = world.record(world.backups(weeks=12))
    now = START + timedelta(weeks=12)
    service = ProtectionService(world.state, world.blobs, soft_delete_days=14)
    _instance, job = service.stop(NAME, {"retainData": "delete"}, now)
    assert job is not None and (job.operation, job.status) == (Operation.DELETE, JobStatus.COMPLETED)
    shown = world.instance()
    assert (shown["protectionStatus"], shown["currentProtectionState"]) == ("SoftDeleted", "SoftDeleted")
    assert {p.recovery_point_id for p in world.points.of(NAME)} == {p.recovery_point_id for p in made}
    assert world.blob_names() == {p.blob_name for p in made}

    _again, same = service.stop(NAME, {"retainData": "delete"}, now)  # a repeated request
    assert same is not None and same.job_id == job.job_id
    for body in ({"retainData": "forever"}, None):
        with pytest.raises(UserError) as refused:
            if body is None:
                service.resume(NAME, None, now)
            else:
                service.stop(NAME, body, now)
        assert refused.value.code is ErrorCode.BACKUP_INSTANCE_SOFT_DELETED

    assert RetentionSweep(world.state, world.blobs).sweep(now + timedelta(days=13)).instances_deleted == []
    assert len(list(world.points.of(NAME))) == len(made)
    report = RetentionSweep(world.state, world.blobs).sweep(now + timedelta(days=14))
    assert report.instances_deleted == [NAME]
    with pytest.raises(UserError):
        InstanceService(world.state, lambda j, i: None).get(NAME)
    assert world.blob_names() == set()
    assert list(world.points.of(NAME, include_deleting=True)) == []
    jobs = JobStore(world.state)
    deletes = [j for j in jobs.history(NAME) if j.operation is Operation.DELETE and j.recovery_point_id]
    assert sorted(j.recovery_point_id for j in deletes) == sorted(p.recovery_point_id for p in made)
    assert all(j.status is JobStatus.COMPLETED for j in deletes)
    # The claim went with it: the same database can be protected again.
    configured = InstanceService(world.state, lambda j, i: None).configure_one(
        NAME, SPEC, now + timedelta(days=15), allow_env_secrets=True, vault_region=None
    )
    assert configured.instance is not None


@pytest.mark.parametrize(
    "body",
    [None, [], {}, {"retainData": "sometimes"}, {"retainData": 1}, {"retainData": "forever", "extra": True}],
)
def test_stop_protection_with_a_bad_body_names_the_field_and_changes_nothing(world: World, body: Any) -> None:
    with pytest.raises(UserError) as refused:
        ProtectionService(world.state, world.blobs).stop(NAME, body, START)
    assert refused.value.code is ErrorCode.INVALID_REQUEST
    assert refused.value.target in ("retainData", "extra")
    assert world.instance()["protectionStatus"] == "ProtectionConfigured"


def test_resume_of_a_protected_instance_is_refused(world: World) -> None:
    with pytest.raises(UserError) as refused:
        ProtectionService(world.state, world.blobs).resume(NAME, None, START)
    assert refused.value.code is ErrorCode.CONFLICT


def test_an_immediate_archive_copy_lives_beside_the_vault_copy_until_each_expires(
    azurite: Azurite, unique: str
) -> None:
    doc = _example()
    rules = doc["properties"]["policyRules"]
    yearly = next(r for r in rules if r["name"] == "Yearly")
    settings = copy.deepcopy(yearly["lifecycles"][0]["targetDataStoreCopySettings"])
    (settings[0] if isinstance(settings, list) else settings)["copyAfter"]["objectType"] = "ImmediateCopyOption"
    yearly["lifecycles"][0]["targetDataStoreCopySettings"] = settings
    world = _make_world(azurite, doc)
    (point,) = [p for p in world.record(world.backups(weeks=1)) if p.retention_tag == "Yearly"]
    life = point.lifecycle()
    sweep = RetentionSweep(world.state, world.blobs)
    copy_name = point.blob_name + ".archive"

    sweep.sweep(point.time + timedelta(hours=1))
    now_point = world.points.get(NAME, point.recovery_point_id)
    assert (now_point.state, now_point.datastore, now_point.archive_blob_name) == (
        PointState.ACTIVE,
        DataStore.VAULT_STORE,
        copy_name,
    )
    assert world.blobs.tier(copy_name) == "Archive" and world.blobs.tier(point.blob_name) == "Hot"

    sweep.sweep(life.vault_expiry)
    now_point = world.points.get(NAME, point.recovery_point_id)
    assert (now_point.datastore, now_point.blob_name, now_point.state) == (
        DataStore.ARCHIVE_STORE,
        copy_name,
        PointState.ARCHIVED,
    )
    assert world.blobs.tier(point.blob_name) is None

    assert life.archive_expiry is not None
    sweep.sweep(life.archive_expiry)
    assert world.points.find(NAME, point.recovery_point_id) is None
    assert point.blob_name not in world.blob_names() and copy_name not in world.blob_names()


class _Killed(Exception):
    pass


def test_a_step_in_flight_when_protection_stops_forever_is_finished_and_nothing_new_starts(world: World) -> None:
    (point,) = [p for p in world.record(world.backups(weeks=5)) if p.retention_tag == "Monthly"]
    assert point.archive_move is not None and point.archive_expiry is not None

    def die(step: SweepStep, p: RecoveryPoint) -> None:
        if step is SweepStep.BLOB_DONE and p.recovery_point_id == point.recovery_point_id:
            raise _Killed

    with pytest.raises(_Killed):
        RetentionSweep(world.state, world.blobs, on_step=die).sweep(point.archive_move)
    assert world.points.get(NAME, point.recovery_point_id).state is PointState.MOVING
    ProtectionService(world.state, world.blobs).stop(NAME, {"retainData": "forever"}, point.archive_move)

    RetentionSweep(world.state, world.blobs).sweep(point.archive_expiry + timedelta(days=1))
    moved = world.points.get(NAME, point.recovery_point_id)
    assert (moved.state, moved.datastore) == (PointState.ARCHIVED, DataStore.ARCHIVE_STORE)  # not deleted: held
    moves = [j for j in JobStore(world.state).history(NAME) if j.operation is Operation.ARCHIVE_MOVE]
    assert [j.status for j in moves] == [JobStatus.COMPLETED]
