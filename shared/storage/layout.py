"""How pgvault's records are laid out in the one state table.

One table keeps every record; the partition key says what a row is, so each question the app
asks is a query on one partition (or a few), never a table scan:

| partition            | row key                  | what                                            |
|----------------------|--------------------------|-------------------------------------------------|
| ``policy``           | policy name (lowercase)  | a backup policy, as given and as normalised      |
| ``instance``         | instance name (lowercase)| a backup instance; ``policyKey`` names its policy|
| ``claim``            | sha256(host, port, db)   | which instance protects a database (unique)      |
| ``jobs-YYYYMMDD``    | job id                   | a job, in the partition of its UTC creation day  |
| ``instjobs-<name>``  | job id                   | index: a summary of each job of one instance     |
| ``rp-<name>``        | recovery point id        | the recovery points of one instance              |
| ``lock``             | instance name (lowercase)| the one backup running on an instance            |
| ``schedule``         | instance name (lowercase)| until when the scheduler has evaluated it, and   |
|                      |                          | its row in ``nextbackup`` (``next``)             |
| ``nextbackup``       | next slot (UTC), instance| scheduler index: the instance's next slot (the   |
|                      |                          | tick reads only rows up to now: one range query) |
| ``lastbackup``       | instance name (lowercase)| its last finished backup (a job summary), or     |
|                      |                          | ``none``: the instances list reads one partition |
| ``backlog``          | slot (UTC), instance     | backups waiting for a free slot, in slot order   |
| ``slots``            | server/vault, slot number| a running (or admitted) backup's share of the    |
|                      |                          | per-server and vault-wide backup limits          |
| ``due-YYYYMMDD``     | instance, bar, rp id     | retention index: a point's next lifecycle event  |
|                      |                          | falls on that UTC day (the sweep reads only these)|
| ``retention``        | marker name              | retention sweep bookkeeping (index backfill)     |
| ``housekeeping``     | marker name              | hung-jobs sweep: the oldest job day to scan from  |
| ``pserver``          | server name (lowercase)  | a protected server: every database it covers     |
| ``pserverclaim``     | sha256(host, port)       | which protected server covers a host (unique)     |
| ``psdb-<name>``      | sha256(database)         | a protected server's databases and their state    |
| ``vault``            | marker name              | vault-wide records (the immutability lock)        |
| ``alerts``           | alert id                 | an alert and its webhook delivery (the outbox)   |
| ``alertcheck``       | instance name / marker   | until when missed backups (and ended jobs) were  |
|                      |                          | checked for alerts                               |
| ``usage``            | instance name (lowercase)| what an instance's points take (count, sizes),   |
|                      |                          | recomputed when a point is added or removed      |
| ``bparts-<job id>``  | attempt token; token.NNNN| a backup whose parts are queue messages          |
|                      |                          | (``shared.backup_parts``): the attempt, its parts;|
|                      |                          | deleted when the attempt ends                    |

Job ids start with the inverted creation time in milliseconds, so every job partition reads
newest first, and the id alone locates the job. The last 7 days are 7 partition queries however
many jobs the table holds; one instance's history is one query of its index partition.
Names are compared case-insensitively, as Azure resource names are: the row key is the
lowercase name, the record keeps the name as the user wrote it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

POLICY = "policy"
INSTANCE = "instance"
JOBS_PREFIX = "jobs-"
CLAIM = "claim"
LOCK = "lock"
SCHEDULE = "schedule"
NEXT_BACKUP = "nextbackup"
BACKLOG = "backlog"
LAST_BACKUP = "lastbackup"
SLOTS = "slots"
DUE_PREFIX = "due-"
RETENTION = "retention"
HOUSEKEEPING = "housekeeping"
PROTECTED_SERVER = "pserver"
SERVER_CLAIM = "pserverclaim"
VAULT = "vault"
ALERTS = "alerts"
ALERT_CHECK = "alertcheck"
USAGE = "usage"
# The rows of one partition whose row keys lie in [lo, hi] (spaces inside the parentheses: the SDK
# splits on them when it substitutes parameters).
KEY_RANGE = "( PartitionKey eq @pk ) and ( RowKey ge @lo ) and ( RowKey le @hi )"

# Work queues (the queue triggers in functions/workers.py read these names).
VALIDATE_QUEUE = "pgvault-validate"
BACKUP_QUEUE = "pgvault-backup"
# Restore, verification and rehydration jobs (functions/restore.py).
RESTORE_QUEUE = "pgvault-restore"
# The data parts of a backup dumped across instances (shared.backup_parts, PGVAULT_BACKUP_PARTS_ACROSS_INSTANCES).
BACKUP_PART_QUEUE = "pgvault-backup-part"
QUEUES = (VALIDATE_QUEUE, BACKUP_QUEUE, RESTORE_QUEUE, BACKUP_PART_QUEUE)
POISON_SUFFIX = "-poison"  # the Functions host's name for a queue's poison queue

# Azure resource names: letters, digits, '-', '_' and '.'; never the characters table keys forbid
# ('/', '\\', '#', '?') or control characters.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,149}$"
_NAME = re.compile(NAME_PATTERN)


def valid_name(name: str) -> bool:
    """Whether ``name`` can name a policy or an instance (1-150 letters, digits, '-', '_', '.')."""
    return bool(_NAME.match(name)) and not name.endswith(".")


def row_key(name: str) -> str:
    """The row key of a named record: names are case-insensitive."""
    return name.lower()


def server_members(server: str) -> str:
    """The partition of one protected server's databases."""
    return f"psdb-{row_key(server)}"


BACKUP_PARTS_PREFIX = "bparts-"


def backup_parts(job_id: str) -> str:
    """The partition of one backup job's cross-instance parts: a row per attempt and per part of it."""
    return f"{BACKUP_PARTS_PREFIX}{job_id}"


def instance_jobs(instance: str) -> str:
    """The index partition of one instance's jobs."""
    return f"instjobs-{row_key(instance)}"


# A backup's dump blob ends so (``<instance>/<point id>.<attempt>.pgdump.zst``, shared.backup_runner).
DUMP_SUFFIX = ".pgdump.zst"
MANIFEST_SUFFIX = ".manifest.json"


def part_blob_name(blob_name: str, index: int) -> str:
    """The blob of data part ``index`` (1-based) of a multi-part point whose schema part is ``blob_name``.

    The part mark goes before the dump suffix, so whatever is put before or after a point's
    blob name (an archive copy's suffix, a rehydrated copy's prefix) is put around each part's
    alike: ``part_blob_name(f(b), i) == f(part_blob_name(b, i))``, and a part's blob ends with
    ``DUMP_SUFFIX`` as every dump's does (the orphan sweep looks for those).
    """
    head, sep, tail = blob_name.rpartition(DUMP_SUFFIX)
    if not sep:
        return f"{blob_name}.part{index:03d}"
    return f"{head}.part{index:03d}{DUMP_SUFFIX}{tail}"


def manifest_name_for(blob_name: str) -> str:
    """Where a recovery point's manifest (per-table row counts and hashes at dump time) lives."""
    return f"{blob_name}{MANIFEST_SUFFIX}"


ROLES_SUFFIX = ".roles.json"


def roles_name_for(blob_name: str) -> str:
    """Where a recovery point's cluster roles (``shared.pg.roles``: owners, grantees, their groups) live."""
    return f"{blob_name}{ROLES_SUFFIX}"


PLAN_SUFFIX = ".plan.json"


def plan_name_for(blob_name: str) -> str:
    """Where a cross-instance backup keeps its parts' table lists while they run, when a queue message
    cannot hold them (``shared.backup_parts``); deleted when the parts are done."""
    return f"{blob_name}{PLAN_SUFFIX}"


DIGESTS_SUFFIX = ".digests.json"


def part_digests_name(part_blob: str) -> str:
    """Where a cross-instance backup's data part keeps the stream digests of its committed blob until the
    coordinator merges them into the point's manifest (``shared.backup_parts``); deleted then."""
    return f"{part_blob}{DIGESTS_SUFFIX}"


def sidecar_names(blob_name: str) -> tuple[str, str]:
    """The small blobs stored beside a dump: its manifest and its roles (deleted with the dump's last copy)."""
    return manifest_name_for(blob_name), roles_name_for(blob_name)


def dump_of(name: str) -> str:
    """The dump blob ``name`` belongs to (itself when it is a dump, else the dump it is a sidecar of)."""
    return (
        name.removesuffix(MANIFEST_SUFFIX)
        .removesuffix(ROLES_SUFFIX)
        .removesuffix(PLAN_SUFFIX)
        .removesuffix(DIGESTS_SUFFIX)
    )


def recovery_points(instance: str) -> str:
    """The partition of one instance's recovery points."""
    return f"rp-{row_key(instance)}"


def due_partition(at: datetime) -> str:
    """The retention due-index partition of the UTC day of ``at``."""
    return f"{DUE_PREFIX}{at.astimezone(UTC):%Y%m%d}"


def due_row(instance: str, rp_id: str) -> str:
    """The due-index row key of one recovery point ('|' may appear in row keys; names never hold it)."""
    return f"{row_key(instance)}|{rp_id}"


def slot_row(at: datetime, instance: str) -> str:
    """The row key of an instance's entry in ``nextbackup`` or ``backlog``: time first, so rows read
    in time order (fixed-width UTC ISO text sorts as the instants do), then the instance."""
    return f"{at.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%fZ}|{row_key(instance)}"


def slot_row_bound(at: datetime) -> str:
    """The greatest row key of ``slot_row`` at ``at`` ('}' sorts after every name character)."""
    return f"{at.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%fZ}|}}"


def server_key(host: str, port: int) -> str:
    """One database server, as the per-server backup limit counts it (host case and a trailing dot ignored)."""
    return f"{host.lower().rstrip('.')}:{port}"
