"""Configuring backup instances on a real Azurite table."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.errors import UserError
from shared.instances import Instance, InstanceService, ProtectionStatus, Readiness
from shared.jobs import Job, JobStatus, JobStore, Operation
from shared.policies import PolicyService
from shared.storage.tables import StateTable
from tests.examples import EXAMPLES

pytestmark = pytest.mark.integration
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SECRET = "https://kv1.vault.azure.net/secrets/orders-backup"


class Sent:
    """Records the validation messages a service would send (the queue is tested elsewhere)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def __call__(self, job: Job, instance: Instance) -> None:
        with self.lock:
            self.items.append((job.job_id, instance.spec.name))


@pytest.fixture
def state(state_table: StateTable) -> StateTable:
    table = state_table
    PolicyService(table).put("weekly", json.loads((EXAMPLES / "sunday-default-only.json").read_text()), NOW)
    return table


@pytest.fixture
def sent() -> Sent:
    return Sent()


@pytest.fixture
def service(state: StateTable, sent: Sent) -> InstanceService:
    return InstanceService(state, sent)


def entry(**over: Any) -> dict[str, Any]:
    base = {"server": "db1.example.com", "database": "orders", "secretUri": SECRET, "policyName": "weekly"}
    return {**base, **over}


def configure(service: InstanceService, *entries: dict[str, Any], allow_env: bool = False) -> list[dict[str, Any]]:
    results = service.configure_many(
        {"instances": list(entries)}, NOW, allow_env_secrets=allow_env, vault_region="westeurope"
    )
    return [r.to_dict() for r in results]


def test_configure_many_answers_per_entry_and_one_bad_entry_does_not_stop_others(
    service: InstanceService, state: StateTable, sent: Sent
) -> None:
    out = configure(
        service,
        entry(name="orders"),
        entry(name="tpl", database="template1"),
        entry(name="nopolicy", database="x", policyName="missing"),
        entry(name="badport", database="y", port=70000),
        entry(name="region", database="z", serverRegion="eastus"),
        entry(name="envsecret", database="w", secretUri="env:PGVAULT_SECRET_PGPASS"),
        entry(name="billing", database="billing", port="6432"),
    )
    by_name = {o["name"]: o for o in out}
    assert by_name["orders"]["status"] == "Validating" and by_name["billing"]["status"] == "Validating"
    assert by_name["tpl"]["error"]["code"] == "UserErrorDatabaseNotSupported"
    assert by_name["tpl"]["error"]["target"] == "instances[1].database"
    assert by_name["nopolicy"]["error"]["code"] == "NotFound"
    assert by_name["nopolicy"]["error"]["target"] == "instances[2].policyName"
    assert by_name["badport"]["error"]["target"] == "instances[3].port"
    assert by_name["region"]["error"]["target"] == "instances[4].serverRegion"
    assert by_name["envsecret"]["error"]["target"] == "instances[5].secretUri"
    assert sorted(n for _, n in sent.items) == ["billing", "orders"]
    assert {i.spec.name for i in service.all()} == {"orders", "billing"}
    job = JobStore(state).get(by_name["orders"]["validationJobId"])
    assert (job.operation, job.status, job.instance) == (Operation.VALIDATE, JobStatus.IN_PROGRESS, "orders")
    shown = service.get("ORDERS").to_dict()
    assert shown["backupReadiness"] == {"status": "Validating", "jobId": job.job_id, "error": None}
    assert shown["protectionStatus"] == ProtectionStatus.CONFIGURING.value
    assert shown["port"] == 5432


@pytest.mark.parametrize(
    "same",
    [
        {"server": "DB1.Example.COM"},
        {"server": "db1.example.com.", "port": 5432},
        {"server": "db1.example.com", "port": "5432"},
    ],
)
def test_a_database_is_protected_once_after_normalising_host_and_port(
    service: InstanceService, same: dict[str, Any]
) -> None:
    configure(service, entry(name="first"))
    out = configure(service, entry(name="second", **same))
    assert out[0]["error"]["code"] == "UserErrorDatabaseAlreadyProtected"
    assert "first" in out[0]["error"]["message"]
    # Another port or database is another database.
    assert configure(service, entry(name="third", port=5433))[0]["status"] == "Validating"


def test_two_concurrent_requests_for_one_database_have_one_winner(service: InstanceService) -> None:
    outcomes: list[dict[str, Any]] = []
    lock = threading.Lock()

    def go(i: int) -> None:
        result = configure(service, entry(name=f"racer{i}"))[0]
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o["status"] == "Validating"]
    assert len(winners) == 1
    assert len(list(service.all())) == 1


def test_duplicate_names_and_empty_or_oversized_batches_are_refused(service: InstanceService) -> None:
    out = configure(service, entry(name="dup"), entry(name="DUP", database="other"))
    assert out[0]["status"] == "Validating"
    assert out[1]["error"]["code"] == "Conflict"
    for body in ({}, {"instances": []}, {"instances": [entry()] * 101}, {"instances": "x"}):
        with pytest.raises(UserError) as err:
            service.configure_many(body, NOW, allow_env_secrets=False, vault_region=None)
        assert err.value.target == "instances"


def test_an_existing_name_is_a_conflict_and_the_claim_is_released(service: InstanceService) -> None:
    configure(service, entry(name="orders"))
    out = configure(service, entry(name="orders", database="billing"))
    assert out[0]["error"]["code"] == "Conflict"
    # billing was not left claimed by the failed request.
    assert configure(service, entry(name="billing", database="billing"))[0]["status"] == "Validating"


def test_put_updates_policy_and_secret_of_the_same_database_but_never_moves_it(
    service: InstanceService, sent: Sent
) -> None:
    first = service.configure_one("orders", entry(), NOW, allow_env_secrets=False, vault_region=None)
    assert first.job is not None
    second = service.configure_one(
        "orders", entry(secretUri=SECRET + "-v2"), NOW, allow_env_secrets=False, vault_region=None
    )
    assert second.job is not None and second.job.job_id != first.job.job_id
    assert service.get("orders").spec.secret_uri == SECRET + "-v2"
    assert service.get("orders").readiness_job_id == second.job.job_id
    with pytest.raises(UserError) as err:
        service.configure_one("orders", entry(database="other"), NOW, allow_env_secrets=False, vault_region=None)
    assert err.value.code.value == "Conflict"


def test_revalidate_points_the_instance_at_a_new_job(service: InstanceService, sent: Sent) -> None:
    configure(service, entry(name="orders"))
    job = service.revalidate("orders", NOW)
    instance = service.get("orders")
    assert instance.readiness is Readiness.VALIDATING and instance.readiness_job_id == job.job_id
    assert sent.items[-1] == (job.job_id, "orders")
    with pytest.raises(UserError) as err:
        service.revalidate("nothing", NOW)
    assert err.value.code.value == "NotFound"


def test_a_policy_in_use_cannot_be_deleted(service: InstanceService, state: StateTable) -> None:
    configure(service, entry(name="orders"))
    with pytest.raises(UserError) as err:
        PolicyService(state).delete("weekly")
    assert err.value.code.value == "Conflict" and "orders" in err.value.message
    assert PolicyService(state).get("weekly").name == "weekly"
