"""No function key in any log line, answer or record, even while storage is down.

devhost runs with a function key required and ``--verbose`` (its request lines, at DEBUG, hold the
query). Requests send the key as ``?code=`` and as the ``x-functions-key`` header, before, during
and after an outage of Azurite: during it every request that needs storage fails (503 or 500), and
the app logs the request it could not serve. Then the key is looked for in devhost's whole output
(stdout and stderr), every answer, and everything in the session's Azurite (every entity, every
blob's name and metadata, every queued message): it is nowhere, and the log shows ``code=REDACTED``
where it would have been.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from devhost_process import DevhostProcess
from factories import Hosts
from vault_views import encoded_forms, storage_text

from devhost.services import Azurite
from tests.examples import EXAMPLES
from tests.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
KEY = f"fk-{uuid.uuid4().hex}"
# Requests during the outage wait out the storage SDKs' own retries: up to about a minute each.
OUTAGE_REQUEST_TIMEOUT = 240


@pytest.fixture(scope="module")
def host(make_host: Hosts) -> DevhostProcess:
    h = make_host(
        {"PGVAULT_DEVHOST_KEY": KEY, "PGVAULT_SECRET_KEYED_CS": "User Id=nobody;Password=unused"}, args=["--verbose"]
    )
    h.headers = {}  # each call below says how it sends the key
    h.transcript = []  # every answer kept for the scan
    return h


def call(  # noqa: PLR0917
    host: DevhostProcess, method: str, path: str, how: str, body: Any = None, timeout: float = 30
) -> requests.Response:
    """A request with the key in the query (``how="query"``), in the header (``"header"``) or nowhere."""
    params = {"code": KEY} if how == "query" else {}
    headers = {"x-functions-key": KEY} if how == "header" else {}
    data = None if body is None else json.dumps(body)
    return host.request(method, path, params=params, headers=headers, data=data, timeout=timeout)


def test_the_function_key_is_in_no_log_answer_or_record_while_storage_is_down(
    host: DevhostProcess, app_env: dict[str, str], azurite: Azurite
) -> None:
    policy = json.loads((EXAMPLES / "sunday-default-only.json").read_text())
    instance = {
        "server": "127.0.0.1",
        "port": 9,
        "database": "keyed",
        "secretUri": "env:PGVAULT_SECRET_KEYED_CS",
        "policyName": "p",
    }
    assert call(host, "GET", "/backupPolicies", "none").status_code == 401  # the key is required
    assert call(host, "PUT", "/backupPolicies/p", "query", policy).ok
    assert call(host, "PUT", "/backupInstances/keyed", "header", instance).status_code == 202
    assert call(host, "GET", "/backupJobs?days=1", "query").ok

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
                pool.submit(call, host, method, path, how, policy if method == "PUT" else None, OUTAGE_REQUEST_TIMEOUT)
                for method, path in during
                for how in ("query", "header")
            ]
            answers = [f.result() for f in futures]
        # Every request that needed storage failed while it was down, and the app logged each one.
        assert all(a.status_code in (500, 503) for a in answers), [(a.status_code, a.text) for a in answers]
        wait_until(lambda: host.log().count("functions.http") >= logged_before + len(answers), 60, 0.5)
    finally:
        azurite.start(keep_ports=True)
    wait_until(lambda: call(host, "GET", "/backupPolicies", "query").ok, 120, 1)
    assert call(host, "GET", "/backupInstances/keyed", "header").ok
    time.sleep(1)  # the last request lines reach the log
    assert host.stop() == 0

    log = host.log()
    assert host.transcript is not None
    places = {
        "devhost stdout and stderr": log,
        "answers": "\n".join(host.transcript),
        **storage_text(azurite.connection_string),
    }
    # The instance and its validation job were recorded.
    assert "keyed" in places[f"table {app_env['PGVAULT_STATE_TABLE']}"]
    leaks = [where for where, text in places.items() if any(form in text for form in encoded_forms(KEY))]
    print(f"\nkey scan: {len(places)} places, {log.count('code=REDACTED')} redacted, leaks {leaks}")
    assert leaks == []
    # The scan read the lines where the key would be: request lines and the outage's warnings.
    assert log.count("code=REDACTED") >= len(during), log
