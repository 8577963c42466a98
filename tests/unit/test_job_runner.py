"""The one job runner, without Azurite: on the in-memory state table (same ETag rules as the real one).

Each test runs a small ``Work`` through ``JobRunner`` and reads the job back from the store as a
reader of the API would: steps as they happen, the skeleton's outcomes (finished, cancelled,
timed out, busy, failed, retried), and the lock released whatever happened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest

from shared.cancel import request_cancel
from shared.errors import ErrorCode, PgVaultError, TransientError, UserError
from shared.jobs import (
    IllegalTransition,
    Job,
    JobStatus,
    JobStore,
    Operation,
    Step,
    StepStatus,
    new_job_id,
)
from shared.jobs.runner import JobRun, JobRunner, Work
from shared.locks import InstanceLocks
from shared.storage.memory import MemoryStateTable
from shared.timeouts import ATTEMPT

T0 = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


class Clock:
    """A clock that moves one second each time it is read (so every step takes time)."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


@dataclass
class Scripted(Work):
    """A work made of named steps; each step may look at the world or raise."""

    steps: list[tuple[str, Callable[[JobRun], None]]]
    key: str | None = "orders"
    kind: str = "test"
    calls: int = 0
    seen: list[Job] = field(default_factory=list)

    def lock_key(self, job: Job) -> str | None:
        return self.key

    def __call__(self, run: JobRun) -> Job:
        self.calls += 1
        for name, action in self.steps:
            run.begin(name)
            action(run)
            run.done()
        return run.finish(JobStatus.COMPLETED, progress=1.0)

    def translate(self, exc: Exception, run: JobRun) -> PgVaultError | None:
        if isinstance(exc, ConnectionResetError):
            return TransientError("the server went away")
        return None


@pytest.fixture
def state() -> MemoryStateTable:
    return MemoryStateTable()


def _job(state: MemoryStateTable, **changes: object) -> Job:
    job = Job(new_job_id(T0), Operation.BACKUP, "orders", JobStatus.IN_PROGRESS, T0, **changes)  # type: ignore[arg-type]
    return JobStore(state).create(job)[0]  # type: ignore[arg-type]


def _runner(state: MemoryStateTable, clock: Callable[[], datetime] | None = None, **kw: object) -> JobRunner:
    return JobRunner(state, clock or Clock(), **kw)  # type: ignore[arg-type]


def _nothing(run: JobRun) -> None:
    return None


def test_each_step_is_written_when_it_starts_and_when_it_ends(state: MemoryStateTable) -> None:
    job = _job(state)
    jobs = JobStore(state)  # type: ignore[arg-type]
    clock = Clock()
    seen: list[Job] = []

    def look(run: JobRun) -> None:
        seen.append(jobs.get(job.job_id))

    work = Scripted([("Check", look), ("Dump", look)])
    done = _runner(state, clock).run(job.job_id, work, last_try=False)
    assert done is not None and done.status is JobStatus.COMPLETED
    first, second = seen
    assert [(s.name, s.status) for s in first.steps] == [("Check", StepStatus.IN_PROGRESS)]
    assert first.steps[0].start_time is not None and first.steps[0].end_time is None
    assert [(s.name, s.status) for s in second.steps] == [
        ("Check", StepStatus.COMPLETED),
        ("Dump", StepStatus.IN_PROGRESS),
    ]
    assert second.current_step is not None and second.current_step.name == "Dump"
    assert first.start_time is not None and first.details[ATTEMPT]["number"] == 1
    # A reader while it runs: a duration up to now, the running step named; not 0 s.
    shown = second.to_dict(now=clock.now)
    assert shown["currentStep"] == "Dump" and shown["durationSeconds"] > 0
    assert shown["steps"][1] == {
        "name": "Dump",
        "status": "InProgress",
        "startTime": shown["steps"][1]["startTime"],
        "endTime": None,
    }
    assert all(s.status is StepStatus.COMPLETED and s.end_time for s in done.steps)
    assert InstanceLocks(state).holder("orders") is None  # type: ignore[arg-type]


def test_a_running_job_shows_its_rate_while_it_runs(state: MemoryStateTable) -> None:
    job = _job(state)
    jobs = JobStore(state)  # type: ignore[arg-type]
    started = jobs.save(job, start_time=T0, bytes=10_000_000, steps=(Step("Dump", start_time=T0),))
    shown = started.to_dict(now=T0 + timedelta(seconds=10))
    assert shown["durationSeconds"] == 10 and shown["throughputBytesPerSecond"] == 1_000_000
    assert Job._from(state.get(*_keys(job))).steps == started.steps  # type: ignore[arg-type]


def _keys(job: Job) -> tuple[str, str]:
    from shared.jobs import job_time, partition_for

    return partition_for(job_time(job.job_id)), job.job_id


def test_a_finished_job_is_left_as_it_is(state: MemoryStateTable) -> None:
    job = _job(state)
    finished = JobStore(state).finish(job, JobStatus.COMPLETED, T0)  # type: ignore[arg-type]
    work = Scripted([("Check", _nothing)])
    assert _runner(state).run(job.job_id, work, last_try=False) == finished
    assert work.calls == 0


def test_a_job_cancelled_while_queued_never_runs(state: MemoryStateTable) -> None:
    job = _job(state, start_time=T0)  # started once, so the request only marks it
    request_cancel(state, job.job_id, T0)  # type: ignore[arg-type]
    work = Scripted([("Check", _nothing)])
    ended = _runner(state).run(job.job_id, work, last_try=False)
    assert ended is not None and ended.status is JobStatus.CANCELLED and work.calls == 0


def test_a_cancel_while_it_runs_ends_it_cancelled_with_its_running_step(state: MemoryStateTable) -> None:
    job = _job(state)

    def cancel(run: JobRun) -> None:
        request_cancel(state, job.job_id, T0)  # type: ignore[arg-type]

    work = Scripted([("Check", cancel), ("Dump", _nothing)])
    ended = _runner(state).run(job.job_id, work, last_try=False)
    assert ended is not None and ended.status is JobStatus.CANCELLED
    # The cancel came during Check: its end (a write) found the job changed, and it stopped there.
    assert [(s.name, s.status) for s in ended.steps] == [("Check", StepStatus.CANCELLED)]
    assert InstanceLocks(state).holder("orders") is None  # type: ignore[arg-type]


def test_an_attempt_past_the_function_timeout_fails_the_job_and_never_runs_again(state: MemoryStateTable) -> None:
    job = _job(state, start_time=T0, details={ATTEMPT: {"number": 1, "started": T0.isoformat()}})
    work = Scripted([("Check", _nothing)])
    clock = Clock(T0 + timedelta(minutes=11))
    ended = _runner(state, clock, function_timeout=timedelta(minutes=10)).run(job.job_id, work, last_try=False)
    assert ended is not None and ended.status is JobStatus.FAILED and work.calls == 0
    assert ended.error is not None and ended.error.code == ErrorCode.FUNCTION_TIMEOUT_EXCEEDED.value


def test_a_lock_held_by_another_job_is_retried_then_fails_the_job_on_the_last_try(state: MemoryStateTable) -> None:
    job = _job(state)
    other = _job(state)
    assert InstanceLocks(state).acquire("orders", other.job_id, datetime.now(UTC)) is not None  # type: ignore[arg-type]
    work = Scripted([("Check", _nothing)])
    with pytest.raises(TransientError, match="retrying later"):
        _runner(state).run(job.job_id, work, last_try=False)
    ended = _runner(state).run(job.job_id, work, last_try=True)
    assert ended is not None and ended.status is JobStatus.FAILED and work.calls == 0
    assert ended.error is not None and ended.error.code == ErrorCode.MAX_CONCURRENT_OPERATION_LIMIT_REACHED.value


def test_a_second_delivery_of_a_job_running_elsewhere_is_dropped(state: MemoryStateTable) -> None:
    job = _job(state)
    assert InstanceLocks(state).acquire("orders", job.job_id, datetime.now(UTC), attempt=2) is not None  # type: ignore[arg-type]
    work = Scripted([("Check", _nothing)])
    dropped = _runner(state).run(job.job_id, work, last_try=True, attempt=2)
    assert dropped is not None and dropped.status is JobStatus.IN_PROGRESS and work.calls == 0


def test_a_user_error_fails_the_job_with_its_running_step_and_frees_the_lock(state: MemoryStateTable) -> None:
    job = _job(state)

    def refuse(run: JobRun) -> None:
        raise UserError(ErrorCode.DB_NOT_FOUND, "database 'orders' does not exist")

    ended = _runner(state).run(job.job_id, Scripted([("Check", _nothing), ("Dump", refuse)]), last_try=False)
    assert ended is not None and ended.status is JobStatus.FAILED
    assert ended.error is not None and ended.error.code == "UserErrorDBNotFound"
    assert [(s.name, s.status) for s in ended.steps] == [("Check", StepStatus.COMPLETED), ("Dump", StepStatus.FAILED)]
    assert ended.steps[1].end_time is not None
    assert InstanceLocks(state).holder("orders") is None  # type: ignore[arg-type]


def test_a_transient_error_is_noted_and_retried_then_fails_the_job_on_the_last_try(state: MemoryStateTable) -> None:
    job = _job(state)

    def drop(run: JobRun) -> None:
        raise ConnectionResetError("reset by peer")  # a driver's error, translated by the work

    work = Scripted([("Dump", drop)])
    with pytest.raises(TransientError, match="went away"):
        _runner(state).run(job.job_id, work, last_try=False, attempt=1)
    noted = JobStore(state).get(job.job_id)  # type: ignore[arg-type]
    assert noted.status is JobStatus.IN_PROGRESS and [r["attempt"] for r in noted.details["retries"]] == [1]
    assert InstanceLocks(state).holder("orders") is None  # type: ignore[arg-type]
    ended = _runner(state).run(job.job_id, work, last_try=True, attempt=2)
    assert ended is not None and ended.status is JobStatus.FAILED and ended.details[ATTEMPT]["number"] == 2
    assert [(s.name, s.status) for s in ended.steps] == [("Dump", StepStatus.FAILED)]


def test_a_foreign_error_the_work_does_not_translate_goes_through(state: MemoryStateTable) -> None:
    job = _job(state)

    def bug(run: JobRun) -> None:
        raise KeyError("a bug")

    with pytest.raises(KeyError):
        _runner(state).run(job.job_id, Scripted([("Dump", bug)]), last_try=False)
    assert InstanceLocks(state).holder("orders") is None  # type: ignore[arg-type]


def test_another_writer_of_the_job_does_not_stop_the_worker_holding_its_lock(state: MemoryStateTable) -> None:
    """A try that lost the lock notes its retry on the job: the try holding the lock writes over it."""
    job = _job(state)
    jobs = JobStore(state)  # type: ignore[arg-type]

    def note(run: JobRun) -> None:
        fresh = jobs.get(job.job_id)
        jobs.save(fresh, details={**fresh.details, "retries": [{"attempt": 1}]})

    ended = _runner(state).run(job.job_id, Scripted([("Dump", note), ("Commit", _nothing)]), last_try=False)
    assert ended is not None and ended.status is JobStatus.COMPLETED
    assert ended.details["retries"] == [{"attempt": 1}]
    assert [s.name for s in ended.steps] == ["Dump", "Commit"]


def test_a_worker_whose_lock_was_taken_over_stops_and_the_queue_retries(state: MemoryStateTable) -> None:
    job = _job(state)
    jobs = JobStore(state)  # type: ignore[arg-type]

    def taken_over(run: JobRun) -> None:
        InstanceLocks(state).acquire("orders", job.job_id, datetime.now(UTC), attempt=2)  # type: ignore[arg-type]
        fresh = jobs.get(job.job_id)
        jobs.save(fresh, details={**fresh.details, "other": True})  # the new try's start

    with pytest.raises(TransientError, match="taken over"):
        _runner(state).run(job.job_id, Scripted([("Dump", taken_over)]), last_try=False)
    assert jobs.get(job.job_id).status is JobStatus.IN_PROGRESS
    holder = InstanceLocks(state).holder("orders")  # type: ignore[arg-type]
    assert holder is not None and holder.job_id == job.job_id  # the new try's lock stays


def test_a_job_without_a_lock_runs_without_a_heartbeat(state: MemoryStateTable) -> None:
    job = _job(state)
    seen: list[object] = []
    ended = _runner(state).run(
        job.job_id, Scripted([("Check", lambda run: seen.append(run.heartbeat))], key=None), last_try=False
    )
    assert ended is not None and ended.status is JobStatus.COMPLETED and seen == [None]


def test_a_job_never_recorded_is_retried_then_dropped(state: MemoryStateTable) -> None:
    missing = new_job_id(T0)
    with pytest.raises(TransientError, match="not recorded yet"):
        _runner(state).run(missing, Scripted([]), last_try=False)
    assert _runner(state).run(missing, Scripted([]), last_try=True) is None


def test_the_transition_table_refuses_to_move_a_finished_job(state: MemoryStateTable) -> None:
    job = _job(state)
    jobs = JobStore(state)  # type: ignore[arg-type]
    done = jobs.finish(job, JobStatus.COMPLETED, T0)
    with pytest.raises(IllegalTransition):
        jobs.save(done, status=JobStatus.IN_PROGRESS)
    with pytest.raises(IllegalTransition):
        jobs.finish(done, JobStatus.FAILED, T0)
    with pytest.raises(IllegalTransition):
        jobs.finish(job, JobStatus.IN_PROGRESS, T0)


def test_steps_keep_their_shape_through_the_table(state: MemoryStateTable) -> None:
    step = Step("CheckPrivileges", StepStatus.COMPLETED, T0, T0 + timedelta(seconds=2), warnings=("w",))
    earlier = Step("Commit", StepStatus.COMPLETED, T0, T0, by_earlier_try=True)
    job = JobStore(state).save(_job(state), steps=(step, earlier))  # type: ignore[arg-type]
    again = JobStore(state).get(job.job_id)  # type: ignore[arg-type]
    assert again.steps == (step, earlier)
    assert again.to_dict()["steps"] == [
        {
            "name": "CheckPrivileges",
            "status": "Completed",
            "startTime": "2026-03-02T10:00:00Z",
            "endTime": "2026-03-02T10:00:02Z",
            "warnings": ["w"],
        },
        {
            "name": "Commit",
            "status": "Completed",
            "startTime": "2026-03-02T10:00:00Z",
            "endTime": "2026-03-02T10:00:00Z",
            "byEarlierTry": True,
        },
    ]
    # A step stored by an earlier version (times with +00:00, no endTime) reads the same way.
    assert Step.from_dict({"name": "Dump", "status": "InProgress", "startTime": T0.isoformat()}) == Step(
        "Dump", StepStatus.IN_PROGRESS, T0
    )


class _ChangesWhileRead(dict[str, str]):
    """An environment whose read runs ``during`` first: something else happens while a job reads its secret."""

    def __init__(self, during: Callable[[], None]) -> None:
        super().__init__()
        self._during = during

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self._during()
        return super().get(key, default)


def test_a_validation_that_fails_after_its_instance_changed_leaves_the_instance_as_the_change_left_it(
    state: MemoryStateTable,
) -> None:
    """A validation decides about the instance it read: changed meanwhile (stopped, reconfigured), the
    change stands and whoever made it can go on with its own ETag (a stop with delete purges next)."""
    import json
    from dataclasses import replace

    from shared.instances import InstanceService, ProtectionStatus
    from shared.policies import PolicyService
    from shared.secrets import EnvSecretProvider
    from shared.validation import ValidationService
    from tests.examples import EXAMPLES

    policy = json.loads((EXAMPLES / "sunday-default-only.json").read_text())
    PolicyService(state).put("sunday", policy, T0)  # type: ignore[arg-type]
    instances = InstanceService(state, lambda job, instance: None)  # type: ignore[arg-type]
    spec = {"server": "db.invalid", "database": "orders", "secretUri": "env:PGVAULT_SECRET_X", "policyName": "sunday"}
    instances.configure_one("orders", spec, T0, allow_env_secrets=True, vault_region=None)
    job_id = instances.get("orders").readiness_job_id
    assert job_id is not None
    changed: list[object] = []

    def stop() -> None:
        current = instances.get("orders")
        changed.append(instances.save(current, replace(current, protection_status=ProtectionStatus.STOPPED)))

    secrets = EnvSecretProvider(True, _ChangesWhileRead(stop))
    ended = ValidationService(state, secrets, Clock()).run(job_id, last_try=False)  # type: ignore[arg-type]
    assert ended is not None and ended.status is JobStatus.FAILED
    assert ended.error is not None and ended.error.code == ErrorCode.INVALID_SECRET.value
    after = instances.get("orders")
    assert after.etag == changed[0].etag  # type: ignore[attr-defined]


def test_a_validation_of_an_instance_being_deleted_leaves_it_to_its_purge(state: MemoryStateTable) -> None:
    """Stopped with delete before its validation ran: the validation ends, the instance row stays as
    the stop left it (the purge that deletes it next holds that row's ETag)."""
    import json
    from dataclasses import replace

    from shared.instances import InstanceService, ProtectionStatus, RetainData
    from shared.policies import PolicyService
    from shared.secrets import EnvSecretProvider
    from shared.validation import ValidationService
    from tests.examples import EXAMPLES

    policy = json.loads((EXAMPLES / "sunday-default-only.json").read_text())
    PolicyService(state).put("sunday", policy, T0)  # type: ignore[arg-type]
    instances = InstanceService(state, lambda job, instance: None)  # type: ignore[arg-type]
    spec = {"server": "db.invalid", "database": "orders", "secretUri": "env:PGVAULT_SECRET_X", "policyName": "sunday"}
    instances.configure_one("orders", spec, T0, allow_env_secrets=True, vault_region=None)
    current = instances.get("orders")
    stopped = instances.save(
        current, replace(current, protection_status=ProtectionStatus.STOPPED, retain_data=RetainData.DELETE)
    )
    assert current.readiness_job_id is not None
    ended = ValidationService(state, EnvSecretProvider(True, {}), Clock()).run(current.readiness_job_id, last_try=False)  # type: ignore[arg-type]
    assert ended is not None and ended.status is JobStatus.FAILED
    assert instances.get("orders").etag == stopped.etag
