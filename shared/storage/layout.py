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
| ``schedule``         | instance name (lowercase)| until when the scheduler has evaluated it        |
| ``due-YYYYMMDD``     | instance, bar, rp id     | retention index: a point's next lifecycle event  |
|                      |                          | falls on that UTC day (the sweep reads only these)|
| ``retention``        | marker name              | retention sweep bookkeeping (index backfill)     |
| ``housekeeping``     | marker name              | hung-jobs sweep: the oldest job day to scan from  |
| ``usage``            | instance name (lowercase)| what an instance's points take (count, sizes),   |
|                      |                          | recomputed when a point is added or removed      |

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
DUE_PREFIX = "due-"
RETENTION = "retention"
HOUSEKEEPING = "housekeeping"
USAGE = "usage"

# Work queues (the queue triggers in functions/workers.py read these names).
VALIDATE_QUEUE = "pgvault-validate"
BACKUP_QUEUE = "pgvault-backup"
# Restore, verification and rehydration jobs (functions/restore.py).
RESTORE_QUEUE = "pgvault-restore"
QUEUES = (VALIDATE_QUEUE, BACKUP_QUEUE, RESTORE_QUEUE)
POISON_SUFFIX = "-poison"  # the Functions host's name for a queue's poison queue

# Azure resource names: letters, digits, '-', '_' and '.'; never the characters table keys forbid
# ('/', '\\', '#', '?') or control characters.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,149}$")


def valid_name(name: str) -> bool:
    """Whether ``name`` can name a policy or an instance (1-150 letters, digits, '-', '_', '.')."""
    return bool(_NAME.match(name)) and not name.endswith(".")


def row_key(name: str) -> str:
    """The row key of a named record: names are case-insensitive."""
    return name.lower()


def instance_jobs(instance: str) -> str:
    """The index partition of one instance's jobs."""
    return f"instjobs-{row_key(instance)}"


# A backup's dump blob ends so (``<instance>/<point id>.<attempt>.pgdump.zst``, shared.backup_runner).
DUMP_SUFFIX = ".pgdump.zst"
MANIFEST_SUFFIX = ".manifest.json"


def manifest_name_for(blob_name: str) -> str:
    """Where a recovery point's manifest (per-table row counts and hashes at dump time) lives."""
    return f"{blob_name}{MANIFEST_SUFFIX}"


def recovery_points(instance: str) -> str:
    """The partition of one instance's recovery points."""
    return f"rp-{row_key(instance)}"


def due_partition(at: datetime) -> str:
    """The retention due-index partition of the UTC day of ``at``."""
    return f"{DUE_PREFIX}{at.astimezone(UTC):%Y%m%d}"


def due_row(instance: str, rp_id: str) -> str:
    """The due-index row key of one recovery point ('|' may appear in row keys; names never hold it)."""
    return f"{row_key(instance)}|{rp_id}"
