"""Benchmark: the instances list and the jobs list's first page with many instances and jobs.

    .venv/bin/python bench/lists.py [--instances 10000] [--jobs 100000] [--days 90]

Fills a throwaway Azurite table, in table batches, with ``instances`` ready instances and
``jobs`` finished backup jobs spread over ``days`` days and those instances (as ``JobStore``
lays them out, with each instance's ``lastbackup`` row), then times, counting table requests:

- ``GET /api/backupInstances`` first page (``top`` 100, as the handler builds it: one query of the
  instance partition, one range query each of ``lastbackup`` and ``usage`` bounded by the page's
  first and last names, the policy once) and a page deep in the list, with their JSON;
- the whole list in one answer as it was built before paging (``BackupTimesReader.of_all``: the
  instance partition, the ``lastbackup`` partition, each policy once);
- the same answer the way it was built before (one history query per instance), on a sample of
  instances and extrapolated (the full run would take as many requests as there are instances);
- ``GET /api/backupJobs`` first page (``top`` 100) and one instance's first page.

Not a test: it prints figures (bench/README.md keeps them).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from azure.data.tables import TableServiceClient  # noqa: E402
from scheduler import CREATED, RequestCounter, _policy  # noqa: E402

from devhost.services import Azurite, reap_stale  # noqa: E402
from shared.backup_times import BackupTimesReader  # noqa: E402
from shared.instance_paging import decode_token, list_page  # noqa: E402
from shared.instances import Instance, InstanceSpec, InstanceStore, ProtectionStatus, Readiness  # noqa: E402
from shared.jobs import Job, JobQuery, JobStatus, JobStore, Operation, new_job_id, partition_for  # noqa: E402
from shared.storage import layout  # noqa: E402
from shared.storage.limits import MAX_TABLE_BATCH_ENTITIES  # noqa: E402
from shared.storage.tables import StateTable, _to_table  # noqa: E402
from shared.wire import dump  # noqa: E402
from shared.wire.instances import BackupInstanceList  # noqa: E402


def fill(client: Any, instances: int, jobs: int, days: int, now: datetime) -> None:
    """Instances, jobs (row, summary) and last-backup rows, in batches of 100 per partition."""
    rows: dict[str, list[dict[str, Any]]] = {}

    def add(pk: str, rk: str, data: dict[str, Any]) -> None:
        rows.setdefault(pk, []).append(_to_table(pk, rk, data))

    add(layout.POLICY, "late", {"name": "late", "policy": _policy(CREATED), "created": CREATED})
    for i in range(instances):
        spec = InstanceSpec(f"db{i:05}", f"pg{i // 50:04}.example.com", 5432, f"d{i:05}", "env:X", "late")
        instance = Instance(spec, ProtectionStatus.PROTECTED, Readiness.SUCCESS, None, None, CREATED)
        add(layout.INSTANCE, layout.row_key(spec.name), instance.data())
        usage = {"instance": spec.name, "points": 3, "latestSizeInBytes": 1000, "totalSizeInBytes": 3000}
        add(layout.USAGE, layout.row_key(spec.name), usage)
    last: dict[str, tuple[datetime, dict[str, Any]]] = {}
    for n in range(jobs):
        created = now - timedelta(seconds=(n * 7919) % (days * 86400))
        name = f"db{n % instances:05}"
        job = Job(
            new_job_id(created, key=str(n)),
            Operation.BACKUP,
            name,
            JobStatus.COMPLETED,
            created,
            start_time=created,
            end_time=created + timedelta(minutes=3),
        )
        data = job._data()
        add(partition_for(created), job.job_id, data)
        summary = {k: v for k, v in data.items() if k not in ("steps", "details")}
        add(layout.instance_jobs(name), job.job_id, summary)
        if name not in last or last[name][0] < created:
            last[name] = (created, {**summary, "jobId": job.job_id})
    for name, (_, summary) in last.items():
        add(layout.LAST_BACKUP, layout.row_key(name), summary)
    for group in rows.values():
        for i in range(0, len(group), MAX_TABLE_BATCH_ENTITIES):
            client.submit_transaction([("upsert", row) for row in group[i : i + MAX_TABLE_BATCH_ENTITIES]])


def timed(label: str, call: Callable[[], Any], counter: RequestCounter) -> Any:
    counter.count = 0
    started = time.monotonic()
    result = call()
    seconds = time.monotonic() - started
    print(f"| {label} | {seconds:.2f} | {counter.count:,} |")
    return result


def _start_azurite(tries: int = 3) -> Azurite:
    """Azurite, tried again when a loaded machine keeps it from listening within its 30 s."""
    for attempt in range(tries):
        azurite = Azurite(Path(tempfile.mkdtemp(prefix="pgvault-bench-")) / "azurite")
        try:
            return azurite.start()
        except TimeoutError:
            azurite.stop()
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--sample", type=int, default=200, help="instances the old way is timed on")
    args = parser.parse_args()
    reap_stale()
    azurite = _start_azurite()
    try:
        counter = RequestCounter()
        service = TableServiceClient.from_connection_string(azurite.connection_string, transport=counter)
        state = StateTable(service, "benchlists")
        state.ensure()
        now = datetime.now(UTC)
        started = time.monotonic()
        fill(service.get_table_client("benchlists"), args.instances, args.jobs, args.days, now)
        print(f"{args.instances:,} instances and {args.jobs:,} jobs written in {time.monotonic() - started:.0f} s\n")
        print("| question | seconds | table requests |\n|---|---:|---:|")

        def first_page(after: str | None = None) -> str | None:
            page = list_page(state, now, top=100, after=after)
            value = [i.instance.to_wire(i.times, i.usage, storage=True) for i in page.items]
            json.dumps(dump(BackupInstanceList(value=value)))
            return page.next_token

        timed(f"instances list, {args.instances:,} instances, first page (top 100)", first_page, counter)
        middle = layout.row_key(f"db{args.instances // 2:05}")
        token = timed("instances list, a page from the middle (top 100)", lambda: first_page(middle), counter)
        assert token is None or decode_token(token)

        def instances_list() -> int:
            listed = BackupTimesReader(state).of_all(InstanceStore(state).all(), now)
            body = json.dumps(dump(BackupInstanceList(value=[i.to_wire(t) for i, t in listed])))
            return len(body)

        timed(
            f"instances list, all {args.instances:,} in one answer (before paging: whole partitions)",
            instances_list,
            counter,
        )
        sample = list(InstanceStore(state).all())[: args.sample]
        jobs = JobStore(state)

        def old_way() -> list[Job | None]:
            found: list[Job | None] = []
            for i in sample:  # what the list did before: each instance's history, to its last backup
                found.append(next((j for j in jobs.history(i.spec.name) if j.operation is Operation.BACKUP), None))
            return found

        timed(
            f"the old way on {len(sample)} of them (a history query each; x{args.instances // len(sample)} for all)",
            old_way,
            counter,
        )
        timed(
            "jobs list, 7 days, first page (top 100)",
            lambda: jobs.page(JobQuery.last_days(now, 7), top=100).jobs,
            counter,
        )
        timed(
            "jobs list, 7 days, one instance, first page (top 100)",
            lambda: jobs.page(JobQuery.last_days(now, 7, instance="db00042"), top=100).jobs,
            counter,
        )
    finally:
        azurite.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
