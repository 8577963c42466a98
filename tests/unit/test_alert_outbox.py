"""Alerts on the in-memory state table: one alert per event, the backoff of deliveries, missed
scheduled backups found by time travel, privilege drift, corrupted points, the list's pages."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.alerts.model import AlertKind, DeliveryState, Severity
from shared.alerts.service import DELIVERY_WINDOW, AlertService, retry_delay
from shared.alerts.store import AlertStore
from shared.alerts.webhook import PostResult, document
from shared.errors import ErrorCode, SettingsError, UserError
from shared.instances import InstanceService, InstanceStore, ProtectionStatus, RetainData
from shared.jobs import Job, JobStatus, JobStore, Operation, new_job_id
from shared.recovery_points import RecoveryPointStore
from shared.settings import load_settings
from shared.storage.memory import MemoryBlobStore, MemoryTables
from shared.storage.tables import StateStore
from shared.validation import record_validation
from tests import retention_travel as travel

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
GRACE = timedelta(hours=6)


class Receiver:
    """A webhook as a poster: down (answers 503) until ``up`` is set; keeps what it got."""

    def __init__(self, up: bool = True) -> None:
        self.up = up
        self.got: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, url: str, body: dict[str, Any]) -> PostResult:
        if not self.up:
            return PostResult(False, "HTTP 503")
        self.got.append((url, body))
        return PostResult(True)


@pytest.fixture
def state() -> StateStore:
    return MemoryTables().table("state")


def _service(
    state: StateStore, receiver: Receiver | None = None, url: str | None = "https://hooks.example/x"
) -> AlertService:
    return AlertService(state, vault_name="vault1", webhook_url=url, grace=GRACE, poster=receiver or Receiver())


def _failed_backup(state: StateStore, at: datetime, instance: str = "orders") -> Job:
    jobs = JobStore(state)
    job, _ = jobs.create(Job(new_job_id(at), Operation.BACKUP, instance, JobStatus.IN_PROGRESS, at))
    error = UserError(ErrorCode.DB_USER_AUTH_FAILED, "password authentication failed for user backup")
    return jobs.fail(job, error, at + timedelta(minutes=2))


def _alerts(state: StateStore) -> list[Any]:
    alerts, _ = AlertStore(state).page(travel.START - timedelta(days=1), top=1000)
    return alerts


# ------------------------------------------------------------------ one alert per event


def test_a_failed_job_raises_one_alert_however_often_its_end_is_seen(state: StateStore) -> None:
    job = _failed_backup(state, T0)
    service = _service(state)
    # The sweep of ended jobs (the net under the hook) and a second finish find the alert there already.
    assert service.sweep_ended_jobs(T0 + timedelta(minutes=5)) == []
    assert JobStore(state).fail(JobStore(state).get(job.job_id), UserError(ErrorCode.INTERNAL, "x"), T0).status is (
        JobStatus.FAILED
    )
    (alert,) = _alerts(state)
    assert alert.kind is AlertKind.JOB_FAILED and alert.severity is Severity.ERROR
    assert (alert.job_id, alert.operation, alert.status) == (job.job_id, "Backup", "Failed")
    assert alert.error_code == "UserErrorDBUserAuthFailed" and alert.recommended_action
    assert alert.delivery is DeliveryState.PENDING


def test_completed_jobs_raise_nothing_and_warnings_raise_a_warning(state: StateStore) -> None:
    jobs = JobStore(state)
    ok, _ = jobs.create(Job(new_job_id(T0), Operation.BACKUP, "a", JobStatus.IN_PROGRESS, T0))
    jobs.finish(ok, JobStatus.COMPLETED, T0)
    warned, _ = jobs.create(Job(new_job_id(T0), Operation.RESTORE, "b", JobStatus.IN_PROGRESS, T0))
    jobs.finish(warned, JobStatus.COMPLETED_WITH_WARNINGS, T0)
    (alert,) = _alerts(state)
    assert alert.kind is AlertKind.JOB_COMPLETED_WITH_WARNINGS and alert.severity is Severity.WARNING
    assert alert.instance == "b" and alert.operation == "Restore"


def test_the_sweep_raises_the_alert_of_a_job_whose_hook_could_not_record_it(state: StateStore) -> None:
    job = _failed_backup(state, T0)
    (lost,) = _alerts(state)
    state.delete(state.get("alerts", lost.alert_id))  # as if the hook's write had failed
    (again,) = _service(state).sweep_ended_jobs(T0 + timedelta(minutes=5))
    assert again.alert_id == lost.alert_id and again.job_id == job.job_id


# ------------------------------------------------------------------ delivery


def test_retry_delays_double_from_30_seconds_up_to_an_hour() -> None:
    assert [retry_delay(n).total_seconds() for n in range(1, 10)] == [
        30,
        60,
        120,
        240,
        480,
        960,
        1920,
        3600,
        3600,
    ]


def test_a_webhook_that_is_down_gets_the_alert_later_once(state: StateStore) -> None:
    _failed_backup(state, T0)
    receiver = Receiver(up=False)
    service = _service(state, receiver)
    now = T0 + timedelta(minutes=3)
    assert service.deliver(now).failed
    (alert,) = _alerts(state)
    assert (alert.delivery, alert.attempts, alert.last_error) == (DeliveryState.PENDING, 1, "HTTP 503")
    assert alert.next_attempt == now + timedelta(seconds=30)
    receiver.up = True
    assert not service.deliver(now + timedelta(seconds=10)).to_dict()["delivered"]  # not due yet
    assert service.deliver(now + timedelta(seconds=31)).delivered == [alert.alert_id]
    for later in (1, 60, 3600):
        assert service.deliver(now + timedelta(seconds=later + 31)).to_dict() == {
            "delivered": 0,
            "failed": 0,
            "abandoned": 0,
            "not_configured": 0,
        }
    assert len(receiver.got) == 1
    (delivered,) = _alerts(state)
    assert delivered.delivery is DeliveryState.DELIVERED and delivered.attempts == 2


def test_an_alert_the_webhook_refuses_for_a_day_is_abandoned(state: StateStore) -> None:
    _failed_backup(state, T0)
    service = _service(state, Receiver(up=False))
    now, tries = T0 + timedelta(minutes=2), 0
    while _alerts(state)[0].delivery is DeliveryState.PENDING:
        report = service.deliver(now)
        tries += len(report.failed) + len(report.abandoned)
        now += timedelta(minutes=10)
        assert now < T0 + DELIVERY_WINDOW + timedelta(hours=2)
    (alert,) = _alerts(state)
    assert alert.delivery is DeliveryState.ABANDONED and alert.last_error == "HTTP 503"
    assert tries == alert.attempts < 40  # backoff: about 30 tries in a day, not one per timer run


def test_without_a_webhook_alerts_are_recorded_as_not_configured(state: StateStore) -> None:
    _failed_backup(state, T0)
    assert _service(state, url=None).deliver(T0 + timedelta(minutes=3)).not_configured
    assert _alerts(state)[0].delivery is DeliveryState.NOT_CONFIGURED
    assert not _service(state).deliver(T0 + timedelta(minutes=4)).delivered  # settled: not sent later


def test_the_webhook_document_has_the_documented_fields_and_no_secret(state: StateStore) -> None:
    job = _failed_backup(state, T0)
    body = document(_alerts(state)[0], "vault1", "https://app.example.net")
    assert body["vault"] == "vault1" and body["instance"] == "orders" and body["jobId"] == job.job_id
    assert (body["operation"], body["status"], body["errorCode"]) == ("Backup", "Failed", "UserErrorDBUserAuthFailed")
    assert body["errorMessage"] and body["recommendedAction"] and body["time"].endswith("Z")
    assert body["link"] == f"https://app.example.net/api/backupJobs/{job.job_id}"
    assert "orders" in body["text"] and "Backup job failed" not in body["text"] and "Job failed" in body["text"]
    assert all(isinstance(v, str | None) for v in body.values())
    assert "secretUri" not in body and "password=" not in json.dumps(body).lower()


# ------------------------------------------------------------------ missed backups


def test_a_missed_slot_raises_an_alert_even_when_no_job_ran(state: StateStore) -> None:
    world = travel.build_world(state, MemoryBlobStore(), lambda: (state, MemoryBlobStore()))
    monday, wednesday = travel.START + timedelta(hours=22), travel.START + timedelta(days=2, hours=22)
    world.record_until(monday + timedelta(minutes=5), travel.START + timedelta(weeks=1))  # Monday's backup only
    service = _service(state)
    # Monday's slot succeeded; Wednesday's has no backup and no job at all (the vault was down).
    assert service.check(wednesday + GRACE - timedelta(minutes=1)) == {"jobs": 0, "missedBackups": 0}
    assert service.check(wednesday + GRACE + timedelta(minutes=1)) == {"jobs": 0, "missedBackups": 1}
    (alert,) = _alerts(state)
    assert alert.kind is AlertKind.MISSED_BACKUP and alert.slot == wednesday and alert.instance == travel.NAME
    assert alert.time == wednesday + GRACE and alert.job_id is None
    # Judged once: later checks, and a second process's check of the same slot, raise nothing more.
    assert service.check(wednesday + GRACE + timedelta(minutes=6))["missedBackups"] == 0
    state.delete(state.get("alertcheck", travel.NAME))
    assert service.check(wednesday + GRACE + timedelta(minutes=7))["missedBackups"] == 0
    assert len(_alerts(state)) == 1


def test_a_week_without_the_vault_raises_one_alert_per_missed_slot(state: StateStore) -> None:
    travel.build_world(state, MemoryBlobStore(), lambda: (state, MemoryBlobStore()))
    now = travel.START + timedelta(weeks=1, hours=12)  # the next Monday noon: Mon, Wed, Fri missed
    assert _service(state).check(now)["missedBackups"] == 3
    assert sorted(a.slot.weekday() for a in _alerts(state)) == [0, 2, 4]


def test_a_slot_backed_up_late_but_within_the_grace_is_not_missed(state: StateStore) -> None:
    world = travel.build_world(state, MemoryBlobStore(), lambda: (state, MemoryBlobStore()))
    world.record_until(travel.START + timedelta(days=5), travel.START + timedelta(weeks=1))
    assert _service(state).check(travel.START + timedelta(days=5))["missedBackups"] == 0


def test_a_stopped_instance_misses_no_backups_and_its_stop_is_never_judged_later(state: StateStore) -> None:
    travel.build_world(state, MemoryBlobStore(), lambda: (state, MemoryBlobStore()))
    instances = InstanceStore(state)
    current = instances.get(travel.NAME)
    instances.save(
        current, replace(current, protection_status=ProtectionStatus.STOPPED, retain_data=RetainData.FOREVER)
    )
    service = _service(state)
    assert service.check(travel.START + timedelta(weeks=1))["missedBackups"] == 0
    current = instances.get(travel.NAME)
    instances.save(current, replace(current, protection_status=ProtectionStatus.PROTECTED, retain_data=None))
    # Resumed on the next Monday: only its slots after the resume can be missed (Monday 22:00's, by Wednesday).
    assert service.check(travel.START + timedelta(weeks=1, days=2))["missedBackups"] == 1
    assert [a.slot for a in _alerts(state)] == [travel.START + timedelta(weeks=1, hours=22)]


# ------------------------------------------------------------------ privilege drift and corruption


def _validated(state: StateStore, failure: UserError | None, at: datetime) -> Job:
    service = InstanceService(state, lambda job, instance: None)
    if service.store.find("pay") is None:
        spec = {"server": "db.example.com", "database": "pay", "secretUri": "env:PGVAULT_SECRET_X", "policyName": "p"}
        travel.build_world(state, MemoryBlobStore(), lambda: (state, MemoryBlobStore()))  # the policy
        service.configure_one("pay", {**spec, "policyName": "mwf"}, at, allow_env_secrets=True, vault_region=None)
        job = JobStore(state).get(service.get("pay").readiness_job_id or "")
    else:
        job = service.revalidate("pay", at)
    instances = InstanceStore(state)
    return record_validation(
        JobStore(state), instances, job, instances.get("pay"), steps=(), failure=failure, details={}, now=at
    )


def test_a_validation_that_turns_from_success_to_failed_raises_privilege_drift(state: StateStore) -> None:
    missing = UserError(ErrorCode.MISSING_DB_PERMISSIONS, "user backup lacks SELECT on public.orders")
    _validated(state, None, T0)
    assert _alerts(state) == []
    drifted = _validated(state, missing, T0 + timedelta(days=1))
    assert drifted.details["privilegeDrift"]["previousJobId"]
    (alert,) = _alerts(state)
    assert alert.kind is AlertKind.PRIVILEGE_DRIFT and alert.job_id == drifted.job_id
    assert alert.error_code == "UserErrorMissingDBPermissions" and "drift" in alert.message
    # Failed again: no drift (it did not turn), an ordinary failed validation.
    _validated(state, missing, T0 + timedelta(days=2))
    assert [a.kind for a in _alerts(state)] == [AlertKind.JOB_FAILED, AlertKind.PRIVILEGE_DRIFT]


def test_a_first_validation_that_fails_is_a_failed_job_not_drift(state: StateStore) -> None:
    _validated(state, UserError(ErrorCode.DB_USER_AUTH_FAILED, "password authentication failed"), T0)
    assert [a.kind for a in _alerts(state)] == [AlertKind.JOB_FAILED]


def test_a_point_marked_corrupted_raises_one_alert(state: StateStore) -> None:
    world = travel.build_world(state, MemoryBlobStore(), lambda: (state, MemoryBlobStore()))
    world.record_until(travel.START + timedelta(days=1), travel.START + timedelta(weeks=1))
    points = RecoveryPointStore(state)
    (point,) = points.of(travel.NAME)
    at = travel.START + timedelta(days=3)
    points.mark_corrupted(travel.NAME, point.recovery_point_id, "sha256 mismatch (restore job j1)", at)
    points.mark_corrupted(travel.NAME, point.recovery_point_id, "again", at + timedelta(hours=1))
    alerts, _ = AlertStore(state).page(travel.START, top=10)
    (alert,) = alerts
    assert alert.kind is AlertKind.RECOVERY_POINT_CORRUPTED and alert.recovery_point_id == point.recovery_point_id
    assert "sha256 mismatch" in alert.message and alert.time == at


# ------------------------------------------------------------------ the list, the settings


def test_the_alerts_list_pages_newest_first_and_refuses_an_altered_token(state: StateStore) -> None:
    for hours in range(5):
        _failed_backup(state, T0 + timedelta(hours=hours), instance=f"db{hours}")
    service = _service(state)
    now = T0 + timedelta(hours=6)
    first, token = service.page(now, 7, top=2)
    assert [a.instance for a in first] == ["db4", "db3"] and token
    second, token2 = service.page(now, 7, top=2, token=token)
    third, token3 = service.page(now, 7, top=2, token=token2)
    assert [a.instance for a in second + third] == ["db2", "db1", "db0"] and token3 is None
    assert [a.instance for a in service.page(now, 7)[0]] == ["db4", "db3", "db2", "db1", "db0"]
    later = service.page(now + timedelta(days=7, hours=-4), 7)[0]  # the window moves on with the clock
    assert [a.instance for a in later] == ["db4", "db3", "db2"]
    with pytest.raises(UserError) as err:
        service.page(now, 7, token=token[:-2] + "xx", target="continuationToken")
    assert err.value.code is ErrorCode.INVALID_REQUEST and err.value.target == "continuationToken"


BASE = {
    "AzureWebJobsStorage": "UseDevelopmentStorage=true",
    "PGVAULT_SCHEDULER_SCHEDULE": "0 */5 * * * *",
    "PGVAULT_RETENTION_SCHEDULE": "0 17 * * * *",
}


def test_alert_settings_are_checked_and_a_refused_webhook_url_is_not_repeated() -> None:
    loaded = load_settings(
        {
            **BASE,
            "PGVAULT_ALERT_WEBHOOK_URL": "http://127.0.0.1:8080/hook",
            "PGVAULT_MISSED_BACKUP_GRACE": "PT90M",
            "WEBSITE_HOSTNAME": "app.azurewebsites.net",
        }
    )
    assert loaded.alert_webhook_url == "http://127.0.0.1:8080/hook" and loaded.missed_backup_grace == timedelta(
        minutes=90
    )
    assert loaded.public_url == "https://app.azurewebsites.net" and "hook" not in repr(loaded)
    assert load_settings(BASE).missed_backup_grace == GRACE and load_settings(BASE).alert_webhook_url is None
    with pytest.raises(SettingsError) as err:
        load_settings(
            {
                **BASE,
                "PGVAULT_ALERT_WEBHOOK_URL": "http://hooks.example.com/T0/B0/sEcReT",
                "PGVAULT_MISSED_BACKUP_GRACE": "P1M",
            }
        )
    assert set(err.value.problems) == {"PGVAULT_ALERT_WEBHOOK_URL", "PGVAULT_MISSED_BACKUP_GRACE"}
    assert "sEcReT" not in str(err.value)


def test_each_new_alert_is_one_log_record_that_application_insights_keeps_as_a_custom_event(
    state: StateStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="shared.alerts.events"):
        job = _failed_backup(state, T0)
        _service(state).sweep_ended_jobs(T0 + timedelta(minutes=5))  # the same event again: no second record
    (record,) = [r for r in caplog.records if r.name == "shared.alerts.events"]
    dims = vars(record)
    assert dims["microsoft.custom_event.name"] == "PgVaultAlert"
    assert (dims["alert_kind"], dims["alert_instance"], dims["alert_job_id"]) == ("JobFailed", "orders", job.job_id)
    assert dims["alert_error_code"] == "UserErrorDBUserAuthFailed" and dims["alert_severity"] == "Error"
