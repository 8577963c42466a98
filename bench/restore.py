"""Benchmark: a pgvault restore against ``pg_restore`` of the same dump from a local file.

    .venv/bin/python bench/restore.py [--scale 1.0] [--keep]

Builds (or reuses, under .bench/) the reference database of bench/backup.py (``build``), backs
it up once with pgvault's ``dump_to_blob`` (the reference backup, zstd, in Azurite) and once with
``pg_dump -Fc -Z0 -f file`` (local, uncompressed). Then, in one run, each into an empty database:
- baseline: ``pg_restore -d db file`` (the local uncompressed file, one job)
- pgvault:  ``restore_blob`` (blob → SHA-256 check → zstd → pg_restore stdin), in a child process
            so its peak RSS is its own
and the cost of the backup's manifest (per-table row counts and hashes, ``table_digests``),
which a backup computes beside its dump. Prints wall times and the ratio (goal: at most 1.2x).
Not a test: it asserts nothing, it reports.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from backup import BENCH_DIR, build  # noqa: E402

from devhost.services import Azurite, Postgres, reap_stale  # noqa: E402

CHILD = """
import json, os, resource, sys, time
sys.path.insert(0, {repo!r})
from azure.storage.blob import BlobServiceClient
from shared.pg.restore import restore_blob
from shared.pg.tools import pick_tool
from shared.storage.blobs import BlobStore
container = BlobStore(BlobServiceClient.from_connection_string(os.environ["AzureWebJobsStorage"]), "bench")
started = time.monotonic()
report = restore_blob(pick_tool("pg_restore", 15).path, dict(os.environ), container, {blob!r}, {sha!r})
print(json.dumps({{"seconds": time.monotonic() - started, "ok": report.ok, "warnings": list(report.warnings),
                   "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def fresh(pg: Postgres, db: str) -> None:
    pg.psql(f"DROP DATABASE IF EXISTS {db}")
    pg.psql(f"CREATE DATABASE {db}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="size of the reference database in GB")
    parser.add_argument("--keep", action="store_true", help="keep the reference database in .bench/ for next time")
    args = parser.parse_args()
    reap_stale()
    BENCH_DIR.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pgvault-bench-"))
    pg = Postgres(BENCH_DIR / "pg").start()
    azurite = Azurite(work / "azurite").start()
    try:
        import psycopg
        from azure.storage.blob import BlobServiceClient

        from shared.pg.digests import table_digests
        from shared.pg.dump import dump_to_blob
        from shared.pg.tools import pick_tool
        from shared.storage.blobs import BlobStore

        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        service.create_container("bench")
        print(f"reference database (PostgreSQL on port {pg.port}):", flush=True)
        size = build(pg, "bench1", args.scale)
        env = {
            **os.environ,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(pg.port),
            "PGUSER": "postgres",
            "PGDATABASE": "bench1",
            "AzureWebJobsStorage": azurite.connection_string,
        }
        backup = dump_to_blob(
            pick_tool("pg_dump", 15).path,
            env,
            BlobStore(service, "bench"),
            "ref.zst",
            {},
            expected_bytes=size,
        )
        local = work / "ref.dump"
        subprocess.run(["pg_dump", "-Fc", "-Z0", "-f", str(local)], check=True, env=env)

        fresh(pg, "restore_base")
        started = time.monotonic()
        subprocess.run(["pg_restore", "-d", "restore_base", str(local)], check=True, env=env)
        baseline = time.monotonic() - started

        fresh(pg, "restore_vault")
        out = subprocess.run(
            [sys.executable, "-c", CHILD.format(repo=str(REPO), blob="ref.zst", sha=backup.stream.sha256)],
            env={**env, "PGDATABASE": "restore_vault"},
            check=True,
            capture_output=True,
            text=True,
        )
        vault = json.loads(out.stdout.strip().splitlines()[-1])

        with psycopg.connect(host="127.0.0.1", port=pg.port, dbname="bench1", user="postgres") as conn:
            started = time.monotonic()
            tables = table_digests(conn)
            digests = time.monotonic() - started

        mb = 1024 * 1024
        print()
        print(
            f"database: {size / mb:,.0f} MB; dump raw {backup.raw_bytes / mb:,.0f} MB, "
            f"stored (zstd) {backup.stream.stored_bytes / mb:,.0f} MB"
        )
        print(f"{'run':<62}{'seconds':>9}")
        print(f"{'baseline: pg_restore -d db file (local, uncompressed)':<62}{baseline:>9.2f}")
        print(f"{'pgvault: blob -> sha256 -> zstd -> pg_restore stdin':<62}{vault['seconds']:>9.2f}")
        print(f"{'manifest: per-table counts and hashes (' + str(len(tables)) + ' tables)':<62}{digests:>9.2f}")
        print()
        print(f"pgvault / baseline: {vault['seconds'] / baseline:.2f}x (goal <= 1.2)")
        print(f"pgvault restore ok: {vault['ok']}, warnings {vault['warnings']}, peak RSS {vault['rss_mb']:.0f} MB")
        same = pg.psql("SELECT count(*) FROM pgbench_accounts", "restore_vault") == pg.psql(
            "SELECT count(*) FROM pgbench_accounts", "bench1"
        )
        print(f"restored row count of pgbench_accounts equals the source: {same}")
        for db in ("restore_base", "restore_vault"):
            pg.psql(f"DROP DATABASE IF EXISTS {db}")
    finally:
        azurite.stop()
        pg.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)
        if not args.keep:
            subprocess.run(["rm", "-rf", str(BENCH_DIR)], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
