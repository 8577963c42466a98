"""Queue pickup: how long an on-demand backup's job waits between the request and a worker taking it.

    .venv/bin/python bench/pickup.py              # 7 backups after each idle gap (0.3 s and 6 s)
    .venv/bin/python bench/pickup.py --repeat 11 --gaps 0.3 3 10

It starts Azurite, a throwaway PostgreSQL and devhost (as ``make demo`` does), protects a small
database, then takes backups one after another: each waits ``gap`` seconds after the previous one
ended (plus a random 0-2 s, so the requests fall at every phase of the listener's poll loop), sends
``POST :backup`` and reads the job's ``createdTime`` (written by the request) and ``startTime``
(written by the worker that took the message). It prints the medians and the range of
request → job created, job created → worker start, and the whole request → start, per gap.

What it shows: the request hands the job's message to the host through a queue output binding
(functions/backups.py), and the host, once the function returned and the message is sent, wakes its
own listener of that queue at once (the WebJobs SDK's ``SharedQueueWatcher``; devhost mirrors it):
the pickup no longer depends on where the listener's back-off stands (0.1 s doubling up to host.json's
``maxPollingInterval``, 2 s, while the queue is empty). Messages sent with the storage SDK (the
scheduler's, the timers') still wait for the next poll. bench/README has the runs' figures.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devhost.demo import Api, Devhost, protected  # noqa: E402
from devhost.services import running_services  # noqa: E402

DB, USER = "pickup_db", "pickup_backup"


def _seconds(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def _one(api: Api) -> tuple[float, float]:
    """(request → job created, job created → worker start) of one on-demand backup, in seconds."""
    sent = datetime.now().astimezone()
    status, body = api.call("POST", "/backupInstances/pickup:backup", {})
    assert status == 202, body
    job = api.wait(f"/backupJobs/{body['jobId']}", lambda j: j["status"] != "InProgress", timeout=120)
    assert job["status"] == "Completed", job
    return _seconds(sent.isoformat(), job["createdTime"]), _seconds(job["createdTime"], job["startTime"])


def _row(label: str, values: list[float]) -> str:
    return f"| {label} | {statistics.median(values):.2f} | {min(values):.2f} - {max(values):.2f} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--gaps", type=float, nargs="+", default=[0.3, 6.0])
    args = parser.parse_args()
    with running_services() as (azurite, pg):
        assert azurite is not None and pg is not None
        pg.psql(f"CREATE ROLE {USER} LOGIN PASSWORD 'bench'; CREATE DATABASE {DB};")
        pg.psql("CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, 1000) g;", DB)
        settings = {
            "PGVAULT_VAULT_NAME": "pgvault-bench",
            "PGVAULT_SCHEDULER_SCHEDULE": "0 0 0 1 1 *",
            "PGVAULT_RETENTION_SCHEDULE": "0 0 0 1 1 *",
            "PGVAULT_SECRET_PICKUP_CS": (
                f"Server=127.0.0.1;Port={pg.port};User Id={USER};Password=bench;Ssl Mode=Disable"
            ),
        }
        with Devhost(azurite, settings) as devhost:
            api = devhost.api
            policy = (REPO / "tests" / "policy-examples" / "sunday-default-only.json").read_bytes()
            api.call("PUT", "/backupPolicies/weekly", policy)
            protected(api, pg, "pickup", DB, login_uri="env:PGVAULT_SECRET_PICKUP_CS", policy="weekly")
            _one(api)  # warm: first imports, first blob container and queue calls
            print("| idle gap before the request | median s | range s |\n|---|---:|---:|")
            for gap in args.gaps:
                created, started = [], []
                for _ in range(args.repeat):
                    # A random phase against the listener's poll loop (its interval is up to 2 s).
                    time.sleep(gap + random.uniform(0, 2))
                    c, s = _one(api)
                    created.append(c)
                    started.append(s)
                whole = [c + s for c, s in zip(created, started, strict=True)]
                print(_row(f"{gap:g} s: request sent → job created by the handler", created))
                print(_row(f"{gap:g} s: job created → worker start (queue pickup)", started))
                print(_row(f"{gap:g} s: request → worker start", whole))
                print(f"  raw pickup s: {', '.join(f'{s:.2f}' for s in started)}")
                print(f"  raw request → created s: {', '.join(f'{c:.3f}' for c in created)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
