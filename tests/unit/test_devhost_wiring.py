from __future__ import annotations

import json
from pathlib import Path

import azure.functions as func
import pytest

from devhost.hostconfig import HostConfig, timespan_seconds
from devhost.wiring import WiringError, compile_route, read_app, resolve

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("template", "path", "expected"),
    [
        ("backupPolicies/{name}", "backupPolicies/weekly", {"name": "weekly"}),
        ("backupInstances/{name}:backup", "backupInstances/orders:backup", {"name": "orders"}),
        ("backupInstances/{name}:backup", "backupInstances/orders", None),
        ("items/{id:int}", "items/42", {"id": "42"}),
        ("items/{id:int}", "items/x", None),
        ("items/{id?}", "items", {}),
        ("files/{*rest}", "files/a/b/c", {"rest": "a/b/c"}),
        ("health", "HEALTH", {}),
    ],
)
def test_route_templates_match_as_the_host_does(template: str, path: str, expected: dict[str, str] | None) -> None:
    pattern, _ = compile_route(template)
    m = pattern.fullmatch(path)
    got = None if m is None else {k: v for k, v in m.groupdict().items() if v is not None}
    assert got == expected


def test_placeholders_resolve_from_settings_and_missing_ones_are_named() -> None:
    assert resolve("%Q%-x", {"Q": "jobs"}) == "jobs-x"
    with pytest.raises(WiringError, match="%NOPE%"):
        resolve("%NOPE%", {})


def test_read_app_sorts_triggers_and_prefers_literal_routes() -> None:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

    @app.route(route="things/{name}", methods=["GET"])
    def one(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse("one")

    @app.route(route="things/{name}:go", methods=["POST"])
    @app.queue_output(arg_name="out", queue_name="%OUTQ%", connection="AzureWebJobsStorage")
    def two(req: func.HttpRequest, out: func.Out[str]) -> func.HttpResponse:
        return func.HttpResponse("two")

    @app.queue_trigger(arg_name="msg", queue_name="%INQ%", connection="AzureWebJobsStorage")
    def three(msg: func.QueueMessage) -> None:
        return None

    @app.timer_trigger(arg_name="t", schedule="%SCHED%", run_on_startup=True)
    def four(t: func.TimerRequest) -> None:
        return None

    wiring = read_app(app, {"OUTQ": "out-q", "INQ": "in-q", "SCHED": "0 */5 * * * *"})
    route, params, _ = wiring.route_for("POST", "things/a:go")
    assert route is not None and route.function.name == "two" and params == {"name": "a"}
    assert route.function.outputs[0].queue == "out-q"
    route, params, _ = wiring.route_for("GET", "things/a:go")
    assert route is not None and route.function.name == "one" and params == {"name": "a:go"}
    assert wiring.route_for("DELETE", "things/a") == (None, {}, True)
    assert [(q.function.name, q.queue) for q in wiring.queues] == [("three", "in-q")]
    assert [(t.function.name, t.schedule, t.run_on_startup) for t in wiring.timers] == [("four", "0 */5 * * * *", True)]


def test_host_json_is_read_with_the_hosts_defaults(tmp_path: Path) -> None:
    cfg = HostConfig.load(REPO / "host.json")
    raw = json.loads((REPO / "host.json").read_text())["extensions"]["queues"]
    assert cfg.route_prefix == "api"
    assert cfg.queues.max_dequeue_count == raw["maxDequeueCount"] == 5
    assert cfg.queues.visibility_timeout == timespan_seconds(raw["visibilityTimeout"])
    assert cfg.queues.base64 is True
    defaults = HostConfig.load(tmp_path / "missing.json")
    assert (defaults.queues.batch_size, defaults.queues.new_batch_threshold) == (16, 8)
    assert defaults.queues.max_polling_interval == 60


def test_app_settings_override_host_json_as_the_host_reads_them() -> None:
    env = {
        "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
        "AzureFunctionsJobHost__EXTENSIONS__Queues__maxDequeueCount": "3",
        "AzureFunctionsJobHost__functionTimeout": "00:05:00",
        "OTHER": "x",
    }
    cfg = HostConfig.load(REPO / "host.json", env)
    assert cfg.queues.visibility_timeout == 1 and cfg.queues.max_dequeue_count == 3
    assert cfg.function_timeout == 300
    assert cfg.route_prefix == HostConfig.load(REPO / "host.json").route_prefix == "api"


@pytest.mark.parametrize(("text", "seconds"), [("00:00:10", 10), ("01:02:03", 3723), ("1.00:00:00", 86400)])
def test_timespans(text: str, seconds: float) -> None:
    assert timespan_seconds(text) == seconds


def test_bad_timespan_is_refused() -> None:
    with pytest.raises(ValueError, match="TimeSpan"):
        timespan_seconds("10s")
