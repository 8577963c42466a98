"""Benchmark: the scheduler's tick with 100, 1,000 and 10,000 instances on Azurite.

    .venv/bin/python bench/scheduler.py [--sizes 100 1000 10000] [--per-server 50]

For each size, a fresh state table in a throwaway Azurite gets, in table batches, two policies and
that many protected, ready instances (``--per-server`` databases per server; 1% of them on a policy
that fires an hour before the other's). Then it times ticks of ``BackupStarter.schedule`` and counts
the table and queue requests each made (counted by the clients' HTTP transport):

- the first tick, which builds the due index once (``ScheduleIndex.backfill``: a vault from
  before the index);
- a tick with nothing due (median of 3);
- a tick with 1% due (the early policy's slot);
- a tick a week later with every instance due (each has one slot), with the default limits
  (``PGVAULT_MAX_BACKUPS_PER_SERVER`` 2, ``PGVAULT_MAX_BACKUPS`` 20): jobs recorded, in line, and
  messages sent (never more than the free seats).

Not a test: it prints figures (bench/README.md keeps them).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from azure.core.pipeline.transport import RequestsTransport  # noqa: E402
from azure.data.tables import TableServiceClient  # noqa: E402
from azure.storage.queue import QueueServiceClient  # noqa: E402

from devhost.services import Azurite, reap_stale  # noqa: E402
from shared.backups import BackupStarter  # noqa: E402
from shared.fanout import BackupLimits  # noqa: E402
from shared.instances import Instance, InstanceSpec, ProtectionStatus, Readiness  # noqa: E402
from shared.policy import parse_policy  # noqa: E402
from shared.storage import layout  # noqa: E402
from shared.storage.limits import MAX_TABLE_BATCH_ENTITIES  # noqa: E402
from shared.storage.queues import QueueSender  # noqa: E402
from shared.storage.tables import StateTable, _to_table  # noqa: E402

EARLY = datetime(2025, 3, 2, 2, 0, tzinfo=UTC)  # a Sunday
LATE = EARLY + timedelta(hours=1)
CREATED = EARLY - timedelta(days=3)


class RequestCounter(RequestsTransport):  # type: ignore[misc]
    """The SDK's own HTTP transport, counting every request it sends (a retry counts again; a table
    batch is one request). A hook would miss calls that set a hook of their own."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def send(self, request: Any, **kwargs: Any) -> Any:
        self.count += 1
        return super().send(request, **kwargs)


def _policy(first: datetime) -> str:
    doc = json.loads((REPO / "tests" / "policy-examples" / "sunday-default-only.json").read_text())
    schedule = doc.get("properties", doc)["policyRules"][0]["trigger"]["schedule"]
    schedule["timeZone"] = "UTC"
    schedule["repeatingTimeIntervals"] = [f"R/{first.strftime('%Y-%m-%dT%H:%M:%S')}+00:00/P1W"]
    return json.dumps(parse_policy(doc).to_dict(), separators=(",", ":"), sort_keys=True)


def fill(client: Any, size: int, per_server: int) -> float:
    """Two policies and ``size`` ready instances, in batches of 100; seconds taken."""
    started = time.monotonic()
    for name, first in (("early", EARLY), ("late", LATE)):
        client.upsert_entity(
            _to_table(layout.POLICY, name, {"name": name, "policy": _policy(first), "created": CREATED})
        )
    rows = []
    early = max(1, size // 100)
    for i in range(size):
        spec = InstanceSpec(
            f"db{i:05}",
            f"pg{i // per_server:04}.example.com",
            5432,
            f"d{i:05}",
            "env:X",
            "early" if i < early else "late",
        )
        instance = Instance(spec, ProtectionStatus.PROTECTED, Readiness.SUCCESS, None, None, CREATED)
        rows.append(_to_table(layout.INSTANCE, layout.row_key(spec.name), instance.data()))
    for i in range(0, len(rows), MAX_TABLE_BATCH_ENTITIES):
        client.submit_transaction([("upsert", row) for row in rows[i : i + MAX_TABLE_BATCH_ENTITIES]])
    return time.monotonic() - started


def measure(
    label: str, tick: Callable[[], list[Any]], tables: RequestCounter, queues: RequestCounter
) -> dict[str, Any]:
    tables.count = queues.count = 0
    started = time.monotonic()
    jobs = tick()
    seconds = time.monotonic() - started
    out = {"label": label, "seconds": seconds, "jobs": len(jobs), "table": tables.count, "queue": queues.count}
    print(
        f"  {label:<34}{seconds:>8.2f} s{len(jobs):>7} jobs{tables.count:>8} table requests{queues.count:>6} messages"
    )
    return out


def _tick_at(starter: BackupStarter, now: datetime) -> Callable[[], list[Any]]:
    return lambda: starter.schedule(now)


def run_size(azurite: Azurite, size: int, per_server: int) -> list[dict[str, Any]]:
    tables, queues = RequestCounter(), RequestCounter()
    service = TableServiceClient.from_connection_string(azurite.connection_string, transport=tables)
    name = f"benchsched{size}"
    state = StateTable(service, name)
    state.ensure()
    qservice = QueueServiceClient.from_connection_string(azurite.connection_string, transport=queues)
    sender = QueueSender(qservice)
    sender.ensure(layout.BACKUP_QUEUE)
    seconds = fill(service.get_table_client(name), size, per_server)
    servers = -(-size // per_server)
    print(f"{size:,} instances on {servers} servers written in {seconds:.1f} s")
    starter = BackupStarter(state, sender, BackupLimits())
    results = [
        measure(
            "first tick (builds the index once)", lambda: starter.schedule(CREATED + timedelta(hours=1)), tables, queues
        )
    ]
    idle = [
        measure(
            f"nothing due (run {n + 1})", _tick_at(starter, CREATED + timedelta(hours=2, minutes=n)), tables, queues
        )
        for n in range(3)
    ]
    results.append(
        {**idle[0], "label": "nothing due (median of 3)", "seconds": statistics.median(r["seconds"] for r in idle)}
    )
    results.append(measure("1% due", lambda: starter.schedule(EARLY + timedelta(minutes=1)), tables, queues))
    results.append(
        measure("all due (a week on)", lambda: starter.schedule(EARLY + timedelta(weeks=1, minutes=1)), tables, queues)
    )
    line = sum(1 for _ in state.partition(layout.BACKLOG))
    seats = sum(1 for e in state.partition(layout.SLOTS) if str(e.row_key).startswith("all|"))
    print(f"  after the all-due tick: {line:,} backups in line, {seats} seats reserved (vault limit 20)\n")
    for r in results:
        r["size"] = size
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 10_000])
    parser.add_argument("--per-server", type=int, default=50, help="databases per server")
    args = parser.parse_args()
    reap_stale()
    azurite = Azurite(Path(tempfile.mkdtemp(prefix="pgvault-bench-")) / "azurite").start()
    try:
        rows = [r for size in args.sizes for r in run_size(azurite, size, args.per_server)]
    finally:
        azurite.stop()
    print("| instances | tick | seconds | jobs | table requests | messages |")
    print("|---:|---|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['size']:,} | {r['label']} | {r['seconds']:.2f} | {r['jobs']:,} | {r['table']:,} | {r['queue']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
