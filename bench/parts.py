"""Benchmark: parallel (multi-part) backup and restore against the shell baselines, 1, 2 and 4 workers.

    .venv/bin/python bench/parts.py [--scale 2.0] [--tables 48] [--workers 1 2 4] [--repeat 3] [--keep]

Builds (or reuses, under .bench/) ``parts<scale>``: ``--tables`` tables of skewed sizes (the
largest about a tenth of the data, as real databases are lopsided), random text and bytea, a
primary key on each and a second index on every other one (so post-data has work to do). Then,
interleaved, ``--repeat`` times, medians:

backup (upload to Azurite included, the manifest on, as by default):
- shell: ``pg_dump -Fc -Z0 | zstd -3 -T0 > file``
- pgvault N=1: ``dump_with_manifest`` (what the worker runs below the size threshold)
- pgvault N=k: ``dump_in_parts`` with k data parts (``PGVAULT_BACKUP_PARALLELISM=k``)

restore (into an empty database):
- shell: ``pg_restore -j2 -d db file`` of an uncompressed local file
- pgvault N=1: ``restore_blob`` of the one-stream point, post-data with ``--jobs=2`` from the
  archive's head (as the worker runs it), and in one run (``jobs=1``, as before)
- pgvault N=k: ``restore_in_parts`` of the k-part point, post-data with ``--jobs=k``

Every pgvault run is a child process (its own peak RSS); the CPU seconds each party spent (our
processes and pg_dump/pg_restore/zstd, PostgreSQL's backends, Azurite) come from bench/backup.py's
``Cpu``. Each backup run gets a fresh Azurite (bench/backup.py says why). Not a test: it asserts
nothing, it reports.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from backup import BENCH_DIR, Cpu, bash  # noqa: E402

from devhost.services import Azurite, Postgres, reap_stale  # noqa: E402

CHILD = """
import json, os, resource, sys, time
sys.path.insert(0, {repo!r})
from azure.storage.blob import BlobServiceClient
from shared.pg.dump import dump_with_manifest
from shared.pg.parts import PartSource, dump_in_parts, restore_in_parts
from shared.pg.restore import RestoreOptions, restore_blob
from shared.pg.tools import pick_tool
from shared.storage.blobs import BlobStore
from shared.storage.layout import part_blob_name
spec = json.loads({spec!r})
container = BlobStore(BlobServiceClient.from_connection_string(os.environ["AzureWebJobsStorage"]), "bench")
libpq = {{"host": os.environ["PGHOST"], "port": os.environ["PGPORT"], "user": os.environ["PGUSER"],
         "dbname": os.environ["PGDATABASE"]}}
env = dict(os.environ)
started = time.monotonic()
out = {{}}
if spec["op"] == "backup" and spec["workers"] == 1:
    result, tables = dump_with_manifest(pick_tool("pg_dump", 15).path, libpq, env, container, spec["blob"],
                                        metadata={{}}, expected_bytes=spec["size"])
    out = {{"stored": result.stream.stored_bytes, "sha": result.stream.sha256, "parts": []}}
elif spec["op"] == "backup":
    dumped = dump_in_parts(pick_tool("pg_dump", 15).path, libpq, env, container, spec["blob"],
                           parallelism=spec["workers"], metadata={{}})
    out = {{"stored": dumped.stored_bytes, "sha": dumped.schema.stream.sha256,
           "parts": [p.sha256 for p in dumped.parts], "partBytes": [p.stored_bytes for p in dumped.parts]}}
elif not spec["parts"]:
    report = restore_blob(pick_tool("pg_restore", 15).path, env, container, spec["blob"], spec["sha"],
                          jobs=spec["jobs"])
    out = {{"ok": report.ok}}
else:
    parts = [PartSource(part_blob_name(spec["blob"], i), sha) for i, sha in enumerate(spec["parts"], start=1)]
    report = restore_in_parts(pick_tool("pg_restore", 15).path, env, container, PartSource(spec["blob"], spec["sha"]),
                              parts, options=RestoreOptions(), jobs=spec["workers"])
    out = {{"ok": report.ok, "errors": list(report.errors)}}
out.update(seconds=time.monotonic() - started, rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps(out))
"""


def child(env: dict[str, str], spec: dict[str, object]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(repo=str(REPO), spec=json.dumps(spec))],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def build(pg: Postgres, db: str, gigabytes: float, tables: int) -> int:
    """Create ``db``, ``tables`` tables of skewed sizes totalling about ``gigabytes``, unless it exists."""
    exists = pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{db}'") == "1"
    if not exists:
        started = time.monotonic()
        pg.psql(f"CREATE DATABASE {db}")
        weights = [1 / (i + 3) for i in range(tables)]  # the largest ~ a tenth of the data at 48 tables
        total_rows = gigabytes * 1024**3 / 420  # about 420 bytes a row on disk
        random_hex = " || ".join(["md5(random()::text)"] * 4)
        for i, w in enumerate(weights):
            rows = max(100, int(total_rows * w / sum(weights)))
            pg.psql(
                f"CREATE TABLE t{i:03d} AS SELECT g AS id, {random_hex} || ' ' || {random_hex} AS note, "
                f"decode({random_hex}, 'hex') AS data, now() - g * interval '1 s' AS at "
                f"FROM generate_series(1, {rows}) g; ALTER TABLE t{i:03d} ADD PRIMARY KEY (id)"
                + (f"; CREATE INDEX ON t{i:03d} (at)" if i % 2 == 0 else ""),
                db,
            )
        pg.psql("VACUUM ANALYZE", db)
        print(f"  built {db} in {time.monotonic() - started:.0f} s", flush=True)
    return int(pg.psql("SELECT pg_database_size(current_database())", db))


def fresh_db(pg: Postgres, db: str) -> None:
    pg.psql(f"DROP DATABASE IF EXISTS {db}")
    pg.psql(f"CREATE DATABASE {db}")


class Bench:
    """One run's servers, measurements and results."""

    def __init__(self, pg: Postgres, azurite: Azurite, env: dict[str, str], work: Path) -> None:
        from azure.storage.blob import BlobServiceClient

        self.pg, self.azurite, self.env, self.work = pg, azurite, env, work
        self.cpu = Cpu(pg, azurite)
        self.service = BlobServiceClient.from_connection_string(azurite.connection_string)
        self.service.create_container("bench")
        self.walls: dict[str, list[float]] = {}
        self.cpus: dict[str, list[dict[str, float]]] = {}
        self.rss: dict[str, float] = {}
        self.stored: dict[str, int] = {}
        self.points: dict[int, dict[str, object]] = {}

    def fresh_azurite(self) -> None:
        from azure.storage.blob import BlobServiceClient

        self.azurite.stop()
        subprocess.run(["rm", "-rf", str(self.azurite.location)], check=True)
        self.azurite.start(keep_ports=True)
        self.service = BlobServiceClient.from_connection_string(self.azurite.connection_string)
        self.service.create_container("bench")
        assert self.azurite.proc is not None
        self.cpu.azurite = self.azurite.proc.pid

    def record(self, name: str, run: Callable[[], dict[str, object] | None]) -> dict[str, object] | None:
        holder: list[dict[str, object] | None] = []
        wall, used = self.cpu.measure(lambda: holder.append(run()))
        out = holder[0]
        if out is not None:
            wall = float(out["seconds"])  # type: ignore[arg-type]  # the work, without the interpreter's start
            self.rss[name] = max(self.rss.get(name, 0.0), float(out["rss_mb"]))  # type: ignore[arg-type]
        self.walls.setdefault(name, []).append(wall)
        self.cpus.setdefault(name, []).append(used)
        return out

    def backups(self, workers: list[int], repeat: int, size: int) -> None:
        shell_file = self.work / "shell.dump.zst"
        for r in range(repeat):
            self.record("backup shell", lambda: bash(f"pg_dump -Fc -Z0 | zstd -q -3 -T0 > {shell_file}", self.env))
            for n in workers:
                self.fresh_azurite()
                spec = {"op": "backup", "workers": n, "blob": f"b{n}-{r}.pgdump.zst", "size": size}
                out = self.record(f"backup N={n}", lambda spec=spec: child(self.env, spec))  # type: ignore[misc]
                assert out is not None
                self.stored[f"backup N={n}"] = int(out["stored"])  # type: ignore[call-overload]
        self.stored["backup shell"] = shell_file.stat().st_size

    def restores(self, workers: list[int], repeat: int, size: int) -> None:
        """One point per worker count, in one Azurite; the baseline restores an uncompressed local file."""
        self.fresh_azurite()
        for n in workers:
            self.points[n] = child(self.env, {"op": "backup", "workers": n, "blob": f"r{n}.pgdump.zst", "size": size})
        local = self.work / "ref.dump"
        subprocess.run(["pg_dump", "-Fc", "-Z0", "-f", str(local)], check=True, env=self.env)
        target = {**self.env, "PGDATABASE": "parts_restore"}
        for _ in range(repeat):
            fresh_db(self.pg, "parts_restore")
            self.record("restore shell -j2", lambda: bash(f"pg_restore -j2 -d parts_restore {local}", target))
            for n, jobs in [(n, 2) for n in workers] + ([(1, 1)] if 1 in workers else []):
                fresh_db(self.pg, "parts_restore")
                p = self.points[n]
                spec = {"op": "restore", "workers": n, "blob": f"r{n}.pgdump.zst", "sha": p["sha"], "parts": p["parts"]}
                name = f"restore N={n}" if jobs > 1 or n > 1 else "restore N=1 one run"
                out = self.record(name, lambda spec={**spec, "jobs": jobs}: child(target, spec))  # type: ignore[misc]
                assert out is not None and out["ok"], out
        self.pg.psql("DROP DATABASE IF EXISTS parts_restore")

    def report(self, title: str) -> None:
        mb = 1024 * 1024
        print()
        print(title)
        print(f"{'run':<22}{'seconds':>9}{'x shell':>9}{'CPU s':>8}  {'CPU by process (median s)':<58}{'RSS MB':>7}")
        for kind, base_name in (("backup", "backup shell"), ("restore", "restore shell -j2")):
            if base_name not in self.walls:
                continue
            base = statistics.median(self.walls[base_name])
            for name in [k for k in self.walls if k.startswith(kind)]:
                wall = statistics.median(self.walls[name])
                parts = {p: statistics.median(u[p] for u in self.cpus[name]) for p in self.cpus[name][0]}
                by = ", ".join(f"{p} {v:.1f}" for p, v in parts.items())
                total = sum(parts.values())
                print(f"{name:<22}{wall:>9.2f}{wall / base:>9.2f}{total:>8.1f}  {by:<58}{self.rss.get(name, 0):>7.0f}")
        print()
        print("raw times (s):")
        for name, values in self.walls.items():
            print(f"  {name:<20} " + ", ".join(f"{v:.2f}" for v in values))
        for name, value in self.stored.items():
            print(f"  stored by {name}: {value / mb:,.1f} MB")
        for n, p in self.points.items():
            if p["parts"]:
                sizes = ", ".join(f"{b / mb:.0f}" for b in p["partBytes"])  # type: ignore[attr-defined]
                print(f"  N={n}: data parts of {sizes} MB stored")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=2.0, help="size of the database in GB")
    parser.add_argument("--tables", type=int, default=48)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the database in .bench/ for next time")
    parser.add_argument("--skip-backup", action="store_true", help="only the restores")
    args = parser.parse_args()
    reap_stale()
    BENCH_DIR.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pgvault-bench-parts-"))
    pg = Postgres(BENCH_DIR / "pg").start()
    azurite = Azurite(work / "azurite").start()
    db = f"parts{str(args.scale).replace('.', '_')}"
    try:
        print(f"database {db} (PostgreSQL on port {pg.port}):", flush=True)
        size = build(pg, db, args.scale, args.tables)
        env = {
            **os.environ,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(pg.port),
            "PGUSER": "postgres",
            "PGDATABASE": db,
            "AzureWebJobsStorage": azurite.connection_string,
        }
        bench = Bench(pg, azurite, env, work)
        if not args.skip_backup:
            bench.backups(args.workers, args.repeat, size)
        bench.restores(args.workers, args.repeat, size)
        mb = 1024 * 1024
        bench.report(f"database {db}: {size / mb:,.0f} MB in {args.tables} tables; medians of {args.repeat} runs")
    finally:
        azurite.stop()
        pg.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)
        if not args.keep:
            subprocess.run(["rm", "-rf", str(BENCH_DIR)], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
