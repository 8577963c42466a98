"""Hostile input through a running devhost: generated requests, odd names, huge and deep bodies, no key.

- schemathesis generates valid and invalid requests for every operation in ``/api/openapi.json``:
  no answer is a 5xx, every answer's body conforms to the document (additional properties
  forbidden), devhost never dies, and a refused request (4xx) leaves the state table,
  the backup container and the backup queue exactly as they were;
- database, schema and role names with quotes, semicolons, backslashes and unicode go through
  configure, validate and backup, and the point restores the odd schema;
- bodies above the limit are refused with 413, deeply nested JSON with 400, and nothing is written;
- every route the description marks as keyed answers 401 without the key (or with a wrong one).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient
from devhost_process import DevhostProcess
from factories import Database, Databases, Hosts
from hypothesis import HealthCheck, given, settings
from psycopg import sql
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance
from vault_views import backup_container, state_table

from shared.audit import AUDIT_PREFIX
from shared.recovery_points import RecoveryPointStore
from shared.request_body import MAX_BODY_BYTES
from shared.storage import layout
from shared.storage.blockstream import read_verified
from tests.examples import EXAMPLES
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
# Odd but legal PostgreSQL identifiers (at most 63 bytes each).
ODD_DB = "db'; DROP DATABASE postgres; --\\ \"é😀"
ODD_SCHEMA = 'sch"ema; \\ ñ'
ODD_ROLE = "r'o;l\"e\\ü"
PASSWORD = "H0stile;'pa\"ss=word"
ODD_COPY = "copy \"'; \\ ñ😀"
EXAMPLES_PER_OPERATION = 8


def _cs_quote(value: str) -> str:
    # ADO.NET: a value with ; ' or " goes in double quotes, a double quote inside is doubled.
    return '"' + value.replace('"', '""') + '"'


@pytest.fixture(scope="module")
def odd(make_database: Databases) -> Database:
    db = make_database("odd", user=ODD_ROLE, name=ODD_DB, password=PASSWORD, password_required=True, grant=False)
    db.scratch.append(ODD_COPY)
    table = sql.SQL("{}.{}").format(sql.Identifier(ODD_SCHEMA), sql.Identifier("t;'\""))
    with db.connect() as c:
        c.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(ODD_SCHEMA)))
        c.execute(sql.SQL("CREATE TABLE {} (v text)").format(table))
        c.execute(sql.SQL("INSERT INTO {} VALUES ('ünï;code\\')").format(table))
    db.grant()
    return db


@pytest.fixture(scope="module")
def host(make_host: Hosts, odd: Database) -> Iterator[DevhostProcess]:
    # The scheduler writes its marker for every ready instance at each tick: keep it out of the
    # state comparisons (once a year).
    h = make_host(
        {
            "PGVAULT_SECRET_ODD_CS": f"User Id={_cs_quote(ODD_ROLE)};Password={_cs_quote(PASSWORD)};Ssl Mode=Disable",
            "PGVAULT_SECRET_ODD_TARGET_CS": (
                f"Server=127.0.0.1;Port={odd.port};User Id=postgres;Password=unused;Ssl Mode=Disable"
            ),
            "PGVAULT_SCHEDULER_SCHEDULE": "0 0 0 1 1 *",
        }
    )
    yield h
    assert h.stop() == 0, h.log()
    assert PASSWORD not in h.log()


# Markers only the timers write: how far the missed-backup check (every 5 minutes), the hung-jobs sweep
# and the retention sweep got. An alert's row is compared by its key alone: the delivery timer (every
# 15 s) records each try on it, so an alert raised by an earlier accepted request may change later.
TIMER_MARKERS = frozenset({layout.ALERT_CHECK, layout.HOUSEKEEPING, layout.RETENTION})


class Snapshot:
    """What a refused request must not change: the state table, the backup container, the queues."""

    def __init__(self, env: dict[str, str]) -> None:
        self.state = state_table(env)
        self.container = backup_container(env)
        queues = QueueServiceClient.from_connection_string(env["AzureWebJobsStorage"])
        self.queues = [queues.get_queue_client(q) for q in layout.QUEUES]

    def take(self) -> tuple[Any, ...]:
        # The audit trail records refused calls too, on purpose (shared/audit.py): everything else must stay,
        # but for what the vault's timers write whatever the requests do.
        entities = sorted(
            (e.partition_key, e.row_key, "" if e.partition_key == layout.ALERTS else e.etag)
            for e in self.state.query("PartitionKey ne ''")
            if not e.partition_key.startswith(AUDIT_PREFIX) and e.partition_key not in TIMER_MARKERS
        )
        blobs = sorted((b.name, b.etag) for b in self.container.list_blobs())
        queued = tuple(q.get_queue_properties().approximate_message_count for q in self.queues)
        return tuple(entities), tuple(blobs), queued


@pytest.fixture(scope="module")
def snapshot(app_env: dict[str, str], host: DevhostProcess) -> Snapshot:
    assert host.get("/backupPolicies").status_code == 200  # the app creates its table, container and queues
    return Snapshot(app_env)


def _quiet(host: DevhostProcess, snapshot: Snapshot) -> None:
    """Wait until no job runs and the queues are empty (an accepted request may have started work)."""
    wait_until(lambda: host.get("/backupJobs?status=InProgress").json()["value"] == [], 60, interval=0.3)
    wait_until(lambda: snapshot.take()[2] == (0,) * len(snapshot.queues), 60, interval=0.3)
    # A job's row and its summary are two writes: under load the second may land a while after the
    # job reads as finished. Quiet means the whole state stays the same for a second.
    seen = [snapshot.take()]

    def settled() -> bool:
        time.sleep(1)
        seen.append(snapshot.take())
        return seen[-1] == seen[-2]

    wait_until(settled, 60, interval=0)


def _operations(host: DevhostProcess) -> list[Any]:
    spec = host.get("/openapi.json").json()
    schema = schemathesis.openapi.from_dict(spec)
    return [result.ok() for result in schema.get_all_operations()]


def _fuzz(operation: Any, label: str, host: DevhostProcess, snapshot: Snapshot, statuses: set[int]) -> None:
    """Send generated requests (valid and invalid) for ``operation``; check each answer and the state."""

    strategy = operation.as_strategy(generation_mode=GenerationMode.POSITIVE) | operation.as_strategy(
        generation_mode=GenerationMode.NEGATIVE
    )
    if (operation.method.upper(), operation.path) == ("PUT", "/backupPolicies/{name}"):
        # A valid policy body too: random ones almost never satisfy the policy rules.
        example = json.loads((EXAMPLES / "sunday-default-only.json").read_text())
        strategy |= operation.as_strategy(generation_mode=GenerationMode.POSITIVE, body=example)
    if "{name}" in operation.path:
        # Half the requests go to things that exist, so the handlers get past their lookups.
        existing = {"name": "weekly" if operation.path.startswith("/backupPolicies") else "odd"}
        strategy |= operation.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters=existing)
        strategy |= operation.as_strategy(generation_mode=GenerationMode.NEGATIVE, path_parameters=existing)

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        before = snapshot.take()
        headers = {**(case.headers or {}), **host.headers}
        try:
            response = case.call(base_url=host.url, headers=headers, timeout=30)
        except requests.exceptions.RequestException as exc:
            raise AssertionError(f"{label}: no answer ({exc}); devhost alive: {host.proc.poll() is None}") from exc
        statuses.add(response.status_code)
        assert response.status_code < 500, f"{label}: {response.status_code} {response.text[:500]}"
        # Every answer, refusals too, has the body the document gives its status (no field it does not name).
        case.validate_response(response, checks=[response_schema_conformance])
        if response.status_code >= 400:
            assert snapshot.take() == before, f"{label}: refused with {response.status_code} but wrote"
        elif case.method.upper() != "GET":
            _quiet(host, snapshot)

    run()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/backupPolicies/big"),
        ("POST", "/backupPolicies/weekly:simulate"),
        ("POST", "/servers:listDatabases"),
        ("POST", "/backupInstances"),
        ("PUT", "/backupInstances/big"),
        ("POST", "/backupInstances/odd:backup"),
    ],
)
def test_oversized_and_deeply_nested_bodies_are_refused_and_write_nothing(
    host: DevhostProcess, snapshot: Snapshot, method: str, path: str
) -> None:
    before = snapshot.take()
    huge = b'{"properties": {"x": "' + b"a" * (MAX_BODY_BYTES + 1) + b'"}}'
    r = host.request(method, path, data=huge)
    assert r.status_code == 413 and r.json()["error"]["code"] == "PayloadTooLarge", r.text
    for depth in (100, 100_000):
        deep = b'{"a":' * depth + b"1" + b"}" * depth
        r = host.request(method, path, data=deep)
        assert r.status_code == 400 and r.json()["error"]["code"] == "InvalidRequest", r.text[:300]
        assert "nests deeper" in r.json()["error"]["message"]
    assert snapshot.take() == before
    assert host.get("/health").status_code == 200


def test_odd_database_schema_and_role_names_go_through_configure_validate_and_backup(
    host: DevhostProcess, odd: Database, snapshot: Snapshot, tmp_path: Any
) -> None:
    host.put_policy("weekly", (EXAMPLES / "sunday-default-only.json").read_bytes())
    job = host.configure("odd", port=odd.port, database=ODD_DB, secret="env:PGVAULT_SECRET_ODD_CS", policy="weekly")
    assert job["status"] == "Completed", job
    assert host.get("/backupInstances/odd").json()["database"] == ODD_DB
    # Names in the grant script are quoted as identifiers (the schemas are found by the script itself).
    assert '"db\'; DROP DATABASE postgres; --\\ ""é😀"' in host.get("/backupInstances/odd/grantScript?format=sql").text

    job = host.wait_job(host.backup_now("odd", "Default"))
    assert job["status"] == "Completed", job
    (point,) = RecoveryPointStore(snapshot.state).of("odd")
    dump = tmp_path / "odd.pgdump"
    dump.write_bytes(b"".join(read_verified(snapshot.container, point.blob_name, point.sha256)))
    listing = subprocess.run(["pg_restore", "--list", str(dump)], capture_output=True, text=True, check=True).stdout
    assert ODD_SCHEMA in listing and "t;'\"" in listing
    data = subprocess.run(
        ["pg_restore", "--data-only", "-f", "-", str(dump)], capture_output=True, text=True, check=True
    )
    assert "ünï;code\\\\" in data.stdout


def test_odd_schema_and_role_names_go_through_restore_as_database_as_files_and_verify_restore(
    host: DevhostProcess, odd: Database, snapshot: Snapshot, app_env: dict[str, str], tmp_path: Any
) -> None:
    # The point of the backup test above: the odd database, schema, table and role.
    (point,) = RecoveryPointStore(snapshot.state).of("odd")
    target = {"uri": "env:PGVAULT_SECRET_ODD_TARGET_CS", "secretStoreType": "AzureKeyVault"}
    credentials = {"objectType": "SecretStoreBasedAuthCredentials", "secretStoreResource": target}
    body = {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": point.recovery_point_id,
        "sourceDataStoreType": "VaultStore",
        "restoreTargetInfo": {
            "objectType": "RestoreTargetInfo",
            "recoveryOption": "FailIfExists",
            "datasourceInfo": {"resourceName": ODD_COPY},
            "datasourceAuthCredentials": credentials,
        },
    }
    r = host.request("POST", "/backupInstances/odd:restore", data=json.dumps(body))
    assert r.status_code == 202, r.text
    job = host.wait_job(r.json()["jobId"])
    assert job["status"] == "Completed", job
    copied = odd.digests(ODD_COPY)
    assert copied == odd.digests() and len(copied) == 1, copied
    with odd.connect(ODD_COPY) as c:
        table = sql.SQL("{}.{}").format(sql.Identifier(ODD_SCHEMA), sql.Identifier("t;'\""))
        row = c.execute(sql.SQL("SELECT v FROM {}").format(table)).fetchone()
    assert row == ("ünï;code\\",)

    r = host.request(
        "POST",
        "/backupInstances/odd:verifyRestore",
        data=json.dumps({"recoveryPointId": point.recovery_point_id, "secretUri": "env:PGVAULT_SECRET_ODD_TARGET_CS"}),
    )
    assert r.status_code == 202, r.text
    verify = host.wait_job(r.json()["jobId"])
    assert verify["status"] == "Completed", verify
    assert verify["details"]["verification"] == {"tablesCompared": 1, "mismatches": []}

    service = BlobServiceClient.from_connection_string(app_env["AzureWebJobsStorage"])
    container = service.get_container_client(f"{app_env['PGVAULT_BACKUP_CONTAINER']}-files")
    container.create_container()
    files = {
        **body,
        "restoreTargetInfo": {
            "objectType": "RestoreFilesTargetInfo",
            "recoveryOption": "FailIfExists",
            "targetDetails": {"url": container.url, "filePrefix": "odd", "restoreTargetLocationType": "AzureBlobs"},
        },
    }
    r = host.request("POST", "/backupInstances/odd:restore", data=json.dumps(files))
    assert r.status_code == 202, r.text
    assert host.wait_job(r.json()["jobId"])["status"] == "Completed"
    dump = tmp_path / "odd-files.dump"
    dump.write_bytes(container.download_blob("odd.dump").readall())
    listing = subprocess.run(["pg_restore", "--list", str(dump)], capture_output=True, text=True, check=True).stdout
    assert ODD_SCHEMA in listing and "t;'\"" in listing


def test_generated_requests_on_every_route_get_no_5xx_and_refused_ones_write_nothing(
    host: DevhostProcess, snapshot: Snapshot
) -> None:
    operations = _operations(host)
    assert len(operations) >= 20
    seen: dict[str, set[int]] = {}

    for operation in operations:
        label = f"{operation.method.upper()} {operation.path}"
        _fuzz(operation, label, host, snapshot, seen.setdefault(label, set()))
        assert host.proc.poll() is None, f"devhost died on {label}"
    print(
        f"\nschemathesis: {len(operations)} operations, statuses {json.dumps({k: sorted(v) for k, v in seen.items()})}"
    )


def test_every_keyed_route_in_the_description_refuses_a_request_without_the_right_key(host: DevhostProcess) -> None:
    spec = host.get("/openapi.json").json()
    keyed = 0
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in {"get", "put", "post", "delete", "patch"}:
                continue
            concrete = path.replace("{", "").replace("}", "")
            if op.get("security", spec.get("security")) == []:  # health and the dashboard's files: no key asked
                assert host.request(method.upper(), concrete, headers={"x-functions-key": ""}).status_code != 401
                continue
            keyed += 1
            for headers in ({"x-functions-key": ""}, {"x-functions-key": "wrong"}):
                r = requests.request(method.upper(), host.url + concrete, headers=headers, timeout=30)
                assert r.status_code == 401, f"{method.upper()} {path} answered {r.status_code} without the key"
            r = requests.request(method.upper(), host.url + concrete + "?code=wrong", timeout=30)
            assert r.status_code == 401, f"{method.upper()} {path}?code=wrong answered {r.status_code}"
    assert keyed >= 15
