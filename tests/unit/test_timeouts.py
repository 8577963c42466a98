"""A run stopped by the host's function timeout is recognised on the retry, with advice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared.errors import ErrorCode
from shared.jobs import Job, JobStatus, Operation
from shared.settings import DEFAULT_FUNCTION_TIMEOUT, load_settings
from shared.timeouts import last_attempt_started, overran, with_attempt_started

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BASE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "PGVAULT_SCHEDULER_SCHEDULE": "0 */5 * * * *",
        "PGVAULT_RETENTION_SCHEDULE": "0 17 * * * *"}


def _job(started_ago: timedelta | None, status: JobStatus = JobStatus.IN_PROGRESS) -> Job:
    job = Job("j", Operation.BACKUP, "orders", status, NOW - timedelta(days=1))
    if started_ago is None:
        return job
    details = with_attempt_started(job, NOW - started_ago)
    return Job("j", Operation.BACKUP, "orders", status, job.created, details=details)


def test_an_attempt_started_a_full_timeout_ago_overran_and_the_error_says_what_to_change() -> None:
    error = overran(_job(timedelta(hours=2, seconds=1)), NOW, timedelta(hours=2))
    assert error is not None and error.code is ErrorCode.FUNCTION_TIMEOUT_EXCEEDED
    assert error.code.value == "UserErrorFunctionTimeoutExceeded"
    assert "2026-03-01T09:59:59+00:00" in error.message and "2:00:00" in error.message
    for advice in ("functionTimeout", "PGVAULT_FUNCTION_TIMEOUT", "Flex Consumption", "Elastic Premium"):
        assert advice in error.recommended_action


def test_an_attempt_with_time_left_a_job_without_attempts_or_no_limit_did_not_overrun() -> None:
    assert overran(_job(timedelta(minutes=119)), NOW, timedelta(hours=2)) is None
    assert overran(_job(None), NOW, timedelta(hours=2)) is None
    assert overran(_job(timedelta(days=3)), NOW, None) is None  # functionTimeout -1: no limit
    assert overran(_job(timedelta(days=3), JobStatus.COMPLETED), NOW, timedelta(hours=2)) is None


def test_each_attempt_is_numbered_and_keeps_the_other_details() -> None:
    job = Job("j", Operation.BACKUP, "orders", JobStatus.IN_PROGRESS, NOW, details={"trigger": "OnDemand"})
    first = with_attempt_started(job, NOW)
    second = with_attempt_started(Job("j", Operation.BACKUP, "orders", JobStatus.IN_PROGRESS, NOW, details=first),
                                  NOW + timedelta(minutes=40))
    assert first["trigger"] == second["trigger"] == "OnDemand"
    assert (first["attempt"]["number"], second["attempt"]["number"]) == (1, 2)
    assert last_attempt_started(
        Job("j", Operation.BACKUP, "orders", JobStatus.IN_PROGRESS, NOW, details=second)
    ) == NOW + timedelta(minutes=40)


def test_the_function_timeout_setting_defaults_to_host_json_and_reads_its_format() -> None:
    import json
    from pathlib import Path

    host = json.loads((Path(__file__).resolve().parents[2] / "host.json").read_text())
    assert host["functionTimeout"] == DEFAULT_FUNCTION_TIMEOUT
    assert load_settings(BASE).function_timeout == timedelta(minutes=30)
    assert load_settings({**BASE, "PGVAULT_FUNCTION_TIMEOUT": "1.02:00:00"}).function_timeout == timedelta(hours=26)
    assert load_settings({**BASE, "PGVAULT_FUNCTION_TIMEOUT": "-1"}).function_timeout is None


def test_a_malformed_function_timeout_is_named_at_start() -> None:
    import pytest

    from shared.errors import SettingsError

    for bad in ("30m", "00:75:00", "24:00:00", "00:00:00"):
        with pytest.raises(SettingsError) as err:
            load_settings({**BASE, "PGVAULT_FUNCTION_TIMEOUT": bad})
        assert set(err.value.problems) == {"PGVAULT_FUNCTION_TIMEOUT"}, bad
