"""Fair fan-out of backups: at most N running per database server and M in the vault, the rest in line.

Three records in the state table, every write of a shared one ETag-guarded:

- ``slots``: a semaphore of fixed seats, ``srv|<host:port>|<i>`` (i < ``per_server``) and
  ``all|<i>`` (i < ``vault``). A backup runs only while it holds one seat of each; a seat is taken
  with an insert (of two takers exactly one wins) or an ETag-guarded takeover of a seat whose holder
  is gone. A seat is *live* while its job holds a live instance lock (``InstanceLocks.live``: the
  worker's heartbeat), or for ``ADMIT_GRACE`` after the dispatcher reserved it (the message is on
  its way), or ``STALE_AFTER`` after its worker last confirmed it. So a crashed worker or
  dispatcher holds a seat for minutes, never forever.
- ``backlog``: the backups waiting for seats, keyed by slot time then instance, so they leave in
  the order of their slots. The scheduler's tick puts its jobs there; a worker that finds no free
  seat (an on-demand backup, a retry, a race lost) puts its job back there.
- the job itself says why it waits: ``details.waiting`` (``reason``, ``since``, ``backlogKey``), and
  stays ``InProgress`` (the contract's statuses; it has no start time until it runs).

The dispatcher (``FanOut.dispatch``) runs at the end of every tick and after every backup ends: it
reads the free seats (one query), then the backlog in slot order, and for each entry whose server
and the vault have room it claims the entry (ETag), reserves its seats, sends its message and
removes the entry. It sends at most as many messages as there are free seats: a burst of 10,000
due slots puts 10,000 rows in the backlog and at most ``vault`` messages on the queue.

The worker (``FanOut.admit``, from ``BackupRunner.ready``, under the instance's lock) is where the
limit is enforced: it confirms the seats reserved for its job (or takes free ones) with ETag-guarded
writes, or puts the job back in line. A worker frozen past ``STALE_AFTER`` whose seat was taken
over may run beside its successor, as with the instance lock itself (``shared.locks``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.errors import PgVaultError
from shared.jobs import Job, JobStore
from shared.locks import STALE_AFTER, InstanceLocks
from shared.storage import layout
from shared.storage.queues import QueueSender
from shared.storage.tables import Entity, EntityExists, ETagMismatch, StateStore
from shared.wire import iso_z

log = logging.getLogger(__name__)

DEFAULT_PER_SERVER = 2
# Vault-wide: a host runs at most batchSize + newBatchThreshold = 6 queue messages at once
# (host.json), and one backup streams at 200-330 MB/s of dump through zstd on 2 cores
# (docs/platform-notes.md): 20 keeps 3-4 hosts busy without letting a burst saturate the
# storage account's ingress or many servers' I/O at once. Raise it with more hosts.
DEFAULT_VAULT = 20
# A seat reserved by the dispatcher stays live this long for the worker to pick its message up
# (messages wait at most maxPollingInterval when a host is free; queued behind others, longer).
ADMIT_GRACE = timedelta(minutes=10)
# Backlog rows read per dispatch: entries of full servers are passed over, up to this many.
MAX_SCAN = 2000
SERVER = "srv|"
VAULT = "all|"
WAITING = "waiting"


@dataclass(frozen=True)
class BackupLimits:
    """``PGVAULT_MAX_BACKUPS_PER_SERVER`` and ``PGVAULT_MAX_BACKUPS``."""

    per_server: int = DEFAULT_PER_SERVER
    vault: int = DEFAULT_VAULT


@dataclass
class Seats:
    """The seats as read at one moment (which are live, per server and in all), kept up to date by
    the reader's own takes, so one dispatch reads them once."""

    rows: dict[str, Entity]
    live: set[str]

    def took(self, entity: Entity) -> None:
        self.rows[entity.row_key] = entity
        self.live.add(entity.row_key)

    def gave_back(self, key: str) -> None:
        self.rows.pop(key, None)
        self.live.discard(key)

    def running_on(self, server: str) -> int:
        return sum(1 for k in self.live if k.startswith(f"{SERVER}{server}|"))

    @property
    def running(self) -> int:
        return sum(1 for k in self.live if k.startswith(VAULT))

    def of(self, job_id: str) -> list[Entity]:
        return [e for e in self.rows.values() if e.get("jobId") == job_id]


def _seat(prefix: str, server: str | None, i: int) -> str:
    return f"{prefix}{server}|{i}" if server is not None else f"{prefix}{i}"


class FanOut:
    """Seats, backlog and dispatcher (see the module's doc)."""

    def __init__(
        self,
        state: StateStore,
        queues: QueueSender | None,
        limits: BackupLimits | None = None,
        *,
        send: Callable[[str, str], None] | None = None,
    ) -> None:
        self._state = state
        self._queues = queues
        self.limits = limits or BackupLimits()
        self._locks = InstanceLocks(state)
        self._send_fn = send

    # -- seats ------------------------------------------------------------------------------------

    def seats(self, now: datetime) -> Seats:
        """Every seat row and which are live at ``now``: one query, plus the lock partition when a
        row's own times do not prove it live."""
        rows = {e.row_key: e for e in self._state.partition(layout.SLOTS)}
        live: set[str] = set()
        unsure: list[Entity] = []
        for key, e in rows.items():
            grace = ADMIT_GRACE if e.get("state") == "admitted" else STALE_AFTER
            if now - e["beat"] <= grace:
                live.add(key)
            else:
                unsure.append(e)
        if unsure:
            running = self._locks.live(now)
            live.update(e.row_key for e in unsure if str(e.get("jobId")) in running)
        return Seats(rows, live)

    def _take(self, seats: Seats, keys: list[str], data: dict[str, Any]) -> Entity | None:
        """One free seat of ``keys`` for ``data``'s job: an insert, or a takeover of a dead seat."""
        for key in keys:
            current = seats.rows.get(key)
            try:
                if current is None:
                    return self._state.insert(layout.SLOTS, key, data)
                if key not in seats.live:
                    return self._state.update(current, data)
            except (EntityExists, ETagMismatch):
                continue  # another taker won this seat: try the next
        return None

    def reserve(
        self, job_id: str, instance: str, server: str, now: datetime, *, state: str, seats: Seats | None = None
    ) -> str | None:
        """Hold a server seat and a vault seat for ``job_id`` (``state``: admitted or running); None
        when held, else why not (what runs). Seats the job holds already are kept and confirmed.
        ``seats``: as the caller read them (and kept up to date); read now when not given."""
        seats = seats if seats is not None else self.seats(now)
        data = {"jobId": job_id, "instance": instance, "server": server, "state": state, "beat": now}
        mine = {e.row_key: e for e in seats.of(job_id)}
        wanted = [
            (SERVER, server, self.limits.per_server, f"{seats.running_on(server)} backups running on server {server}"),
            (VAULT, None, self.limits.vault, f"{seats.running} backups running in the vault (PGVAULT_MAX_BACKUPS)"),
        ]
        taken: list[Entity] = []
        for prefix, srv, count, busy in wanted:
            keys = [_seat(prefix, srv, i) for i in range(count)]
            held = next((mine[k] for k in keys if k in mine), None)
            try:
                got = self._state.update(held, data) if held is not None else self._take(seats, keys, data)
            except ETagMismatch:
                got = None  # taken over meanwhile: this job lost it
            if got is None:
                done = {t.row_key for t in taken}
                self._give_back([*taken, *(e for k, e in mine.items() if k not in done)], seats)
                return busy
            taken.append(got)
            seats.took(got)
        done = {t.row_key for t in taken}
        self._give_back([e for k, e in mine.items() if k not in done], seats)  # a seat too many (a race): freed
        return None

    def release(self, job_id: str, now: datetime) -> int:
        """Give back every seat ``job_id`` holds (its job ended or will retry); how many."""
        return self._give_back(self.seats(now).of(job_id))

    def _give_back(self, rows: list[Entity], seats: Seats | None = None) -> int:
        freed = 0
        for e in rows:
            with contextlib.suppress(ETagMismatch):
                self._state.delete(e)
                freed += 1
            if seats is not None:
                seats.gave_back(e.row_key)
        return freed

    # -- the backlog --------------------------------------------------------------------------------

    @staticmethod
    def entry(job: Job, server: str, order: datetime) -> tuple[str, dict[str, Any]]:
        """The backlog row of ``job`` (on ``server``, in line at ``order``)."""
        key = layout.slot_row(order, job.instance)
        return key, {"jobId": job.job_id, "instance": job.instance, "server": server, "order": order}

    @staticmethod
    def waiting(key: str, reason: str, now: datetime) -> dict[str, Any]:
        """What ``details.waiting`` says of a job in line."""
        return {"reason": reason, "since": iso_z(now), "backlogKey": key}

    def enqueue(self, rows: list[tuple[str, dict[str, Any]]]) -> int:
        """Put jobs in line (``entry`` rows); the requests made."""
        return self._state.write_batch(layout.BACKLOG, rows) if rows else 0

    def in_line(self, key: str) -> bool:
        """Whether the backlog holds ``key`` (a job that says it waits is still in line)."""
        return self._state.get(layout.BACKLOG, key) is not None

    # -- the dispatcher ------------------------------------------------------------------------------

    def dispatch(self, now: datetime) -> list[str]:
        """Send the messages of the backlog's first jobs that fit the free seats; their ids.

        With an empty backlog: one query. Otherwise one for the seats, one per 1,000 backlog rows
        read (at most ``MAX_SCAN``), and per job sent: a claim, its seats, its job's summary, its message, its removal.
        """
        page, token = self._state.page("PartitionKey eq @pk", {"pk": layout.BACKLOG}, page_size=min(1000, MAX_SCAN))
        if not page:
            return []
        seats = self.seats(now)
        free = self.limits.vault - seats.running
        per_server: dict[str, int] = {}
        sent: list[str] = []
        scanned = 0
        while page and free > 0 and scanned < MAX_SCAN:
            for row in page:
                scanned += 1
                if free <= 0:
                    break
                server = str(row["server"])
                if server not in per_server:
                    per_server[server] = seats.running_on(server)
                if per_server[server] >= self.limits.per_server:
                    continue
                if row.get("claimed") is not None and now - row["claimed"] <= ADMIT_GRACE:
                    continue  # another dispatcher is sending it
                if self._admit_row(row, server, now, seats):
                    sent.append(str(row["jobId"]))
                    per_server[server] += 1
                    free -= 1
            if token is None or free <= 0:
                break
            page, token = self._state.page(
                "PartitionKey eq @pk", {"pk": layout.BACKLOG}, page_size=1000, continuation=token
            )
        if sent:
            log.info("dispatcher sent %d backup(s); %d seat(s) left in the vault", len(sent), free)
        return sent

    def _admit_row(self, row: Entity, server: str, now: datetime, seats: Seats) -> bool:
        """Claim a backlog row, reserve its seats, send its message, remove the row."""
        try:
            claimed = self._state.update(row, {**row.data, "claimed": now})
        except ETagMismatch:
            return False
        job_id, instance = str(row["jobId"]), str(row["instance"])
        if self.reserve(job_id, instance, server, now, state="admitted", seats=seats) is not None:
            with contextlib.suppress(ETagMismatch):
                self._state.update(claimed, {**row.data, "claimed": None})
            return False
        try:
            JobStore(self._state).summarise(job_id)  # the tick left it to here (``JobStore.create_many``)
            self._send(job_id, instance)
        except PgVaultError as exc:
            log.warning("backup job %s: its message could not be sent (%s); it stays in line", job_id, exc)
            self._give_back(seats.of(job_id), seats)
            return False
        with contextlib.suppress(ETagMismatch):
            self._state.delete(claimed)
        return True

    def _send(self, job_id: str, instance: str) -> None:
        if self._send_fn is not None:
            self._send_fn(job_id, instance)
            return
        if self._queues is None:
            raise PgVaultError("no queue to send backups to")
        self._queues.send(layout.BACKUP_QUEUE, {"jobId": job_id, "instance": instance})
