"""Alerts on Azurite delivered over real HTTP to a local receiver: a receiver that is down at first
gets the alert later, exactly once; a missed scheduled backup (no job at all) reaches it too."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from shared.alerts.model import AlertKind, DeliveryState
from shared.alerts.service import AlertService
from shared.alerts.store import AlertStore
from shared.errors import ErrorCode, UserError
from shared.jobs import Job, JobStatus, JobStore, Operation, new_job_id
from shared.storage.memory import MemoryBlobStore
from shared.storage.tables import StateTable
from tests import retention_travel as travel
from tests.webhook_receiver import WebhookReceiver


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.stop()


def test_a_receiver_that_is_down_at_first_gets_the_alert_later_exactly_once(
    state_table: StateTable, receiver: WebhookReceiver
) -> None:
    at = travel.START
    jobs = JobStore(state_table)
    job, _ = jobs.create(Job(new_job_id(at), Operation.BACKUP, "orders", JobStatus.IN_PROGRESS, at))
    jobs.fail(job, UserError(ErrorCode.SERVER_CONNECTION_CLOSED, "the server closed the connection"), at)
    service = AlertService(state_table, vault_name="vault-it", webhook_url=receiver.url)
    now = at + timedelta(seconds=20)

    assert len(service.deliver(now).failed) == 1  # nothing listens yet
    (alert,) = AlertStore(state_table).page(at - timedelta(days=1))[0]
    assert alert.delivery is DeliveryState.PENDING and alert.last_error == "connection failed"
    assert str(receiver.port) not in (alert.last_error or "")  # the URL (often a token) is never kept

    receiver.start()
    assert service.deliver(now + timedelta(seconds=5)).delivered == []  # its retry is not due yet
    assert len(service.deliver(now + timedelta(seconds=31)).delivered) == 1
    for later in (60, 600, 7200):  # later timer runs send nothing again
        assert not service.deliver(now + timedelta(seconds=later)).delivered
    (document,) = receiver.documents
    assert document["jobId"] == job.job_id and document["errorCode"] == "UserErrorServerConnectionClosed"
    assert AlertStore(state_table).get(alert.alert_id).delivery is DeliveryState.DELIVERED  # type: ignore[union-attr]


def test_a_missed_scheduled_backup_with_no_job_at_all_reaches_the_receiver(
    state_table: StateTable, receiver: WebhookReceiver
) -> None:
    travel.build_world(state_table, MemoryBlobStore(), lambda: (state_table, MemoryBlobStore()))
    receiver.start()
    service = AlertService(state_table, vault_name="vault-it", webhook_url=receiver.url, grace=timedelta(hours=2))
    monday_slot = travel.START + timedelta(hours=22)
    now = monday_slot + timedelta(hours=2, minutes=1)
    assert service.check(now) == {"jobs": 0, "missedBackups": 1}
    assert list(JobStore(state_table).recent(now, days=2, operation=Operation.BACKUP)) == []  # no backup job at all
    service.deliver(now)
    (document,) = receiver.documents
    assert document["kind"] == AlertKind.MISSED_BACKUP.value and document["instance"] == travel.NAME
    assert document["slot"] == "2025-01-06T22:00:00Z" and document["jobId"] is None
    assert "Missed scheduled backup" in document["text"]


def test_the_sweep_of_ended_jobs_finds_a_failed_job_whose_alert_was_lost_on_azurite(state_table: StateTable) -> None:
    at = travel.START
    jobs = JobStore(state_table)
    job, _ = jobs.create(Job(new_job_id(at), Operation.RESTORE, "orders", JobStatus.IN_PROGRESS, at))
    jobs.fail(job, UserError(ErrorCode.DATABASE_NAME_ALREADY_IN_USE, "database orders2 exists"), at)
    ok, _ = jobs.create(Job(new_job_id(at), Operation.BACKUP, "orders", JobStatus.IN_PROGRESS, at))
    jobs.finish(ok, JobStatus.COMPLETED, at)
    (lost,) = AlertStore(state_table).page(at - timedelta(days=1))[0]
    state_table.delete(state_table.get("alerts", lost.alert_id))  # type: ignore[arg-type]
    service = AlertService(state_table, vault_name="vault-it", webhook_url=None)
    (again,) = service.sweep_ended_jobs(at + timedelta(minutes=5))  # the filter on endTime and status, on Azurite
    assert again.alert_id == lost.alert_id and again.operation == "Restore"
    assert service.sweep_ended_jobs(at + timedelta(minutes=10)) == []
