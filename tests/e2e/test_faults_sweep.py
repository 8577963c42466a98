"""Azurite stopped in the middle of a retention sweep run by devhost's timer.

A year of the Mon/Wed/Fri-with-archive policy is recorded for one instance (as the backup runner
records points: a small blob with its manifest, the point with its lifecycle), so that about a
hundred deletions and archive moves are due now. devhost runs the sweep every 2 s; once its
first steps are done, Azurite is stopped for at least 20 s, and until a sweep run has met the
outage as a storage error (the SDKs' retries can outlast a fixed outage: a run that only waited
in them would prove nothing), then started again. Claims left by the cut-off
run expire after CLAIM_TIMEOUT: the test cannot wait 10 minutes, so it then drives one sweep
through ``RetentionSweep`` with a ``now`` past that timeout (what the next timer run would do).

Then the vault must be consistent: exactly the points the policy simulator keeps, each read back
with its checksum, no blob without its point (a manifest belongs to its point), no point left
claimed, each step done once (one Completed job per step and point).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import zstandard
from factories import Hosts
from vault_views import record_protected, state_table

from devhost.services import Azurite
from shared.jobs import Job, JobStatus, JobStore, Operation, new_job_id
from shared.policies import PolicyService
from shared.policy import DataStore, lifecycle, simulate, tag_backup
from shared.recovery_points import PointState, RecoveryPoint, RecoveryPointStore
from shared.retention import CLAIM_TIMEOUT, RetentionSweep
from shared.storage.blobs import BlobStore
from shared.storage.blockstream import read_verified
from shared.storage.clients import StorageAccount
from shared.storage.layout import manifest_name_for
from tests.examples import EXAMPLES
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
NAME = "swept"
SWEEP_OPS = (Operation.ARCHIVE_MOVE, Operation.DELETE)
# How long Azurite may stay down while the test waits for a sweep run to meet the outage.
OUTAGE_LIMIT = 300
# RetentionSweep._try's warning when one point's step fails.
SWEEP_POINT_ERROR = re.compile(r"retention sweep \S+: point \S+ of \S+: ")


class Storage:
    """Direct views of the devhost's state table and backup container."""

    def __init__(self, env: dict[str, str]) -> None:
        self.state = state_table(env)
        account = StorageAccount.from_connection_setting("AzureWebJobsStorage", env)
        self.blobs = BlobStore(account.blob_service(), env["PGVAULT_BACKUP_CONTAINER"])

    def sweep_jobs(self) -> list[Job]:
        return [j for j in JobStore(self.state).history(NAME) if j.operation in SWEEP_OPS]


def _sweep_met_outage(log: str) -> int:
    """Log lines of sweep runs that met storage failing: a point's step, or the whole run."""
    return sum(
        1
        for line in log.splitlines()
        if "timer retention_sweep failed" in line or (SWEEP_POINT_ERROR.search(line) and "storage" in line)
    )


def _record_a_year(storage: Storage, start: datetime, now: datetime) -> int:
    """Record every scheduled backup from ``start`` to ``now`` as the backup runner does."""
    policies = PolicyService(storage.state)
    policies.put("mwf", json.loads((EXAMPLES / "weekly-mon-wed-fri-with-archive.json").read_text()), start)
    spec = {"server": "db.example.com", "database": NAME, "secretUri": "env:PGVAULT_SECRET_X", "policyName": "mwf"}
    record_protected(storage.state, NAME, spec, start)
    policy = policies.get("mwf").policy
    store = RecoveryPointStore(storage.state)
    recorded: list[datetime] = []
    for backup in simulate(policy, start, now).backups:
        tag = tag_backup(policy, backup.time, list(recorded))
        rp_id = new_job_id(backup.time, key=f"{NAME}@{backup.time.isoformat()}")
        blob = f"{NAME}/{rp_id}.pgdump.zst"
        data = zstandard.compress(b"PGDMP fake dump of " + rp_id.encode())
        storage.blobs.client.upload_blob(blob, data, overwrite=True)
        storage.blobs.client.upload_blob(manifest_name_for(blob), b'{"tables": {}}', overwrite=True)
        point = RecoveryPoint.from_lifecycle(
            rp_id,
            NAME,
            lifecycle(policy, tag, backup.time),
            blob_name=blob,
            size_in_bytes=len(data),
            raw_bytes=len(data) * 2,
            sha256=hashlib.sha256(data).hexdigest(),
            server_version="15.8",
            pg_dump_version="pg_dump (PostgreSQL) 15.8",
            job_id=rp_id,
            on_demand=False,
        )
        store.add(point)
        recorded.append(backup.time)
    return len(recorded)


@pytest.fixture(scope="module")
def storage(app_env: dict[str, str]) -> Storage:
    s = Storage(app_env)
    s.state.ensure()
    s.blobs.ensure()
    return s


def test_azurite_down_for_20_seconds_mid_sweep_leaves_the_points_the_policy_keeps_each_step_done_once(
    make_host: Hosts, storage: Storage, azurite: Azurite
) -> None:
    now = datetime.now(UTC)
    start = (now - timedelta(weeks=52)).replace(hour=0, minute=0, second=0, microsecond=0)
    began = time.monotonic()
    recorded = _record_a_year(storage, start, now)
    recording = time.monotonic() - began
    # devhost starts only now: its timer sweeps every 2 s from here on.
    host = make_host({"PGVAULT_RETENTION_SCHEDULE": "*/2 * * * * *", "PGVAULT_SCHEDULER_SCHEDULE": "0 0 0 1 1 *"})
    try:
        wait_until(lambda: len(storage.sweep_jobs()) >= 5, 60, interval=0.05)
        at_cut = len(storage.sweep_jobs())
        met_before = _sweep_met_outage(host.log())
        azurite.stop()
        cut = time.monotonic()
        # At least 20 s, and until the sweep has met the outage as an error: the SDKs' own retries
        # (blob: 15 s, 18 s, 24 s) can outlast a fixed outage, and a sweep that merely waited in
        # them would prove nothing about errors mid-run. devhost stays up and healthy meanwhile.
        while time.monotonic() - cut < 20 or _sweep_met_outage(host.log()) == met_before:
            assert time.monotonic() - cut < OUTAGE_LIMIT, f"no sweep run met the outage in {OUTAGE_LIMIT} s"
            assert host.get("/health").status_code == 200 and host.proc.poll() is None
            time.sleep(2)
        outage = time.monotonic() - cut
        azurite.start(keep_ports=True)
        runs_before = host.log().count("retention sweep: {")
        # The timer's next runs carry on with every point the cut-off run did not hold.
        wait_until(lambda: host.log().count("retention sweep: {") >= runs_before + 2, 90, interval=0.5)
    finally:
        assert host.stop() == 0, host.log()
    log = host.log()
    cut_runs = log.count("timer retention_sweep failed")
    # The run cut by the outage met it as a transient storage error (per point, or the whole run).
    assert _sweep_met_outage(log) > met_before, "no sweep run met the outage"

    # The next timer run after CLAIM_TIMEOUT takes over what the cut-off run left claimed.
    left = [p for p in RecoveryPointStore(storage.state).of(NAME, include_deleting=True) if p.pending_event]
    final = datetime.now(UTC) + CLAIM_TIMEOUT + timedelta(minutes=1)
    RetentionSweep(storage.state, storage.blobs).sweep(final)

    policy = PolicyService(storage.state).get("mwf").policy
    expected: dict[DataStore, set[datetime]] = {store: set() for store in DataStore}
    for backup in simulate(policy, start, now).backups:
        for store in backup.lifecycle.datastores_at(final):
            expected[store].add(backup.time)
    points = list(RecoveryPointStore(storage.state).of(NAME, include_deleting=True))
    assert all(p.state in (PointState.ACTIVE, PointState.ARCHIVED) for p in points), "a point is left claimed"
    alive: dict[DataStore, set[datetime]] = {store: set() for store in DataStore}
    for point in points:
        alive[point.datastore].add(point.time)
    assert alive == expected, "the points kept are not the ones the policy keeps"
    listed = {b.name: b for b in storage.blobs.client.list_blobs(name_starts_with=f"{NAME}/")}
    names = {p.blob_name for p in points}
    assert set(listed) == names | {manifest_name_for(n) for n in names}, (
        "a blob outlived its point, or a point its blob"
    )
    for point in points:
        # A vault point reads back whole with its checksum; an archived one is in the Archive tier
        # (readable only after rehydration, which the restore path does).
        tier = str(listed[point.blob_name].blob_tier or "Hot")
        if point.datastore is DataStore.ARCHIVE_STORE:
            assert tier == "Archive", (point.recovery_point_id, tier)
            continue
        assert tier != "Archive", (point.recovery_point_id, tier)
        data = b"".join(read_verified(storage.blobs.client, point.blob_name, point.sha256))
        assert data.startswith(b"PGDMP"), point.recovery_point_id

    jobs = storage.sweep_jobs()
    per_step = Counter((j.operation, j.recovery_point_id) for j in jobs)
    assert [k for k, n in per_step.items() if n > 1] == [], "a step ran twice"
    assert {j.status for j in jobs} == {JobStatus.COMPLETED}, Counter(j.status for j in jobs)
    deletes = sum(1 for op, _ in per_step if op is Operation.DELETE)
    assert deletes == recorded - len(points) and len(jobs) > at_cut
    print(
        f"\nsweep figures: {recorded} points recorded, {len(jobs)} steps ({deletes} deletions, "
        f"{len(jobs) - deletes} archive moves), {at_cut} done before the outage, "
        f"{cut_runs} timer runs failed by it, outage {outage:.0f} s, "
        f"{len(left)} left claimed until the takeover, {len(points)} kept; recording took {recording:.1f} s"
    )
