"""The scheduler's tick on the in-memory table: work proportional to what is due, the due index kept
right through policy changes, stop and resume, and the backfill of an index that was never built."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.backups import BackupStarter
from shared.errors import TransientError
from shared.fanout import WAITING, BackupLimits, FanOut
from shared.instances import InstanceService, InstanceStore, ProtectionStatus, Readiness
from shared.jobs import Job, JobStatus, JobStore, Operation
from shared.jobs.model import partition_for
from shared.policies import PolicyService
from shared.protection import ProtectionService
from shared.schedule_index import INDEX_MARKER
from shared.storage import layout
from shared.storage.memory import MemoryBlobStore, MemoryStateTable, MemoryTables
from shared.storage.ports import Entity
from tests.examples import policy_starting_at

SLOT = datetime(2025, 3, 2, 2, 30, tzinfo=UTC)  # a Sunday; the policy fires every Sunday at 02:30 UTC
CREATED = SLOT - timedelta(days=3)


class CountingTable:
    """The in-memory state table, counting the requests each call would make (by method and partition)."""

    def __init__(self, inner: MemoryStateTable) -> None:
        self.inner = inner
        self.name = inner.name
        self.calls: Counter[tuple[str, str]] = Counter()

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def _count(self, method: str, pk: str) -> None:
        self.calls[(method, pk)] += 1

    def ensure(self) -> None:
        self.inner.ensure()

    def service_time(self) -> datetime:
        self._count("service_time", "")
        return self.inner.service_time()

    def get(self, pk: str, rk: str) -> Entity | None:
        self._count("get", pk)
        return self.inner.get(pk, rk)

    def insert(self, pk: str, rk: str, data: Mapping[str, Any]) -> Entity:
        self._count("insert", pk)
        return self.inner.insert(pk, rk, data)

    def update(self, entity: Entity, data: Mapping[str, Any]) -> Entity:
        self._count("update", entity.partition_key)
        return self.inner.update(entity, data)

    def upsert(self, pk: str, rk: str, data: Mapping[str, Any]) -> Entity:
        self._count("upsert", pk)
        return self.inner.upsert(pk, rk, data)

    def delete(self, entity: Entity) -> None:
        self._count("delete", entity.partition_key)
        self.inner.delete(entity)

    def query(
        self, filter: str, parameters: Mapping[str, Any] | None = None, *, select: Any = None
    ) -> Iterator[Entity]:
        rows = list(self.inner.query(filter, parameters, select=select))
        pk = str((parameters or {}).get("pk", ""))
        for _ in range(max(1, -(-len(rows) // 1000))):  # the service answers 1,000 rows a page
            self._count("query", pk)
        return iter(rows)

    def partition(self, pk: str) -> Iterator[Entity]:
        return self.query("PartitionKey eq @pk", {"pk": pk})

    def page(self, filter: str, parameters: Any, *, page_size: int, continuation: Any = None) -> Any:
        self._count("page", str((parameters or {}).get("pk", "")))
        return self.inner.page(filter, parameters, page_size=page_size, continuation=continuation)

    def insert_batch(self, pk: str, rows: Sequence[tuple[str, Mapping[str, Any]]]) -> bool:
        self._count("batch", pk)
        return self.inner.insert_batch(pk, rows)

    def write_batch(
        self, pk: str, upserts: Sequence[tuple[str, Mapping[str, Any]]] = (), deletes: Sequence[str] = ()
    ) -> int:
        made = self.inner.write_batch(pk, upserts, deletes)
        for _ in range(made):
            self._count("batch", pk)
        return made


class RecordingQueues:
    """Queues that keep what was sent (the tick's messages)."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, name: str, payload: Mapping[str, Any], *, delay_seconds: int = 0) -> None:
        assert name == layout.BACKUP_QUEUE
        self.sent.append(dict(payload))


def _vault(
    instances: int, *, servers: int = 1, limits: BackupLimits | None = None, first_server_holds: int = 0
) -> tuple[CountingTable, RecordingQueues, BackupStarter]:
    state = CountingTable(MemoryTables().table("state"))
    PolicyService(state).put("weekly", json.loads(policy_starting_at("sunday-default-only.json", SLOT)), CREATED)  # type: ignore[arg-type]
    service = InstanceService(state, lambda job, instance: None)  # type: ignore[arg-type]
    for i in range(instances):
        spec = {
            "server": "db0.example.com" if i < first_server_holds else f"db{i % servers}.example.com",
            "database": f"d{i:05}",
            "secretUri": "env:PGVAULT_SECRET_X",
            "policyName": "weekly",
        }
        service.configure_one(f"i{i:05}", spec, CREATED, allow_env_secrets=True, vault_region=None)
        current = service.get(f"i{i:05}")
        service.save(
            current, replace(current, readiness=Readiness.SUCCESS, protection_status=ProtectionStatus.PROTECTED)
        )
    queues = RecordingQueues()
    return state, queues, BackupStarter(state, queues, limits or BackupLimits(per_server=500, vault=500))  # type: ignore[arg-type]


def _backups(state: CountingTable, name: str) -> list[Any]:
    jobs = JobStore(state)  # type: ignore[arg-type]
    return [jobs.get(j.job_id) for j in jobs.history(name) if j.operation is Operation.BACKUP]


@pytest.mark.parametrize("count", [10, 1000])
def test_a_tick_with_nothing_due_costs_three_requests_whatever_the_number_of_instances(count: int) -> None:
    state, queues, starter = _vault(count)
    assert starter.schedule(CREATED + timedelta(hours=1)) == []  # the first tick finds the index built
    state.calls.clear()
    assert starter.schedule(CREATED + timedelta(hours=2)) == []
    # The index marker, the due range (empty), the backlog (empty): nothing per instance.
    assert state.calls == Counter(
        {("get", layout.SCHEDULE): 1, ("page", layout.NEXT_BACKUP): 1, ("page", layout.BACKLOG): 1}
    )
    assert queues.sent == []


def test_a_tick_with_every_instance_due_reads_each_policy_once_and_instances_in_batches() -> None:
    state, queues, starter = _vault(1000, servers=100, limits=BackupLimits(per_server=2, vault=100))
    starter.schedule(CREATED + timedelta(hours=1))  # builds the index's marker
    state.calls.clear()
    started = starter.schedule(SLOT + timedelta(minutes=1))
    assert len(started) == 1000 and len(queues.sent) == 100  # the vault-wide limit: the rest wait in line
    assert state.calls[("get", layout.POLICY)] == 1
    assert state.calls[("get", layout.INSTANCE)] == 0 and state.calls[("get", layout.SCHEDULE)] == 1
    assert state.calls[("query", layout.INSTANCE)] == 1  # the instance partition, one page per 1,000
    # Per due instance nothing on its own: its job's row, index row, marker and place in line in batches.
    summaries = sum(n for (method, pk), n in state.calls.items() if pk.startswith("instjobs-"))
    jobs = sum(n for (method, pk), n in state.calls.items() if pk.startswith(layout.JOBS_PREFIX))
    # The job rows 100 to a transaction; a summary only for each job sent (read, then written):
    # those waiting in line get theirs when they are sent.
    assert summaries == 100 and jobs == 10 + 100
    # Per message: its claim, two seats, its removal; the rest is a few dozen batches and queries.
    assert state.total - summaries - jobs < 4 * 100 + 60
    # The next tick: nothing due, nothing sent twice (the seats are still reserved).
    assert starter.schedule(SLOT + timedelta(minutes=6)) == []
    assert len(queues.sent) == 100


def test_each_slot_makes_one_job_and_missed_slots_are_skipped() -> None:
    state, queues, starter = _vault(2)
    now = CREATED
    while now < SLOT + timedelta(weeks=2, hours=1):
        starter.schedule(now)
        starter.schedule(now)  # twice: nothing twice
        now += timedelta(hours=6)
    jobs = _backups(state, "i00000")
    assert sorted(j.details["slot"] for j in jobs) == [
        "2025-03-02T02:30:00Z",
        "2025-03-09T02:30:00Z",
        "2025-03-16T02:30:00Z",
    ]
    assert len(queues.sent) == 6 and len({m["jobId"] for m in queues.sent}) == 6
    # Three weeks without a tick: the latest slot runs, the two before are skipped (03:30 in the
    # policy's zone, W. Europe: 01:30 UTC from the summer time of 30 March).
    later = SLOT + timedelta(weeks=5, hours=1)
    assert [j.details["slot"] for j in starter.schedule(later) if j.instance == "i00001"] == ["2025-04-06T01:30:00Z"]
    skipped = [j for j in _backups(state, "i00001") if j.status is JobStatus.CANCELLED]
    assert sorted(j.details["slot"] for j in skipped) == ["2025-03-23T02:30:00Z", "2025-03-30T01:30:00Z"]


def _index_rows(state: CountingTable) -> dict[str, datetime]:
    return {str(e["instance"]): e["slot"] for e in state.inner.partition(layout.NEXT_BACKUP)}


def test_the_index_follows_a_policy_change_stop_and_resume() -> None:
    state, _, starter = _vault(3)
    starter.schedule(CREATED + timedelta(hours=1))
    assert _index_rows(state) == dict.fromkeys(("i00000", "i00001", "i00002"), SLOT)
    # The policy moves to Wednesdays: every instance of it is re-indexed at once.
    wednesday = SLOT + timedelta(days=3, hours=1)
    PolicyService(state).put(
        "weekly", json.loads(policy_starting_at("sunday-default-only.json", wednesday - timedelta(weeks=1))), CREATED
    )  # type: ignore[arg-type]
    assert _index_rows(state) == dict.fromkeys(("i00000", "i00001", "i00002"), wednesday)
    # Stopped: its row goes; no backups while stopped, not even skipped ones after resume.
    ProtectionService(state, MemoryBlobStore()).stop("i00001", {"retainData": "forever"}, CREATED)  # type: ignore[arg-type]
    assert "i00001" not in _index_rows(state)
    resumed_at = wednesday + timedelta(weeks=2, hours=3)
    starter.schedule(wednesday + timedelta(minutes=1))
    ProtectionService(state, MemoryBlobStore()).resume("i00001", None, resumed_at)  # type: ignore[arg-type]
    assert _index_rows(state)["i00001"] == wednesday + timedelta(weeks=3)
    starter.schedule(wednesday + timedelta(weeks=3, minutes=1))
    assert [j.details["slot"] for j in _backups(state, "i00001")] == ["2025-03-26T03:30:00Z"]
    assert len(_backups(state, "i00000")) == 4  # the week before the change's slot, then three Wednesdays (2 skipped)


def test_an_instance_not_ready_any_more_is_dropped_from_the_index_and_not_scheduled() -> None:
    state, _, starter = _vault(2)
    store = InstanceStore(state)  # type: ignore[arg-type]
    current = store.get("i00000")
    store.save(current, replace(current, readiness=Readiness.FAILED))
    assert "i00000" not in _index_rows(state)
    assert [j.instance for j in starter.schedule(SLOT + timedelta(minutes=1))] == ["i00001"]


def test_a_stale_index_row_is_dropped_by_the_tick() -> None:
    state, _, starter = _vault(1)
    # A row left behind (a write lost between the index and the instance): the instance says stopped.
    record = state.inner.get(layout.INSTANCE, "i00000")
    assert record is not None
    state.inner.update(record, {**record.data, "protectionStatus": ProtectionStatus.STOPPED.value})
    assert starter.schedule(SLOT + timedelta(minutes=1)) == []
    assert _index_rows(state) == {}


def test_instances_configured_before_the_index_existed_are_indexed_once_by_the_first_tick() -> None:
    state, _, starter = _vault(5)
    # A vault from before the index: no rows, no marker (the instances and their records stay).
    for e in list(state.inner.partition(layout.NEXT_BACKUP)) + list(state.inner.partition(layout.SCHEDULE)):
        state.inner.delete(e)
    assert len(starter.schedule(SLOT + timedelta(minutes=1))) == 5
    assert state.inner.get(layout.SCHEDULE, INDEX_MARKER) is not None
    state.calls.clear()
    assert starter.schedule(SLOT + timedelta(minutes=6)) == []
    assert state.calls[("query", layout.INSTANCE)] == 0  # built once: the instances are not read again


def test_jobs_beyond_the_limits_wait_in_line_and_say_why() -> None:
    # i00000..i00009 on db0, then i00010 on db0 and i00011, i00012 on db1.
    state, queues, starter = _vault(13, servers=2, limits=BackupLimits(per_server=2, vault=3), first_server_holds=10)
    started = starter.schedule(SLOT + timedelta(minutes=1))
    assert len(started) == 13
    sent = [m["instance"] for m in queues.sent]
    assert sent == ["i00000", "i00001", "i00011"]  # in slot (then name) order: db0 is full after two
    waiting = [j for j in started if j.instance not in sent]
    assert all(WAITING in j.details and j.status is JobStatus.IN_PROGRESS and j.start_time is None for j in waiting)
    assert len(list(state.inner.partition(layout.BACKLOG))) == 10


def test_the_instances_list_reads_the_last_backups_from_one_partition_not_each_history() -> None:
    from shared.backup_times import BackupTimesReader

    state, _, starter = _vault(30)
    jobs = JobStore(state)  # type: ignore[arg-type]
    now = SLOT + timedelta(minutes=1)
    ids = {}
    for job in starter.schedule(now):
        if job.instance != "i00007":
            ids[job.instance] = jobs.finish(
                jobs.get(job.job_id), JobStatus.COMPLETED, now + timedelta(minutes=5)
            ).job_id
    reader = BackupTimesReader(state)  # type: ignore[arg-type]
    instances = list(InstanceStore(state).all())  # type: ignore[arg-type]
    first = dict((i.spec.name, t) for i, t in reader.of_all(instances, now + timedelta(hours=1)))
    assert first["i00007"].last_backup is None and first["i00000"].last_backup is not None
    assert first["i00000"].last_backup.end_time == now + timedelta(minutes=5)
    assert all(first[name].last_backup.job_id == job_id for name, job_id in ids.items())  # type: ignore[union-attr]
    assert first["i00000"].next_scheduled == SLOT + timedelta(weeks=1)
    state.calls.clear()
    again = dict((i.spec.name, t) for i, t in BackupTimesReader(state).of_all(instances, now + timedelta(hours=1)))  # type: ignore[arg-type]
    assert again == first
    # One partition and the policy: no instance's history is read (i00007's "none" was kept too).
    assert state.calls == Counter({("query", layout.LAST_BACKUP): 1, ("get", layout.POLICY): 1})


class FailingTable(CountingTable):
    """The counting table that fails (a storage outage) at the ``fail_at``-th write into partitions
    starting with ``prefix`` and at every one after it, from whichever thread makes it, before writing."""

    def __init__(self, inner: MemoryStateTable, prefix: str, fail_at: int) -> None:
        super().__init__(inner)
        self.prefix, self.fail_at, self.writes, self.failed = prefix, fail_at, 0, 0
        self._lock = threading.Lock()

    def _fail(self, pk: str) -> None:
        if not pk.startswith(self.prefix):
            return
        with self._lock:
            self.writes += 1
            if self.writes < self.fail_at:
                return
            self.failed += 1
        raise TransientError(f"storage is down (partition {pk})")

    def insert(self, pk: str, rk: str, data: Mapping[str, Any]) -> Entity:
        self._fail(pk)
        return super().insert(pk, rk, data)

    def upsert(self, pk: str, rk: str, data: Mapping[str, Any]) -> Entity:
        self._fail(pk)
        return super().upsert(pk, rk, data)

    def insert_batch(self, pk: str, rows: Sequence[tuple[str, Mapping[str, Any]]]) -> bool:
        self._fail(pk)
        return super().insert_batch(pk, rows)

    def write_batch(
        self, pk: str, upserts: Sequence[tuple[str, Mapping[str, Any]]] = (), deletes: Sequence[str] = ()
    ) -> int:
        self._fail(pk)
        return super().write_batch(pk, upserts, deletes)


@pytest.mark.parametrize(
    "prefix, fail_at",
    [(layout.JOBS_PREFIX, 3), (layout.BACKLOG, 1), (layout.NEXT_BACKUP, 1), (layout.SCHEDULE, 1)],
)
def test_a_tick_that_dies_midway_through_its_concurrent_writes_is_redone_by_the_next_without_duplicates(
    prefix: str, fail_at: int
) -> None:
    state, queues, starter = _vault(500, servers=50, limits=BackupLimits(per_server=2, vault=20))
    starter.schedule(CREATED + timedelta(hours=1))  # builds the index's marker (a SCHEDULE write)
    failing = FailingTable(state.inner, prefix, fail_at)
    crashing = BackupStarter(failing, queues, starter._fanout.limits)  # type: ignore[arg-type]
    with pytest.raises(TransientError):
        crashing.schedule(SLOT + timedelta(minutes=1))
    assert failing.failed >= 1 and queues.sent == []  # it died before the line and the index moved
    # The next tick (another process) finds what the first made and makes the rest.
    again = BackupStarter(state, queues, starter._fanout.limits)  # type: ignore[arg-type]
    again.schedule(SLOT + timedelta(minutes=2))
    jobs = [Job._from(e) for e in state.inner.partition(partition_for(SLOT))]
    assert len(jobs) == 500 and len({(j.instance, j.details["slot"]) for j in jobs}) == 500
    line = [str(e["jobId"]) for e in state.inner.partition(layout.BACKLOG)]
    assert len(line) == len(set(line)) == 500 - 20 and len(queues.sent) == 20
    assert set(line).isdisjoint(m["jobId"] for m in queues.sent)
    sent = {str(m["instance"]) for m in queues.sent}
    assert all(
        [j.job_id for j in _backups(state, name)] == [m["jobId"] for m in queues.sent if m["instance"] == name]
        for name in sent
    )  # its summary, once
    assert all(len(_backups(state, f"i{i:05}")) <= 1 for i in range(500))
    assert all(slot > SLOT for slot in _index_rows(state).values())  # the index moved on, once
    assert len(_index_rows(state)) == 500
    # And a third tick changes nothing.
    again.schedule(SLOT + timedelta(minutes=3))
    assert len(list(state.inner.partition(layout.BACKLOG))) == 480 and len(queues.sent) == 20


def test_a_job_waiting_in_line_gets_its_summary_when_it_is_sent_and_one_that_cannot_be_stays_in_line() -> None:
    state, queues, starter = _vault(3, limits=BackupLimits(per_server=1, vault=1))
    started = starter.schedule(SLOT + timedelta(minutes=1))
    assert len(started) == 3 and [m["instance"] for m in queues.sent] == ["i00000"]
    assert [j.job_id for j in _backups(state, "i00000")] == [queues.sent[0]["jobId"]]
    assert _backups(state, "i00001") == [] and _backups(state, "i00002") == []  # in line: no summary yet
    # The seat frees; the next dispatch cannot write i00001's summary (storage down there): it stays
    # in line, and the next in line goes.
    limits = BackupLimits(per_server=1, vault=1)
    FanOut(state, queues, limits).release(queues.sent[0]["jobId"], SLOT)  # type: ignore[arg-type]
    failing = FailingTable(state.inner, layout.instance_jobs("i00001"), 1)
    sent = FanOut(failing, queues, limits).dispatch(SLOT + timedelta(minutes=2))  # type: ignore[arg-type]
    assert [m["instance"] for m in queues.sent] == ["i00000", "i00002"] and sent == [queues.sent[1]["jobId"]]
    assert [str(e["instance"]) for e in state.inner.partition(layout.BACKLOG)] == ["i00001"]
    assert _backups(state, "i00001") == [] and [j.job_id for j in _backups(state, "i00002")] == sent
    FanOut(state, queues, limits).release(sent[0], SLOT)  # type: ignore[arg-type]
    # Its claim holds it for ADMIT_GRACE (the dispatcher that failed might have sent it), then it goes.
    sent = FanOut(state, queues, limits).dispatch(SLOT + timedelta(minutes=13))  # type: ignore[arg-type]
    assert [j.job_id for j in _backups(state, "i00001")] == sent == [queues.sent[2]["jobId"]]
