"""No function key in any log line, answer or record, even while storage is down.

devhost runs with a function key required and ``--verbose`` (its request lines, at DEBUG, hold the
query). Requests send the key as ``?code=`` and as the ``x-functions-key`` header, before, during
and after an outage of Azurite: during it every request that needs storage fails (503 or 500), and
the app logs the request it could not serve. Then the key is looked for in devhost's whole output
(stdout and stderr), every answer, every entity of the vault's state table and every queue message:
it is nowhere, and the log shows ``code=REDACTED`` where it would have been.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient
from devhost_process import DevhostProcess, wait_until

from devhost.services import Azurite
from tests.examples import EXAMPLES

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
KEY = f"fk-{uuid.uuid4().hex}"
# Requests during the outage wait out the storage SDKs' own retries: up to about a minute each.
OUTAGE_REQUEST_TIMEOUT = 240


@pytest.fixture(scope="module")
def host(app_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    env = {**app_env, "PGVAULT_DEVHOST_KEY": KEY, "PGVAULT_SECRET_KEYED_CS": "User Id=nobody;Password=unused"}
    h = DevhostProcess(env, tmp_path_factory.mktemp("keys") / "devhost.log", args=["--verbose"])
    yield h
    h.stop()


class Calls:
    """Requests with the key in the query or in the header; every answer kept for the scan."""

    def __init__(self, host: DevhostProcess) -> None:
        self.host = host
        self.answers: list[str] = []

    def __call__(self, method: str, path: str, how: str, body: Any = None, timeout: float = 30) -> requests.Response:
        params = {"code": KEY} if how == "query" else {}
        headers = {"x-functions-key": KEY} if how == "header" else {}
        r = requests.request(
            method,
            self.host.url + path,
            params=params,
            headers=headers,
            data=None if body is None else json.dumps(body),
            timeout=timeout,
        )
        self.answers.append(f"{method} {path} {r.status_code} {dict(r.headers)} {r.text}")
        return r


def _forms(key: str) -> list[str]:
    return [key, urllib.parse.quote(key), base64.b64encode(key.encode()).decode()]


def test_the_function_key_is_in_no_log_answer_or_record_while_storage_is_down(
    host: DevhostProcess, app_env: dict[str, str], azurite: Azurite, tmp_path: Path
) -> None:
    call = Calls(host)
    policy = json.loads((EXAMPLES / "sunday-default-only.json").read_text())
    instance = {
        "server": "127.0.0.1",
        "port": 9,
        "database": "keyed",
        "secretUri": "env:PGVAULT_SECRET_KEYED_CS",
        "policyName": "p",
    }
    assert call("GET", "/backupPolicies", "none").status_code == 401  # the key is required
    assert call("PUT", "/backupPolicies/p", "query", policy).ok
    assert call("PUT", "/backupInstances/keyed", "header", instance).status_code == 202
    assert call("GET", "/backupJobs?days=1", "query").ok

    during = [
        ("GET", "/backupPolicies"),
        ("GET", "/backupJobs?days=1&top=5"),
        ("PUT", "/backupPolicies/q"),
        ("POST", "/backupInstances/keyed:backup"),
        ("GET", "/backupInstances/keyed"),
    ]
    logged_before = host.log().count("functions.http")
    azurite.stop()
    try:
        with ThreadPoolExecutor(2 * len(during)) as pool:
            futures = [
                pool.submit(call, method, path, how, policy if method == "PUT" else None, OUTAGE_REQUEST_TIMEOUT)
                for method, path in during
                for how in ("query", "header")
            ]
            answers = [f.result() for f in futures]
        # Every request that needed storage failed while it was down, and the app logged each one.
        assert all(a.status_code in (500, 503) for a in answers), [(a.status_code, a.text) for a in answers]
        wait_until(lambda: host.log().count("functions.http") >= logged_before + len(answers), 60, 0.5)
    finally:
        azurite.start(keep_ports=True)
    wait_until(lambda: call("GET", "/backupPolicies", "query").ok, 120, 1)
    assert call("GET", "/backupInstances/keyed", "header").ok
    time.sleep(1)  # the last request lines reach the log
    assert host.stop() == 0

    log = host.log()
    places: dict[str, str] = {"devhost stdout and stderr": log, "answers": "\n".join(call.answers)}
    cs = azurite.connection_string
    state = TableServiceClient.from_connection_string(cs).get_table_client(app_env["PGVAULT_STATE_TABLE"])
    places["state table"] = "\n".join(json.dumps(dict(e), default=str) for e in state.list_entities())
    queues = QueueServiceClient.from_connection_string(cs)
    for queue in queues.list_queues():
        messages = queues.get_queue_client(queue.name).peek_messages(max_messages=32)
        places[f"queue {queue.name}"] = "\n".join(str(m.content) for m in messages)

    assert "keyed" in places["state table"]  # the instance and its validation job were recorded
    leaks = [where for where, text in places.items() if any(form in text for form in _forms(KEY))]
    print(f"\nkey scan: {len(places)} places, {log.count('code=REDACTED')} redacted, leaks {leaks}")
    assert leaks == []
    # The scan read the lines where the key would be: request lines and the outage's warnings.
    assert log.count("code=REDACTED") >= len(during), log
