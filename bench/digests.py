"""Benchmark: the backup's manifest from the dump stream against the SQL manifest and against none.

    .venv/bin/python bench/digests.py [--scale 0.5] [--repeat 3]

Builds (or reuses, under .bench/) bench/backup.py's reference database of about ``scale`` GB, then
runs what the backup worker runs (``dump_with_manifest``: pg_dump → zstd → staged blocks → commit
into Azurite) four ways, interleaved, ``--repeat`` times each:
- none:   ``digests=False``, no manifest
- sql:    the SQL manifest (``shared.pg.digests``: a second read of every table in the dump's snapshot)
- stream: the manifest read from the dump stream (``shared.pg.archive``, ``from_stream=True``, the
          default), the parser on a thread of its own (``digest_on_thread=True``)
- inline: the same, the parser on the thread that feeds zstd (``digest_on_thread=False``, the default)
Prints medians: the worker's wall seconds, the CPU seconds of the worker process (with pg_dump, its
child), of PostgreSQL's backends, and of Azurite. Not a test: it asserts nothing, it reports.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from backup import BENCH_DIR, Cpu, build  # noqa: E402

from devhost.services import Azurite, Postgres, reap_stale  # noqa: E402

CHILD = """
import json, os, resource, sys, time
sys.path.insert(0, {repo!r})
from azure.storage.blob import BlobServiceClient
from shared.pg.dump import dump_with_manifest
from shared.pg.tools import pick_tool
from shared.storage.blobs import BlobStore
container = BlobStore(BlobServiceClient.from_connection_string(os.environ["AzureWebJobsStorage"]), "bench")
libpq = {{"host": os.environ["PGHOST"], "port": os.environ["PGPORT"], "user": os.environ["PGUSER"],
         "dbname": os.environ["PGDATABASE"]}}
started = time.monotonic()
result, tables = dump_with_manifest(pick_tool("pg_dump", 15).path, libpq, dict(os.environ), container, {blob!r},
                                    metadata={{}}, expected_bytes={size}, digests={digests},
                                    from_stream={stream}, digest_on_thread={thread})
seconds = time.monotonic() - started
assert bool(tables) == {digests}, "manifest"
me = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"seconds": seconds, "worker_cpu": me.ru_utime + me.ru_stime, "tables": len(tables or {{}}),
                   "rss_mb": me.ru_maxrss / 1024}}))
"""

VARIANTS = {
    "none": (False, False, True),
    "sql": (True, False, True),
    "stream": (True, True, True),
    "inline": (True, True, False),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.5, help="size of the reference database in GB")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs of each variant (medians)")
    args = parser.parse_args()
    reap_stale()
    BENCH_DIR.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pgvault-bench-"))
    pg = Postgres(BENCH_DIR / "pg").start()
    azurite = Azurite(work / "azurite").start()
    try:
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        db = f"digests{int(args.scale * 100)}"
        size = build(pg, db, args.scale)
        env = {
            **os.environ,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(pg.port),
            "PGUSER": "postgres",
            "PGDATABASE": db,
            "AzureWebJobsStorage": azurite.connection_string,
        }
        cpu = Cpu(pg, azurite)
        rows: dict[str, list[dict[str, float]]] = {name: [] for name in VARIANTS}
        for attempt in range(args.repeat):
            for name, (digests, stream, thread) in VARIANTS.items():
                # a fresh Azurite for each run, as bench/backup.py does (it slows after large uploads)
                azurite.stop()
                subprocess.run(["rm", "-rf", str(azurite.location)], check=True)
                azurite.start(keep_ports=True)
                service.create_container("bench")
                assert azurite.proc is not None
                cpu.azurite = azurite.proc.pid
                child = CHILD.format(
                    repo=str(REPO),
                    blob=f"{name}-{attempt}.zst",
                    size=size,
                    digests=digests,
                    stream=stream,
                    thread=thread,
                )
                out: dict[str, float] = {}

                def run(child: str = child, out: dict[str, float] = out) -> None:
                    done = subprocess.run(
                        [sys.executable, "-c", child], env=env, check=True, capture_output=True, text=True
                    )
                    out.update(json.loads(done.stdout.strip().splitlines()[-1]))

                _, used = cpu.measure(run)
                rows[name].append(
                    {**out, "postgres": used["postgres"], "azurite": used["azurite"], "all": used["tools"]}
                )
        mb = 1024 * 1024
        print(f"\ndatabase {db}: {size / mb:,.0f} MB; medians of {args.repeat} interleaved runs")
        head = f"{'manifest':<10}{'wall s':>8}{'worker CPU s':>14}{'+pg_dump CPU s':>16}{'server CPU s':>14}"
        print(head + f"{'azurite CPU s':>15}{'RSS MB':>8}{'tables':>8}")
        for name, runs in rows.items():

            def med(key: str, runs: list[dict[str, float]] = runs) -> float:
                return statistics.median(r[key] for r in runs)

            print(
                f"{name:<10}{med('seconds'):>8.1f}{med('worker_cpu'):>14.1f}{med('all'):>16.1f}{med('postgres'):>14.1f}"
                f"{med('azurite'):>15.1f}{med('rss_mb'):>8.0f}{med('tables'):>8.0f}"
            )
        print("raw wall seconds:")
        for name, runs in rows.items():
            print(f"  {name:<8} " + ", ".join(f"{r['seconds']:.2f}" for r in runs))
    finally:
        azurite.stop()
        pg.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)  # Azurite's blobs of this run
    return 0


if __name__ == "__main__":
    sys.exit(main())
