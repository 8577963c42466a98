"""The retention sweep travelling three years of the Mon/Wed/Fri-with-archive policy.

Points are recorded through ``RecoveryPointStore`` as the backup runner records them (tag from the
policy engine given the earlier backups, lifecycle from ``lifecycle``), each with a small blob; the
sweep runs at weekly steps with ``now`` as a parameter. At every step the points alive per
datastore must be exactly the ones the policy simulator says.

The scenarios run on any storage: on the in-memory table and container
(tests/unit/test_retention_sweep_in_memory.py), which the contract tests hold to Azurite's answers,
over three years of the example policy; and on Azurite (tests/integration/test_retention_sweep.py)
over ``SHORT_WEEKS`` of ``short_lived_policy()``, the same schedule with the shortest durations the
rules allow, so that every kind of step (delete from the vault, move to the archive, delete from
the archive) happens in a quarter of the table calls.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.instances import InstanceService, ProtectionStatus, Readiness
from shared.jobs import JobStatus, JobStore, Operation, new_job_id
from shared.policies import PolicyService
from shared.policy import DataStore, Policy, Simulation, lifecycle, simulate, tag_backup
from shared.recovery_points import Part, PointState, RecoveryPoint, RecoveryPointStore
from shared.retention import CLAIM_TIMEOUT, RetentionSweep, SweepStep
from shared.storage.layout import manifest_name_for, part_blob_name, roles_name_for
from shared.storage.ports import BlobContainer, StateStore
from tests.examples import EXAMPLES

START = datetime(2025, 1, 6, 0, 0, tzinfo=UTC)  # a Monday; backups Mon/Wed/Fri 22:00 UTC
WEEKS = 157  # three years
SHORT_WEEKS = 40  # the short-lived policy's Monthly and Yearly points leave the archive by week 34
NAME = "orders"
Blobs = BlobContainer


@dataclass
class World:
    state: StateStore
    blobs: Blobs
    policy: Policy
    fresh: Callable[[], tuple[StateStore, Blobs]]
    """Adapters of their own on the same storage (for a second sweep in another thread)."""
    weeks: int = WEEKS
    """How far the travel goes."""
    recorded: list[datetime] = field(default_factory=list)
    with_roles: bool = False
    """Whether points hold a roles blob too (their last copy's deletion takes it along)."""
    parts: int = 0
    """Data parts of every other point recorded (multi-part points, ``shared.pg.parts``)."""
    _simulations: dict[datetime, Simulation] = field(default_factory=dict)

    def simulation(self, end: datetime) -> Simulation:
        """The simulator's answer for protection from START to ``end`` (computed once)."""
        if end not in self._simulations:
            self._simulations[end] = simulate(self.policy, START, end)
        return self._simulations[end]

    def record_until(self, now: datetime, end: datetime) -> None:
        """Record every scheduled backup up to ``now`` not recorded yet, as the backup runner does."""
        store = RecoveryPointStore(self.state)
        for backup in self.simulation(end).backups:
            if backup.time > now or (self.recorded and backup.time <= self.recorded[-1]):
                continue
            tag = tag_backup(self.policy, backup.time, list(self.recorded))
            assert tag == backup.tag  # the runner's tagging agrees with the simulator's
            rp_id = new_job_id(backup.time, key=f"{NAME}@{backup.time.isoformat()}")
            blob = f"{NAME}/{rp_id}.pgdump.zst"
            self.blobs.put(blob, b"fake dump " + rp_id.encode())
            self.blobs.put(manifest_name_for(blob), b'{"tables": {}}')
            roles = roles_name_for(blob) if self.with_roles else None
            if roles is not None:
                self.blobs.put(roles, b'{"format": 1, "roles": [], "memberships": []}')
            parts = tuple(
                Part(i, "0" * 64, 16, 32) for i in range(1, 1 + (self.parts if len(self.recorded) % 2 else 0))
            )
            for part in parts:
                self.blobs.put(part_blob_name(blob, part.index), b"fake part " + rp_id.encode())
            life = lifecycle(self.policy, tag, backup.time)
            point = RecoveryPoint.from_lifecycle(
                rp_id,
                NAME,
                life,
                blob_name=blob,
                size_in_bytes=32,
                raw_bytes=64,
                sha256="0" * 64,
                server_version="15.8",
                pg_dump_version="pg_dump (PostgreSQL) 15.8",
                job_id=rp_id,
                on_demand=False,
                roles_blob_name=roles,
                parts=parts,
            )
            store.add(point)
            self.recorded.append(backup.time)


def example_policy() -> dict[str, Any]:
    """The Mon/Wed/Fri policy with Weekly/Monthly/Yearly rules, Monthly and Yearly archived on expiry."""
    loaded: dict[str, Any] = json.loads((EXAMPLES / "weekly-mon-wed-fri-with-archive.json").read_text())
    return loaded


# Rule → (vault-standard duration, vault-archive duration): the shortest the rules allow (7 days in
# the vault, 6 months in the archive), staggered so the tags still expire in their usual order.
SHORT_DURATIONS = {
    "Default": ("P7D", None),
    "Weekly": ("P14D", None),
    "Monthly": ("P4W", "P6M"),
    "Yearly": ("P8W", "P6M"),
}


def short_lived_policy() -> dict[str, Any]:
    """The example policy with ``SHORT_DURATIONS``: its whole lifecycle fits in ``SHORT_WEEKS``."""
    body = example_policy()
    for rule in body["properties"]["policyRules"]:
        if rule["objectType"] != "AzureRetentionRule":
            continue
        vault, archive = SHORT_DURATIONS[rule["name"]]
        for life in rule["lifecycles"]:
            store = life["sourceDataStore"]["dataStoreType"]
            life["deleteAfter"]["duration"] = vault if store == "VaultStore" else archive
    return body


def build_world(
    state: StateStore,
    blobs: Blobs,
    fresh: Callable[[], tuple[StateStore, Blobs]],
    *,
    policy: dict[str, Any] | None = None,
    weeks: int = WEEKS,
    with_roles: bool = False,
) -> World:
    """A protected instance on ``policy`` (the example policy by default), on these adapters."""
    policies = PolicyService(state)
    policies.put("mwf", policy or example_policy(), START)
    instances = InstanceService(state, lambda job, instance: None)
    spec = {"server": "db.example.com", "database": NAME, "secretUri": "env:PGVAULT_SECRET_X", "policyName": "mwf"}
    instances.configure_one(NAME, spec, START, allow_env_secrets=True, vault_region=None)
    current = instances.get(NAME)
    instances.save(current, replace(current, readiness=Readiness.SUCCESS, protection_status=ProtectionStatus.PROTECTED))
    return World(state, blobs, policies.get("mwf").policy, fresh, weeks, with_roles=with_roles)


def _alive(world: World) -> dict[DataStore, set[datetime]]:
    found: dict[DataStore, set[datetime]] = {store: set() for store in DataStore}
    for point in RecoveryPointStore(world.state).of(NAME, include_deleting=True):
        assert point.state in (PointState.ACTIVE, PointState.ARCHIVED), point
        found[point.datastore].add(point.time)
    return found


def _expected(world: World, at: datetime, end: datetime) -> dict[DataStore, set[datetime]]:
    expected: dict[DataStore, set[datetime]] = {store: set() for store in DataStore}
    for backup in world.simulation(end).backups:
        if backup.time <= at:
            for store in backup.lifecycle.datastores_at(at):
                expected[store].add(backup.time)
    return expected


def _assert_blobs_match_points(world: World) -> None:
    points = {name: p for p in RecoveryPointStore(world.state).of(NAME) for name in p.blob_names()}
    blobs = {name for name, _ in world.blobs.listing() if name.startswith(f"{NAME}/")}
    sidecars = {manifest_name_for(p.blob_name) for p in points.values()} | {
        p.roles_blob_name for p in points.values() if p.roles_blob_name is not None
    }
    # Deleted points left no blob (no part), nor manifest or roles; every listed point has its blobs (and its sidecars).
    assert blobs == set(points) | sidecars
    for name, point in points.items():  # (a manifest stays in the hot tier: it is small)
        tier = world.blobs.tier(name)
        assert (tier == "Archive") == (point.datastore is DataStore.ARCHIVE_STORE), (name, tier)


def _assert_each_step_ran_once(world: World) -> Counter[tuple[str, str]]:
    sweep_ops = (Operation.ARCHIVE_MOVE, Operation.DELETE)
    jobs = [j for j in JobStore(world.state).history(NAME) if j.operation in sweep_ops]
    per_point = Counter((j.operation.value, j.recovery_point_id or "") for j in jobs)
    assert all(n == 1 for n in per_point.values()), [k for k, n in per_point.items() if n > 1]
    assert all(j.status is JobStatus.COMPLETED for j in jobs)
    return per_point


def _travel(world: World, sweep: Callable[[datetime], None], *, check_every_step: bool) -> datetime:
    end = START + timedelta(weeks=world.weeks)
    now = START
    while now <= end:
        world.record_until(now, end)
        sweep(now)
        if check_every_step or now == end:
            assert _alive(world) == _expected(world, now, end), now
        now += timedelta(weeks=1)
    return end


def three_years_of_weekly_sweeps(world: World) -> None:
    """Every step leaves exactly the points the simulator predicts; each step ran once."""
    end = _travel(world, lambda now: RetentionSweep(world.state, world.blobs).sweep(now), check_every_step=True)
    alive = _alive(world)
    sim = simulate(world.policy, START, end).summary()["livePoints"]
    assert {s.value: len(t) for s, t in alive.items()} == sim
    assert alive[DataStore.ARCHIVE_STORE] and alive[DataStore.VAULT_STORE]  # the run exercised both
    _assert_blobs_match_points(world)
    per_point = _assert_each_step_ran_once(world)
    recorded, living = len(world.recorded), sum(len(t) for t in alive.values())
    assert sum(1 for op, _ in per_point if op == Operation.DELETE.value) == recorded - living
    moves = [b for b in simulate(world.policy, START, end).backups if (b.lifecycle.archive_copy or end) < end]
    assert sum(1 for op, _ in per_point if op == Operation.ARCHIVE_MOVE.value) == len(moves)


class SweepKilled(Exception):
    """Stands for the process dying between two steps."""


def sweeps_killed_and_rerun(world: World) -> None:
    """Sweeps killed between any two steps and rerun converge to the same state."""
    dice = random.Random(6)  # seeded: the same kills on every run of the test
    killed_at: Counter[SweepStep] = Counter()

    def killer(step: SweepStep, point: RecoveryPoint) -> None:
        if dice.random() < 0.2:
            killed_at[step] += 1
            raise SweepKilled(f"{step} of {point.recovery_point_id}")

    def sweep_until_done(now: datetime) -> None:
        # A killed run leaves its point claimed; the next timer run (later than CLAIM_TIMEOUT) takes over.
        at = now
        for _ in range(50):
            try:
                RetentionSweep(world.state, world.blobs, on_step=killer).sweep(at)
                return
            except SweepKilled:
                at += CLAIM_TIMEOUT
        raise AssertionError("the sweep never finished")

    _travel(world, sweep_until_done, check_every_step=False)
    assert set(killed_at) == set(SweepStep)
    _assert_blobs_match_points(world)
    _assert_each_step_ran_once(world)


def two_sweeps_at_once(world: World) -> None:
    """Two sweeps at once act once on each point."""
    end = START + timedelta(weeks=min(60, world.weeks))
    world.record_until(end, end)
    acted: list[tuple[str, str, SweepStep]] = []
    lock = threading.Lock()

    def recorder(run: str) -> Callable[[SweepStep, RecoveryPoint], None]:
        def hook(step: SweepStep, point: RecoveryPoint) -> None:
            with lock:
                acted.append((run, point.recovery_point_id, step))

        return hook

    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def run(name: str) -> None:
        state, blobs = world.fresh()
        try:
            barrier.wait()
            RetentionSweep(state, blobs, run_id=name, on_step=recorder(name)).sweep(end)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    runs_per_point: dict[str, set[str]] = {}
    for run_name, rp_id, _ in acted:
        runs_per_point.setdefault(rp_id, set()).add(run_name)
    assert runs_per_point and all(len(r) == 1 for r in runs_per_point.values())
    # Each event due by ``end`` finished once; a point may owe two (moved, then deleted), which
    # one run did, in order.
    finished = Counter(rp for _, rp, step in acted if step is SweepStep.FINISHED)
    owed: Counter[str] = Counter()
    for backup in world.simulation(end).backups:
        events = [backup.lifecycle.archive_copy, backup.lifecycle.deletion]
        due = sum(1 for at in events if at is not None and at <= end)
        if due:
            owed[new_job_id(backup.time, key=f"{NAME}@{backup.time.isoformat()}")] = due
    assert finished == owed
    assert _alive(world) == _expected(world, end, end)
    _assert_blobs_match_points(world)
    _assert_each_step_ran_once(world)
