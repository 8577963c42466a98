"""One operation at a time per backup instance, across every worker process.

A lock is a row in the state table: taken with an insert (or an ETag-guarded takeover of a
lock whose holder stopped beating), renewed by the holder's heartbeat, released with its ETag.
A worker that dies mid-backup stops beating; after ``STALE_AFTER`` the next try takes over.
A later delivery of the same job's message (a higher ``attempt``: the host shows a message again
only after the delivery that took the lock ended, failed or died) takes over at once, so a lock
whose release failed (storage down) does not turn the retry away and leave the job InProgress.

Staleness is judged by the storage service's clock: the lock row's ``Timestamp`` (set by the
service on every renewal) against the ``Date`` of the answer that read it. A host whose own clock
runs ahead therefore never sees a live lock as abandoned, nor one whose clock lags a dead one as
alive; the ``heartbeat`` the holder writes is for people reading the row.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.errors import PgVaultError, TransientError
from shared.stopping import StopSignal
from shared.storage import layout
from shared.storage.tables import Entity, EntityExists, ETagMismatch, StateStore

log = logging.getLogger(__name__)

# A holder renews at least this often; a lock not renewed for STALE_AFTER is abandoned.
HEARTBEAT = timedelta(seconds=15)
STALE_AFTER = timedelta(minutes=2)
# How often a running job's heartbeat thread looks at its job (a cancel request) between beats.
WATCH_EVERY = timedelta(seconds=2)


class LockLost(TransientError):
    """Another worker took the lock over: this one stops before committing anything (the queue retries)."""


@dataclass(frozen=True)
class Lock:
    """A held lock: which job holds it, under which token, and the ETag of its row."""

    instance: str
    job_id: str
    token: str
    entity: Entity


def silent_for(entity: Entity, now: datetime) -> timedelta:
    """How long the lock row ``entity`` has gone without a renewal, by the storage service's clock.

    ``now`` (the host's clock, against the holder's ``heartbeat``) only when the row was not read
    with the service's times (an entity built in memory).
    """
    if entity.read_at is not None and entity.timestamp is not None:
        return entity.read_at - entity.timestamp
    heartbeat: datetime = entity["heartbeat"]
    return now - heartbeat


@dataclass(frozen=True)
class Holder:
    """Who holds an instance's lock, as read, and how long it has gone without a heartbeat."""

    job_id: str
    heartbeat: datetime
    silent: timedelta
    stale_after: timedelta = STALE_AFTER

    def stale(self) -> bool:
        """Whether the holder stopped renewing (died), judged by the storage service's clock."""
        return self.silent > self.stale_after


class InstanceLocks:
    """Per-instance operation locks in the state table.

    ``stale_after``: how long a lock may go unrenewed before another worker takes it over.
    """

    def __init__(self, state: StateStore, *, stale_after: timedelta = STALE_AFTER) -> None:
        self._state = state
        self._stale_after = stale_after

    def holder(self, instance: str, now: datetime | None = None) -> Holder | None:
        """The current holder of ``instance``'s lock, or None."""
        entity = self._state.get(layout.LOCK, layout.row_key(instance))
        if entity is None:
            return None
        silent = silent_for(entity, now or entity["heartbeat"])
        return Holder(str(entity["jobId"]), entity["heartbeat"], silent, self._stale_after)

    def held_by(self, job_id: str) -> list[Entity]:
        """The lock rows ``job_id`` holds (one partition of a row per running operation)."""
        return [e for e in self._state.partition(layout.LOCK) if e.get("jobId") == job_id]

    def live(self, now: datetime) -> set[str]:
        """The ids of the jobs holding a lock that is not stale (one read of the lock partition)."""
        service_now = self._state.service_time()
        alive = set()
        for entity in self._state.partition(layout.LOCK):
            stamped = entity.timestamp
            silent = service_now - stamped if stamped is not None else now - entity["heartbeat"]
            if silent <= self._stale_after:
                alive.add(str(entity.get("jobId")))
        return alive

    def break_for(self, job_id: str) -> int:
        """Remove every lock ``job_id`` holds (its job has ended): each delete guarded by the ETag
        read, so a lock taken over meanwhile stays. How many were removed."""
        removed = 0
        for entity in self.held_by(job_id):
            with contextlib.suppress(ETagMismatch):
                self._state.delete(entity)
                removed += 1
        return removed

    def acquire(self, instance: str, job_id: str, now: datetime, *, attempt: int = 1) -> Lock | None:
        """Take the lock for ``job_id``'s delivery number ``attempt``.

        None when a live holder has it: another job, or the same job under a delivery that is not
        older than this one (a duplicate running elsewhere).
        """
        token = secrets.token_hex(8)
        data = {"jobId": job_id, "token": token, "heartbeat": now, "acquired": now, "attempt": attempt}
        key = layout.row_key(instance)
        for _ in range(3):
            try:
                return Lock(instance, job_id, token, self._state.insert(layout.LOCK, key, data))
            except EntityExists:
                pass
            current = self._state.get(layout.LOCK, key)
            if current is None:
                continue
            superseded = current["jobId"] == job_id and attempt > int(current.get("attempt") or 1)
            if silent_for(current, now) <= self._stale_after and not superseded:
                return None
            try:
                return Lock(instance, job_id, token, self._state.update(current, data))
            except ETagMismatch:
                continue
        return None

    def renew(self, lock: Lock, now: datetime) -> Lock:
        """Beat: keep the lock. ``ETagMismatch`` means it was taken over: stop working."""
        data = {**lock.entity.data, "heartbeat": now}
        return Lock(lock.instance, lock.job_id, lock.token, self._state.update(lock.entity, data))

    def release(self, lock: Lock) -> None:
        """Give the lock back (nothing happens if it was already taken over)."""
        with contextlib.suppress(ETagMismatch):
            self._state.delete(lock.entity)


class Heartbeat:
    """Keeps a running job's lock alive from a thread of its own, every ``HEARTBEAT``, also while no
    bytes flow (pg_restore building indexes, pg_dump waiting on a lock). ``lock`` is always the
    latest (release that one: its ETag is current); ``lost`` when another worker took it over.

    Every ``WATCH_EVERY`` the thread also calls ``watch`` (the runner's look at its job row: was
    its cancel requested?). A lost lock or a reason from ``watch`` sets ``signal``: the running
    pipeline's stop callbacks (kill pg_dump/pg_restore) run at once and it raises the reason.
    ``confirm()`` does both checks synchronously, right before an irreversible step.
    """

    def __init__(
        self,
        locks: InstanceLocks,
        lock: Lock,
        clock: Callable[[], datetime],
        every: timedelta = HEARTBEAT,
        *,
        watch: Callable[[], PgVaultError | None] | None = None,
        watch_every: timedelta = WATCH_EVERY,
    ) -> None:
        self.lock = lock
        self.signal = StopSignal()
        self._locks, self._clock, self._every = locks, clock, every
        self._watch, self._watch_every = watch, min(watch_every, every)
        self._renewing = threading.Lock()  # the thread and confirm() renew with the same ETag
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lock-heartbeat", daemon=True)

    @property
    def lost(self) -> bool:
        """Whether another worker took the lock over."""
        return isinstance(self.signal.reason, LockLost)

    def _renew(self) -> None:
        with self._renewing:
            if self.signal.reason is not None:
                return
            try:
                self.lock = self._locks.renew(self.lock, self._clock())
            except ETagMismatch:
                self.signal.set(LockLost(f"the lock of {self.lock.instance} was taken over by another worker"))

    def _look(self) -> None:
        if self._watch is not None and self.signal.reason is None:
            reason = self._watch()
            if reason is not None:
                self.signal.set(reason)

    def _beat(self) -> None:
        waited = timedelta(0)
        while not self._stop.wait(self._watch_every.total_seconds()):
            waited += self._watch_every
            try:
                if waited >= self._every:
                    waited = timedelta(0)
                    self._renew()
                self._look()
            except Exception as exc:  # storage hiccup: the next beat tries again (the lock lasts STALE_AFTER)
                log.warning("lock of %s: heartbeat failed: %s", self.lock.instance, exc)
            if self.signal.reason is not None:
                return

    def confirm(self) -> None:
        """Renew the lock and watch now; raise the reason to stop, if any (before a commit or a point insert).

        A storage failure here is a ``TransientError``: never act irreversibly on a lock not confirmed.
        """
        try:
            self._renew()
            self._look()
        except PgVaultError:
            raise
        except Exception as exc:
            raise TransientError(f"could not confirm the lock of {self.lock.instance}: {type(exc).__name__}") from exc
        self.signal.check()

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
