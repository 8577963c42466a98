"""Pages of the jobs list on a real Azurite table: every job once, newest first, few requests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devhost.services import Azurite
from shared.jobs import Job, JobQuery, JobStatus, JobStore, Operation, new_job_id
from shared.storage.tables import StateTable
from tests.integration.world import account_of

pytestmark = pytest.mark.integration
NOW = datetime(2026, 3, 8, 9, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def filled(azurite: Azurite) -> tuple[JobStore, list[Job]]:
    """40 jobs over 10 days (4 a day), two instances, every fifth failed; the newest first."""
    table = StateTable(account_of(azurite).table_service(), "jobpages")
    table.ensure()
    store = JobStore(table)
    made = []
    for i in range(40):
        at = NOW - timedelta(hours=6 * i, minutes=1)
        status = JobStatus.FAILED if i % 5 == 0 else JobStatus.COMPLETED
        job, _ = store.create(Job(new_job_id(at), Operation.BACKUP, "even" if i % 2 == 0 else "odd", status, at))
        made.append(job)
    return store, made


def _all_pages(store: JobStore, query: JobQuery, top: int) -> tuple[list[list[str]], int]:
    pages: list[list[str]] = []
    requests = 0
    page = store.page(query, top=top)
    while True:
        pages.append([j.job_id for j in page.jobs])
        requests += page.requests
        if page.next is None:
            return pages, requests
        # Through the token's text, as a client would send it back.
        page = store.page(query, top=top, cursor=type(page.next).decode(page.next.encode(), query))


def test_pages_cover_the_window_once_newest_first(filled: tuple[JobStore, list[Job]]) -> None:
    store, made = filled
    week = [j.job_id for j in made if j.created >= NOW - timedelta(days=7)]
    pages, _ = _all_pages(store, JobQuery.last_days(NOW, 7), top=5)
    assert [jid for page in pages for jid in page] == week
    assert all(len(p) == 5 for p in pages[:-1]) and len(pages) == -(-len(week) // 5)


def test_page_size_dividing_the_window_exactly_ends_without_an_empty_page(filled: tuple[JobStore, list[Job]]) -> None:
    store, made = filled
    # 3 days back from NOW - 1 min: exactly 12 jobs (4 a day).
    query = JobQuery.last_days(NOW, 3)
    expected = [j.job_id for j in made if j.created >= query.since]
    pages, _ = _all_pages(store, query, top=len(expected) // 2)
    assert [jid for page in pages for jid in page] == expected
    assert all(pages)


def test_filters_apply_across_pages(filled: tuple[JobStore, list[Job]]) -> None:
    store, made = filled
    query = JobQuery.last_days(NOW, 10, instance="EVEN", status=JobStatus.FAILED)
    pages, _ = _all_pages(store, query, top=2)
    got = [jid for page in pages for jid in page]
    assert len(pages) > 1
    assert got == [
        j.job_id
        for j in made
        if j.instance == "even" and j.status is JobStatus.FAILED and j.created >= NOW - timedelta(days=10)
    ]


def test_first_page_of_a_busy_day_is_one_table_request(filled: tuple[JobStore, list[Job]]) -> None:
    store, _ = filled
    # NOW's day holds two jobs (09:29 and 03:29).
    page = store.page(JobQuery.last_days(NOW, 7), top=2)
    assert page.requests == 1 and len(page.jobs) == 2 and page.next is not None


def test_a_job_created_after_the_first_page_does_not_shift_later_pages(filled: tuple[JobStore, list[Job]]) -> None:
    store, made = filled
    query = JobQuery.last_days(NOW, 2)
    first = store.page(query, top=4)
    late = NOW + timedelta(seconds=1)
    store.create(Job(new_job_id(late), Operation.VALIDATE, "odd", JobStatus.IN_PROGRESS, late))
    assert first.next is not None
    second = store.page(query, top=4, cursor=first.next)
    assert [j.job_id for j in first.jobs + second.jobs] == [j.job_id for j in made[:8]]
