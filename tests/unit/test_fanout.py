"""Backup seats and the line (shared/fanout.py) on the in-memory table: the limits hold, a seat whose
holder died comes free, one whose worker beats stays taken, a freed seat goes to the next in line."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.backup_runner import BackupRunner
from shared.errors import SettingsError
from shared.fanout import ADMIT_GRACE, WAITING, BackupLimits, FanOut
from shared.jobs import Job, JobStatus, JobStore, Operation, new_job_id
from shared.locks import InstanceLocks
from shared.secrets import EnvSecretProvider
from shared.settings import load_settings
from shared.storage import layout
from shared.storage.memory import MemoryBlobStore, MemoryTables
from tests.unit.test_scheduler_tick import SLOT, RecordingQueues, _vault

T0 = datetime(2025, 3, 2, 12, 0, tzinfo=UTC)
DB = "db0.example.com:5432"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_a_server_seat_and_a_vault_seat_per_backup_and_no_more() -> None:
    state = MemoryTables().table("state")
    fan = FanOut(state, None, BackupLimits(per_server=2, vault=3))
    assert fan.reserve("j1", "a", DB, T0, state="running") is None
    assert fan.reserve("j2", "b", DB, T0, state="running") is None
    assert fan.reserve("j3", "c", DB, T0, state="running") == f"2 backups running on server {DB}"
    assert fan.reserve("j4", "d", "db1:5432", T0, state="running") is None
    assert (
        fan.reserve("j5", "e", "db2:5432", T0, state="running")
        == "3 backups running in the vault (PGVAULT_MAX_BACKUPS)"
    )
    assert fan.reserve("j1", "a", DB, T0, state="running") is None  # a job keeps the seats it holds
    seats = fan.seats(T0)
    assert seats.running == 3 and seats.running_on(DB) == 2
    # A refused job holds nothing; a job that ends gives both seats back.
    assert fan.seats(T0).of("j3") == [] and fan.release("j1", T0) == 2
    assert fan.reserve("j3", "c", DB, T0, state="running") is None


def test_a_seat_stays_taken_while_its_worker_beats_and_comes_free_when_it_stops() -> None:
    clock = Clock(T0)
    tables = MemoryTables(clock)
    state = tables.table("state")
    fan = FanOut(state, None, BackupLimits(per_server=1, vault=5))
    locks = InstanceLocks(state)
    lock = locks.acquire("a", "j1", clock())
    assert lock is not None
    assert fan.reserve("j1", "a", DB, clock(), state="running") is None
    # An hour on, the worker still renews its instance lock: the seat is its own.
    for _ in range(60):
        clock.now += timedelta(minutes=1)
        lock = locks.renew(lock, clock())
    assert fan.reserve("j2", "b", DB, clock(), state="running") == f"1 backups running on server {DB}"
    # The worker dies: once its lock is stale, the seat is taken over.
    clock.now += timedelta(minutes=3)
    assert fan.reserve("j2", "b", DB, clock(), state="running") is None
    assert sorted(e.row_key for e in fan.seats(clock()).of("j2")) == ["all|0", f"srv|{DB}|0"]


def test_a_seat_reserved_for_a_message_no_worker_took_comes_free_after_the_grace() -> None:
    state = MemoryTables().table("state")
    fan = FanOut(state, None, BackupLimits(per_server=1, vault=5))
    assert fan.reserve("j1", "a", DB, T0, state="admitted") is None
    assert fan.reserve("j2", "b", DB, T0 + ADMIT_GRACE, state="running") is not None
    assert fan.reserve("j2", "b", DB, T0 + ADMIT_GRACE + timedelta(seconds=1), state="running") is None


def test_a_freed_seat_goes_to_the_next_backup_in_slot_order() -> None:
    state, queues, starter = _vault(4, limits=BackupLimits(per_server=1, vault=5))
    now = SLOT + timedelta(minutes=1)
    starter.schedule(now)
    assert [m["instance"] for m in queues.sent] == ["i00000"]
    fan = FanOut(state, queues, BackupLimits(per_server=1, vault=5))  # type: ignore[arg-type]
    first = queues.sent[0]["jobId"]
    assert fan.reserve(first, "i00000", DB, now, state="running") is None  # its worker confirms the seat
    assert fan.dispatch(now) == []  # the server is busy
    fan.release(first, now)
    assert len(fan.dispatch(now)) == 1
    assert [m["instance"] for m in queues.sent] == ["i00000", "i00001"]


def _runner(state: object, queues: RecordingQueues, clock: Clock, limits: BackupLimits) -> BackupRunner:
    return BackupRunner(
        state,  # type: ignore[arg-type]
        MemoryBlobStore(),  # type: ignore[arg-type]
        EnvSecretProvider(True, {}),
        clock,
        queues=queues,  # type: ignore[arg-type]
        limits=limits,
    )


def test_a_backup_whose_server_is_busy_waits_in_line_saying_why_and_starts_when_the_seat_frees() -> None:
    limits = BackupLimits(per_server=1, vault=5)
    state, queues, _ = _vault(2, limits=limits)
    clock = Clock(SLOT)
    fan = FanOut(state, queues, limits)  # type: ignore[arg-type]
    assert fan.reserve("other", "i00000", DB, clock(), state="running") is None  # a backup runs on db0
    jobs = JobStore(state)  # type: ignore[arg-type]
    job, _ = jobs.create(
        Job(
            new_job_id(clock()),
            Operation.BACKUP,
            "i00001",
            JobStatus.IN_PROGRESS,
            clock(),
            details={"trigger": "OnDemand"},
        )
    )
    waited = _runner(state, queues, clock, limits).run(job.job_id, last_try=False)
    assert waited is not None and waited.status is JobStatus.IN_PROGRESS and waited.start_time is None
    assert waited.details[WAITING]["reason"] == f"waiting: 1 backups running on server {DB}"
    assert [e["jobId"] for e in state.inner.partition(layout.BACKLOG)] == [job.job_id]
    assert InstanceLocks(state).holder("i00001") is None  # type: ignore[arg-type]  # waiting holds no lock
    # The other backup ends: its seats go back and the line moves.
    fan.release("other", clock())
    assert fan.dispatch(clock()) == [job.job_id]
    assert queues.sent[-1] == {"jobId": job.job_id, "instance": "i00001"}
    assert list(state.inner.partition(layout.BACKLOG)) == []


def test_the_backup_limits_are_settings_with_defaults_and_every_bad_one_is_named() -> None:
    base = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "PGVAULT_SCHEDULER_SCHEDULE": "0 */5 * * * *",
        "PGVAULT_RETENTION_SCHEDULE": "0 17 * * * *",
    }
    s = load_settings(base)
    assert (s.max_backups_per_server, s.max_backups) == (2, 20)
    s = load_settings({**base, "PGVAULT_MAX_BACKUPS_PER_SERVER": "4", "PGVAULT_MAX_BACKUPS": "50"})
    assert (s.max_backups_per_server, s.max_backups) == (4, 50)
    with pytest.raises(SettingsError) as bad:
        load_settings({**base, "PGVAULT_MAX_BACKUPS_PER_SERVER": "0", "PGVAULT_MAX_BACKUPS": "many"})
    assert {"PGVAULT_MAX_BACKUPS_PER_SERVER", "PGVAULT_MAX_BACKUPS"} <= set(bad.value.problems)
    with pytest.raises(SettingsError) as low:
        load_settings({**base, "PGVAULT_MAX_BACKUPS_PER_SERVER": "5", "PGVAULT_MAX_BACKUPS": "3"})
    assert "at least PGVAULT_MAX_BACKUPS_PER_SERVER" in low.value.problems["PGVAULT_MAX_BACKUPS"]
