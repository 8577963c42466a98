"""The scheduler over simulated weeks (``now`` is a parameter), on Azurite."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.backups import BackupStarter
from shared.instances import InstanceService, Readiness
from shared.jobs import JobStatus, JobStore, Operation
from shared.storage import layout
from shared.storage.clients import StorageAccount
from shared.storage.queues import QueueSender, queue_client
from shared.storage.tables import StateTable
from tests.integration.world import Storage

pytestmark = pytest.mark.integration
START = datetime(2025, 1, 6, 0, 0, tzinfo=UTC)  # a Monday; the example runs Mon/Wed/Fri 22:00 UTC


@pytest.fixture
def world(storage: Storage) -> tuple[StateTable, QueueSender, StorageAccount]:
    storage.put_policy("mwf", "weekly-mon-wed-fri-with-archive", START)
    spec = {"server": "db.example.com", "database": "orders", "secretUri": "env:PGVAULT_SECRET_X", "policyName": "mwf"}
    storage.protect("orders", spec, START)
    return storage.state, storage.queues, storage.account


def _backup_jobs(state: StateTable, now: datetime) -> list:  # type: ignore[type-arg]
    return list(JobStore(state).recent(now, days=60, instance="orders", operation=Operation.BACKUP))


def test_three_weeks_of_ticks_make_one_job_per_slot(world: tuple[StateTable, QueueSender, StorageAccount]) -> None:
    state, queues, account = world
    queue = queue_client(account.queue_service(), layout.BACKUP_QUEUE)
    queue.clear_messages()  # the queue is shared with other tests of this session
    starter = BackupStarter(state, queues)
    now = START
    end = START + timedelta(weeks=3)
    while now < end:
        starter.schedule(now)
        starter.schedule(now)  # the timer firing twice changes nothing
        now += timedelta(hours=1)
    jobs = _backup_jobs(state, end)
    slots = sorted(j.details["slot"] for j in jobs)
    assert len(slots) == 9 == len(set(slots))  # Mon/Wed/Fri for three weeks
    assert all(j.status is JobStatus.IN_PROGRESS and "skipped" not in j.details for j in jobs)
    assert slots[0] == "2025-01-06T22:00:00Z"
    messages = list(queue.peek_messages(max_messages=32))
    assert sorted(json.loads(m.content)["jobId"] for m in messages) == sorted(j.job_id for j in jobs)


def test_after_a_three_week_gap_only_the_latest_slot_runs_and_the_rest_are_skipped(
    world: tuple[StateTable, QueueSender, StorageAccount],
) -> None:
    state, queues, _ = world
    starter = BackupStarter(state, queues)
    starter.schedule(START)
    back = START + timedelta(weeks=3, hours=1)
    started = starter.schedule(back)
    assert len(started) == 1 and started[0].details["slot"] == "2025-01-24T22:00:00Z"
    jobs = _backup_jobs(state, back)
    skipped = [j for j in jobs if j.status is JobStatus.CANCELLED]
    assert len(skipped) == 8 and all("skipped" in j.details for j in skipped)
    # And nothing again at the next tick.
    assert starter.schedule(back + timedelta(minutes=5)) == []


def test_instances_not_ready_or_not_protected_are_not_scheduled(
    world: tuple[StateTable, QueueSender, StorageAccount],
) -> None:
    state, queues, _ = world
    instances = InstanceService(state, lambda job, instance: None)
    current = instances.get("orders")
    instances.save(current, replace(current, readiness=Readiness.FAILED))
    assert BackupStarter(state, queues).schedule(START + timedelta(weeks=1)) == []
    assert _backup_jobs(state, START + timedelta(weeks=1)) == []
