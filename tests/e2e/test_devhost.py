"""devhost runs a FunctionApp as the Functions host would: HTTP, queues with retries and poison, timers."""

from __future__ import annotations

import base64
import itertools
import json
import signal
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import requests
from devhost_process import DevhostProcess

from devhost.services import AZURITE_KEY
from shared.storage.clients import StorageAccount
from shared.storage.queues import QueueSender, queue_client
from shared.storage.tables import StateTable
from tests.waiting import wait_until

pytestmark = pytest.mark.e2e
DENIED_KEY = base64.b64encode(b"not the account key" * 3).decode()


@pytest.fixture
def sample_env(storage_env: dict[str, str], unique: str) -> dict[str, str]:
    return {
        **storage_env,
        "SAMPLE_TABLE": f"sample{unique}",
        "SAMPLE_WORK_QUEUE": f"work-{unique}",
        "SAMPLE_TIMER_SCHEDULE": "*/2 * * * * *",
        "PGVAULT_DEVHOST_KEY": "test-key-123",
        # A failed delivery comes back after 2 s instead of host.json's 10 s (an app setting overrides it).
        "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:02",
        # The same Azurite with a key it does not know: every request to it is refused (403).
        "SAMPLE_DENIED_STORAGE": storage_env["AzureWebJobsStorage"].replace(AZURITE_KEY, DENIED_KEY),
    }


@pytest.fixture
def sample_host(sample_env: dict[str, str], tmp_path: Path) -> Iterator[DevhostProcess]:
    host = DevhostProcess(sample_env, tmp_path / "devhost.log", app="tests.e2e.sample_app:app")
    yield host
    assert host.stop() == 0, host.log()


def _table(env: dict[str, str]) -> StateTable:
    account = StorageAccount.from_connection_setting("AzureWebJobsStorage", env)
    table = StateTable(account.table_service(), env["SAMPLE_TABLE"])
    table.ensure()
    return table


def _records(env: dict[str, str], kind: str) -> list[dict[str, object]]:
    return [dict(e.data) for e in _table(env).partition(kind)]


def test_http_route_answers_with_route_parameters_and_query(sample_host: DevhostProcess) -> None:
    r = sample_host.request("POST", "/echo/orders?x=1", data=b"hello")
    assert r.status_code == 200
    assert r.json() == {"name": "orders", "params": {"x": "1"}, "body": "hello"}


def test_literal_suffix_route_wins_over_bare_parameter(sample_host: DevhostProcess) -> None:
    r = sample_host.request("POST", "/echo/orders:shout")
    assert r.status_code == 200 and r.text == "ORDERS"
    # GET is not a method of the :shout route, and the bare route takes "orders:shout" as a name.
    assert sample_host.get("/echo/orders:shout").json()["name"] == "orders:shout"


def test_unknown_route_is_404_and_wrong_method_is_405(sample_host: DevhostProcess) -> None:
    assert sample_host.get("/nothing-here").status_code == 404
    assert sample_host.request("DELETE", "/echo/x").status_code == 405


def test_a_refused_request_with_a_body_does_not_spoil_the_next_request_on_its_connection(
    sample_host: DevhostProcess,
) -> None:
    with requests.Session() as session:
        refused = session.put(f"{sample_host.url}/echo/x", data=b'{"a": 1}', timeout=10)
        assert refused.status_code == 405
        assert session.post(f"{sample_host.url}/echo/orders:shout", data=b"{}", timeout=10).text == "ORDERS"


def test_function_level_route_needs_the_key(sample_host: DevhostProcess) -> None:
    assert sample_host.get("/secure").status_code == 401
    assert sample_host.get("/secure", headers={"x-functions-key": "wrong"}).status_code == 401
    assert sample_host.get("/secure", headers={"x-functions-key": "test-key-123"}).text == "secret handshake"
    assert sample_host.get("/secure?code=test-key-123").status_code == 200


def test_concurrent_requests_are_served_in_parallel(sample_host: DevhostProcess) -> None:
    results: list[int] = []

    def call() -> None:
        results.append(sample_host.get("/slow").status_code)

    threads = [threading.Thread(target=call) for _ in range(4)]
    import time

    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Four one-second requests served one after another would take four seconds.
    assert results == [200] * 4
    assert time.monotonic() - started < 3.0


def test_queue_output_binding_writes_a_base64_message_the_trigger_reads(
    sample_host: DevhostProcess, sample_env: dict[str, str]
) -> None:
    r = sample_host.request("POST", "/enqueue", data=json.dumps({"mode": "ok", "n": 7}))
    assert r.status_code == 202
    done = wait_until(lambda: _records(sample_env, "done"), 20)
    assert json.loads(done[0]["payload"]) == {"mode": "ok", "n": 7}  # type: ignore[index]


def test_an_output_binding_that_cannot_be_written_fails_the_http_call_with_500(
    sample_host: DevhostProcess, sample_env: dict[str, str]
) -> None:
    # As the host does: outputs are written after the function returned, and a write that fails fails
    # the invocation, whatever the function answered (here 202).
    r = sample_host.request("POST", "/enqueue-denied", data=json.dumps({"mode": "ok", "n": 8}))
    assert r.status_code == 500, r.text
    assert "function enqueue_denied failed" in sample_host.log()
    account = StorageAccount.from_connection_setting("AzureWebJobsStorage", sample_env)
    assert list(queue_client(account.queue_service(), sample_env["SAMPLE_WORK_QUEUE"]).peek_messages()) == []


_LOG_TIME = "%Y-%m-%d %H:%M:%S,%f"


def test_a_message_an_output_binding_adds_wakes_the_listener_where_one_sent_with_the_sdk_waits(
    sample_env: dict[str, str], tmp_path: Path
) -> None:
    import re
    import time

    # maxPollingInterval 10 minutes: an idle listener's back-off doubles from 0.1 s, so about 13 s
    # after the start it waits 12.8 s, then 25.6 s, ... (host.json's 2 s would cap it at 2 s).
    env = {**sample_env, "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:10:00"}
    host = DevhostProcess(env, tmp_path / "devhost.log", app="tests.e2e.sample_app:app", args=["--verbose"])
    try:
        queue = env["SAMPLE_WORK_QUEUE"]
        line = r"^(\S+ \S+) DEBUG devhost \[[^\]]*\] queue " + re.escape(queue)
        backoff = re.compile(line + r": empty; next poll in (\S+) s$", re.M)
        wake = re.compile(line + r": woken by a message this host added; polling now$", re.M)

        def long_wait_begun() -> re.Match[str] | None:
            waits = [m for m in backoff.finditer(host.log()) if float(m.group(2)) >= 12.8]
            return waits[-1] if waits else None

        began = wait_until(long_wait_begun, 90, interval=0.2)
        # A message sent with the storage SDK: nothing tells the listener, which goes on waiting.
        account = StorageAccount.from_connection_setting("AzureWebJobsStorage", env)
        QueueSender(account.queue_service()).send(queue, {"mode": "ok", "n": "sdk"})
        time.sleep(2.5)  # longer than host.json's maxPollingInterval (2 s) would let it wait
        waiting = queue_client(account.queue_service(), queue).peek_messages()
        assert [json.loads(m.content)["n"] for m in waiting] == ["sdk"]
        assert _records(env, "work") == []
        # A message the HTTP function adds through its output binding: the listener polls at once
        # and takes both.
        assert host.request("POST", "/enqueue", data=json.dumps({"mode": "ok", "n": "binding"})).status_code == 202
        done = wait_until(lambda: len(found := _records(env, "done")) == 2 and found, 60)
        assert sorted(json.loads(str(d["payload"]))["n"] for d in done) == ["binding", "sdk"]
        log = host.log()
        woken = wake.search(log, began.end())
        assert woken is not None, log[began.start() :]
        # Taken by the poll the binding's message started, not at the end of the 12.8 s wait: no
        # other poll came between the long wait's start and the wake-up, the work came after it.
        assert not backoff.search(log[began.end() : woken.start()]), log[began.start() :]
        assert log.find("function work done with message", woken.end()) > 0
        waited = datetime.strptime(woken.group(1), _LOG_TIME) - datetime.strptime(began.group(1), _LOG_TIME)
        assert waited.total_seconds() < float(began.group(2))
    finally:
        assert host.stop() == 0, host.log()


def test_message_that_always_fails_goes_to_poison_after_five_tries(
    sample_host: DevhostProcess, sample_env: dict[str, str]
) -> None:
    account = StorageAccount.from_connection_setting("AzureWebJobsStorage", sample_env)
    sender = QueueSender(account.queue_service())
    queue = sample_env["SAMPLE_WORK_QUEUE"]
    sender.ensure(queue)
    sender.send(queue, {"mode": "always-fail", "id": "p1"})
    poison = queue_client(account.queue_service(), f"{queue}-poison")
    # visibilityTimeout is 2 s for this host (sample_env): five tries take about 10 s.
    messages = wait_until(lambda: list(poison.peek_messages(max_messages=5)), 90, interval=1)
    assert [json.loads(m.content) for m in messages] == [{"id": "p1", "mode": "always-fail"}]  # type: ignore[attr-defined]
    tries = sorted(int(r["dequeue"]) for r in _records(sample_env, "work"))  # type: ignore[call-overload]
    assert tries == [1, 2, 3, 4, 5]
    assert _records(sample_env, "done") == []
    assert list(queue_client(account.queue_service(), queue).peek_messages()) == []


def test_message_that_fails_once_succeeds_on_its_second_delivery(
    sample_host: DevhostProcess, sample_env: dict[str, str]
) -> None:
    account = StorageAccount.from_connection_setting("AzureWebJobsStorage", sample_env)
    sender = QueueSender(account.queue_service())
    sender.ensure(sample_env["SAMPLE_WORK_QUEUE"])
    sender.send(sample_env["SAMPLE_WORK_QUEUE"], {"mode": "fail-once"})
    done = wait_until(lambda: _records(sample_env, "done"), 40, interval=0.5)
    assert [int(d["dequeue"]) for d in done] == [2]  # type: ignore[call-overload]
    assert sorted(int(r["dequeue"]) for r in _records(sample_env, "work")) == [1, 2]  # type: ignore[call-overload]


def test_timer_fires_on_its_schedule_and_run_on_startup_fires_once(
    sample_host: DevhostProcess, sample_env: dict[str, str]
) -> None:
    ticks = wait_until(lambda: len(_records(sample_env, "tick")) >= 3 and _records(sample_env, "tick"), 15)
    assert ticks
    from datetime import datetime

    times = sorted(datetime.fromisoformat(str(t["at"])) for t in ticks)  # type: ignore[union-attr]
    # "*/2 * * * * *" fires on even seconds, about two seconds apart.
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert all(1.0 < g < 3.5 for g in gaps), gaps
    assert len(_records(sample_env, "startup")) == 1


def test_two_hosts_fire_each_timer_occurrence_once(sample_env: dict[str, str], tmp_path: Path) -> None:
    a = DevhostProcess(sample_env, tmp_path / "a.log", app="tests.e2e.sample_app:app")
    b = DevhostProcess(sample_env, tmp_path / "b.log", app="tests.e2e.sample_app:app")
    try:
        wait_until(lambda: len(_records(sample_env, "tick")) >= 4, 20)
    finally:
        assert a.stop() == 0 and b.stop() == 0
    ticks = _records(sample_env, "tick")
    seconds = [str(t["at"])[:19] for t in ticks]
    assert len(seconds) == len(set(seconds)), f"an occurrence fired twice: {sorted(seconds)}"


def test_sigterm_lets_the_running_invocation_finish(sample_env: dict[str, str], tmp_path: Path) -> None:
    host = DevhostProcess(sample_env, tmp_path / "devhost.log", app="tests.e2e.sample_app:app")
    account = StorageAccount.from_connection_setting("AzureWebJobsStorage", sample_env)
    sender = QueueSender(account.queue_service())
    sender.ensure(sample_env["SAMPLE_WORK_QUEUE"])
    sender.send(sample_env["SAMPLE_WORK_QUEUE"], {"mode": "slow", "seconds": 3})
    wait_until(lambda: _records(sample_env, "work"), 20)
    assert host.stop(signal.SIGTERM) == 0
    assert [json.loads(str(d["payload"]))["mode"] for d in _records(sample_env, "done")] == ["slow"]
    # Stopped cleanly: nothing answers any more.
    with pytest.raises(requests.ConnectionError):
        host.get("/echo/x")


def test_stop_does_not_wait_for_idle_keep_alive_connections(sample_env: dict[str, str], tmp_path: Path) -> None:
    import http.client
    import time

    host = DevhostProcess(sample_env, tmp_path / "devhost.log", app="tests.e2e.sample_app:app")
    conn = http.client.HTTPConnection("127.0.0.1", host.port, timeout=10)
    conn.request("GET", "/api/echo/x")
    assert conn.getresponse().read()  # the connection stays open (HTTP/1.1 keep-alive)
    started = time.monotonic()
    assert host.stop(signal.SIGTERM) == 0, host.log()
    # The handler's idle timeout is 5 s; a stop that closes idle connections is much faster.
    assert time.monotonic() - started < 4
    conn.close()
