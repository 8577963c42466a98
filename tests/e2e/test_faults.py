"""Faults in the middle of a backup, end to end: a devhost killed, Azurite stopped, PostgreSQL restarted.

One database big enough for a backup of a few seconds; one devhost (restarted after it is
killed) whose running messages come back after PGVAULT_DEVHOST_MESSAGE_LEASE seconds, as a dead
Functions host's do after its lease. After each fault the vault must tell the truth: the job
ends Completed or Failed, with one recovery point or none, every listed point reads back with its
checksum, no lock or InProgress job is left behind and no committed blob lacks its point.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient
from devhost_process import DevhostProcess
from factories import Database, Databases, Hosts
from vault_views import backup_container, state_table

from devhost.services import Azurite, Postgres
from shared.recovery_points import RecoveryPointStore, recovery_point_id
from shared.storage import layout
from shared.storage.blockstream import read_verified
from shared.storage.layout import sidecar_names
from shared.storage.tables import StateTable
from tests.examples import EXAMPLES
from tests.pausing import hold_when, resume

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
PASSWORD = "Fault-Pa55word-7"
INSTANCE = "big"
# Random hex compresses about 2x: ~170 MB dumped, ~10 blocks of 8 MiB, a few seconds of backup.
ROWS = 600_000
LEASE = "5"
# Every fault injected and every job run, for RELIABILITY.md (printed at the end of the module).
FIGURES: dict[str, int] = {"faults": 0, "jobs": 0, "points": 0, "pointsLost": 0}


@pytest.fixture(scope="module")
def database(make_database: Databases) -> Database:
    # Random hex: no row repeats another, so it compresses about 2x and only 2x.
    pieces = " || ".join(["md5(random()::text)"] * 8)
    return make_database(
        "faults",
        password=PASSWORD,
        password_required=True,
        tables=f"CREATE TABLE t (id int PRIMARY KEY, payload text);"
        f"INSERT INTO t SELECT g, {pieces} FROM generate_series(1, {ROWS}) g;",
    )


class Vault:
    """The devhost under test (replaced when killed) and direct views of its storage."""

    def __init__(self, start: Callable[[], DevhostProcess], db: str) -> None:
        self._start = start
        self.db = db
        self.hosts: list[DevhostProcess] = []
        self.verified: set[tuple[str, str]] = set()
        self.host = self.start()

    def start(self) -> DevhostProcess:
        self.host = self._start()
        self.hosts.append(self.host)
        return self.host

    def state(self) -> StateTable:
        return state_table(self.host.env)

    def container(self) -> ContainerClient:
        return backup_container(self.host.env)

    def backup(self) -> str:
        job_id = self.host.backup_now(INSTANCE, "Default")
        FIGURES["jobs"] += 1
        return job_id

    def wait_mid_dump(self, job_id: str) -> int:
        """Hold the job's pg_dump still once its blob has staged blocks (nothing committed); its pid.

        The dump stays stopped (SIGSTOP) until the caller, after its fault, calls ``resume``: on a
        busy machine a backup polled for that moment could end between the poll and the fault.
        """

        def staged() -> bool:
            name = self.host.job(job_id)["details"].get("blobName")  # the attempt's own blob, named before it stages
            if name is None:
                return False
            try:
                return len(self.container().get_blob_client(name).get_block_list("uncommitted")[1]) > 0
            except ResourceNotFoundError:
                return False

        pid = hold_when("pg_dump", self.db, staged)
        job = self.host.job(job_id)
        assert job["status"] == "InProgress", "the backup finished before the fault: grow ROWS"
        # Steps as they happen, through the API: Dump runs since its start, the job's duration is not 0 s.
        assert [(s["name"], s["status"]) for s in job["steps"]] == [
            ("CheckPrivileges", "Completed"),
            ("Dump", "InProgress"),
        ], job["steps"]
        assert job["currentStep"] == "Dump" and job["steps"][1]["startTime"] and job["durationSeconds"] > 0, job
        return pid

    def assert_consistent(self) -> int:
        """Every listed point reads back with its checksum; no blob without its point; no lock, no job running.

        Returns the number of points.
        """
        state = self.state()
        points = list(RecoveryPointStore(state).of(INSTANCE))
        container = self.container()
        for point in points:
            if (point.recovery_point_id, point.sha256) in self.verified:
                continue  # read back whole after an earlier fault; the last test reads every point again
            data = b"".join(read_verified(container, point.blob_name, point.sha256))
            assert data.startswith(b"PGDMP"), point
            self.verified.add((point.recovery_point_id, point.sha256))
        committed = {b.name for b in container.list_blobs()}
        dumps = {p.blob_name for p in points}
        # A point's manifest and roles, when it has them.
        sidecars = committed & {name for d in dumps for name in sidecar_names(d)}
        assert committed - sidecars == dumps, "a committed blob has no recovery point, or one its blob"
        # The worker releases the instance's lock just after it writes the job's end.
        deadline = time.monotonic() + 10
        while (locks := list(state.partition(layout.LOCK))) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert locks == [], f"a lock outlived its job: {locks}"
        listed = self.host.get("/backupJobs?operation=Backup").json()["value"]
        assert [j["jobId"] for j in listed if j["status"] == "InProgress"] == []
        api_points = self.host.get(f"/backupInstances/{INSTANCE}/recoveryPoints").json()["value"]
        assert sorted(p["recoveryPointId"] for p in api_points) == sorted(p.recovery_point_id for p in points)
        return len(points)


@pytest.fixture(scope="module")
def vault(make_host: Hosts, database: Database) -> Iterator[Vault]:
    settings = {
        "PGVAULT_DEVHOST_MESSAGE_LEASE": LEASE,
        "PGVAULT_SECRET_FAULTS_CS": database.connection_string(),
    }
    v = Vault(lambda: make_host(settings), database.name)
    v.host.put_policy("weekly", (EXAMPLES / "sunday-default-only.json").read_bytes())
    validation = v.host.configure(
        INSTANCE, port=database.port, database=database.name, secret="env:PGVAULT_SECRET_FAULTS_CS", policy="weekly"
    )
    assert validation["status"] == "Completed"
    yield v
    assert v.host.stop() == 0, v.host.log()
    for host in v.hosts:
        assert PASSWORD not in host.log(), f"the password is in {host.log_path}"
    print(f"\nfault figures: {json.dumps(FIGURES)}")


def test_a_devhost_killed_mid_backup_leaves_a_truthful_job_and_no_unreadable_point(vault: Vault) -> None:
    job_id = vault.backup()
    dump = vault.wait_mid_dump(job_id)
    vault.host.stop(signal.SIGKILL)
    resume(dump)  # orphaned by the kill: it ends on its closed pipe
    FIGURES["faults"] += 1
    # The truth right after the crash: not finished, nothing recorded, nothing committed.
    assert vault.state().get(layout.recovery_points(INSTANCE), recovery_point_id(job_id)) is None
    assert list(vault.container().list_blobs()) == []

    vault.start()  # the dead host's message comes back after its lease; the new host takes the job over
    job = vault.host.wait_job(job_id)
    assert job["status"] in {"Completed", "Failed"}, job
    if job["status"] == "Completed":
        assert job["recoveryPointId"] == recovery_point_id(job_id) and job["bytes"] > 0
        assert [s["status"] for s in job["steps"]] == ["Completed"] * 3
    else:
        assert job["error"]["code"] and job["recoveryPointId"] is None
    count = vault.assert_consistent()
    assert count == (1 if job["status"] == "Completed" else 0)
    assert job["status"] == "Completed", f"the retry after the crash did not finish the backup: {job}"


def test_postgres_restarted_mid_dump_is_recorded_as_connection_closed_then_retried_to_success(
    vault: Vault, postgres: Postgres
) -> None:
    before = vault.assert_consistent()
    job_id = vault.backup()
    dump = vault.wait_mid_dump(job_id)
    postgres.restart()  # fast shutdown: pg_dump's connection is closed under it
    resume(dump)
    FIGURES["faults"] += 1
    job = vault.host.wait_job(job_id)
    assert job["status"] == "Completed", job
    retries = job["details"]["retries"]
    assert retries and retries[0]["code"] == "UserErrorServerConnectionClosed", retries
    assert vault.assert_consistent() == before + 1


def test_azurite_down_for_20_seconds_mid_backup_ends_retried_or_failed_and_the_vault_stays_consistent(
    vault: Vault, azurite: Azurite
) -> None:
    before = vault.assert_consistent()
    job_id = vault.backup()
    dump = vault.wait_mid_dump(job_id)
    azurite.stop()
    resume(dump)
    FIGURES["faults"] += 1
    down = time.monotonic()
    # Meanwhile the API keeps answering: 503 with Retry-After in the public error shape, no crash.
    while time.monotonic() - down < 20:
        assert vault.host.get("/health").status_code == 200
        r = vault.host.get(f"/backupJobs/{job_id}")
        assert r.status_code == 503 and r.json()["error"]["code"] == "ServiceUnavailable", r.text
        assert int(r.headers["Retry-After"]) > 0
        assert vault.host.proc.poll() is None
        time.sleep(2)
    azurite.start(keep_ports=True)
    job = vault.host.wait_job(job_id, timeout=150)
    assert job["status"] in {"Completed", "Failed"}, job
    if job["status"] == "Failed":
        assert job["error"]["code"] and job["recoveryPointId"] is None
    after = vault.assert_consistent()
    assert after == before + (1 if job["status"] == "Completed" else 0), "a point was lost"
    FIGURES["points"] = after
    # A backup after the outage runs as usual; then every point of the module is read back again.
    assert vault.host.wait_job(vault.backup())["status"] == "Completed"
    vault.verified.clear()
    assert vault.assert_consistent() == after + 1
    FIGURES["points"] = after + 1
