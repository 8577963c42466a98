"""Benchmark: a pgvault backup against what an administrator would do by hand.

    .venv/bin/python bench/backup.py [--scale 1.0] [--keep]

Builds (or reuses, under .bench/) a reference database of about ``scale`` GB: pgbench data plus
random text and bytea, so compression costs what it costs on real data. Then, in one run:
- floor:   ``pg_dump -Fc -Z0 > /dev/null`` (the dump alone)
- shell:   ``pg_dump -Fc -Z0 | zstd -3 -T0 > file`` (what a careful admin writes; no upload)
- naive:   ``pg_dump -Fc > file`` (gzip, as Azure's service stores it) then ``upload_blob``
- pgvault: ``dump_with_manifest``, what the backup worker runs: pg_dump → zstd → staged blocks →
           commit into Azurite, and the per-table digests of the same snapshot beside it; in a
           child process so its peak RSS is its own
and pgvault again on a database twice the size, to show memory stays flat. Each of the four runs
``--repeat`` times, interleaved; prints median wall times, the CPU seconds every process spent
(ours, PostgreSQL's backends, Azurite: robust when the VM is busy), ratios, stored sizes and peak
RSS. Not a test: it asserts nothing, it reports.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devhost.services import Azurite, Postgres, reap_stale  # noqa: E402
from shared.pg.dump import ZSTD_LEVEL  # noqa: E402

BENCH_DIR = REPO / ".bench"


def build(pg: Postgres, db: str, gigabytes: float) -> int:
    """Create ``db`` of about ``gigabytes`` unless it exists; return its size in bytes."""
    exists = pg.psql(f"SELECT count(*) FROM pg_database WHERE datname = '{db}'") == "1"
    if not exists:
        started = time.monotonic()
        pg.psql(f"CREATE DATABASE {db}")
        # pgbench scale 1 is about 15 MB; keep a quarter of the size for random text and bytea.
        scale = max(1, int(gigabytes * 0.75 * 1024 / 15))
        subprocess.run(
            ["pgbench", "-i", "-q", "-s", str(scale), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres", db],
            check=True,
            capture_output=True,
        )
        # About 400 bytes a row: random hex text and random bytea, as docs/platform-notes.md's reference.
        rows = int(gigabytes * 0.25 * 1024**3 / 400)
        pg.psql("CREATE TABLE blobs (id int PRIMARY KEY, note text, data bytea)", db)
        random_hex = " || ".join(["md5(random()::text)"] * 4)
        pg.psql(
            f"INSERT INTO blobs SELECT g, {random_hex} || ' ' || {random_hex}, "
            f"decode({random_hex}, 'hex') FROM generate_series(1, {rows}) g",
            db,
        )
        print(f"  built {db} in {time.monotonic() - started:.0f} s", flush=True)
    return int(pg.psql("SELECT pg_database_size(current_database())", db))


def _proc_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` and of its children it has waited for (utime, stime, cutime, cstime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class Cpu:
    """CPU seconds spent by every process of a run: ours (children), PostgreSQL's backends, Azurite.

    Wall time on 2 shared cores swings with whatever else runs; CPU time says what a run costs.
    """

    def __init__(self, pg: Postgres, azurite: Azurite) -> None:
        self.postmaster = int((pg.data_dir / "postmaster.pid").read_text().split()[0])
        assert azurite.proc is not None
        self.azurite = azurite.proc.pid

    def _now(self) -> dict[str, float]:
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        mine = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "tools": children.ru_utime + children.ru_stime,  # pg_dump, zstd, the pgvault child process
            "bench": mine.ru_utime + mine.ru_stime,  # this process: the naive run's upload_blob
            "postgres": _proc_cpu(self.postmaster),
            "azurite": _proc_cpu(self.azurite),
        }

    def _backends(self) -> set[str]:
        tasks = Path(f"/proc/{self.postmaster}/task")
        return {pid for task in tasks.iterdir() for pid in (task / "children").read_text().split()}

    def measure(self, run: Callable[[], None]) -> tuple[float, dict[str, float]]:
        """Run ``run``; return its wall seconds and the CPU seconds each party spent."""
        resident = self._backends()
        before, started = self._now(), time.monotonic()
        run()
        wall = time.monotonic() - started
        # A backend's CPU reaches the postmaster's count when it is reaped, a moment after the client left.
        deadline = time.monotonic() + 5
        while self._backends() - resident and time.monotonic() < deadline:
            time.sleep(0.02)
        after = self._now()
        return wall, {k: after[k] - before[k] for k in after}


def bash(command: str, env: dict[str, str]) -> None:
    subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True, env=env)


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
                                    metadata={{}}, expected_bytes={size}, level={level}, digests={digests})
assert bool(tables) == {digests}, "manifest"
print(json.dumps({{"seconds": time.monotonic() - started, "stored": result.stream.stored_bytes,
                   "raw": result.raw_bytes, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def pgvault_run(env: dict[str, str], blob: str, size: int, level: int, digests: bool = True) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD.format(repo=str(REPO), blob=blob, size=size, level=level, digests=digests)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=1.0, help="size of the reference database in GB")
    parser.add_argument("--keep", action="store_true", help="keep the reference databases in .bench/ for next time")
    parser.add_argument("--level", type=int, default=ZSTD_LEVEL, help="zstd level of the pgvault runs")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved runs of each variant (medians)")
    parser.add_argument("--also-levels", type=int, nargs="*", default=[], help="more zstd levels to compare")
    args = parser.parse_args()
    reap_stale()
    BENCH_DIR.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pgvault-bench-"))
    pg = Postgres(BENCH_DIR / "pg").start()
    azurite = Azurite(work / "azurite").start()
    try:
        from azure.storage.blob import BlobServiceClient

        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        service.create_container("bench")
        print(f"reference databases (PostgreSQL on port {pg.port}):", flush=True)
        size1 = build(pg, "bench1", args.scale)
        size2 = build(pg, "bench2", args.scale * 2)
        env = {
            **os.environ,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(pg.port),
            "PGUSER": "postgres",
            "PGDATABASE": "bench1",
            "AzureWebJobsStorage": azurite.connection_string,
        }
        cpu = Cpu(pg, azurite)
        shell_file, naive_file = work / "shell.dump.zst", work / "naive.dump"

        def naive() -> None:
            subprocess.run(["pg_dump", "-Fc", "-f", str(naive_file)], check=True, env=env)
            with naive_file.open("rb") as f:
                service.get_blob_client("bench", f"naive-{len(walls['naive'])}.dump").upload_blob(f)

        pgvault_results: dict[str, dict[str, float]] = {"pgvault": {}, "bare": {}}

        def pgvault(key: str, digests: bool) -> Callable[[], None]:
            # A new blob name each run: overwriting makes Azurite collect the old blocks meanwhile.
            return lambda: pgvault_results[key].update(
                pgvault_run(env, f"{key}-{len(walls[key])}.zst", size1, args.level, digests)
            )

        def shell(command: str) -> Callable[[], None]:
            return lambda: bash(command, env)

        runs: dict[str, Callable[[], None]] = {
            "floor": shell("pg_dump -Fc -Z0 > /dev/null"),
            "shell": shell(f"pg_dump -Fc -Z0 | zstd -q -3 -T0 > {shell_file}"),
            "naive": naive,
            "pgvault": pgvault("pgvault", True),
            "bare": pgvault("bare", False),
        }
        # Interleaved repeats, medians: a burst of load on the VM hits one repeat of each, not one variant.
        walls: dict[str, list[float]] = {name: [] for name in runs}
        cpus: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
        def fresh_azurite() -> None:
            # After a large upload Azurite (one Node process) stays slower for the next ones (2.5x the
            # CPU per MB here): each run that uploads gets a new, empty one, as each would alone.
            azurite.stop()
            subprocess.run(["rm", "-rf", str(azurite.location)], check=True)
            azurite.start(keep_ports=True)
            service.create_container("bench")
            assert azurite.proc is not None
            cpu.azurite = azurite.proc.pid

        for _ in range(args.repeat):
            for name, run in runs.items():
                if name not in ("floor", "shell"):
                    fresh_azurite()
                wall, used = cpu.measure(run)
                if name in pgvault_results:  # the worker's own time, without the child interpreter's start-up
                    wall = pgvault_results[name]["seconds"]
                walls[name].append(wall)
                cpus[name].append(used)
        first, bare = pgvault_results["pgvault"], pgvault_results["bare"]
        results = {name: statistics.median(values) for name, values in walls.items()}
        cpu_total = {name: statistics.median(sum(u.values()) for u in used) for name, used in cpus.items()}
        cpu_parts = {
            name: {part: statistics.median(u[part] for u in used) for part in used[0]} for name, used in cpus.items()
        }
        fresh_azurite()
        second = pgvault_run({**env, "PGDATABASE": "bench2"}, "pgvault2.zst", size2, args.level)
        others = {level: pgvault_run(env, f"level{level}.zst", size1, level) for level in args.also_levels}
        floor2, _ = cpu.measure(lambda: bash("pg_dump -Fc -Z0 > /dev/null", {**env, "PGDATABASE": "bench2"}))
        mb = 1024 * 1024
        print()
        print(f"database: {size1 / mb:,.0f} MB (second: {size2 / mb:,.0f} MB); dump (raw): {first['raw'] / mb:,.0f} MB")
        print(f"medians of {args.repeat} interleaved runs; CPU = seconds of every process (tools, postgres, Azurite)")
        print(f"{'run':<54}{'seconds':>9}{'CPU s':>8}{'stored MB':>11}{'pgvault ×':>11}")
        rows = [
            ("floor", "floor: pg_dump -Fc -Z0 > /dev/null", None),
            ("shell", "shell: pg_dump -Fc -Z0 | zstd -3 -T0 > file", shell_file.stat().st_size),
            ("naive", "naive: pg_dump -Fc > file + upload_blob", naive_file.stat().st_size),
            ("pgvault", f"pgvault (zstd {args.level}): dump + manifest → blocks → commit", first["stored"]),
            ("bare", "pgvault, PGVAULT_BACKUP_MANIFEST=false: no manifest", bare["stored"]),
        ]
        for key, name, stored in rows:
            ratio = results["pgvault"] / results[key]
            print(f"{name:<54}{results[key]:>9.2f}{cpu_total[key]:>8.2f}{(stored or 0) / mb:>11.1f}{ratio:>11.2f}")
        for level, other in others.items():
            print(f"{f'pgvault (zstd {level})':<54}{other['seconds']:>9.2f}{'':>8}{other['stored'] / mb:>11.1f}")
        print()
        print("CPU seconds by process (median):")
        for key, parts in cpu_parts.items():
            print(f"  {key:<8} " + ", ".join(f"{part} {value:.2f}" for part, value in parts.items()))
        for key in pgvault_results:
            print(f"{key} runs (s): " + ", ".join(f"{x:.2f}" for x in walls[key]))
        print()
        for key, label in (("pgvault", "with manifest (default)"), ("bare", "without manifest")):
            print(f"pgvault {label}:")
            print(f"  / shell pipeline: {results[key] / results['shell']:.2f}x (target <= 1.2)")
            print(f"  naive / pgvault:  {results['naive'] / results[key]:.2f}x faster (target >= 4)")
            print(f"  / floor:          {results[key] / results['floor']:.2f}x")
        print(f"stored: pgvault {first['stored'] / mb:.1f} MB vs pg_dump -Fc {naive_file.stat().st_size / mb:.1f} MB")
        print(
            f"peak RSS: {first['rss_mb']:.0f} MB; twice the database: {second['rss_mb']:.0f} MB "
            f"({(second['rss_mb'] / first['rss_mb'] - 1) * 100:+.1f}%), {second['seconds']:.2f} s "
            f"(floor {floor2:.2f} s)"
        )
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"bench process peak RSS (for reference): {own:.0f} MB")
    finally:
        azurite.stop()
        pg.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)
        if not args.keep:
            subprocess.run(["rm", "-rf", str(BENCH_DIR)], check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
