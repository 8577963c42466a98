"""Pages of the jobs list: a query, its opaque continuation token, one page at a time.

A page of the jobs list ends where ``top`` jobs have been read; the continuation token says where
the next page starts: the day partition and the last row key returned. Row keys are inverted
creation times, so "RowKey gt <last>" resumes exactly after it, newest first, and a page costs
one table request per partition it touches, whatever the table holds.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.errors import ErrorCode, UserError
from shared.jobs.model import _JOB_ID, Job, JobStatus, Operation, _inverted, partition_for
from shared.jobs.store import DEFAULT_PAGE_SIZE, MAX_LIST_DAYS, MAX_PAGE_SIZE, JobFilter
from shared.page_token import TamperedToken, seal, unseal
from shared.storage import layout
from shared.storage.tables import StateStore

_CLOCK_SKEW = timedelta(minutes=5)  # between the instances that wrote a token and read it

_TOKEN_VERSION = 1
_PARTITION = re.compile(rf"^{re.escape(layout.JOBS_PREFIX)}(\d{{8}})$")


class InvalidToken(UserError):
    """A continuation token that pgvault did not write for this query (tampered, truncated, stale)."""

    def __init__(self, target: str, why: str) -> None:
        super().__init__(
            ErrorCode.INVALID_REQUEST,
            f"{target} is not a continuation token of this query ({why})",
            target=target,
            recommended_action=f"Follow the nextLink of the previous page as it is, or start again without {target}.",
        )


@dataclass(frozen=True)
class JobQuery:
    """The jobs created in ``[since, until]``, optionally of one instance, status or operation."""

    since: datetime
    until: datetime
    instance: str | None = None
    status: JobStatus | None = None
    operation: Operation | None = None

    @property
    def filter(self) -> JobFilter:
        """The query's filters, as the store builds them into a table filter."""
        return JobFilter(self.instance, self.status, self.operation)

    @classmethod
    def last_days(
        cls,
        now: datetime,
        days: int,
        *,
        instance: str | None = None,
        status: JobStatus | None = None,
        operation: Operation | None = None,
    ) -> JobQuery:
        """The jobs of the last ``days`` days before ``now``."""
        return cls(now - timedelta(days=days), now, instance, status, operation)

    def fingerprint(self) -> str:
        """What a continuation token must match: the filters (the window travels in the token)."""
        key = json.dumps(
            [
                layout.row_key(self.instance) if self.instance else None,
                self.status.value if self.status else None,
                self.operation.value if self.operation else None,
            ]
        )
        return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: a day partition, the row key after which to read, the query's window.

    The window (``since``, ``until``) is fixed by the first page so later pages neither skip nor
    repeat a job when the clock moves on between requests.
    """

    partition: str
    after: str
    since: datetime
    until: datetime
    fingerprint: str

    def encode(self) -> str:
        """An opaque, URL-safe token: base64url of the cursor and a checksum of it."""
        fields = {
            "v": _TOKEN_VERSION,
            "p": self.partition,
            "r": self.after,
            "s": int(self.since.timestamp() * 1000),
            "u": int(self.until.timestamp() * 1000),
            "q": self.fingerprint,
        }
        return seal(fields, "jobs")

    @classmethod
    def decode(cls, token: str, query: JobQuery, target: str = "continuationToken") -> Cursor:
        """The cursor in ``token``; ``InvalidToken`` (400 naming ``target``) unless pgvault wrote it for
        ``query``.

        The checksum catches edits and truncation; it is not a signature, so every field is also
        checked to lie inside the query the caller may ask anyway (a partition of its window, a row
        key of the job id form): a forged token can only move where a page starts.
        """
        try:
            fields = unseal(token, "jobs")
            if not isinstance(fields, dict) or fields.get("v") != _TOKEN_VERSION:
                raise InvalidToken(target, "unknown version")
            partition, after, fingerprint = fields["p"], fields["r"], fields["q"]
            since = datetime.fromtimestamp(int(fields["s"]) / 1000, UTC)
            until = datetime.fromtimestamp(int(fields["u"]) / 1000, UTC)
        except InvalidToken:
            raise
        except TamperedToken:
            raise InvalidToken(target, "checksum does not match") from None
        except (ValueError, KeyError, TypeError, OverflowError, UnicodeDecodeError) as exc:
            raise InvalidToken(target, "not readable") from exc
        if fingerprint != query.fingerprint():
            raise InvalidToken(target, "it belongs to a query with other filters")
        match = _PARTITION.match(partition) if isinstance(partition, str) else None
        if match is None or not isinstance(after, str) or (after and not _JOB_ID.match(after)):
            raise InvalidToken(target, "malformed position")
        if not since <= until <= query.until + _CLOCK_SKEW or until - since > timedelta(days=MAX_LIST_DAYS):
            raise InvalidToken(target, "window not of this query")
        if not partition_for(since) <= partition <= partition_for(until):
            raise InvalidToken(target, "position outside the query's window")
        return cls(partition, after, since, until, fingerprint)



@dataclass(frozen=True)
class JobPage:
    """One page of jobs, newest first, and where the next page starts (None on the last)."""

    jobs: list[Job]
    next: Cursor | None
    requests: int = 0
    """Table queries this page took (for benchmarks and tests of cost)."""


def _day(partition: str) -> datetime:
    return datetime.strptime(partition[len(layout.JOBS_PREFIX) :], "%Y%m%d").replace(tzinfo=UTC)


def list_page(
    state: StateStore, query: JobQuery, *, top: int = DEFAULT_PAGE_SIZE, cursor: Cursor | None = None
) -> JobPage:
    """Up to ``top`` jobs of ``query``, newest first, starting at ``cursor`` (the first page without).

    Reads the day partitions from the cursor's back to the window's first day, each with one
    filtered query (more only when the service splits its answer), and stops as soon as the page is
    full: the first page of the 7-day list is usually one request.
    """
    if not 1 <= top <= MAX_PAGE_SIZE:
        raise ValueError(f"top must be 1-{MAX_PAGE_SIZE}")
    if cursor is None:
        cursor = Cursor(partition_for(query.until), "", query.since, query.until, query.fingerprint())
    # Row keys are inverted times: a job older than ``since`` sorts after every id of
    # _inverted(since), and '.' sorts right after the '-' of an id.
    where, params = query.filter.where("RowKey gt @after", "RowKey lt @before")
    params["before"] = f"{_inverted(cursor.since)}."
    jobs: list[Job] = []
    requests = 0
    first_day = _day(partition_for(cursor.since))
    day, after = _day(cursor.partition), cursor.after
    while day >= first_day:
        pk = partition_for(day)
        continuation: Any = None
        while True:
            # One more than needed: it tells whether this partition goes on after the page.
            wanted = top - len(jobs) + 1
            items, continuation = state.page(
                where, {**params, "pk": pk, "after": after}, page_size=wanted, continuation=continuation
            )
            requests += 1
            for entity in items:
                if len(jobs) == top:
                    nxt = Cursor(pk, jobs[-1].job_id, cursor.since, cursor.until, cursor.fingerprint)
                    return JobPage(jobs, nxt, requests)
                jobs.append(Job._from(entity))
            if continuation is None:
                break
        day -= timedelta(days=1)
        after = ""
        if len(jobs) == top:
            more = Cursor(partition_for(day), "", cursor.since, cursor.until, cursor.fingerprint)
            return JobPage(jobs, more if day >= first_day else None, requests)
    return JobPage(jobs, None, requests)
