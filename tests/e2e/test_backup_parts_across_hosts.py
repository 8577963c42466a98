"""Backup parts across instances end to end: two devhost processes on one storage account, parts as
messages on pgvault-backup-part, and both hosts' part triggers take some (PGVAULT_BACKUP_PARTS_ACROSS_INSTANCES).

Each host runs one part at a time (batchSize 1 by the host's own override), and every data part's
pg_dump waits a second first, so the host that runs the backup job cannot take all four parts
before the other one polls (every 2 s at most)."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest
from devhost_process import DevhostProcess
from factories import Database, Databases, Hosts
from vault_views import state_table

from shared.backup_parts import parts_of
from shared.pg.tools import pick_tool

pytestmark = pytest.mark.e2e
PARTS = 4
PASSWORD = "P4rts-Acr0ss-7"


@pytest.fixture(scope="module")
def source(make_database: Databases) -> Database:
    return make_database(
        "xparts",
        password=PASSWORD,
        tables="".join(
            f"CREATE TABLE t{i} AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, {500 * (i + 1)}) g;"
            for i in range(PARTS * 2)
        ),
    )


def _slow_pg_dump(folder: Path) -> Path:
    """A bin folder whose pg_dump is the real one, a second late for a data part."""
    folder.mkdir()
    script = folder / "pg_dump"
    real = pick_tool("pg_dump", 15).path
    script.write_text(f'#!/bin/sh\ncase " $* " in *" --data-only "*) sleep 1;; esac\nexec "{real}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


def test_two_hosts_both_take_parts_of_one_backup_and_it_makes_one_multi_part_point(
    make_host: Hosts, source: Database, app_env: dict[str, str], tmp_path: Path
) -> None:
    settings = {
        "PGVAULT_SECRET_XPARTS_CS": source.connection_string(),
        "PGVAULT_BACKUP_PARTS_ACROSS_INSTANCES": "true",
        "PGVAULT_PARALLEL_BACKUP_MIN_BYTES": "0",
        "PGVAULT_BACKUP_PARALLELISM": str(PARTS),
        "PGVAULT_PG_BIN_DIR": str(_slow_pg_dump(tmp_path / "bin")),
        "AzureFunctionsJobHost__extensions__queues__batchSize": "1",
        "AzureFunctionsJobHost__extensions__queues__newBatchThreshold": "0",
    }
    hosts: list[DevhostProcess] = [make_host(settings), make_host(settings)]
    point_id = hosts[0].first_point(
        "xparts", port=source.port, database=source.name, secret="env:PGVAULT_SECRET_XPARTS_CS"
    )
    job = hosts[1].get("/backupJobs?instance=xparts&operation=Backup").json()["value"][0]
    assert job["status"] == "Completed" and job["recoveryPointId"] == point_id
    assert parts_of(state_table(app_env), job["jobId"]) == []  # the attempt's rows went when it ended
    # Each host's part trigger took parts (each logs those it committed), and the coordinator says whose they were
    # (a worker is its process here: host name and pid).
    committed = [host.log().count(f"of job {job['jobId']} committed") for host in hosts]
    assert all(committed) and sum(committed) == PARTS, committed
    summary = next(line for h in hosts for line in h.log().splitlines() if f"{PARTS} data parts recorded" in line)
    assert all(f"'{socket.gethostname()}:{h.proc.pid}'" in summary for h in hosts), summary
    for host in hosts:
        assert PASSWORD not in host.log()
    point = hosts[1].get(f"/backupInstances/xparts/recoveryPoints/{point_id}").json()
    assert point["parts"] == PARTS + 1 and point["sizeInBytes"] > 0  # the schema part and the data parts
