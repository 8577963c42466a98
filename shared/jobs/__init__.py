"""Jobs: one record per operation (validation, backup, restore, archive move, deletion).

- ``model``: the frozen ``Job`` record, its ``JobStatus`` with the one table of legal moves
  (``TRANSITIONS``), its typed ``Step`` and its ids.
- ``store``: ``JobStore``, jobs in the state table, every write ETag-guarded, the list filters
  built in one place (``JobFilter``).
- ``paging``: the pages of the jobs list and their continuation tokens.
- ``runner``: ``JobRunner``, the one skeleton every queue-run job goes through, and ``JobRun``,
  what its work sees (imported from ``shared.jobs.runner``: it builds on locks and cancel).
"""

from shared.jobs.model import (
    _JOB_ID,
    TRANSITIONS,
    IllegalTransition,
    Job,
    JobError,
    JobStatus,
    Operation,
    Step,
    StepStatus,
    end_steps,
    iso,
    job_time,
    new_job_id,
    partition_for,
)
from shared.jobs.paging import Cursor, InvalidToken, JobPage, JobQuery, list_page
from shared.jobs.store import DEFAULT_PAGE_SIZE, MAX_LIST_DAYS, MAX_PAGE_SIZE, JobFilter, JobStore

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_LIST_DAYS",
    "MAX_PAGE_SIZE",
    "TRANSITIONS",
    "_JOB_ID",
    "Cursor",
    "IllegalTransition",
    "InvalidToken",
    "Job",
    "JobError",
    "JobFilter",
    "JobPage",
    "JobQuery",
    "JobStatus",
    "JobStore",
    "Operation",
    "Step",
    "StepStatus",
    "end_steps",
    "iso",
    "job_time",
    "list_page",
    "new_job_id",
    "partition_for",
]
