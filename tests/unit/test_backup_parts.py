"""Backup parts across instances, the pure and in-memory side: how many parts, what a message may
hold, how the part rows move (tests/integration/test_parts_across_instances.py runs them for real)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.backup_parts import (
    DEFAULT_PART_BYTES,
    MAX_PARTS,
    AttemptStatus,
    PartBoard,
    PartMessage,
    PartOutcome,
    PartStatus,
    PartWorker,
    part_count,
    parts_of,
)
from shared.errors import SettingsError
from shared.jobs import Job, JobStatus, JobStore, Operation, new_job_id
from shared.pg.dump import SnapshotGone, map_dump_error
from shared.policy import lifecycle, parse_policy
from shared.recovery_points import Part, RecoveryPoint, RecoveryPointStore, parts_of_record, parts_properties
from shared.retention import RetentionSweep
from shared.secrets import EnvSecretProvider
from shared.settings import load_settings
from shared.storage import layout
from shared.storage.limits import MAX_TABLE_ENTITY_BYTES
from shared.storage.memory import MemoryBlobStore, MemoryStateTable
from shared.storage.ports import Entity
from tests.examples import EXAMPLES

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
GIB = 1024**3
POLICY_DOC: dict[str, Any] = json.loads((EXAMPLES / "weekly-mon-wed-fri-with-archive.json").read_text())["properties"]
MESSAGE = {
    "jobId": "fe5dc8e77640-6b2709d900cb9c1af5b0",
    "instance": "orders",
    "attempt": "0123abcd",
    "part": 2,
    "blobName": "orders/rp.0123abcd.part002.pgdump.zst",
    "snapshot": "00000003-0000001B-1",
    "serverMajor": 15,
    "pgDumpVersion": "pg_dump (PostgreSQL) 15.8",
    "tables": [["public", "t"]],
}


@pytest.mark.parametrize(
    ("size", "parallelism", "expected"),
    [
        (0, 4, 4),  # a small database still gets what one instance runs at once
        (2048 * GIB, 2, 16),  # 2 TB in parts of at most 128 GiB: 16 (bench/README.md)
        (2048 * GIB + 1, 2, 17),
        (10**18, 2, MAX_PARTS),
        (0, 1, 1),
    ],
)
def test_part_count_is_the_parallelism_or_enough_parts_of_at_most_the_part_size(
    size: int, parallelism: int, expected: int
) -> None:
    assert part_count(size, parallelism, DEFAULT_PART_BYTES) == expected


def test_a_part_message_has_no_room_for_a_credential_and_names_the_field_at_fault() -> None:
    assert PartMessage.model_validate(MESSAGE).tables == [("public", "t")]
    with pytest.raises(ValueError, match="password"):
        PartWorker.parse({**MESSAGE, "password": "secret"})
    with pytest.raises(ValueError, match="part"):
        PartWorker.parse({**MESSAGE, "part": 0})
    with pytest.raises(ValueError, match="attempt"):
        PartWorker.parse({**MESSAGE, "attempt": "../other"})


def test_a_part_message_naming_a_job_or_instance_pgvault_never_makes_is_refused_naming_the_field() -> None:
    # Its job id is a partition key and its instance a row key: a '/' or '#' there would only fail in storage,
    # on every retry and again from the poison queue.
    for field, value in (("jobId", "j1/../x"), ("jobId", "j1"), ("instance", "orders#x"), ("instance", "")):
        with pytest.raises(ValueError, match=f"^not a backup part message: {field}:"):
            PartWorker.parse({**MESSAGE, field: value})


def test_a_part_row_knows_its_own_message_and_no_copy_with_other_tables() -> None:
    state = MemoryStateTable()
    board = PartBoard(state, "j1", "0123abcd")
    sent = PartMessage.model_validate(MESSAGE)
    board.open(instance="orders", snapshot=sent.snapshot, blob_name="orders/rp.pgdump.zst", messages=[sent], now=NOW)
    row = board.part(2)
    assert row is not None
    assert row.sent_as(PartWorker.parse(json.loads(json.dumps(MESSAGE, sort_keys=True))))  # as the queue brings it
    for change in ({"tables": [["public", "other"]]}, {"expectedBytes": 1}, {"plan": "x"}, {"serverMajor": 16}):
        assert not row.sent_as(PartWorker.parse({**MESSAGE, **change})), change


def test_a_pg_dump_that_finds_no_snapshot_says_the_snapshot_is_gone() -> None:
    stderr = 'pg_dump: error: query failed: ERROR:  invalid snapshot identifier: "00000003-0000001B-1"\n'
    assert isinstance(map_dump_error(stderr, 1, "orders"), SnapshotGone)


def test_a_final_part_row_never_changes_and_another_attempts_rows_are_not_this_ones() -> None:
    state = MemoryStateTable()
    old, new = PartBoard(state, "j1", "aaaa"), PartBoard(state, "j1", "bbbb")
    sent = [PartMessage.model_validate({**MESSAGE, "part": i}) for i in (1, 2)]
    old.open(instance="orders", snapshot="s1", blob_name="b1", messages=sent, now=NOW)
    new.open(instance="orders", snapshot="s2", blob_name="b2", messages=sent, now=NOW)
    row, changed = new.change(1, lambda _: {"status": PartStatus.COMMITTED.value, "sha256": "ab"})
    assert changed and row.status is PartStatus.COMMITTED
    row, changed = new.change(1, lambda _: {"status": PartStatus.FAILED.value})
    assert not changed and row.status is PartStatus.COMMITTED and row.sha256 == "ab"
    assert [r.status for r in old.rows()] == [PartStatus.PENDING] * 2  # the older attempt's rows are its own
    assert [r.status for r in new.rows()] == [PartStatus.COMMITTED, PartStatus.PENDING]
    assert len(parts_of(state, "j1")) == 4
    new.finish(AttemptStatus.FAILED, NOW)
    new.finish(AttemptStatus.DONE, NOW)  # a finished attempt stays as it ended
    assert new.status() is AttemptStatus.FAILED and old.status() is AttemptStatus.RUNNING


def test_parts_across_instances_is_off_by_default_and_its_settings_are_checked() -> None:
    base = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "PGVAULT_SCHEDULER_SCHEDULE": "0 */5 * * * *",
        "PGVAULT_RETENTION_SCHEDULE": "0 17 * * * *",
    }
    default = load_settings(base)
    assert (default.backup_parts_across_instances, default.backup_part_bytes) == (False, DEFAULT_PART_BYTES)
    chosen = load_settings(
        {**base, "PGVAULT_BACKUP_PARTS_ACROSS_INSTANCES": "true", "PGVAULT_BACKUP_PART_BYTES": str(64 * GIB)}
    )
    assert (chosen.backup_parts_across_instances, chosen.backup_part_bytes) == (True, 64 * GIB)
    with pytest.raises(SettingsError) as err:
        load_settings({**base, "PGVAULT_BACKUP_PARTS_ACROSS_INSTANCES": "yes please", "PGVAULT_BACKUP_PART_BYTES": "1"})
    assert set(err.value.problems) == {"PGVAULT_BACKUP_PARTS_ACROSS_INSTANCES", "PGVAULT_BACKUP_PART_BYTES"}


def test_a_points_parts_named_in_non_ascii_fit_the_table_property_that_stores_them() -> None:
    # 160 tables of 59 Cyrillic letters: about 11 000 characters, well under the 32 K a string property holds;
    # as \uXXXX escapes they would be six times that, and the point's record refused after the whole dump.
    tables = tuple(f'"{"с" * 30}"."{"т" * 29}{i:03d}"' for i in range(160))
    parts = (Part(1, "ab" * 32, 10, 20, tables),)
    state = MemoryStateTable()
    state.insert("points", "p1", parts_properties(parts))
    stored = state.get("points", "p1")
    assert stored is not None and parts_of_record(stored.data) == parts


def _parted_point(parts: int, tables: int) -> RecoveryPoint:
    return RecoveryPoint.from_lifecycle(
        "rp1",
        "orders",
        lifecycle(parse_policy(POLICY_DOC), "Default", NOW),
        blob_name="orders/rp1.pgdump.zst",
        size_in_bytes=1,
        raw_bytes=1,
        sha256="0" * 64,
        server_version="15",
        pg_dump_version="15",
        job_id="job1",
        on_demand=False,
        parts=tuple(
            Part(
                i,
                f"{i:064x}",
                2**40,
                2**41,
                tuple(f'"tenant_{i:03d}"."table_{t:04d}_of_tenant"' for t in range(tables)),
            )
            for i in range(1, parts + 1)
        ),
    )


def _entity_bytes(entity: Any) -> int:
    return sum(2 * len(v) for v in entity.data.values() if isinstance(v, str))


def test_a_point_of_the_most_parts_with_their_tables_is_recorded_and_read_back_whole() -> None:
    # 999 parts (PGVAULT_BACKUP_PART_BYTES can be as low as 1 MiB) of 3 tables each: some 230 000 characters,
    # seven times what one table property holds.
    state = MemoryStateTable()
    point, _ = RecoveryPointStore(state).add(_parted_point(MAX_PARTS, 3))
    read = RecoveryPointStore(state).get("orders", "rp1")
    assert read.parts == point.parts and len(read.parts) == MAX_PARTS
    entity = state.get(layout.recovery_points("orders"), "rp1")
    assert entity is not None and _entity_bytes(entity) < MAX_TABLE_ENTITY_BYTES


def test_a_point_whose_table_lists_cannot_fit_its_record_keeps_every_parts_checksum() -> None:
    # 999 parts of 40 tables: the lists alone are over the 1 MiB an entity may be. They are only a note
    # (a restore reads each part's blob and checksum), so the point is recorded without them.
    state = MemoryStateTable()
    point, _ = RecoveryPointStore(state).add(_parted_point(MAX_PARTS, 40))
    read = RecoveryPointStore(state).get("orders", "rp1")
    assert [(p.index, p.sha256, p.stored_bytes, p.raw_bytes) for p in read.parts] == [
        (p.index, p.sha256, p.stored_bytes, p.raw_bytes) for p in point.parts
    ]
    assert all(p.tables == () for p in read.parts)
    entity = state.get(layout.recovery_points("orders"), "rp1")
    assert entity is not None and _entity_bytes(entity) < MAX_TABLE_ENTITY_BYTES


@settings(max_examples=60, deadline=None)
# At most 30 parts of 20 names of 100 characters: even all escaped (\u0001 is six) within MAX_PART_PROPERTIES.
@given(st.lists(st.lists(st.text(min_size=1, max_size=100), max_size=20), min_size=1, max_size=30))
def test_any_parts_are_read_back_from_their_record_as_they_were_written(tables: list[list[str]]) -> None:
    parts = tuple(Part(i, "ab" * 32, i, 2 * i, tuple(t)) for i, t in enumerate(tables, start=1))
    state = MemoryStateTable()
    state.insert("points", "p1", parts_properties(parts))  # the in-memory table refuses a property over 64 KiB
    stored = state.get("points", "p1")
    assert stored is not None and parts_of_record(stored.data) == parts


def test_a_late_message_of_a_failed_attempt_deletes_its_committed_part_blob() -> None:
    # The part was committed and recorded, then the coordinator gave the attempt up and could not delete the
    # blob (storage failing). No point can name a failed attempt's blob: the next delivery of the part removes it.
    state, blobs = MemoryStateTable(), MemoryBlobStore()
    sent = PartMessage.model_validate(MESSAGE)
    board = PartBoard(state, sent.jobId, sent.attempt)
    board.open(
        instance="orders", snapshot=sent.snapshot, blob_name="orders/rp.0123abcd.pgdump.zst", messages=[sent], now=NOW
    )
    blobs.put(sent.blobName, b"a committed part")
    board.change(sent.part, lambda _: {"status": PartStatus.COMMITTED.value, "sha256": "ab" * 32})
    board.finish(AttemptStatus.FAILED, NOW)
    worker = PartWorker(state, blobs, EnvSecretProvider(True, {}), lambda: NOW, worker_id="late")
    assert worker.run(MESSAGE, delivery=2, last_try=False) is PartOutcome.DROPPED
    assert not blobs.exists(sent.blobName)


def _opened(state: MemoryStateTable, job_id: str = MESSAGE["jobId"], attempt: str = MESSAGE["attempt"]) -> PartBoard:
    """An attempt recorded as its coordinator records it, with the one part of ``MESSAGE``."""
    sent = PartMessage.model_validate({**MESSAGE, "jobId": job_id, "attempt": attempt})
    board = PartBoard(state, job_id, attempt)
    board.open(
        instance="orders", snapshot=sent.snapshot, blob_name="orders/rp.0123abcd.pgdump.zst", messages=[sent], now=NOW
    )
    return board


class _SweptMidway(MemoryStateTable):
    """A table on which an ended attempt's rows are swept (``PartBoard.sweep``, as its coordinator does) right
    after row ``key`` of its partition has been read ``reads`` times: a late delivery racing that sweep."""

    def sweep_after(self, board: PartBoard, key: str, reads: int) -> None:
        self._board, self._key, self._reads = board, key, reads

    def get(self, pk: str, rk: str) -> Entity | None:
        found = super().get(pk, rk)
        board = getattr(self, "_board", None)
        if board is not None and (pk, rk) == (board.pk, self._key):
            self._reads -= 1
            if self._reads == 0:
                board.sweep()
        return found


def test_a_late_delivery_racing_the_sweep_of_a_done_attempts_rows_leaves_the_part_its_point_names() -> None:
    # The delivery read the attempt Done; its rows are then swept. That no row says the part is Committed any
    # more must not read as "no point can name it": its blob is part of a recovery point.
    state, blobs = _SweptMidway(), MemoryBlobStore()
    board = _opened(state)
    sent = PartMessage.model_validate(MESSAGE)
    blobs.put(sent.blobName, b"a committed part")
    board.change(sent.part, lambda _: {"status": PartStatus.COMMITTED.value, "sha256": "ab" * 32})
    board.finish(AttemptStatus.DONE, NOW)
    state.sweep_after(board, board.attempt, reads=2)  # the delivery saw the attempt Done, and is leaving the part
    worker = PartWorker(state, blobs, EnvSecretProvider(True, {}), lambda: NOW, worker_id="late")
    assert worker.run(MESSAGE, delivery=2, last_try=False) is PartOutcome.DROPPED
    assert blobs.exists(sent.blobName)
    assert list(state.partition(board.pk)) == []


def test_a_delivery_whose_part_row_is_swept_before_it_records_the_part_is_dropped_touching_nothing() -> None:
    # An earlier delivery committed the part and died before recording it; this one finds the blob committed and
    # goes to record it, but the attempt ended meanwhile and its rows were swept.
    state, blobs = _SweptMidway(), MemoryBlobStore()
    board = _opened(state)
    state.insert(layout.LOCK, layout.row_key("orders"), {"jobId": MESSAGE["jobId"], "token": MESSAGE["attempt"]})
    sent = PartMessage.model_validate(MESSAGE)
    meta = {"sha256": "ab" * 32, "jobid": sent.jobId, "part": str(sent.part), "storedbytes": "16", "rawbytes": "32"}
    blobs.put(sent.blobName, b"a committed part", metadata=meta)
    state.sweep_after(board, f"{board.attempt}.{sent.part:04d}", reads=1)
    worker = PartWorker(state, blobs, EnvSecretProvider(True, {}), lambda: NOW, worker_id="late")
    assert worker.run(MESSAGE, delivery=2, last_try=False) is PartOutcome.DROPPED
    assert blobs.exists(sent.blobName) and blobs.info(sent.blobName).metadata == meta  # type: ignore[union-attr]
    assert list(state.partition(board.pk)) == []


def test_the_retention_sweep_deletes_the_part_rows_of_ended_backups_and_keeps_those_of_running_ones() -> None:
    # A coordinator that died (or could not delete its attempt's rows) leaves them; once its job has ended, by
    # its retry or the hung-jobs sweep, nothing reads them again.
    state, blobs = MemoryStateTable(), MemoryBlobStore()
    jobs = JobStore(state)  # type: ignore[arg-type]
    ended, running = (
        jobs.create(Job(new_job_id(NOW), Operation.BACKUP, "orders", status, NOW))[0].job_id
        for status in (JobStatus.FAILED, JobStatus.IN_PROGRESS)
    )
    forgotten = new_job_id(NOW)  # its job's row is gone
    for job_id in (ended, running, forgotten):
        for attempt in ("aaaa", "bbbb"):
            _opened(state, job_id, attempt)
    report = RetentionSweep(state, blobs).sweep(NOW)  # type: ignore[arg-type]
    assert report.part_rows_deleted == 2 * 2 * 2 and report.to_dict()["partRowsDeleted"] == 8
    assert list(state.partition(layout.backup_parts(ended))) == []
    assert list(state.partition(layout.backup_parts(forgotten))) == []
    assert len(list(state.partition(layout.backup_parts(running)))) == 4  # its retry may be running right now
    assert RetentionSweep(state, blobs).sweep(NOW).part_rows_deleted == 0  # type: ignore[arg-type]
