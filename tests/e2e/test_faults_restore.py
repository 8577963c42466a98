"""A devhost killed with SIGKILL in the middle of a restore, end to end.

A database big enough for a restore of a second or two is backed up; a restore into a new
database starts; once the job reports bytes read (pg_restore is writing rows) the whole devhost
is killed and a new one started, whose restore message comes back after
PGVAULT_DEVHOST_MESSAGE_LEASE seconds. The job must end Completed (or Failed with an error), the
target must hold every row (per-table digests equal the source's) and no other database is left.
"""

from __future__ import annotations

import json
import signal

import pytest
from devhost_process import restore_body
from factories import Database, Databases, Hosts

from tests.examples import EXAMPLES
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
# Random hex: ~75 MB dumped, restored in a second or two on this machine.
ROWS = 250_000
LEASE = "5"


@pytest.fixture(scope="module")
def source(make_database: Databases) -> Database:
    pieces = " || ".join(["md5(random()::text)"] * 8)
    return make_database(
        "rfault",
        tables="CREATE TABLE t (id int PRIMARY KEY, payload text);"
        "CREATE TABLE small (k text PRIMARY KEY);"
        f"INSERT INTO t SELECT g, {pieces} FROM generate_series(1, {ROWS}) g;"
        "INSERT INTO small SELECT 'k' || g FROM generate_series(1, 100) g;",
    )


def _databases(source: Database) -> set[str]:
    with source.connect("postgres") as c:
        return {r[0] for r in c.execute("SELECT datname FROM pg_database")}


def test_a_devhost_killed_mid_restore_ends_with_every_row_restored_and_no_stray_database(
    make_host: Hosts, source: Database
) -> None:
    settings = {
        "PGVAULT_DEVHOST_MESSAGE_LEASE": LEASE,
        "PGVAULT_SECRET_RF_CS": source.connection_string(),
        "PGVAULT_SECRET_RF_TARGET_CS": (
            f"Server=127.0.0.1;Port={source.port};User Id=postgres;Password=unused;Ssl Mode=Disable"
        ),
    }
    copy = source.spare("copy")
    h = make_host(settings)
    h.put_policy("p", (EXAMPLES / "sunday-default-only.json").read_bytes())
    validation = h.configure(
        "rf", port=source.port, database=source.name, secret="env:PGVAULT_SECRET_RF_CS", policy="p"
    )
    assert validation["status"] == "Completed"
    backup = h.wait_job(h.backup_now("rf"))
    assert backup["status"] == "Completed", backup
    before = _databases(source)

    body = restore_body(backup["recoveryPointId"], copy, "env:PGVAULT_SECRET_RF_TARGET_CS")
    r = h.request("POST", "/backupInstances/rf:restore", data=json.dumps(body))
    assert r.status_code == 202, r.text
    job_id = r.json()["jobId"]

    def restoring() -> bool:
        job = h.job(job_id)
        assert job["status"] == "InProgress", f"the restore ended before the fault (grow ROWS): {job}"
        return bool(job.get("bytes"))

    wait_until(restoring, 60, interval=0.02)
    h.stop(signal.SIGKILL)
    # Right after the crash: the half-restored target is there, under its own name only.
    assert _databases(source) - before == {copy}

    h = make_host(settings)  # the dead host's message comes back after its lease; the new host starts over
    job = h.wait_job(job_id)
    assert job["status"] in {"Completed", "Failed"}, job
    if job["status"] == "Failed":
        assert job["error"]["code"] and job["error"]["message"], job
        assert _databases(source) == before, "a failed restore left a database behind"
    else:
        assert _databases(source) - before == {copy}, "another database was left behind"
        restored = source.digests(copy)
        assert restored == source.digests() and len(restored) == 2, restored
    assert job["status"] == "Completed", f"the retry after the crash did not finish the restore: {job}"
    # No job left running, and the host's lock on the instance went with its job.
    assert [j for j in h.get("/backupJobs").json()["value"] if j["status"] == "InProgress"] == []
