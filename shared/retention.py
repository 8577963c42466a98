"""The retention sweep (docs/rules.md C7): expired points are deleted or moved to the archive, on time, once.

What the sweep does to a point is its lifecycle (``shared.policy.retention``), fixed when the point
was recorded: at vault expiry it is deleted, or moved to ArchiveStore (blob tier Archive) when its
rule copies on expiry; an archived point is deleted at its archive expiry. ImmediateCopyOption
points get an Archive-tier copy at the first sweep after the backup and lose each copy at its expiry.

Every step is a job (``ArchiveMove`` or ``Delete``) and a small state machine on the point
(``shared.recovery_points.PointState``), written with the point's ETag BEFORE the sweep acts:

    claim      point -> Moving/Copying/Deleting, with the step's job id and this run's id; the
               point's due-index row names the job too (so it is found after the record goes)
    job        the job is recorded (an insert: a re-run finds the same job)
    blob       tier set / copy made / blob deleted (each idempotent; "already gone" is fine)
    record     point -> Archived/Active with the next event, or the record deleted (blob first!)
    finish     the job is Completed
    index      the point's due-index row moves to its next event's day, or goes

A sweep killed after any of these leaves the point claimed; the next run (after ``CLAIM_TIMEOUT``)
takes the claim over, with an ETag-guarded write, and repeats the idempotent steps. Two runs at
once cannot both claim a point: the loser's write fails its ETag check and it skips the point.

Scale: the sweep reads the due index (``due-YYYYMMDD`` partitions, one range query up to today),
not the points of every instance; work per run is proportional to what is due. The instances
are read once per run (one partition) to know which are stopped.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from shared.backup_parts.board import sweep_ended
from shared.clock_skew import ClockSkewed, service_now
from shared.errors import TransientError, UserError
from shared.immutability import Immutability
from shared.instances import Instance, InstanceStore, RetainData
from shared.jobs import Job, JobStatus, JobStore, Operation, new_job_id
from shared.policy import DataStore, LifecycleEvent
from shared.recovery_points import STEP_STATE, PointState, RecoveryPoint, RecoveryPointStore, due_key
from shared.restore.rehydration import COPY_PREFIX
from shared.storage import layout
from shared.storage.blobs import ARCHIVE_COPY_SUFFIX
from shared.storage.ports import BlobContainer
from shared.storage.tables import Entity, EntityExists, ETagMismatch, StateStore
from shared.timeouts import MAX_JOB_LIFETIME

log = logging.getLogger(__name__)

# A claim older than this belongs to a run that died: another run may take the point over. Each
# step on one point takes seconds; a Functions timer runs at most 10 min on Consumption.
CLAIM_TIMEOUT = timedelta(minutes=10)
# Most points one run acts on; the rest wait for the next run (keeps a run inside the host's timeout).
MAX_ACTIONS_PER_RUN = 2000
# The due index was added after points existed: this marker says every older point has its row.
INDEX_MARKER = "index-v1"
# Blobs that no point references (a backup attempt that lost to another, or died between its commit
# and its point) are looked for at most this often: a listing reads every blob of the container.
ORPHAN_SCAN_EVERY = timedelta(days=1)
ORPHAN_MARKER = "orphans"


class SweepStep(StrEnum):
    """The points between steps where a sweep may die (and where tests kill it)."""

    CLAIMED = "Claimed"
    JOB_RECORDED = "JobRecorded"
    BLOB_DONE = "BlobDone"
    RECORD_DONE = "RecordDone"
    FINISHED = "Finished"
    INDEXED = "Indexed"


# Called after each step with the step and the point: the port where tests inject a crash.
StepHook = Callable[[SweepStep, RecoveryPoint], None]

_OPERATION = {
    LifecycleEvent.ARCHIVE_MOVE: Operation.ARCHIVE_MOVE,
    LifecycleEvent.ARCHIVE_COPY: Operation.ARCHIVE_MOVE,
    LifecycleEvent.DELETE_VAULT: Operation.DELETE,
    LifecycleEvent.DELETE_ARCHIVE: Operation.DELETE,
    LifecycleEvent.DELETE: Operation.DELETE,
}


class Claimed(Exception):
    """Another live sweep run holds the point: skip it."""


@dataclass
class SweepReport:
    """What one run did."""

    acted: dict[str, int] = field(default_factory=dict)
    """Steps finished per lifecycle event."""
    held: int = 0
    """Due points left alone because their instance is stopped with retention held (or soft-deleted)."""
    immutable: int = 0
    """Points of a purged instance kept because the vault is immutable and their retention has not ended."""
    busy: int = 0
    """Due points another run was acting on."""
    dropped_index_rows: int = 0
    instances_deleted: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    orphans_deleted: int = 0
    """Backup blobs no point referenced, older than ``MAX_JOB_LIFETIME``, deleted."""
    part_rows_deleted: int = 0
    """Rows of ended backups' parts across instances left behind (``shared.backup_parts.sweep_ended``), deleted."""
    more: bool = False
    """True when the run stopped at ``MAX_ACTIONS_PER_RUN`` with work left."""
    refused: str | None = None
    """Why the run did nothing at all (the host's clock is off the storage service's)."""

    def count(self, event: LifecycleEvent) -> None:
        self.acted[event.value] = self.acted.get(event.value, 0) + 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "acted": dict(self.acted),
            "held": self.held,
            "immutable": self.immutable,
            "busy": self.busy,
            "droppedIndexRows": self.dropped_index_rows,
            "instancesDeleted": list(self.instances_deleted),
            "errors": list(self.errors),
            "orphanBlobsDeleted": self.orphans_deleted,
            "partRowsDeleted": self.part_rows_deleted,
            "more": self.more,
            **({"refused": self.refused} if self.refused else {}),
        }


def archive_copy_name(blob_name: str) -> str:
    """The blob of a point's ArchiveStore copy (ImmediateCopyOption)."""
    return blob_name + ARCHIVE_COPY_SUFFIX


class RetentionSweep:
    """Runs the retention state machines of due points (the timer calls ``sweep``)."""

    def __init__(
        self,
        state: StateStore,
        blobs: BlobContainer,
        *,
        run_id: str | None = None,
        on_step: StepHook | None = None,
        max_actions: int = MAX_ACTIONS_PER_RUN,
        immutability: Immutability = Immutability.DISABLED,
    ) -> None:
        self._state = state
        self._blobs = blobs
        self._points = RecoveryPointStore(state)
        self._jobs = JobStore(state)
        self._instances = InstanceStore(state)
        self.run_id = run_id or secrets.token_hex(8)
        self._on_step = on_step
        self._max_actions = max_actions
        self._immutability = immutability

    def _step(self, step: SweepStep, point: RecoveryPoint) -> None:
        if self._on_step is not None:
            self._on_step(step, point)

    # -- the timer's entry point ------------------------------------------------------------------

    def sweep_on_time(self, host_now: datetime) -> SweepReport:
        """The timer's sweep: at the storage service's time, or not at all when this host's clock
        (``host_now``) is more than ``MAX_CLOCK_SKEW`` off it (a clock a year ahead would delete a
        year of points early). The report's ``refused`` says why; the log says it as an error."""
        try:
            now = service_now(self._state, host_now)
        except ClockSkewed as exc:
            log.error("retention sweep %s refused: %s", self.run_id, exc.message)
            return SweepReport(refused=exc.message)
        return self.sweep(now)

    def sweep(self, now: datetime) -> SweepReport:
        """Act on every point whose next lifecycle event is due at ``now``, oldest first.

        Soft-deleted instances whose purge time has come are emptied and removed first (the points of
        the others are held as they are). Points of an instance stopped with ``forever`` are held; with
        ``asPerPolicy`` all but its latest point follow their lifecycle.
        """
        report = SweepReport()
        self.backfill_index()
        instances = {layout.row_key(i.spec.name): i for i in self._instances.all()}
        actions = 0
        for instance in instances.values():
            if instance.soft_deleted and instance.purge_at is not None and instance.purge_at <= now:
                done, used = self.purge_instance(instance, now, report, self._max_actions - actions)
                actions += used
                if done:
                    report.instances_deleted.append(instance.spec.name)
        latest: dict[str, str | None] = {}
        for entry in self._points.due(now):
            if actions >= self._max_actions:
                report.more = True
                break
            owner = instances.get(layout.row_key(str(entry["instance"])))
            if self._held(entry, owner, latest):
                report.held += 1
                continue
            point = self._points.find(str(entry["instance"]), str(entry["recoveryPointId"]))
            if not self._repair(entry, point, now, report):
                continue
            assert point is not None
            # Act until nothing more is due: a point may owe two events after a long pause.
            current: RecoveryPoint | None = point
            while current is not None and actions < self._max_actions:
                upcoming = current.next_event()
                if upcoming is None or upcoming[0] > now:
                    break
                held = owner is not None and owner.retain_data not in (None, RetainData.AS_PER_POLICY)
                if current.pending_event is None and held:
                    break  # the in-flight step is done; a stopped instance's next one waits
                actions += 1
                current = self._try(current, now, report, None)
        try:
            report.orphans_deleted = self.collect_orphans(now)
        except (TransientError, ETagMismatch, EntityExists) as exc:
            report.errors.append(f"orphan blobs: {exc}")
        try:
            report.part_rows_deleted = sweep_ended(self._state, self._jobs)
        except TransientError as exc:
            report.errors.append(f"part rows: {exc}")
        log.info("retention sweep %s at %s: %s", self.run_id, now.isoformat(), report.to_dict())
        return report

    def _held(self, entry: Entity, owner: Instance | None, latest: dict[str, str | None]) -> bool:
        """Whether a stopped instance keeps this due point as it is.

        ``forever`` keeps every point (``delete`` points are ``purge_instance``'s work); ``asPerPolicy``
        keeps the latest. A step already in flight when protection stopped is finished regardless.
        """
        if owner is None or owner.retain_data is None or entry.get("pendingJobId") is not None:
            return False
        if owner.retain_data is not RetainData.AS_PER_POLICY:
            return True
        key = layout.row_key(owner.spec.name)
        if key not in latest:
            newest = self._points.newest(owner.spec.name)
            latest[key] = newest.recovery_point_id if newest else None
        return bool(latest[key] == entry["recoveryPointId"])

    def _repair(self, entry: Entity, point: RecoveryPoint | None, now: datetime, report: SweepReport) -> bool:
        """Mend what a run that died after settling a point left behind; True when ``point`` is ready to act on.

        The index row names the job of the step in flight: if the point's record no longer does
        (the record was settled or deleted, then the run died), that step is done, so its job is
        finished here, and the row is moved to the point's next event (or dropped).
        """
        key = (entry.partition_key, entry.row_key)
        left_job = entry.get("pendingJobId")
        if left_job is not None and (point is None or point.pending_job_id != left_job):
            claimed_at = entry.get("claimedAt")
            if claimed_at is not None and now - claimed_at < CLAIM_TIMEOUT:
                report.busy += 1  # its run may be alive and about to finish it
                return False
            self._finish_left(str(left_job), now)
        if point is None:
            self._points.drop_index_row(key)
            report.dropped_index_rows += 1
            return False
        if due_key(point) != key:
            self._points.index(point, previous=key)
            report.dropped_index_rows += 1
            return False
        return True

    def _finish_left(self, job_id: str, now: datetime) -> None:
        try:
            job = self._jobs.get(job_id)
        except UserError:
            return  # the run died before recording it
        if not job.status.finished:
            with contextlib.suppress(ETagMismatch):
                self._jobs.finish(job, JobStatus.COMPLETED, now, progress=1.0)

    def _try(
        self, point: RecoveryPoint, now: datetime, report: SweepReport, forced: LifecycleEvent | None
    ) -> RecoveryPoint | None:
        """Advance one point, counting the outcome; the settled point (None when gone or not done)."""
        try:
            event, settled = self.advance(point, now, forced=forced)
        except (Claimed, ETagMismatch):
            report.busy += 1
            return None
        except (TransientError, UserError) as exc:
            report.errors.append(f"{point.instance}/{point.recovery_point_id}: {exc}")
            log.warning(
                "retention sweep %s: point %s of %s: %s", self.run_id, point.recovery_point_id, point.instance, exc
            )
            return None
        report.count(event)
        return settled

    def backfill_index(self) -> int:
        """Give every point recorded before the due index existed its index row (once per table)."""
        if self._state.get(layout.RETENTION, INDEX_MARKER) is not None:
            return 0
        written = 0
        for instance in self._instances.all():
            for point in self._points.of(instance.spec.name, include_deleting=True):
                self._points.index(point)
                written += 1
        with contextlib.suppress(EntityExists):
            self._state.insert(layout.RETENTION, INDEX_MARKER, {"points": written})
        return written

    def collect_orphans(self, now: datetime) -> int:
        """Delete backup blobs (and their manifests and roles) that no point references and that are older than
        ``MAX_JOB_LIFETIME``; at most once per ``ORPHAN_SCAN_EVERY``. How many were deleted.

        Younger ones may belong to an attempt still running (about to record its point); an attempt
        older than ``attempt_limit`` records none, so nothing older can become referenced. Only dump
        blobs and their sidecars are candidates (never rehydrated copies or archive copies), and the
        points are read before the blobs are listed.
        """
        marker = self._state.get(layout.RETENTION, ORPHAN_MARKER)
        if marker is not None and now - marker["scannedAt"] < ORPHAN_SCAN_EVERY:
            return 0
        # Claim the scan first (ETag-guarded): two sweeps at once scan once.
        if marker is None:
            self._state.insert(layout.RETENTION, ORPHAN_MARKER, {"scannedAt": now})
        else:
            self._state.update(marker, {"scannedAt": now})
        referenced: set[str] = set()
        for point in self._points.every():
            referenced.update(point.blob_names(point.blob_name.removesuffix(ARCHIVE_COPY_SUFFIX)))
            if point.archive_blob_name:
                referenced.update(point.blob_names(point.archive_blob_name))
        deleted = 0
        for name, modified in self._blobs.listing():
            dump = layout.dump_of(name)
            if not dump.endswith(layout.DUMP_SUFFIX) or name.startswith(COPY_PREFIX) or dump in referenced:
                continue
            if now - modified <= MAX_JOB_LIFETIME:
                continue
            if self._blobs.delete(name):
                deleted += 1
                log.info("retention sweep %s: deleted %s, which no recovery point references", self.run_id, name)
        return deleted

    # -- one point ---------------------------------------------------------------------------------

    def advance(
        self, point: RecoveryPoint, now: datetime, *, forced: LifecycleEvent | None = None
    ) -> tuple[LifecycleEvent, RecoveryPoint | None]:
        """Run the point's next due event (or the one in flight) to its end: the event and the settled
        point (None when the point is gone).

        ``forced=DELETE`` deletes the point whatever its lifecycle says (the purge of a soft-deleted instance).
        Raises ``Claimed`` or ``ETagMismatch`` when another run holds or just took the point.
        """
        index_key = due_key(point)
        point = self._claim(point, now, forced)
        event = point.pending_event
        assert event is not None and point.pending_job_id is not None
        # The index row names the job in flight, so it is found even after the record is gone.
        self._points.index(point)
        self._step(SweepStep.CLAIMED, point)
        job, _ = self._jobs.create(
            Job(
                point.pending_job_id,
                _OPERATION[event],
                point.instance,
                JobStatus.IN_PROGRESS,
                now,
                start_time=now,
                retention_tag=point.retention_tag,
                recovery_point_id=point.recovery_point_id,
                bytes=point.size_in_bytes,
                details={
                    "event": event.value,
                    "trigger": "SoftDeletePurge" if forced else "Retention",
                    "sweep": self.run_id,
                },
            )
        )
        self._step(SweepStep.JOB_RECORDED, point)
        warnings = self._blob_step(point, event)
        self._step(SweepStep.BLOB_DONE, point)
        settled = self._record_step(point, event)
        self._step(SweepStep.RECORD_DONE, settled or point)
        if not job.status.finished:
            self._jobs.finish(
                job,
                JobStatus.COMPLETED_WITH_WARNINGS if warnings else JobStatus.COMPLETED,
                now,
                progress=1.0,
                details={**job.details, **({"warnings": warnings} if warnings else {})},
            )
        self._step(SweepStep.FINISHED, settled or point)
        if settled is None:
            if index_key is not None:
                self._points.drop_index_row(index_key)
        else:
            self._points.index(settled, previous=index_key)
        self._step(SweepStep.INDEXED, settled or point)
        log.info(
            "retention: %s of point %s (%s) done, job %s", event, point.recovery_point_id, point.instance, job.job_id
        )
        return event, settled

    def _claim(self, point: RecoveryPoint, now: datetime, forced: LifecycleEvent | None) -> RecoveryPoint:
        """Write the in-flight state before acting (ETag-guarded), or take over a dead run's claim."""
        if point.pending_event is not None:
            live = point.claimed_at is not None and now - point.claimed_at < CLAIM_TIMEOUT
            if point.claimed_by != self.run_id and live:
                raise Claimed(point.recovery_point_id)
            if forced is None or point.pending_event is forced:
                return self._points.save(point, claimed_by=self.run_id, claimed_at=now)
            self._cancel(point.pending_job_id, now)  # the dead run's step gives way to the forced delete
        upcoming = point.next_event()
        if forced is not None:
            event = forced
        elif upcoming is None or upcoming[0] > now:
            raise Claimed(point.recovery_point_id)  # nothing due: a stale index row or an early call
        else:
            event = upcoming[1]
        job_id = new_job_id(
            now,
            key=f"{layout.row_key(point.instance)}/{point.recovery_point_id}/{point.events_done}/"
            f"{event.value}/{self.run_id}",
        )
        changes: dict[str, Any] = {
            "state": STEP_STATE[event],
            "pending_event": event,
            "pending_job_id": job_id,
            "claimed_by": self.run_id,
            "claimed_at": now,
        }
        if event is LifecycleEvent.DELETE_VAULT and point.archive_blob_name is not None:
            # Switch the record to the archive copy first: the listing never shows the blob being deleted.
            changes.update(datastore=DataStore.ARCHIVE_STORE, blob_name=point.archive_blob_name, archive_blob_name=None)
        return self._points.save(point, **changes)

    def _cancel(self, job_id: str | None, now: datetime) -> None:
        if job_id is None:
            return
        try:
            job = self._jobs.get(job_id)
            if not job.status.finished:
                self._jobs.finish(job, JobStatus.CANCELLED, now)
        except (UserError, ETagMismatch):
            pass

    def _blob_step(self, point: RecoveryPoint, event: LifecycleEvent) -> list[str]:
        """The storage side of ``event`` (idempotent); warnings for what was found missing."""
        warnings: list[str] = []
        # A multi-part point's every blob (``blob_names``: the schema part, then each data part) goes
        # through each step; the parts' names follow the point's blob name through its copies.
        vault = point.blob_names(point.blob_name.removesuffix(ARCHIVE_COPY_SUFFIX))
        archive = point.blob_names(point.archive_blob_name) if point.archive_blob_name is not None else []
        if event is LifecycleEvent.ARCHIVE_MOVE:
            missing = [name for name in point.blob_names() if not self._blobs.set_archive_tier(name)]
            warnings += [f"blob {name} was missing; the point is recorded as archived regardless" for name in missing]
        elif event is LifecycleEvent.ARCHIVE_COPY:
            missing = [n for n in point.blob_names() if not self._blobs.copy_to_archive(n, archive_copy_name(n))]
            warnings += [f"blob {name} was missing; no archive copy was made" for name in missing]
        elif event is LifecycleEvent.DELETE_VAULT:
            self._delete_all(vault)
        elif event is LifecycleEvent.DELETE_ARCHIVE:
            self._delete_all(archive)
        else:
            # Blob(s) first, record after: a re-run after a crash here finds the record and deletes again.
            self._delete_all([*point.blob_names(), *archive])
            # The dump's manifest and roles go with its last copy (they stay in the hot tier meanwhile), and
            # so does what a backup across instances may have left beside it when a delete failed: its plan
            # and its parts' digests (an absent blob's delete is fine; the orphan sweep would wait a day).
            self._blobs.delete(layout.manifest_name_for(point.blob_name.removesuffix(ARCHIVE_COPY_SUFFIX)))
            if point.parts:
                self._delete_all([layout.plan_name_for(vault[0]), *(layout.part_digests_name(n) for n in vault[1:])])
            if point.roles_blob_name is not None:
                self._blobs.delete(point.roles_blob_name)
        return warnings

    def _delete_all(self, names: list[str]) -> None:
        for name in names:
            self._blobs.delete(name)

    def _record_step(self, point: RecoveryPoint, event: LifecycleEvent) -> RecoveryPoint | None:
        """Settle the record after the storage step: the new state, or the record gone (None)."""
        settled: dict[str, Any] = {
            "pending_event": None,
            "pending_job_id": None,
            "claimed_by": None,
            "claimed_at": None,
            "events_done": point.events_done + 1,
        }
        if event is LifecycleEvent.DELETE:
            self._points.remove(point)
            return None
        if event is LifecycleEvent.ARCHIVE_MOVE:
            settled.update(state=PointState.ARCHIVED, datastore=DataStore.ARCHIVE_STORE)
        elif event is LifecycleEvent.ARCHIVE_COPY:
            # Still restorable at once from VaultStore; the copy waits in the archive.
            settled.update(state=PointState.ACTIVE, archive_blob_name=archive_copy_name(point.blob_name))
        elif event is LifecycleEvent.DELETE_VAULT:
            settled.update(state=PointState.ARCHIVED, datastore=DataStore.ARCHIVE_STORE)
        else:  # DELETE_ARCHIVE
            settled.update(state=PointState.ACTIVE, archive_blob_name=None)
        return self._points.save(point, **settled)

    # -- the purge of a soft-deleted instance --------------------------------------------------

    def purge_instance(
        self, instance: Instance, now: datetime, report: SweepReport | None = None, budget: int | None = None
    ) -> tuple[bool, int]:
        """Purge soft-deleted ``instance``: begin its purge (its Delete job, recorded in the instance with
        its ETag, so an undelete cannot race it), delete every point (oldest first, each a Delete job, blob
        first), then its claim, schedule memory and record, and finish the purge job. (done, points acted on).

        Stops after ``budget`` points; the next call (the next sweep) goes on. While the vault is
        immutable, a point whose retention has not ended (``deletion`` after ``now``) is kept for now.
        """
        report = report if report is not None else SweepReport()
        name = instance.spec.name
        try:
            instance = self._begin_purge(instance, now)
        except ETagMismatch:
            report.busy += 1  # undeleted, or another run began it: the next run reads it again
            return False, 0
        points = sorted(self._points.of(name, include_deleting=True), key=lambda p: p.time)
        used = 0
        kept = 0
        for point in points:
            if self._immutability.enabled and point.pending_event is None and point.deletion > now:
                kept += 1
                continue
            if budget is not None and used >= budget:
                report.more = True
                return False, used
            used += 1
            self._try(point, now, report, LifecycleEvent.DELETE)
            if self._points.find(name, point.recovery_point_id) is not None:
                return False, used  # busy or failed: the next run goes on
        report.immutable += kept
        if kept or next(iter(self._points.of(name, include_deleting=True)), None) is not None:
            return False, used  # kept by immutability, or a backup finished meanwhile: the next runs go on
        self._forget_instance(instance, now)
        return True, used

    def _begin_purge(self, instance: Instance, now: datetime) -> Instance:
        """Record the purge's Delete job in the instance (ETag-guarded; once per instance) and in the jobs."""
        job_id = instance.purge_job_id
        if job_id is None:
            job_id = new_job_id(now, key=f"purge/{layout.row_key(instance.spec.name)}/{instance.deleted_at}")
            instance = self._instances.save(instance, replace(instance, purge_job_id=job_id))
            log.info("retention sweep %s: purge of soft-deleted instance %s begins", self.run_id, instance.spec.name)
        self._jobs.create(
            Job(
                job_id,
                Operation.DELETE,
                instance.spec.name,
                JobStatus.IN_PROGRESS,
                now,
                start_time=now,
                details={
                    "scope": "BackupInstance",
                    "trigger": "SoftDeletePurge",
                    "softDeleteJobId": instance.delete_job_id,
                    "sweep": self.run_id,
                },
            )
        )
        return instance

    def _forget_instance(self, instance: Instance, now: datetime) -> None:
        key = layout.row_key(instance.spec.name)
        self._instances.release(instance.spec)
        marker = self._state.get(layout.SCHEDULE, key)
        if marker is not None:
            self._state.delete(marker)
        if instance.purge_job_id is not None:
            try:
                job = self._jobs.get(instance.purge_job_id)
                if not job.status.finished:
                    self._jobs.finish(job, JobStatus.COMPLETED, now, progress=1.0)
            except UserError:
                pass
        current = self._instances.find(instance.spec.name)
        if current is not None and current.soft_deleted:
            self._instances.delete(current)
        log.info("retention sweep %s: soft-deleted instance %s purged with its claim", self.run_id, instance.spec.name)
