"""Backup parts as queue messages that any instance takes (PGVAULT_BACKUP_PARTS_ACROSS_INSTANCES), on
real PostgreSQL and Azurite: the coordinator holds the snapshot and waits; "instances" here are
threads, each a part worker of its own (its own table, blob and queue clients) taking messages off
the part queue as the host's queue trigger does. The point they make is the same multi-part point,
restored equal table by table; a message whose snapshot is gone is dropped and leaves no blob; a
duplicate message changes nothing; a part whose pg_dump is killed is taken again."""

from __future__ import annotations

import hashlib
import json
import logging
import stat
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from devhost.services import Azurite, Postgres
from shared.backup_parts import PartBoard, PartMessage, PartOutcome, PartRow, PartStatus, PartWorker, parts_of
from shared.backup_runner import BackupRunner
from shared.backups import BackupStarter
from shared.cancel import request_cancel
from shared.errors import ErrorCode, PgVaultError, TransientError, UserError
from shared.jobs import Job, JobStatus, JobStore
from shared.pg.archive import METHOD_COPY, stream_digests
from shared.pg.digests import table_digests
from shared.pg.tools import pick_tool
from shared.recovery_points import RecoveryPoint, RecoveryPointStore
from shared.restore.service import RestoreService
from shared.retention import RetentionSweep
from shared.secrets import EnvSecretProvider
from shared.storage import layout
from shared.storage.blobs import BlobStore
from shared.storage.ports import Entity
from shared.storage.queues import queue_client
from shared.storage.tables import StateTable
from tests.integration.test_parts import _killing_pg_dump, source_database
from tests.integration.world import Storage, open_storage, restore_request

pytestmark = pytest.mark.integration
PARTS = 4
QUEUE = layout.BACKUP_PART_QUEUE


@dataclass(eq=False)
class Taker(threading.Thread):
    """One "instance": takes part messages one at a time (as a queue trigger does) until stopped or
    until it has taken ``limit``; a failed try leaves the message to come back (the host's retry)."""

    world: World
    name_: str
    limit: int | None = None
    pg_bin_dir: Path | None = None
    twin: bool = False
    lose_digests: bool = False
    clock: Callable[[], datetime] | None = None
    """This instance's own clock (default: the machine's); the storage service's stays the machine's."""
    outcomes: list[PartOutcome] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    payloads: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__(name=self.name_, daemon=True)
        self.halt = threading.Event()

    def worker(self, name: str) -> PartWorker:
        state, blobs = self.world.storage.fresh()
        if self.lose_digests:
            blobs = _LosesFirstDigests(self.world.storage.account.blob_service(), blobs.container)
        secrets = EnvSecretProvider(True, self.world.env)
        clock = self.clock or self.world.now
        return PartWorker(state, blobs, secrets, clock, pg_bin_dir=self.pg_bin_dir, worker_id=name, watch_every=0.3)

    def run(self) -> None:
        worker = self.worker(self.name_)
        client = queue_client(self.world.storage.account.queue_service(), QUEUE)
        while not self.halt.is_set() and (self.limit is None or len(self.outcomes) < self.limit):
            message = next(iter(client.receive_messages(max_messages=1, visibility_timeout=60)), None)
            if message is None:
                time.sleep(0.1)
                continue
            delivery = int(message.dequeue_count or 1)
            self.payloads.append(json.loads(message.content))
            try:
                if self.twin and not self.outcomes:
                    self.outcomes.extend(self.twice(worker, self.payloads[-1]))
                else:
                    self.outcomes.append(worker.run(self.payloads[-1], delivery=delivery, last_try=delivery >= 5))
            except PgVaultError as exc:
                self.failures.append(type(exc).__name__)
                client.update_message(message, visibility_timeout=0)  # the host's retry
                continue
            client.delete_message(message)

    def twice(self, worker: PartWorker, payload: dict[str, Any]) -> list[PartOutcome]:
        """The same message delivered to two instances at once (at-least-once delivery, a lease lost)."""
        twin, start = self.worker(f"{self.name_}-twin"), threading.Barrier(2)

        def deliver(w: PartWorker) -> PartOutcome:
            start.wait()
            return w.run(payload, delivery=1, last_try=False)

        with ThreadPoolExecutor(2) as pool:
            return sorted(pool.map(deliver, (worker, twin)))


class _LosesFirstDigests(BlobStore):
    """A worker's blobs whose first write of a part's digests fails as storage does: the worker dies, so to
    speak, between its part's commit and its digests' write, and the part's next delivery finds it committed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lost: list[str] = []

    def put_json(self, name: str, document: Any, **kwargs: Any) -> None:
        if name.endswith(layout.DIGESTS_SUFFIX) and not self.lost:
            self.lost.append(name)
            raise TransientError(f"{name}: the worker died before writing it")
        super().put_json(name, document, **kwargs)


class _KeepsPartRows(StateTable):
    """The coordinator's table, keeping a copy of each part row it deletes (its attempt ended) just before it does:
    the tests read which worker took which part, and how many deliveries it needed, after the rows are gone."""

    def __init__(self, storage: Storage, kept: dict[tuple[str, str], Entity]) -> None:
        super().__init__(storage.account.table_service(), storage.state.name)
        self.kept = kept

    def write_batch(self, pk: str, upserts: Any = (), deletes: Any = ()) -> int:
        if pk.startswith(layout.backup_parts("")):
            gone = set(deletes)
            self.kept.update({(pk, e.row_key): e for e in self.partition(pk) if e.row_key in gone})
        return super().write_batch(pk, upserts, deletes)


@dataclass
class World:
    pg: Postgres
    u: str
    db: str
    storage: Storage
    env: dict[str, str]
    kept: dict[tuple[str, str], Entity] = field(default_factory=dict)

    def now(self) -> datetime:
        return datetime.now(UTC)

    def runner(self, **kw: Any) -> BackupRunner:
        _, blobs = self.storage.fresh()
        return BackupRunner(
            _KeepsPartRows(self.storage, self.kept),
            blobs,
            EnvSecretProvider(True, self.env),
            self.now,
            **{"parallelism": PARTS, **kw},
            parallel_min_bytes=0,
            queues=self.storage.queues,
            parts_across_instances=True,
        )

    def start_backup(self) -> str:
        body = {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTagOverride": "Weekly"}}}
        return BackupStarter(self.storage.state, self.storage.queues).on_demand("xsrc", body, self.now()).job.job_id

    def backup(self, *takers: Taker, **kw: Any) -> tuple[Job, RecoveryPoint]:
        job_id = self.start_backup()
        for taker in takers:
            taker.start()
        try:
            job = self.runner(**kw).run(job_id, last_try=False)
        finally:
            for taker in takers:
                taker.halt.set()
                taker.join(30)
        assert job is not None and job.status is JobStatus.COMPLETED, job
        return job, RecoveryPointStore(self.storage.state).get("xsrc", str(job.recovery_point_id))

    def restore_service(self) -> RestoreService:
        return RestoreService(
            self.storage.state,
            self.storage.backups,
            EnvSecretProvider(True, self.env),
            self.now,
            queues=self.storage.queues,
            allow_env_secrets=True,
            parallelism=PARTS,
        )

    def restore(self, point: RecoveryPoint, database: str) -> Job:
        service = self.restore_service()
        job = service.start("xsrc", restore_request(point.recovery_point_id, database), self.now()).job
        done = service.run(job.job_id, last_try=True)
        assert done is not None and done.status is JobStatus.COMPLETED, done.error
        return done

    def digests(self, db: str) -> dict[str, Any]:
        with psycopg.connect(host="127.0.0.1", port=self.pg.port, dbname=db, user="postgres") as c:
            return table_digests(c)

    def stream_digests(self) -> dict[str, Any]:
        """The source's digests as a stream manifest says them (``pg_dump --data-only`` through the parser)."""
        env = {"PGHOST": "127.0.0.1", "PGPORT": str(self.pg.port), "PGUSER": "postgres", "PGDATABASE": self.db}
        return stream_digests(pick_tool("pg_dump", 15).path, env)

    def manifest(self, point: RecoveryPoint) -> dict[str, Any]:
        return self.storage.backups.get_json(layout.manifest_name_for(point.blob_name))  # type: ignore[no-any-return]

    def verify(self, point: RecoveryPoint) -> Job:
        """``:verifyRestore`` of ``point``: restored into a scratch database and compared with its manifest."""
        service = self.restore_service()
        body = {"recoveryPointId": point.recovery_point_id, "secretUri": "env:PGVAULT_SECRET_TARGET_CS"}
        job = service.start_verify("xsrc", body, self.now()).job
        done = service.run(job.job_id, last_try=True)
        assert done is not None
        return done

    def blob_sha256(self, name: str) -> str:
        return hashlib.sha256(self.storage.backups.client.get_blob_client(name).download_blob().readall()).hexdigest()

    def blobs(self) -> set[str]:
        return {b.name for b in self.storage.backups.client.list_blobs()}

    def part_rows(self, job_id: str) -> list[PartRow]:
        """Every part row ``job_id``'s attempts had, as each stood when its coordinator deleted it (or stands)."""
        pk = layout.backup_parts(job_id)
        rows = {k: e for k, e in self.kept.items() if k[0] == pk}
        rows.update({(pk, e.row_key): e for e in self.storage.state.partition(pk)})
        return [PartRow.of(e) for k, e in sorted(rows.items()) if "." in k[1]]

    def rows_left(self, job_id: str) -> list[Entity]:
        """The rows of ``job_id``'s attempts still in the state table."""
        return list(self.storage.state.partition(layout.backup_parts(job_id)))


@pytest.fixture(scope="module")
def world(postgres: Postgres, azurite: Azurite) -> Iterator[World]:
    with source_database(postgres, "x") as (u, db, env):
        storage = open_storage(azurite, "xparts", queues=[layout.BACKUP_QUEUE, layout.RESTORE_QUEUE, QUEUE])
        queue_client(storage.account.queue_service(), QUEUE).clear_messages()
        storage.put_policy("mwf", "weekly-mon-wed-fri-with-archive", datetime.now(UTC))
        spec = {"server": "127.0.0.1", "port": postgres.port, "database": db, "secretUri": "env:PGVAULT_SECRET_SRC_CS"}
        storage.protect("xsrc", {**spec, "policyName": "mwf"}, datetime.now(UTC))
        yield World(postgres, u, db, storage, env)


def _wait(what: Callable[[], Any], seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_parts_taken_by_two_instances_off_the_queue_make_one_point_that_restores_equal(world: World) -> None:
    a, b = Taker(world, "instance-a", limit=PARTS // 2), Taker(world, "instance-b", limit=PARTS // 2)
    job, point = world.backup(a, b)
    assert len(point.parts) == PARTS
    tables = [t for p in point.parts for t in p.tables]
    assert len(tables) == len(set(tables)) == 23
    assert world.rows_left(job.job_id) == []  # the attempt's rows went when it ended
    rows = world.part_rows(job.job_id)
    assert {r.worker for r in rows} == {"instance-a", "instance-b"}  # both instances dumped parts
    assert [r.status for r in rows] == [PartStatus.COMMITTED] * PARTS
    for (name, sha), part in zip(point.part_blobs(), point.parts, strict=True):
        assert world.blob_sha256(name) == sha == next(r.sha256 for r in rows if r.index == part.index)
    assert a.outcomes == b.outcomes == [PartOutcome.COMMITTED] * (PARTS // 2)
    # The manifest is read from the parts' own streams (each worker digested its part as it dumped it,
    # the coordinator its schema part): the server paid no second read of the tables.
    manifest = world.manifest(point)
    assert {d["method"] for d in manifest["tables"].values()} == {METHOD_COPY}
    assert manifest["tables"] == world.stream_digests()
    assert not any(layout.DIGESTS_SUFFIX in name for name in world.blobs())  # the parts' sidecars are merged and gone
    verified = world.verify(point)
    assert verified.status is JobStatus.COMPLETED, verified.error
    assert verified.details["verification"] == {"tablesCompared": 23, "mismatches": []}


def test_a_part_message_taken_after_the_snapshot_is_gone_is_dropped_and_leaves_no_blob(world: World) -> None:
    before = world.blobs()
    job_id = world.start_backup()
    outcome: dict[str, BaseException | Job | None] = {}

    def coordinate() -> None:
        try:
            outcome["job"] = world.runner().run(job_id, last_try=False)
        except BaseException as exc:
            outcome["job"] = exc

    coordinator = threading.Thread(target=coordinate, daemon=True)
    coordinator.start()
    client = queue_client(world.storage.account.queue_service(), QUEUE)
    _wait(lambda: int(client.get_queue_properties().approximate_message_count or 0) >= PARTS)
    jobs = JobStore(world.storage.state)
    _wait(lambda: world.storage.backups.exists(jobs.get(job_id).details["blobName"]))  # the schema part is done
    # The coordinator's snapshot-holding session dies (its worker gone, the server's connection cut).
    with psycopg.connect(world.pg.dsn(), autocommit=True) as c:
        # Its snapshot-holding session is the one left in a transaction now that the schema part's pg_dump is done.
        idle = "SELECT pid FROM pg_stat_activity WHERE datname = %s AND state = 'idle in transaction'"
        pids = _wait(lambda: (rows := c.execute(idle, (world.db,)).fetchall()) and len(rows) == 1 and rows)
        c.execute("SELECT pg_terminate_backend(%s)", pids[0])
    taker = Taker(world, "late", limit=PARTS)
    taker.start()
    taker.join(60)
    coordinator.join(60)
    assert taker.outcomes == [PartOutcome.DROPPED] * PARTS and taker.failures == []
    # The first part to find the snapshot gone failed the attempt; the coordinator gave it up for a retry.
    assert isinstance(outcome["job"], TransientError), outcome["job"]
    assert world.rows_left(job_id) == []  # the failed attempt's rows went with it
    rows = world.part_rows(job_id)
    assert any(r.status is PartStatus.FAILED and "snapshot" in str(r.error) for r in rows)
    assert {r.status for r in rows} <= {PartStatus.FAILED, PartStatus.PENDING}
    assert world.blobs() == before  # nothing left behind
    assert [p for p in RecoveryPointStore(world.storage.state).of("xsrc") if p.job_id == job_id] == []

    # The job's retry is a fresh attempt: new snapshot, new rows, new blobs; none of the old attempt's counts.
    again = Taker(world, "retry", limit=PARTS)
    again.start()
    try:
        job = world.runner().run(job_id, last_try=False)
    finally:
        again.halt.set()
        again.join(30)
    assert job is not None and job.status is JobStatus.COMPLETED, job
    assert again.outcomes == [PartOutcome.COMMITTED] * PARTS
    point = RecoveryPointStore(world.storage.state).get("xsrc", str(job.recovery_point_id))
    assert {p["attempt"] for p in again.payloads} == {point.blob_name.split(".")[-3]}  # the new attempt's token
    assert {p["attempt"] for p in taker.payloads}.isdisjoint({p["attempt"] for p in again.payloads})
    rows = world.part_rows(job_id)
    assert len(rows) == 2 * PARTS and [r.status for r in rows].count(PartStatus.COMMITTED) == PARTS
    assert world.rows_left(job_id) == []
    # A message of the failed attempt that names another blob (garbled, hand-made) deletes nothing.
    forged = {**taker.payloads[0], "blobName": point.blob_name}
    assert Taker(world, "forged").worker("forged").run(forged, delivery=1, last_try=False) is PartOutcome.DROPPED
    assert all(world.storage.backups.exists(name) for name in point.blob_names())
    world.restore(point, f"xretry_{world.u}")
    assert world.digests(f"xretry_{world.u}") == world.digests(world.db)


def test_a_duplicate_part_message_changes_nothing(world: World) -> None:
    a, b = Taker(world, "dup-a", twin=True), Taker(world, "dup-b")
    job, point = world.backup(a, b)
    assert len(point.parts) == PARTS
    # Both deliveries of the first message dumped it; one committed, the other found it committed.
    assert a.outcomes[:2] == [PartOutcome.COMMITTED, PartOutcome.DUPLICATE]
    assert sorted(a.outcomes + b.outcomes).count(PartOutcome.COMMITTED) == PARTS
    twice = next(r for r in world.part_rows(job.job_id) if r.index == a.payloads[0]["part"])
    assert twice.worker in {"dup-a", "dup-a-twin"} and twice.status is PartStatus.COMMITTED
    etags = {
        name: world.storage.backups.client.get_blob_client(name).get_blob_properties().etag
        for name in point.blob_names()
    }
    for name, sha in point.part_blobs():
        assert world.blob_sha256(name) == sha
    # The part dumped twice counts once in the manifest, with the digests of its committed blob's stream.
    assert world.manifest(point)["tables"] == world.stream_digests()
    # A late copy of every part, after the point is recorded: dropped, every blob as it was.
    client = queue_client(world.storage.account.queue_service(), QUEUE)
    late = Taker(world, "dup-late", limit=PARTS)
    sent = {p["part"]: p for p in a.payloads + b.payloads}
    assert len(sent) == PARTS
    blobs = world.blobs()
    assert world.rows_left(job.job_id) == []
    for payload in sent.values():
        client.send_message(json.dumps(payload))
    late.start()
    late.join(60)
    # Its attempt's rows are gone: nothing says what the part is, so nothing is dumped, written or deleted.
    assert late.outcomes == [PartOutcome.DROPPED] * PARTS and late.failures == []
    assert world.blobs() == blobs and world.rows_left(job.job_id) == []
    assert etags == {
        name: world.storage.backups.client.get_blob_client(name).get_blob_properties().etag
        for name in point.blob_names()
    }
    world.restore(point, f"xdup_{world.u}")
    assert world.digests(f"xdup_{world.u}") == world.digests(world.db)


def test_a_part_whose_pg_dump_is_killed_is_taken_again_and_the_backup_gives_one_point(
    world: World, tmp_path: Path
) -> None:
    killing = _killing_pg_dump(tmp_path, pick_tool("pg_dump", 15).path)
    a, b = Taker(world, "kill-a", pg_bin_dir=killing), Taker(world, "kill-b", pg_bin_dir=killing)
    # Messages too small for the tables: each points at the plan blob instead (the 64 KiB limit's way out).
    job, point = world.backup(a, b, part_message_limit=0)
    assert (tmp_path / "killed").is_dir()  # a part's pg_dump did die
    assert a.failures + b.failures == ["DumpKilled"]
    payloads = a.payloads + b.payloads
    assert all("tables" not in p and p["plan"] == layout.plan_name_for(point.blob_name) for p in payloads)
    assert not world.storage.backups.exists(layout.plan_name_for(point.blob_name))  # gone with the parts done
    rows = world.part_rows(job.job_id)
    assert max(r.deliveries for r in rows) == 2  # the killed part was taken once more
    assert [p for p in RecoveryPointStore(world.storage.state).of("xsrc") if p.job_id == job.job_id] == [point]
    # The part dumped again was digested afresh: its killed try's bytes are not in the manifest.
    assert world.manifest(point)["tables"] == world.stream_digests()
    world.restore(point, f"xkill_{world.u}")
    assert world.digests(f"xkill_{world.u}") == world.digests(world.db)


def test_a_part_committed_by_a_delivery_that_died_before_keeping_its_digests_gets_its_blobs_digests(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = Taker(world, "lose-a", lose_digests=True), Taker(world, "lose-b")
    with caplog.at_level(logging.INFO, logger="shared.backup_parts.worker"):
        job, point = world.backup(a, b)
    assert any("committed without its digests" in r.getMessage() for r in caplog.records)
    assert a.failures == ["TransientError"]  # the first part a committed: its digests never written
    rows = world.part_rows(job.job_id)
    assert [r.status for r in rows] == [PartStatus.COMMITTED] * PARTS
    assert sorted(a.outcomes + b.outcomes).count(PartOutcome.COMMITTED) == PARTS  # the failed one recorded on its retry
    # Its next delivery found the blob committed and digested the committed blob (read back from the vault).
    assert world.manifest(point)["tables"] == world.stream_digests()
    assert not any(layout.DIGESTS_SUFFIX in name for name in world.blobs())


def test_with_the_stream_manifest_off_the_coordinator_digests_its_snapshot_and_the_parts_do_not(
    world: World,
) -> None:
    a = Taker(world, "sql-a")
    _, point = world.backup(a, manifest_from_stream=False)
    assert all("digests" not in p for p in a.payloads)
    tables = world.manifest(point)["tables"]
    assert {d["method"] for d in tables.values()} == {"hash_record_extended"}
    assert tables == world.digests(world.db)


def _slow_pg_dump(tmp: Path, real: Path, seconds: int) -> Path:
    """A bin folder whose pg_dump is ``real``, ``seconds`` late for every data part."""
    folder = tmp / "slow"
    folder.mkdir()
    script = folder / "pg_dump"
    # sleep without the pipes, so that killing the script (as a stop does pg_dump) ends its output at once
    wait = f"sleep {seconds} </dev/null >/dev/null 2>&1"
    script.write_text(f'#!/bin/sh\ncase " $* " in *" --data-only "*) {wait};; esac\nexec "{real}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


def _skewed(world: World, by: timedelta) -> Callable[[], datetime]:
    return lambda: world.now() + by


# A part worker's clock 50 minutes ahead of the storage service's: its part's start is written 50 minutes in
# the future, and a coordinator comparing it with its own clock would never see that part run too long.
@pytest.mark.parametrize("skew", [timedelta(0), timedelta(minutes=50)], ids=["same-clock", "worker-50-min-ahead"])
def test_a_part_that_runs_too_long_fails_the_attempt_and_its_workers_stop_and_leave_nothing(
    world: World, tmp_path: Path, skew: timedelta
) -> None:
    before = world.blobs()
    job_id = world.start_backup()
    slow = _slow_pg_dump(tmp_path, pick_tool("pg_dump", 15).path, 60)
    clock = _skewed(world, skew)
    takers = [Taker(world, f"slow-{i}", limit=PARTS // 2, pg_bin_dir=slow, clock=clock) for i in range(2)]
    for taker in takers:
        taker.start()
    started = time.monotonic()
    with pytest.raises(TransientError, match="ran longer than"):
        world.runner(part_timeout=timedelta(seconds=1)).run(job_id, last_try=False)
    for taker in takers:
        taker.join(30)
    # The workers dumping were stopped mid-dump (pg_dump killed) well before the 60 s it would have taken;
    # the parts not yet taken were dropped when taken.
    assert [o for t in takers for o in t.outcomes] == [PartOutcome.DROPPED] * PARTS
    assert time.monotonic() - started < 30
    assert world.blobs() == before
    statuses = [r.status for r in world.part_rows(job_id)]
    assert PartStatus.RUNNING in statuses and set(statuses) <= {PartStatus.RUNNING, PartStatus.PENDING}
    assert world.rows_left(job_id) == []


def test_a_part_worker_whose_clock_runs_50_minutes_behind_does_not_time_its_healthy_part_out(
    world: World, tmp_path: Path
) -> None:
    # Its parts' starts are written 50 minutes in the past: judged by the coordinator's clock, each would have
    # run longer than the 45-minute part timeout the moment it began. Each part runs 2 s, so the coordinator's
    # polls (every 2 s) see it running.
    slow = _slow_pg_dump(tmp_path, pick_tool("pg_dump", 15).path, 2)
    behind = _skewed(world, -timedelta(minutes=50))
    takers = [Taker(world, f"behind-{i}", limit=1, pg_bin_dir=slow, clock=behind) for i in range(PARTS)]
    _, point = world.backup(*takers)
    assert [o for t in takers for o in t.outcomes] == [PartOutcome.COMMITTED] * PARTS
    assert len(point.parts) == PARTS


def test_a_backup_cancelled_while_its_parts_wait_ends_cancelled_and_its_parts_are_dropped(world: World) -> None:
    before = world.blobs()
    job_id = world.start_backup()
    out: list[Job | BaseException | None] = []
    coordinator = threading.Thread(target=lambda: out.append(world.runner().run(job_id, last_try=False)), daemon=True)
    coordinator.start()
    client = queue_client(world.storage.account.queue_service(), QUEUE)
    _wait(lambda: int(client.get_queue_properties().approximate_message_count or 0) >= PARTS)
    _, taken = request_cancel(world.storage.state, job_id, datetime.now(UTC))
    assert taken
    coordinator.join(60)
    assert not coordinator.is_alive() and isinstance(out[0], Job) and out[0].status is JobStatus.CANCELLED, out
    late = Taker(world, "after-cancel", limit=PARTS)
    late.start()
    late.join(60)
    assert late.outcomes == [PartOutcome.DROPPED] * PARTS  # the attempt is over: nobody dumps its parts
    assert world.blobs() == before
    assert world.part_rows(job_id) and world.rows_left(job_id) == []
    assert [p for p in RecoveryPointStore(world.storage.state).of("xsrc") if p.job_id == job_id] == []


def test_a_forged_message_of_a_running_attempt_naming_other_tables_is_dropped_touching_nothing(world: World) -> None:
    job_id = world.start_backup()
    out: list[Job | BaseException | None] = []
    coordinator = threading.Thread(target=lambda: out.append(world.runner().run(job_id, last_try=False)), daemon=True)
    coordinator.start()
    client = queue_client(world.storage.account.queue_service(), QUEUE)
    sent = _wait(lambda: len(found := client.peek_messages(max_messages=32)) >= PARTS and found)
    # Someone who can write to the queue copies a real message (its attempt, snapshot and blob are right)
    # and leaves a table out: were it taken first, the point would miss that table's rows.
    real = max((json.loads(m.content) for m in sent), key=lambda p: len(p["tables"]))
    assert len(real["tables"]) > 1
    forged = {**real, "tables": real["tables"][1:]}
    worker = Taker(world, "forger").worker("forger")
    assert worker.run(forged, delivery=1, last_try=False) is PartOutcome.DROPPED
    assert not world.storage.backups.exists(real["blobName"])
    row = next(r for r in parts_of(world.storage.state, job_id) if r.index == real["part"])
    assert row.status is PartStatus.PENDING and row.worker is None
    worker.poisoned(forged)  # nor may it fail the part from the poison queue
    row = next(r for r in parts_of(world.storage.state, job_id) if r.index == real["part"])
    assert row.status is PartStatus.PENDING
    taker = Taker(world, "after-forgery", limit=PARTS)
    taker.start()
    taker.join(60)
    coordinator.join(60)
    assert isinstance(out[0], Job) and out[0].status is JobStatus.COMPLETED, out
    assert taker.outcomes == [PartOutcome.COMMITTED] * PARTS
    point = RecoveryPointStore(world.storage.state).get("xsrc", str(out[0].recovery_point_id))
    world.restore(point, f"xforged_{world.u}")
    assert world.digests(f"xforged_{world.u}") == world.digests(world.db)


def test_a_part_whose_tables_have_non_ascii_names_too_many_for_a_message_points_at_the_plan(world: World) -> None:
    # 160 tables whose names are 59 Cyrillic letters: about 21 KB of UTF-8 in one part's message, but the
    # queue's JSON escapes each letter as \uXXXX, three times that, well over the 64 KiB a message may be.
    schema = "с" * 30
    with psycopg.connect(host="127.0.0.1", port=world.pg.port, dbname=world.db, user="postgres", autocommit=True) as c:
        c.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        for i in range(160):
            c.execute(sql.SQL("CREATE TABLE {} (v int)").format(sql.Identifier(schema, "т" * 29 + f"{i:03d}")))
        c.execute(
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema), sql.Identifier(f"xb_{world.u}"))
        )
        c.execute(
            sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(
                sql.Identifier(schema), sql.Identifier(f"xb_{world.u}")
            )
        )
    try:
        taker = Taker(world, "unicode", limit=1)
        _, point = world.backup(taker, parallelism=1)
        assert [len(p.tables) for p in point.parts] == [23 + 160]
        assert "plan" in taker.payloads[0] and "tables" not in taker.payloads[0]
    finally:
        with psycopg.connect(
            host="127.0.0.1", port=world.pg.port, dbname=world.db, user="postgres", autocommit=True
        ) as c:
            c.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def test_parts_that_start_after_the_servers_idle_in_transaction_timeout_still_find_their_snapshot(
    world: World, tmp_path: Path
) -> None:
    # The coordinator's snapshot session is idle while it waits for the parts, for hours on a large database;
    # a server (or role) with idle_in_transaction_session_timeout would end it, and every part, every retry.
    role = sql.Identifier(f"xb_{world.u}")
    with psycopg.connect(world.pg.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("ALTER ROLE {} SET idle_in_transaction_session_timeout = '1s'").format(role))
    try:
        slow = _slow_pg_dump(tmp_path, pick_tool("pg_dump", 15).path, 2)  # each part reads the snapshot 2 s late
        takers = [Taker(world, f"idle-{i}", limit=1, pg_bin_dir=slow) for i in range(PARTS)]
        _, point = world.backup(*takers)
        assert [o for t in takers for o in t.outcomes] == [PartOutcome.COMMITTED] * PARTS
        assert len(point.parts) == PARTS
    finally:
        with psycopg.connect(world.pg.dsn(), autocommit=True) as c:
            c.execute(sql.SQL("ALTER ROLE {} RESET idle_in_transaction_session_timeout").format(role))


def test_the_rows_of_an_attempt_whose_coordinator_died_are_deleted_by_the_retention_sweep_once_its_job_ended(
    world: World,
) -> None:
    # The coordinator died with its attempt Running (its rows never deleted); its job's retry deletes only its own
    # attempt's rows, and a job failed by the hung-jobs sweep has no coordinator left at all.
    job_id = world.start_backup()
    board = PartBoard(world.storage.state, job_id, "deadc0de")
    sent = [
        PartMessage(
            jobId=job_id,
            instance="xsrc",
            attempt="deadc0de",
            part=i,
            blobName=layout.part_blob_name("xsrc/rp.deadc0de.pgdump.zst", i),
            snapshot="00000003-00000002-1",
            serverMajor=15,
            pgDumpVersion="pg_dump (PostgreSQL) 15.8",
            tables=[("public", f"t{i}")],
        )
        for i in range(1, PARTS + 1)
    ]
    board.open(
        instance="xsrc", snapshot="00000003-00000002-1", blob_name="xsrc/rp.pgdump.zst", messages=sent, now=world.now()
    )
    sweep = RetentionSweep(world.storage.state, world.storage.backups)
    assert sweep.sweep(world.now()).errors == []
    assert len(world.rows_left(job_id)) == PARTS + 1  # its job is still running: a retry may need its rows
    jobs = JobStore(world.storage.state)
    jobs.fail(jobs.get(job_id), UserError(ErrorCode.JOB_ABANDONED, "its coordinator died"), world.now())
    report = sweep.sweep(world.now())
    assert report.errors == [] and report.part_rows_deleted >= PARTS + 1
    assert world.rows_left(job_id) == []
