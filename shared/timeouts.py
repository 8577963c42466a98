"""Runs that outlive the Functions host's time limit: recognised on the retry, failed with advice.

The host stops a function at ``functionTimeout`` (host.json, or the app setting
``AzureFunctionsJobHost__functionTimeout``): 10 minutes at most on the Consumption plan, 30 by
default and unbounded at most on Flex Consumption, Premium and Dedicated. A stopped backup's queue
message comes back and would run into the same wall five times, then land in the poison queue
with the job still ``InProgress``. Instead each attempt records when it started in the job
(``details.attempt``); a delivery that finds an unfinished attempt started at least one timeout
ago knows the host stopped it, and fails the job with ``UserErrorFunctionTimeoutExceeded`` and
what to change. ``PGVAULT_FUNCTION_TIMEOUT`` tells the app the host's limit (the template sets both
from one parameter).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from shared.errors import ErrorCode, PgVaultError, TransientError, UserError
from shared.jobs.model import Job
from shared.jobs.store import JobStore
from shared.wire import iso_z

log = logging.getLogger(__name__)
ATTEMPT = "attempt"
# A job keeps the reasons of its last few failed tries (host.json allows 5 tries).
MAX_RETRIES_KEPT = 5

# host.json extensions.queues.maxDequeueCount: a job's message is delivered at most this often.
MAX_DELIVERIES = 5
# The Functions host's lease on a queue message it runs (learn.microsoft.com/azure/azure-functions/
# functions-bindings-storage-queue-trigger, "Concurrency"/"Poison messages": 10 minutes, renewed while
# the function runs): a delivery whose host died comes back this long after its last renewal.
MESSAGE_LEASE = timedelta(minutes=10)
# Where the host sets no limit (functionTimeout -1 on Flex Consumption, Premium, Dedicated) an
# attempt still ends here: past it a backup records no point. Seven days is also how long Azure keeps
# a blob's uncommitted blocks after the last one staged.
UNBOUNDED_ATTEMPT = timedelta(days=7)
# The longest any job can live, under any setting: every delivery running to its limit, each
# followed by the lease. The retention sweep deletes a backup blob that no point references only
# once it is older than this (an attempt still running may be about to record its point).
MAX_JOB_LIFETIME = MAX_DELIVERIES * (UNBOUNDED_ATTEMPT + MESSAGE_LEASE)


def attempt_limit(function_timeout: timedelta | None) -> timedelta:
    """The longest one attempt of a job runs: the host's function timeout, at most ``UNBOUNDED_ATTEMPT``."""
    if function_timeout is None:
        return UNBOUNDED_ATTEMPT
    return min(function_timeout, UNBOUNDED_ATTEMPT)


def with_attempt_started(job: Job, now: datetime) -> dict[str, Any]:
    """The job's details with a new attempt recorded: its number and when it started."""
    previous = job.details.get(ATTEMPT) or {}
    number = int(previous.get("number", 0)) + 1
    return {**job.details, ATTEMPT: {"number": number, "started": iso_z(now)}}


def note_retry(jobs: JobStore, job_id: str, exc: TransientError, attempt: int, now: datetime) -> None:
    """Record on the job why try ``attempt`` failed (``details.retries``, the last few), so the retry is visible.

    Best effort: when the state table itself is what failed, the warning in the log is all.
    """
    try:
        job = jobs.get(job_id)
        if job.status.finished:
            return
        entry = {"attempt": attempt, "time": iso_z(now), "code": exc.code.value, "message": exc.message}
        retries = [*job.details.get("retries", []), entry][-MAX_RETRIES_KEPT:]
        jobs.save(job, details={**job.details, "retries": retries})
    except PgVaultError as note_failed:
        log.warning("%s: could not record the retry: %s", job_id, type(note_failed).__name__)


def last_attempt_started(job: Job) -> datetime | None:
    """When the job's last attempt started, if one did."""
    attempt = job.details.get(ATTEMPT)
    if not isinstance(attempt, dict) or "started" not in attempt:
        return None
    return datetime.fromisoformat(str(attempt["started"]))


def overran(job: Job, now: datetime, limit: timedelta | None) -> UserError | None:
    """The error to fail ``job`` with if its last attempt ran into the function timeout ``limit``.

    An unfinished attempt that started at least ``limit`` before ``now`` cannot still be running:
    the host stops every run at the limit. None when there is no limit, no attempt, or time left.
    """
    started = last_attempt_started(job)
    if limit is None or started is None or job.status.finished or now - started < limit:
        return None
    number = int(job.details[ATTEMPT].get("number", 1))
    return UserError(
        ErrorCode.FUNCTION_TIMEOUT_EXCEEDED,
        f"attempt {number} of {job.operation.value.lower()} job {job.job_id} started at "
        f"{started.isoformat()} and did not finish within the function timeout ({limit}); "
        "the host stopped it, and another try would stop at the same limit",
        recommended_action=(
            f"Raise the function timeout above the time this database takes to dump (now {limit}): set host.json "
            "functionTimeout, or the app setting AzureFunctionsJobHost__functionTimeout, and PGVAULT_FUNCTION_TIMEOUT "
            "to the same value, e.g. 04:00:00 (the template's functionTimeout parameter sets both; -1 means no "
            "limit). The Consumption plan stops every run at 10 minutes: use Flex Consumption or Elastic Premium. "
            "Then start the backup again."
        ),
    )
