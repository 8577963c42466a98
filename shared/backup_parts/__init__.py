"""Backup parts across instances: the data parts of a multi-part backup as queue messages any instance takes.

With ``PGVAULT_BACKUP_PARTS_ACROSS_INSTANCES`` a multi-part backup (``shared.pg.parts``) no longer
dumps its data parts on threads of the invocation running the job. The *coordinator* (that
invocation, under the instance's lock and its heartbeat) exports the snapshot and holds its
transaction open, splits the tables into ``part_count`` parts, records the attempt and one row per
part in the state table, sends one message per data part to ``pgvault-backup-part``, dumps the
schema part itself, and waits, polling the part rows. Any instance's part trigger (``PartWorker``)
takes a message, resolves the job's credentials as the backup does (the instance's secret, its
server), runs the part's ``pg_dump --snapshot`` straight into the part's blob and records the part
(checksum, sizes) with an ETag-guarded write. When every part is recorded the coordinator closes
the snapshot and the backup records its point as a threaded one does: the same ``Part`` records,
manifest, restore, verification, retention, archive and files code. With the stream manifest each
worker digests its part's stream as it dumps it and keeps the digests beside the part's blob
(``digests``), the coordinator digests the schema part and merges them (``merge_digests``): no second
read of the tables on the server.

The coordinator does not take part messages itself: the part trigger of its own instance does,
as many at once as host.json's ``batchSize`` + ``newBatchThreshold`` allow, so one instance alone
still dumps parts side by side and a second instance simply takes more of them.

What keeps it right when storage fails or a process is killed:

- Nothing secret travels: a message holds the job, the attempt (its lock token), the part's blob,
  the snapshot id and the part's tables (or, past ``INLINE_LIMIT``, the name of a plan blob that
  holds them: Azure's 64 KiB message limit). The worker reads the password from the secret.
- A message is trusted for nothing: each part's row keeps the digest of the message its coordinator
  sent (``PartMessage.digest``), and a message that is not that one, field for field (a copy with other
  tables, another plan, blob or version), is dropped touching nothing; the attempt's row and the
  instance's lock bind the attempt, snapshot, blob and instance (``_matches``, ``_over``).
- Each attempt has rows and blobs of its own (the lock token is in their names): a part of an
  older attempt can never be counted for a newer one.
- A part's blob is committed only if none of that name exists (``if_missing``): of two deliveries
  of one message at most one commits; the other records the part from the committed blob's own
  metadata (its SHA-256 and sizes, written in the same commit), so the recorded checksum is always
  that of the one committed version. Its stream digests (the manifest) are those kept with that commit
  (``digests``: a sidecar naming the committed blob's SHA-256), or, when the delivery that committed it
  died before keeping them, those of the committed blob read back from the vault.
- The coordinator died: its snapshot is gone, ``pg_dump`` says so (``SnapshotGone``), and the
  part is marked Failed and its message dropped, with nothing left behind; the job's own retry
  makes a fresh attempt. A part whose attempt is over (Done, Failed, its lock held by another
  attempt) is dropped too; a worker already dumping stops within ``WATCH_SECONDS``.
- A part whose ``pg_dump`` is killed is taken again (the message comes back after its visibility
  timeout) while the snapshot lives; on its last delivery a failure is recorded, so the
  coordinator fails the attempt at once. It also fails it when a part fails for good, when one
  delivery of a part has run longer than ``PART_TIMEOUT`` (by the storage service's clock: the row's
  ``Timestamp``, written when the delivery began, against the service's time; the worker's own clock
  and the coordinator's play no part), when the attempt's time is up, and on a cancel or a lost lock
  (``shared.stopping``); it then marks the attempt Failed and deletes every part blob of it.
- A worker deletes a part's blob only when no point can name it: its attempt Failed (final), or
  Running with the part's row there and not Committed. Rows that are gone say nothing, so a delivery
  that finds them gone touches nothing (neither blob nor row). Leftovers (a worker killed between
  commit and record of a failed attempt, or one that committed as its attempt ended) end in
  ``.pgdump.zst`` (their digests sidecars in ``.digests.json``, which ``layout.dump_of`` maps to the
  part's blob) and are collected by the orphan sweep like any unreferenced dump; a sidecar or plan of a
  recorded point whose delete failed is deleted with the point (``shared.retention``).

The package: ``messages`` (the part message and its limits), ``board`` (the attempt's and the parts' rows
and their transitions), ``digests`` (a part's stream digests on their way to the manifest), ``coordinator``
(``PartCoordinator``, ``part_count``) and ``worker`` (``PartWorker``).

An attempt's rows are deleted when it ends for good (``PartBoard.sweep``: Done, or Failed, which a
cancel, a lost lock and every error end it as), its parts' first and its own last; a retry of the job
is an attempt with rows of its own, so it loses none it needs. The coordinator logs which worker took
how many parts and how many deliveries they needed. Rows an attempt could not delete (its coordinator
died, or storage failed) are deleted by the retention sweep once their job has ended (``sweep_ended``).
"""

from __future__ import annotations

from shared.backup_parts.board import (
    AttemptOver,
    AttemptRow,
    AttemptStatus,
    PartBoard,
    PartRow,
    PartStatus,
    parts_of,
    sweep_ended,
)
from shared.backup_parts.coordinator import DEFAULT_PART_BYTES, PART_TIMEOUT, PartCoordinator, PartsJob, part_count
from shared.backup_parts.messages import INLINE_LIMIT, MAX_PARTS, PART_QUEUE, PartMessage
from shared.backup_parts.worker import PartOutcome, PartWorker
from shared.pg.parts import quote_pattern

__all__ = [
    "DEFAULT_PART_BYTES",
    "INLINE_LIMIT",
    "MAX_PARTS",
    "PART_QUEUE",
    "PART_TIMEOUT",
    "AttemptOver",
    "AttemptRow",
    "AttemptStatus",
    "PartBoard",
    "PartCoordinator",
    "PartMessage",
    "PartOutcome",
    "PartRow",
    "PartStatus",
    "PartWorker",
    "PartsJob",
    "part_count",
    "parts_of",
    "quote_pattern",
    "sweep_ended",
]
