"""Benchmark: a multi-part backup with its parts on threads against the same parts as queue messages.

    .venv/bin/python bench/xparts.py                          # 0.5 GB in 24 tables, 4 parts, 3 rounds
    .venv/bin/python bench/xparts.py --scale 1 --parts 4 --repeat 5

Starts Azurite and PostgreSQL (as ``make demo`` does), builds ``xparts<scale>`` with bench/parts.py's
builder (skewed tables of random text and bytea), then, interleaved, ``--repeat`` rounds of one
on-demand backup through devhost in each mode, with ``PGVAULT_BACKUP_PARALLELISM=--parts`` and
``PGVAULT_PARALLEL_BACKUP_MIN_BYTES=0``:

- ``threads``: one devhost, the parts on threads of the backup job's invocation (the baseline);
- ``queue, 1 host``: one devhost, ``PGVAULT_BACKUP_PARTS_ACROSS_INSTANCES=true``: the job's
  invocation holds the snapshot and dumps the schema part, the same host's part trigger the parts;
- ``queue, 1 host, SQL manifest``: the same with ``PGVAULT_BACKUP_MANIFEST_FROM_STREAM=false``: the
  coordinator digests every table in its snapshot (the second read) instead of the parts' streams;
- ``queue, 2 hosts``: two devhosts on the same storage, both part triggers taking parts.

Each mode has a vault of its own (state table, container); the queues are the account's, so each
round starts the mode's hosts and stops them after its backup. Per backup: the job's own duration
(worker start to end), CPU seconds of the devhost processes (with their pg_dump children), of
PostgreSQL's backends and of Azurite, each host's peak RSS (VmHWM: the hosts are fresh each round),
and how many parts each host took. Not a test: it asserts nothing, it reports.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from backup import _proc_cpu  # noqa: E402
from parts import build  # noqa: E402

from devhost.demo import Devhost, protected  # noqa: E402
from devhost.services import Azurite, Postgres, running_services  # noqa: E402
from shared.backup_parts import parts_of  # noqa: E402
from shared.storage.clients import StorageAccount  # noqa: E402
from shared.storage.tables import StateTable  # noqa: E402

USER = "xparts_backup"
# mode -> (hosts, parts across instances, manifest from the dump streams)
MODES = {
    "threads": (1, False, True),
    "queue, 1 host": (1, True, True),
    "queue, 1 host, SQL manifest": (1, True, False),
    "queue, 2 hosts": (2, True, True),
}


@dataclass
class Results:
    seconds: list[float] = field(default_factory=list)
    cpu: list[dict[str, float]] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    takers: list[list[int]] = field(default_factory=list)


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _postmaster(pg: Postgres) -> int:
    return int((pg.data_dir / "postmaster.pid").read_text().split()[0])


def _round(
    azurite: Azurite, pg: Postgres, db: str, mode: str, *, parts: int, configured: set[str]
) -> tuple[float, dict[str, float], float, list[int]]:
    """One backup in ``mode`` on fresh hosts: (job seconds, CPU seconds by party, peak RSS MB, parts per host)."""
    hosts, across, from_stream = MODES[mode]
    table = "x" + uuid.uuid5(uuid.NAMESPACE_DNS, mode).hex[:12]
    settings = {
        "PGVAULT_VAULT_NAME": "pgvault-bench",
        "PGVAULT_SCHEDULER_SCHEDULE": "0 0 0 1 1 *",
        "PGVAULT_RETENTION_SCHEDULE": "0 0 0 1 1 *",
        "PGVAULT_STATE_TABLE": table,
        "PGVAULT_BACKUP_CONTAINER": f"b-{table}",
        "PGVAULT_BACKUP_PARALLELISM": str(parts),
        "PGVAULT_PARALLEL_BACKUP_MIN_BYTES": "0",
        "PGVAULT_BACKUP_PARTS_ACROSS_INSTANCES": "true" if across else "false",
        "PGVAULT_BACKUP_MANIFEST_FROM_STREAM": "true" if from_stream else "false",
        "PGVAULT_SECRET_XPARTS_CS": f"Server=127.0.0.1;Port={pg.port};User Id={USER};Password=bench;Ssl Mode=Disable",
    }
    devhosts = [Devhost(azurite, settings) for _ in range(hosts)]
    for i, d in enumerate(devhosts):
        d.log_path = azurite.location.parent / f"devhost-{i}.log"
    for d in devhosts:
        d.__enter__()
    try:
        api = devhosts[0].api
        if mode not in configured:
            api.call(
                "PUT", "/backupPolicies/weekly", (REPO / "tests/policy-examples/sunday-default-only.json").read_bytes()
            )
            protected(api, pg, "xparts", db, login_uri="env:PGVAULT_SECRET_XPARTS_CS", policy="weekly")
            configured.add(mode)
        pids = [d.proc.pid for d in devhosts if d.proc is not None]
        assert azurite.proc is not None
        node = azurite.proc.pid
        procs: dict[str, Callable[[], float]] = {
            "devhosts": lambda: sum(_proc_cpu(p) for p in pids),
            "postgres": lambda: _proc_cpu(_postmaster(pg)),
            "azurite": lambda: _proc_cpu(node),
        }
        before = {k: f() for k, f in procs.items()}
        status, body = api.call("POST", "/backupInstances/xparts:backup", {})
        assert status == 202, body
        job = api.wait(f"/backupJobs/{body['jobId']}", lambda j: j["status"] != "InProgress", timeout=1800)
        assert job["status"] == "Completed", job
        time.sleep(1)  # the pg_dump children and backends reaped, their CPU counted
        used = {k: f() - before[k] for k, f in procs.items()}
        seconds = (datetime.fromisoformat(job["endTime"]) - datetime.fromisoformat(job["startTime"])).total_seconds()
        rss = max(_peak_rss_mb(p) for p in pids)
        taken: list[int] = []
        if across:
            account = StorageAccount.from_connection_setting("AzureWebJobsStorage", devhosts[0].env)
            rows = parts_of(StateTable(account.table_service(), table), job["jobId"])
            workers = [r.worker for r in rows]
            taken = sorted((workers.count(w) for w in set(workers)), reverse=True)
        return seconds, used, rss, taken
    finally:
        for d in devhosts:
            d.__exit__()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", type=float, default=0.5, help="size of the database in GB")
    parser.add_argument("--tables", type=int, default=24)
    parser.add_argument("--parts", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with running_services() as (azurite, pg):
        assert azurite is not None and pg is not None
        db = f"xparts{str(args.scale).replace('.', '_')}"
        size = build(pg, db, args.scale, args.tables)
        pg.psql(f"CREATE ROLE {USER} LOGIN PASSWORD 'bench'")
        results = {mode: Results() for mode in MODES}
        configured: set[str] = set()
        for r in range(args.repeat):
            for mode in MODES:
                seconds, used, rss, taken = _round(azurite, pg, db, mode, parts=args.parts, configured=configured)
                res = results[mode]
                res.seconds.append(seconds)
                res.cpu.append(used)
                res.rss.append(rss)
                res.takers.append(taken)
                print(f"  round {r + 1} {mode}: {seconds:.2f} s, parts per host {taken or '-'}", flush=True)
        print()
        print(
            f"database {db}: {size / 1024**2:,.0f} MB in {args.tables} tables, {args.parts} data parts; "
            f"medians of {args.repeat} rounds"
        )
        print(
            "| mode | job s (median) | × threads | CPU s total | devhosts (+pg_dump) | postgres | azurite | "
            "peak RSS MB per host (max) | parts per host |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
        base = statistics.median(results["threads"].seconds)
        for mode, res in results.items():
            wall = statistics.median(res.seconds)
            by = {k: statistics.median(u[k] for u in res.cpu) for k in res.cpu[0]}
            takers = "; ".join("+".join(map(str, t)) for t in res.takers) if any(res.takers) else "-"
            print(
                f"| {mode} | {wall:.2f} | {wall / base:.2f} | {sum(by.values()):.1f} | {by['devhosts']:.1f} | "
                f"{by['postgres']:.1f} | {by['azurite']:.1f} | {max(res.rss):.0f} | {takers} |"
            )
        print()
        for mode, res in results.items():
            print(f"  raw {mode}: " + ", ".join(f"{s:.2f}" for s in res.seconds))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
