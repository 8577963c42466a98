"""No job hangs, on Azurite: the split job row repaired, poisoned and lost messages end their job
Failed and free the instance, and a host with a wrong clock neither steals a lock nor deletes early.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.storage.queue import QueueClient

from shared.backup_times import BackupTimesReader
from shared.backups import QUEUED_WINDOW, BackupStarter
from shared.errors import ErrorCode, TransientError, UserError
from shared.hung_jobs import NEVER_TAKEN, HungJobs
from shared.instances import InstanceService, ProtectionStatus, Readiness
from shared.jobs import Job, JobStatus, JobStore
from shared.jobs.messages import JobMessage, read_payload
from shared.locks import InstanceLocks
from shared.policies import PolicyService
from shared.policy import lifecycle, tag_backup
from shared.recovery_points import RecoveryPoint, RecoveryPointStore, recovery_point_id
from shared.retention import RetentionSweep
from shared.storage import layout
from shared.storage.blobs import BlobStore
from shared.storage.clients import StorageAccount
from shared.storage.queues import QueueSender, message_text, queue_client
from shared.storage.tables import Entity, StateTable
from shared.validation import enqueue_validation
from tests.examples import EXAMPLES
from tests.integration.world import host_sends

pytestmark = pytest.mark.integration
NAME = "orders"
BODY = {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTagOverride": "Default"}}}


def _now() -> datetime:
    return datetime.now(UTC)


class SummariesDown(StateTable):
    """The real table on Azurite, except that while ``down`` every write to an instance's job index
    fails as the adapter fails when the table service does not answer. The job rows themselves are
    written: storage went away between a job's two writes."""

    down = False

    def _cut(self, pk: str) -> None:
        if self.down and pk.startswith("instjobs-"):
            raise TransientError("table storage unreachable during upsert: ServiceRequestError")

    def upsert(self, pk: str, rk: str, data: Mapping[str, Any]) -> Entity:
        self._cut(pk)
        return super().upsert(pk, rk, data)

    def insert(self, pk: str, rk: str, data: Mapping[str, Any]) -> Entity:
        self._cut(pk)
        return super().insert(pk, rk, data)

    def update(self, entity: Entity, data: Mapping[str, Any]) -> Entity:
        self._cut(entity.partition_key)
        return super().update(entity, data)


@dataclass
class World:
    account: StorageAccount
    state: SummariesDown
    queues: QueueSender
    names: dict[str, str]

    def backup_queue(self) -> QueueClient:
        return queue_client(self.account.queue_service(), layout.BACKUP_QUEUE)

    def on_demand(self, now: datetime | None = None) -> Job:
        """An on-demand backup as ``POST :backup`` starts it: recorded, then its message sent by the host."""
        return host_sends(self.queues, BackupStarter(self.state, self.queues).on_demand(NAME, BODY, now or _now()))


@pytest.fixture
def world(account: StorageAccount, unique: str) -> World:
    state = SummariesDown(account.table_service(), f"hung{unique}")
    state.ensure()
    queues = QueueSender(account.queue_service())
    for queue in layout.QUEUES:
        queues.ensure(queue)
        queue_client(account.queue_service(), queue).clear_messages()
    now = _now()
    PolicyService(state).put("weekly", json.loads((EXAMPLES / "sunday-default-only.json").read_text()), now)
    instances = InstanceService(state, lambda job, instance: None)
    spec = {"server": "db.example.com", "database": NAME, "secretUri": "env:PGVAULT_SECRET_X", "policyName": "weekly"}
    validation = instances.configure_one(NAME, spec, now, allow_env_secrets=True, vault_region=None).job
    assert validation is not None
    JobStore(state).finish(JobStore(state).get(validation.job_id), JobStatus.COMPLETED, now)
    current = instances.get(NAME)
    instances.save(current, replace(current, readiness=Readiness.SUCCESS, protection_status=ProtectionStatus.PROTECTED))
    return World(account, state, queues, {"table": state.name})


def _summary(state: StateTable, job: Job) -> str:
    entity = state.get(layout.instance_jobs(job.instance), job.job_id)
    assert entity is not None
    return str(entity["status"])


# --- the split job row ----------------------------------------------------------------------------


def test_a_summary_whose_write_was_lost_is_repaired_from_the_job_row_on_the_next_read(world: World) -> None:
    jobs = JobStore(world.state)
    job = world.on_demand()
    running = jobs.save(jobs.get(job.job_id), start_time=_now())
    world.state.down = True
    with pytest.raises(TransientError):  # the worker's finish: the job's row written, its summary not
        jobs.finish(running, JobStatus.COMPLETED, _now(), progress=1.0, recovery_point_id="rp-1")
    world.state.down = False
    assert jobs.get(job.job_id).status is JobStatus.COMPLETED
    assert _summary(world.state, job) == "InProgress"  # the split the storage failure left

    # The next read of the instance (GET /backupInstances/orders shows lastBackup from it) tells the truth.
    last = BackupTimesReader(world.state).last_backup(NAME)
    assert last is not None and last.job_id == job.job_id and last.status is JobStatus.COMPLETED
    assert last.recovery_point_id == "rp-1"
    assert _summary(world.state, job) == "Completed"  # and the summary is repaired for good
    assert [j.status for j in jobs.history(NAME) if j.job_id == job.job_id] == [JobStatus.COMPLETED]
    # The instance is not seen as busy: the next on-demand backup is accepted.
    assert world.on_demand().job_id != job.job_id


def test_a_late_summary_of_a_running_job_never_replaces_a_finished_one(world: World) -> None:
    jobs = JobStore(world.state)
    job = world.on_demand()
    jobs.finish(jobs.get(job.job_id), JobStatus.FAILED, _now())
    jobs.create(job)  # a repeated create (the request retried) re-indexes the job as it was read
    assert _summary(world.state, job) == "Failed"


# --- poisoned and lost messages -------------------------------------------------------------------


def test_a_poisoned_backup_message_fails_its_job_with_the_reason_and_frees_the_instance(world: World) -> None:
    jobs, locks = JobStore(world.state), InstanceLocks(world.state)
    job = world.on_demand()
    # What the last try left: the job InProgress, its lock still there (its release failed too).
    assert locks.acquire(NAME, job.job_id, _now(), attempt=5) is not None
    jobs.save(jobs.get(job.job_id), start_time=_now())
    with pytest.raises(UserError) as refused:
        world.on_demand()
    assert refused.value.code is ErrorCode.MAX_CONCURRENT_OPERATION_LIMIT_REACHED

    failed = HungJobs(world.state).fail_poisoned(job.job_id, layout.BACKUP_QUEUE, _now())
    assert failed is not None and failed.status is JobStatus.FAILED
    assert failed.error is not None and failed.error.code == ErrorCode.JOB_ABANDONED.value
    assert "retried 5 times" in failed.error.message and "pgvault-backup-poison" in failed.error.message
    assert jobs.get(job.job_id).status is JobStatus.FAILED
    assert _summary(world.state, job) == "Failed"
    assert locks.holder(NAME) is None
    assert world.on_demand().status is JobStatus.IN_PROGRESS  # accepted: 202 over HTTP
    # A second delivery of the poison message changes nothing.
    again = HungJobs(world.state).fail_poisoned(job.job_id, layout.BACKUP_QUEUE, _now())
    assert again is not None and again.etag == jobs.get(job.job_id).etag


def test_a_poisoned_backup_whose_try_recorded_its_point_completes_with_that_point(world: World, unique: str) -> None:
    blobs = BlobStore(world.account.blob_service(), f"pois-{unique}")
    blobs.ensure()
    job = world.on_demand()
    # A try committed the blob and recorded the point, then storage failed before the job was finished.
    point = _record_point(world, blobs, _now(), recovery_point_id(job.job_id))
    ended = HungJobs(world.state).fail_poisoned(job.job_id, layout.BACKUP_QUEUE, _now())
    assert ended is not None and ended.status is JobStatus.COMPLETED and ended.error is None
    assert ended.recovery_point_id == point.recovery_point_id


def test_a_poisoned_validation_message_fails_the_instances_readiness_too(world: World) -> None:
    job = InstanceService(world.state, enqueue_validation(world.queues)).revalidate(NAME, _now())
    HungJobs(world.state).fail_poisoned(job.job_id, layout.VALIDATE_QUEUE, _now())
    instance = InstanceService(world.state, lambda job, instance: None).get(NAME)
    assert instance.readiness is Readiness.FAILED
    assert instance.readiness_error is not None and instance.readiness_error["code"] == "JobAbandoned"
    assert JobStore(world.state).get(job.job_id).status is JobStatus.FAILED


def test_a_job_whose_message_was_lost_is_queued_again_once_then_failed(world: World) -> None:
    jobs = JobStore(world.state)
    job = world.on_demand()
    # A try started it and died before it took the lock; then the message is lost (the job is not one
    # that no worker ever took: test_a_request_whose_message_the_host_never_sent_... has those).
    job = jobs.save(jobs.get(job.job_id), start_time=_now())
    world.backup_queue().clear_messages()
    hung = HungJobs(world.state, world.queues, function_timeout=timedelta(minutes=30))
    late = hung.longest_delivery + timedelta(minutes=1)

    early = hung.sweep(_now() + timedelta(minutes=30))
    assert early.requeued == [] and early.failed == [] and jobs.get(job.job_id).status is JobStatus.IN_PROGRESS

    first = hung.sweep(_now() + late)
    assert first.requeued == [job.job_id] and first.failed == []
    messages = [json.loads(m.content) for m in world.backup_queue().receive_messages(max_messages=32)]
    assert messages == [{"jobId": job.job_id, "instance": NAME}]
    assert "requeued" in jobs.get(job.job_id).details
    world.backup_queue().clear_messages()  # lost again

    at = _now() + 2 * late
    second = hung.sweep(at)
    assert second.failed == [job.job_id] and second.requeued == []
    ended = jobs.get(job.job_id)
    assert ended.status is JobStatus.FAILED and ended.error is not None
    assert ended.error.code == "JobAbandoned" and "lost" in ended.error.message
    assert _summary(world.state, job) == "Failed"
    assert world.on_demand(_now()).status is JobStatus.IN_PROGRESS  # the instance is free
    # Nothing is left unfinished: the next scans start a week and a day back (the marker), not at the first day.
    marker = world.state.get(layout.HOUSEKEEPING, "scan-from")
    assert marker is not None and str(marker["partition"]) == f"jobs-{(at - timedelta(days=8)):%Y%m%d}"


def test_a_job_holding_a_live_lock_is_never_judged_hung(world: World) -> None:
    job = world.on_demand()
    assert InstanceLocks(world.state).acquire(NAME, job.job_id, _now()) is not None
    hung = HungJobs(world.state, world.queues)
    report = hung.sweep(_now() + timedelta(days=365))  # the lock was renewed just now, by storage's clock
    assert report.requeued == [] and report.failed == [] and report.waiting >= 1
    assert JobStore(world.state).get(job.job_id).status is JobStatus.IN_PROGRESS


# --- clock skew -------------------------------------------------------------------------------------


def test_a_host_whose_clock_is_ten_minutes_ahead_does_not_steal_a_live_lock(world: World) -> None:
    locks = InstanceLocks(world.state)
    assert locks.acquire(NAME, "job-1", _now()) is not None
    skewed = _now() + timedelta(minutes=10)
    assert locks.acquire(NAME, "job-2", skewed) is None
    holder = locks.holder(NAME, skewed)
    assert holder is not None and holder.job_id == "job-1" and not holder.stale()


def test_a_lock_left_unrenewed_is_taken_over_by_storage_time_whatever_the_hosts_clock(world: World) -> None:
    locks = InstanceLocks(world.state, stale_after=timedelta(seconds=1))
    assert locks.acquire(NAME, "job-1", _now()) is not None
    behind = _now() - timedelta(minutes=10)  # this host's clock lags: by it the lock looks fresh
    deadline = time.monotonic() + 30
    taken = None
    while taken is None and time.monotonic() < deadline:
        time.sleep(0.5)
        taken = locks.acquire(NAME, "job-2", behind)
    assert taken is not None


def _record_point(world: World, blobs: BlobStore, at: datetime, rp_id: str | None = None) -> RecoveryPoint:
    policy = PolicyService(world.state).get("weekly").policy
    tag = tag_backup(policy, at, [])
    rp_id = rp_id or "rp-" + at.strftime("%Y%m%d%H%M%S")
    blob = f"{NAME}/{rp_id}.pgdump.zst"
    blobs.client.upload_blob(blob, b"a dump", overwrite=True)
    point = RecoveryPoint.from_lifecycle(
        rp_id,
        NAME,
        lifecycle(policy, tag, at),
        blob_name=blob,
        size_in_bytes=6,
        raw_bytes=6,
        sha256="0" * 64,
        server_version="15.8",
        pg_dump_version="pg_dump (PostgreSQL) 15.8",
        job_id=rp_id,
        on_demand=False,
    )
    added, _ = RecoveryPointStore(world.state).add(point)
    return added


def test_a_sweep_on_a_host_clock_a_year_ahead_refuses_and_deletes_nothing(world: World, unique: str) -> None:
    blobs = BlobStore(world.account.blob_service(), f"skew-{unique}")
    blobs.ensure()
    point = _record_point(world, blobs, _now() - timedelta(days=1))  # kept 3 months by the policy
    sweep = RetentionSweep(world.state, blobs)

    report = sweep.sweep_on_time(_now() + timedelta(days=365))
    assert report.refused is not None and "storage service" in report.refused
    assert report.acted == {}
    assert [p.recovery_point_id for p in RecoveryPointStore(world.state).of(NAME)] == [point.recovery_point_id]
    assert [b.name for b in blobs.client.list_blobs()] == [point.blob_name]

    on_time = sweep.sweep_on_time(_now())  # a right clock sweeps, at storage's time: nothing is due
    assert on_time.refused is None and on_time.acted == {}
    assert len(list(RecoveryPointStore(world.state).of(NAME))) == 1


def test_the_hung_jobs_sweep_refuses_on_a_skewed_clock(world: World) -> None:
    job = world.on_demand()
    world.backup_queue().clear_messages()
    report = HungJobs(world.state, world.queues).sweep_on_time(_now() + timedelta(days=365))
    assert report.refused is not None and report.failed == [] and report.requeued == []
    assert JobStore(world.state).get(job.job_id).status is JobStatus.IN_PROGRESS


def test_an_on_demand_backup_is_recorded_and_its_message_handed_back_not_sent(world: World) -> None:
    started = BackupStarter(world.state, world.queues).on_demand(NAME, BODY, _now())
    # The handler gives the message to the host's output binding, which sends it after the handler
    # returned: a worker that takes it at once finds its job.
    assert started.message == JobMessage(layout.BACKUP_QUEUE, started.job.job_id, NAME)
    assert JobStore(world.state).exists(started.job.job_id)
    assert world.backup_queue().peek_messages() == []
    # The text on the queue is QueueSender's, so the worker reads it as it always did.
    host_sends(world.queues, started)
    [message] = world.backup_queue().receive_messages(max_messages=32)
    assert message.content == started.message.text() == message_text(started.message.payload())
    assert read_payload(message.content) == {"jobId": started.job.job_id, "instance": NAME}


def test_a_request_whose_message_the_host_never_sent_is_queued_again_before_the_instance_is_free(
    world: World,
) -> None:
    jobs = JobStore(world.state)
    at = _now()
    # POST :backup recorded the job; the host's send through the output binding then failed (queue
    # storage did not answer): the request answered 500 and no message exists.
    lost = BackupStarter(world.state, world.queues).on_demand(NAME, BODY, at).job
    assert world.backup_queue().peek_messages() == []
    # The client retries: the job counts as queued, and the answer names it (the client can follow it).
    with pytest.raises(UserError) as refused:
        world.on_demand(at + timedelta(minutes=1))
    assert refused.value.code is ErrorCode.MAX_CONCURRENT_OPERATION_LIMIT_REACHED
    assert lost.job_id in refused.value.message
    hung = HungJobs(world.state, world.queues, function_timeout=timedelta(minutes=30))
    assert hung.sweep(at + NEVER_TAKEN - timedelta(seconds=30)).requeued == []
    # Within the sweep after NEVER_TAKEN (minutes, not longest_delivery's hours) it is sent again,
    # while it still counts as running: no second backup of the instance starts beside it.
    swept = at + NEVER_TAKEN + timedelta(minutes=1)
    assert hung.sweep(swept).requeued == [lost.job_id]
    messages = [read_payload(m.content) for m in world.backup_queue().receive_messages(max_messages=32)]
    assert messages == [{"jobId": lost.job_id, "instance": NAME}]
    assert swept < lost.created + QUEUED_WINDOW
    with pytest.raises(UserError):
        world.on_demand(swept)
    assert jobs.get(lost.job_id).status is JobStatus.IN_PROGRESS and "requeued" in jobs.get(lost.job_id).details
    # Sent once only: silent again, it waits longest_delivery before it is failed.
    assert hung.sweep(swept + timedelta(minutes=30)).requeued == []
