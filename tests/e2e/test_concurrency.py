"""Three devhost processes on one storage account: on-demand storms and the scheduler, together.

10 instances (10 small databases), a policy whose weekly slot falls due during the test, the
scheduler timer every 2 s in all three processes, and 30 on-demand requests spread over the three
at the same moment. Every slot is backed up exactly once, every request is answered 202 or 409
UserErrorMaxConcurrentOperationLimitReached, every accepted job ends, and the jobs' own start and
end times show no two backups of one instance at once, and never more than
``PGVAULT_MAX_BACKUPS_PER_SERVER`` (2) at once on the one server all ten databases live on.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest
import requests
from devhost_process import DevhostProcess
from factories import Database, Databases, Hosts
from vault_views import state_table

from shared.recovery_points import RecoveryPointStore
from tests.examples import policy_starting_at
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
INSTANCES = 10
ON_DEMAND = 30
HOSTS = 3
PER_SERVER = 2
PASSWORD = "C0ncurrent-Secret-3"
EXAMPLE = "sunday-default-only.json"


@pytest.fixture(scope="module")
def databases(make_database: Databases) -> Database:
    return make_database(
        "conc",
        databases=INSTANCES,
        password=PASSWORD,
        password_required=True,
        tables=[
            f"CREATE TABLE t AS SELECT g AS id, md5(g::text) AS v FROM generate_series(1, {1000 * (i + 1)}) g;"
            for i in range(INSTANCES)
        ],
    )


@pytest.fixture(scope="module")
def hosts(make_host: Hosts, databases: Database) -> Iterator[list[DevhostProcess]]:
    settings = {
        "PGVAULT_SCHEDULER_SCHEDULE": "*/2 * * * * *",
        "PGVAULT_SECRET_CONC_CS": databases.connection_string(),
        "PGVAULT_MAX_BACKUPS_PER_SERVER": str(PER_SERVER),
    }
    started = [make_host(settings) for _ in range(HOSTS)]
    yield started
    for h in started:
        assert h.stop() == 0, h.log()
        assert PASSWORD not in h.log()


def _jobs(host: DevhostProcess) -> list[dict[str, Any]]:
    jobs: list[dict[str, Any]] = []
    url: str | None = "/backupJobs?days=1&operation=Backup"
    while url:
        page = host.get(url).json()
        jobs.extend(page["value"])
        next_link = page.get("nextLink")
        url = next_link.split("/api", 1)[1] if next_link else None
    return jobs


def test_three_hosts_back_up_every_slot_once_answer_every_request_and_never_overlap_on_an_instance(
    hosts: list[DevhostProcess], databases: Database, app_env: dict[str, str]
) -> None:
    first = hosts[0]
    # First a slot a week away; once every instance is ready, the policy is replaced by one whose
    # slot falls due a few seconds later (the scheduler reads the policy at every tick).
    later = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0)
    assert first.put_policy("soon", policy_starting_at(EXAMPLE, later)).status_code == 201
    body = {
        "instances": [
            {
                "name": f"c{i}",
                "server": "127.0.0.1",
                "port": databases.port,
                "database": db,
                "secretUri": "env:PGVAULT_SECRET_CONC_CS",
                "policyName": "soon",
            }
            for i, db in enumerate(databases.names)
        ]
    }
    r = first.request("POST", "/backupInstances", data=json.dumps(body))
    assert r.status_code == 202, r.text
    wait_until(
        lambda: all(
            i["backupReadiness"]["status"] == "Success" for i in first.get("/backupInstances?top=1000").json()["value"]
        ),
        60,
        interval=0.5,
    )
    slot = (datetime.now(UTC) + timedelta(seconds=6)).replace(microsecond=0)
    assert first.put_policy("soon", policy_starting_at(EXAMPLE, slot)).status_code == 200

    # 30 on-demand requests, three per instance, each through another host, all at once.
    trigger = json.dumps(
        {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTagOverride": "Default"}}}
    )

    def ask(n: int) -> tuple[str, requests.Response]:
        name = f"c{n % INSTANCES}"
        return name, hosts[n % HOSTS].request("POST", f"/backupInstances/{name}:backup", data=trigger)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, range(ON_DEMAND)))
    accepted: dict[str, str] = {}
    for name, answer in answers:
        if answer.status_code == 409:
            assert answer.json()["error"]["code"] == "UserErrorMaxConcurrentOperationLimitReached", answer.text
        else:
            assert answer.status_code == 202, answer.text
            accepted[answer.json()["jobId"]] = name
    assert accepted, "no on-demand request was accepted"

    # The slot falls due; every scheduled job and every accepted one ends.
    def settled() -> list[dict[str, Any]] | None:
        jobs = _jobs(hosts[1])
        scheduled = [j for j in jobs if j["details"].get("trigger") == "Schedule"]
        if len(scheduled) < INSTANCES or any(j["status"] == "InProgress" for j in jobs):
            return None
        return jobs

    jobs = wait_until(settled, 240, interval=1)  # two at a time on the one server now (PER_SERVER)
    by_id = {j["jobId"]: j for j in jobs}
    assert set(accepted) <= set(by_id)
    for job_id in accepted:
        job = by_id[job_id]
        assert job["status"] == "Completed" or (
            job["status"] == "Failed" and job["error"]["code"] == "UserErrorMaxConcurrentOperationLimitReached"
        ), job

    scheduled = [j for j in jobs if j["details"].get("trigger") == "Schedule"]
    per_slot = Counter((j["instance"], j["details"]["slot"]) for j in scheduled)
    slot_z = slot.isoformat().replace("+00:00", "Z")  # every time answered ends in Z
    assert per_slot == Counter({(f"c{i}", slot_z): 1 for i in range(INSTANCES)}), per_slot
    assert all(j["status"] == "Completed" for j in scheduled), [j for j in scheduled if j["status"] != "Completed"]

    # No two backups of one instance at once: under its lock, each job's [startTime, endTime].
    state = state_table(app_env)
    for i in range(INSTANCES):
        name = f"c{i}"
        ran = sorted(
            (datetime.fromisoformat(j["startTime"]), datetime.fromisoformat(j["endTime"]))
            for j in jobs
            if j["instance"] == name and j["status"] == "Completed"
        )
        for (_, end), (start, _) in pairwise(ran):
            assert end <= start, f"two backups of {name} overlapped: {ran}"
        points = list(RecoveryPointStore(state).of(name))
        assert len(points) == len(ran), f"{name}: {len(ran)} completed jobs but {len(points)} points"

    # Never more than PER_SERVER backups at once on the server: a job runs ([startTime, endTime])
    # only while it holds one of the server's seats (shared/fanout.py).
    edges = sorted(
        (datetime.fromisoformat(j[at]), step)
        for j in jobs
        if j["status"] == "Completed" and j["startTime"]
        for at, step in (("startTime", 1), ("endTime", -1))
    )
    running = most = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):  # an end before a start at the same instant
        running += step
        most = max(most, running)
    assert 1 <= most <= PER_SERVER, f"{most} backups ran at once on one server (limit {PER_SERVER})"
    waited = [j for j in jobs if "waiting" in j["details"]]

    fired = [h.log().count("timer scheduler firing") for h in hosts]
    print(
        f"\nconcurrency figures: accepted={len(accepted)} refused={ON_DEMAND - len(accepted)} "
        f"jobs={len(jobs)} scheduled={len(scheduled)} timer fires per host={fired} most at once={most} "
        f"still saying waiting={len(waited)}"
    )
    assert sum(fired) > 0
