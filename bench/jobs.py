"""Benchmark: the jobs list with 100,000 jobs in the state table.

    .venv/bin/python bench/jobs.py [--jobs 100000] [--days 90] [--instances 50] [--top 100]

Fills a table in a throwaway Azurite with jobs spread over ``days`` days and ``instances``
instances (as ``JobStore`` lays them out: one partition per day, an index partition per
instance), then times what the API and the dashboard ask: the last 7 days of every instance (its first page,
all its pages, all at once), the last 7 days of one instance, one instance's whole history, one
job by id; each with the number of table requests it made (counted by the client's
``raw_response_hook``, once per HTTP response). The baseline is
the same 7-day question asked as one filter over the whole table, which is what a layout without
day partitions would have to do. Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from azure.data.tables import TableServiceClient  # noqa: E402

from devhost.services import Azurite, reap_stale  # noqa: E402
from shared.jobs import (  # noqa: E402
    DEFAULT_PAGE_SIZE,
    Cursor,
    Job,
    JobQuery,
    JobStatus,
    JobStore,
    Operation,
    new_job_id,
    partition_for,
)
from shared.storage import layout  # noqa: E402
from shared.storage.limits import MAX_TABLE_BATCH_ENTITIES  # noqa: E402
from shared.storage.tables import StateTable, _to_table  # noqa: E402


def fill(client: object, *, jobs: int, days: int, instances: int, now: datetime) -> list[Job]:
    """Write ``jobs`` finished jobs and their index rows in batches of 100 (one partition each)."""
    rng = random.Random(7)
    made: list[Job] = []
    by_partition: dict[str, list[dict[str, object]]] = defaultdict(list)
    for _ in range(jobs):
        created = now - timedelta(seconds=rng.uniform(0, days * 86400))
        job = Job(
            new_job_id(created),
            rng.choice(list(Operation)),
            f"instance-{rng.randrange(instances):03d}",
            rng.choice([JobStatus.COMPLETED, JobStatus.COMPLETED, JobStatus.FAILED]),
            created,
            start_time=created,
            end_time=created + timedelta(minutes=3),
            bytes=rng.randrange(10**9),
        )
        made.append(job)
        by_partition[partition_for(created)].append(_to_table(partition_for(created), job.job_id, job._data()))
        index = layout.instance_jobs(job.instance)
        summary = {k: v for k, v in job._data().items() if k not in ("steps", "details")}
        by_partition[index].append(_to_table(index, job.job_id, summary))
    for rows in by_partition.values():
        for i in range(0, len(rows), MAX_TABLE_BATCH_ENTITIES):
            client.submit_transaction([("upsert", row) for row in rows[i : i + MAX_TABLE_BATCH_ENTITIES]])  # type: ignore[attr-defined]
    return made


class RequestCounter:
    """Counts the HTTP requests the table client sends (its ``raw_response_hook``: once per response)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, response: object) -> None:
        self.count += 1


def timed(label: str, call: object, counter: RequestCounter, expected: int | None = None) -> None:
    counter.count = 0
    started = time.monotonic()
    result = call()  # type: ignore[operator]
    seconds = time.monotonic() - started
    count = result if isinstance(result, int) else len(result)
    check = "" if expected is None else (f"  (expected {expected})" if count != expected else "  (all found)")
    print(f"{label:<58}{seconds * 1000:>9.0f} ms{count:>8} rows{counter.count:>6} requests{check}")


def all_pages(store: JobStore, query: JobQuery, top: int) -> list[Job]:
    """Every job of ``query``, page after page, each page resumed from the previous one's token text."""
    jobs: list[Job] = []
    page = store.page(query, top=top)
    while True:
        jobs.extend(page.jobs)
        if page.next is None:
            return jobs
        page = store.page(query, top=top, cursor=Cursor.decode(page.next.encode(), query))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--top", type=int, default=DEFAULT_PAGE_SIZE, help="page size of the paged list")
    args = parser.parse_args()
    reap_stale()
    azurite = Azurite(Path(tempfile.mkdtemp(prefix="pgvault-bench-")) / "azurite").start()
    try:
        counter = RequestCounter()
        service = TableServiceClient.from_connection_string(azurite.connection_string, raw_response_hook=counter)
        table = StateTable(service, "benchjobs")
        table.ensure()
        now = datetime.now(UTC)
        started = time.monotonic()
        made = fill(
            service.get_table_client("benchjobs"),
            jobs=args.jobs,
            days=args.days,
            instances=args.instances,
            now=now,
        )
        print(
            f"{args.jobs:,} jobs over {args.days} days and {args.instances} instances written in "
            f"{time.monotonic() - started:.0f} s\n"
        )
        store = JobStore(table)
        week = [j for j in made if j.created >= now - timedelta(days=7)]
        one = "instance-007"
        top = args.top
        query = JobQuery.last_days(now, 7)
        timed(
            f"7 days, every instance: first page (top {top})",
            lambda: store.page(query, top=top).jobs,
            counter,
            min(top, len(week)),
        )
        timed(
            f"7 days, every instance: all pages (top {top})", lambda: all_pages(store, query, top), counter, len(week)
        )
        timed("7 days, every instance: at once (day partitions)", lambda: list(store.recent(now)), counter, len(week))
        timed(
            "7 days, every instance (baseline: one filter, whole table)",
            lambda: [
                e
                for e in table.query("created ge @since", {"since": now - timedelta(days=7)})
                if e.partition_key.startswith(layout.JOBS_PREFIX)
            ],
            counter,
            len(week),
        )
        mine = [j for j in week if j.instance == one]
        one_query = JobQuery.last_days(now, 7, instance=one)
        timed(
            f"7 days, one instance: first page (top {top})",
            lambda: store.page(one_query, top=top).jobs,
            counter,
            min(top, len(mine)),
        )
        timed(
            f"7 days, one instance: all pages (top {top})", lambda: all_pages(store, one_query, top), counter, len(mine)
        )
        timed(
            "whole history of one instance (its index partition)",
            lambda: list(store.history(one)),
            counter,
            sum(1 for j in made if j.instance == one),
        )
        sample = made[len(made) // 2].job_id
        timed("one job by id (point read)", lambda: [store.get(sample)], counter, 1)
    finally:
        azurite.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
