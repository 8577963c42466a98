"""Benchmark: what a retention sweep costs when the vault holds many points and few are due.

    .venv/bin/python bench/retention.py [--instances 100] [--points 500] [--due 200]

Fills a table in a throwaway Azurite with ``instances`` x ``points`` recovery points (as
``RecoveryPointStore`` lays them out: a partition per instance, plus one due-index row per point),
of which ``due`` have an event due at the sweep's ``now``; then times a sweep that finds nothing
due, a sweep that acts on the ``due`` points (their blobs exist), and the baseline a layout without
the due index would need: reading every instance's points to find the due ones. Not a test: it
prints figures.
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

from devhost.services import Azurite, reap_stale  # noqa: E402
from shared.instances import Instance, InstanceSpec, ProtectionStatus, Readiness  # noqa: E402
from shared.jobs import new_job_id  # noqa: E402
from shared.policy import Lifecycle  # noqa: E402
from shared.recovery_points import RecoveryPoint, RecoveryPointStore, due_key  # noqa: E402
from shared.retention import RetentionSweep  # noqa: E402
from shared.storage import layout  # noqa: E402
from shared.storage.blobs import BlobStore  # noqa: E402
from shared.storage.clients import StorageAccount  # noqa: E402
from shared.storage.limits import MAX_TABLE_BATCH_ENTITIES  # noqa: E402
from shared.storage.tables import StateTable, _to_table  # noqa: E402

NOW = datetime(2027, 6, 1, tzinfo=UTC)


def fill(state: StateTable, blobs: BlobStore, *, instances: int, points: int, due: int) -> None:
    """Write the instances, their points and index rows in batches of 100; blobs for the due points."""
    rng = random.Random(7)
    due_ids = set(rng.sample(range(instances * points), due))
    rows: dict[str, list[dict[str, object]]] = defaultdict(list)
    n = 0
    for i in range(instances):
        name = f"db-{i:04d}"
        spec = InstanceSpec(name, "db.example.com", 5432, name, "env:PGVAULT_SECRET_X", "p")
        inst = Instance(spec, ProtectionStatus.PROTECTED, Readiness.SUCCESS, None, None, NOW - timedelta(days=900))
        rows[layout.INSTANCE].append(_to_table(layout.INSTANCE, layout.row_key(name), inst.data()))
        for k in range(points):
            taken = NOW - timedelta(days=2 * (points - k), hours=2)
            expiry = NOW - timedelta(hours=1) if n in due_ids else NOW + timedelta(days=rng.randrange(1, 900))
            rp_id = new_job_id(taken, key=f"{name}/{k}")
            blob = f"{name}/{rp_id}.pgdump.zst"
            point = RecoveryPoint.from_lifecycle(
                rp_id,
                name,
                Lifecycle("Default", taken, expiry),
                blob_name=blob,
                size_in_bytes=1,
                raw_bytes=1,
                sha256="0" * 64,
                server_version="15",
                pg_dump_version="15",
                job_id=rp_id,
                on_demand=False,
            )
            pk = layout.recovery_points(name)
            rows[pk].append(_to_table(pk, rp_id, point._data()))
            key = due_key(point)
            assert key is not None
            rows[key[0]].append(
                _to_table(
                    key[0],
                    key[1],
                    {"instance": name, "recoveryPointId": rp_id, "at": expiry, "event": "Delete", "pointTime": taken},
                )
            )
            if n in due_ids:
                blobs.client.upload_blob(blob, b"x", overwrite=True)
            n += 1
    client = state._client
    for batch_rows in rows.values():
        for j in range(0, len(batch_rows), MAX_TABLE_BATCH_ENTITIES):
            client.submit_transaction([("upsert", r) for r in batch_rows[j : j + MAX_TABLE_BATCH_ENTITIES]])
    state.upsert(layout.RETENTION, "index-v1", {"points": n})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--due", type=int, default=200)
    args = parser.parse_args()
    reap_stale()
    with tempfile.TemporaryDirectory() as tmp:
        azurite = Azurite(Path(tmp) / "azurite").start()
        try:
            account = StorageAccount.from_connection_setting(
                "AzureWebJobsStorage", {"AzureWebJobsStorage": azurite.connection_string}
            )
            state = StateTable(account.table_service(), "benchretention")
            state.ensure()
            blobs = BlobStore(account.blob_service(), "bench-retention")
            blobs.ensure()
            started = time.perf_counter()
            fill(state, blobs, instances=args.instances, points=args.points, due=args.due)
            total = args.instances * args.points
            print(f"filled {total} points ({args.due} due) in {time.perf_counter() - started:.1f} s")

            t = time.perf_counter()
            report = RetentionSweep(state, blobs).sweep(NOW - timedelta(hours=2))
            print(f"sweep, nothing due:        {time.perf_counter() - t:7.2f} s  {report.acted}")

            t = time.perf_counter()
            points = RecoveryPointStore(state)
            found = sum(
                1
                for i in range(args.instances)
                for p in points.of(f"db-{i:04d}")
                if (e := p.next_event()) is not None and e[0] <= NOW
            )
            print(f"baseline, read every point: {time.perf_counter() - t:7.2f} s  ({found} due found)")

            t = time.perf_counter()
            report = RetentionSweep(state, blobs).sweep(NOW)
            took = time.perf_counter() - t
            per_point = took / max(args.due, 1) * 1000
            print(f"sweep, {args.due} due:          {took:7.2f} s  {report.acted} ({per_point:.0f} ms/point)")
        finally:
            azurite.stop()


if __name__ == "__main__":
    main()
