"""Job records on a real Azurite table: transitions, ETags, ids, listing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.errors import ErrorCode, TransientError, UserError
from shared.jobs import (
    TRANSITIONS,
    IllegalTransition,
    Job,
    JobError,
    JobStatus,
    JobStore,
    Operation,
    Step,
    StepStatus,
    job_time,
    new_job_id,
)
from shared.storage.tables import ETagMismatch, StateTable

pytestmark = pytest.mark.integration
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def jobs(state_table: StateTable) -> JobStore:
    return JobStore(state_table)


def _job(at: datetime, instance: str = "orders", op: Operation = Operation.BACKUP, key: str | None = None) -> Job:
    return Job(new_job_id(at, key), op, instance, JobStatus.IN_PROGRESS, at)


def test_job_id_says_when_it_was_created_and_later_ids_sort_first() -> None:
    a, b = new_job_id(T0), new_job_id(T0 + timedelta(milliseconds=1))
    assert job_time(a) == T0
    assert b < a


def test_same_key_gives_same_id_and_a_second_create_returns_the_first(jobs: JobStore) -> None:
    first, created = jobs.create(_job(T0, key="orders@2026-03-01T12:00Z"))
    again, created_again = jobs.create(_job(T0, key="orders@2026-03-01T12:00Z"))
    assert created and not created_again
    assert again.job_id == first.job_id


def test_finished_job_never_goes_back_to_in_progress(jobs: JobStore) -> None:
    job, _ = jobs.create(_job(T0))
    done = jobs.finish(job, JobStatus.COMPLETED, T0 + timedelta(minutes=1))
    with pytest.raises(IllegalTransition):
        jobs.save(done, status=JobStatus.IN_PROGRESS)
    with pytest.raises(IllegalTransition):
        jobs.finish(done, JobStatus.FAILED, T0)
    assert all(not TRANSITIONS[s] for s in JobStatus if s.finished)


def test_two_workers_finishing_one_job_have_one_winner(jobs: JobStore) -> None:
    job, _ = jobs.create(_job(T0))
    jobs.finish(job, JobStatus.COMPLETED, T0 + timedelta(minutes=1))
    with pytest.raises(ETagMismatch):
        jobs.finish(job, JobStatus.FAILED, T0 + timedelta(minutes=2), error=JobError("InternalError", "y", "z"))
    assert jobs.get(job.job_id).status is JobStatus.COMPLETED


def test_failed_job_keeps_its_error_and_public_shape(jobs: JobStore) -> None:
    job, _ = jobs.create(_job(T0))
    started = jobs.save(job, start_time=T0, bytes=5 * 2**40, progress=0.5)
    jobs.finish(
        started, JobStatus.FAILED, T0 + timedelta(seconds=90), error=JobError("UserErrorDBNotFound", "gone", "fix")
    )
    shown = jobs.get(job.job_id).to_dict()
    assert shown["status"] == "Failed"
    assert shown["error"] == {"code": "UserErrorDBNotFound", "message": "gone", "recommendedAction": "fix"}
    assert shown["bytes"] == 5 * 2**40
    assert shown["durationSeconds"] == 90
    assert shown["startTime"] == "2026-03-01T12:00:00Z"


def test_list_is_newest_first_within_days_and_filters(jobs: JobStore) -> None:
    made = []
    for i in range(10):
        at = T0 - timedelta(days=i, minutes=i)
        job, _ = jobs.create(
            _job(at, instance="a" if i % 2 else "b", op=Operation.VALIDATE if i == 3 else Operation.BACKUP)
        )
        made.append(job)
    listed = list(jobs.recent(T0, days=7))
    # Day 0 .. 6 back are inside 7 days; 7 days and 7 minutes back is not.
    assert [j.job_id for j in listed] == [j.job_id for j in made[:7]]
    assert {j.instance for j in jobs.recent(T0, instance="A")} == {"a"}
    assert [j.operation for j in jobs.recent(T0, operation=Operation.VALIDATE)] == [Operation.VALIDATE]
    assert list(jobs.recent(T0, status=JobStatus.FAILED)) == []
    assert [j.job_id for j in jobs.history("b")] == [j.job_id for j in made if j.instance == "b"]
    jobs.finish(jobs.get(made[1].job_id), JobStatus.FAILED, T0, error=JobError("InternalError", "y", "z"))
    shown = {j.job_id: j for j in jobs.history("a")}
    assert shown[made[1].job_id].status is JobStatus.FAILED and shown[made[1].job_id].error is not None


def test_unknown_or_malformed_job_id_is_not_found(jobs: JobStore) -> None:
    for bad in ("nope", "../x", new_job_id(T0)):
        with pytest.raises(UserError) as err:
            jobs.get(bad)
        assert err.value.code.value == "NotFound"


def test_a_message_for_a_job_not_recorded_yet_is_retried_then_dropped_on_its_last_try(jobs: JobStore) -> None:
    missing = new_job_id(T0)
    with pytest.raises(TransientError, match="not recorded yet"):
        jobs.for_delivery(missing, last_try=False)
    assert jobs.for_delivery(missing, last_try=True) is None
    job, _ = jobs.create(_job(T0))
    assert jobs.for_delivery(job.job_id, last_try=False) == jobs.get(job.job_id)


def test_failing_a_job_marks_its_running_steps_and_keeps_a_finished_job_as_it_is(jobs: JobStore) -> None:
    job, _ = jobs.create(_job(T0))
    steps = (Step("Check", StepStatus.COMPLETED, T0, T0), Step("Dump", StepStatus.IN_PROGRESS, T0))
    error = UserError(ErrorCode.DB_NOT_FOUND, "database 'orders' does not exist")
    failed = jobs.fail(job, error, T0 + timedelta(minutes=1), steps)
    assert failed.status is JobStatus.FAILED and failed.error is not None
    assert failed.error.code == "UserErrorDBNotFound"
    assert [s.status for s in failed.steps] == [StepStatus.COMPLETED, StepStatus.FAILED]
    assert failed.steps[1].end_time == T0 + timedelta(minutes=1)
    assert jobs.fail(failed, UserError(ErrorCode.INTERNAL, "late"), T0 + timedelta(minutes=2), []) == failed
