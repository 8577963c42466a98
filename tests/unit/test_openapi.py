"""The OpenAPI description covers every registered HTTP route, is valid OpenAPI, and says the truth
about enums and errors."""

from __future__ import annotations

import importlib.util
import re
from typing import Any

import pytest
from openapi_spec_validator import validate

import function_app
from shared.errors import ErrorCode
from shared.jobs import JobStatus, Operation
from shared.openapi import openapi

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def _spec_path(route: str) -> str:
    """An Azure Functions route template as an OpenAPI path: ``{*rest}`` and ``{id:guid}`` -> ``{rest}``, ``{id}``."""
    return "/" + re.sub(r"\{\*?([A-Za-z0-9_]+)(?::[^}]*)?\}", r"{\1}", route.strip("/"))


@pytest.fixture(scope="module")
def registered() -> set[tuple[str, str]]:
    # get_functions() may be called once per app (docs/platform-notes.md) and test_function_app.py calls it
    # on function_app.app: build a second app from the same module source for this test.
    spec = importlib.util.spec_from_file_location("function_app_for_openapi", function_app.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    routes: set[tuple[str, str]] = set()
    for fn in module.app.get_functions():
        trigger = fn.get_trigger().get_dict_repr()
        if trigger["type"] == "httpTrigger":
            level = str(getattr(trigger.get("authLevel"), "value", trigger.get("authLevel") or "function")).lower()
            if level == "anonymous":
                ANONYMOUS.add(_spec_path(trigger["route"]))
            for method in trigger["methods"]:
                routes.add((_spec_path(trigger["route"]), str(getattr(method, "value", method)).lower()))
    return routes


# Filled by ``registered``: the paths whose routes are registered with authLevel anonymous.
ANONYMOUS: set[str] = set()


def _described() -> set[tuple[str, str]]:
    return {(path, m) for path, item in openapi()["paths"].items() for m in item if m in HTTP_METHODS}


def test_route_templates_map_to_openapi_paths() -> None:
    assert _spec_path("backupInstances/{name}:backup") == "/backupInstances/{name}:backup"
    assert _spec_path("dashboard/{*path}") == "/dashboard/{path}"
    assert _spec_path("jobs/{id:guid}/x") == "/jobs/{id}/x"


def test_every_registered_route_and_method_is_described(registered: set[tuple[str, str]]) -> None:
    missing = registered - _described()
    assert not missing, f"registered but not in shared/openapi.py: {sorted(missing)}"


def test_every_described_route_is_registered(registered: set[tuple[str, str]]) -> None:
    extra = _described() - registered
    assert not extra, f"in shared/openapi.py but not registered: {sorted(extra)}"


def test_the_description_says_which_routes_need_no_key(registered: set[tuple[str, str]]) -> None:
    keyless = {path for path, item in openapi()["paths"].items() for op in item.values() if op.get("security") == []}
    assert keyless == ANONYMOUS == {"/health", "/dashboard", "/dashboard/{path}"}


def test_description_is_valid_openapi() -> None:
    validate(openapi())  # raises with the JSON path of the first problem


def test_every_path_parameter_is_declared() -> None:
    parameters = openapi()["components"]["parameters"]
    for path, item in openapi()["paths"].items():
        for method, op in item.items():
            declared = set()
            for p in op.get("parameters", []):
                p = parameters[p["$ref"].rsplit("/", 1)[1]] if "$ref" in p else p
                if p["in"] == "path":
                    declared.add(p["name"])
            assert declared == set(re.findall(r"\{(\w+)\}", path)), (path, method)


def test_enums_come_from_the_code() -> None:
    schemas: dict[str, Any] = openapi()["components"]["schemas"]
    assert set(schemas["ErrorCode"]["enum"]) == {c.value for c in ErrorCode}
    assert set(schemas["JobStatus"]["enum"]) == {s.value for s in JobStatus}
    assert set(schemas["Operation"]["enum"]) == {o.value for o in Operation}


def test_every_error_answer_has_the_error_shape_and_only_keyless_routes_lack_a_401() -> None:
    keyless = {"/health", "/dashboard", "/dashboard/{path}"}
    for path, item in openapi()["paths"].items():
        for method, op in item.items():
            for status, response in op["responses"].items():
                if int(status) >= 400 and status != "401" and path not in ("/health", "/dashboard/{path}"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"} or status == "400", (path, method, status)
            assert ("security" in op) == (path in keyless), (path, method)
            assert ("401" in op["responses"]) == (path not in keyless), (path, method)


def _objects(schema: Any) -> Any:
    """Every object schema inside ``schema``, at any depth (through properties, items and unions)."""
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "object" or "properties" in schema:
        yield schema
    for child in schema.get("properties", {}).values():
        yield from _objects(child)
    for key in ("items", "additionalProperties"):
        yield from _objects(schema.get(key))
    for key in ("anyOf", "oneOf", "allOf"):
        for child in schema.get(key, []):
            yield from _objects(child)


def test_every_described_shape_forbids_fields_it_does_not_name() -> None:
    # A free object (a policy's properties, a job's details, an ARM template) says so by having no properties.
    schemas: dict[str, Any] = openapi()["components"]["schemas"]
    for name, schema in schemas.items():
        for obj in _objects(schema):
            if "properties" in obj:
                assert obj.get("additionalProperties") is False, (name, sorted(obj["properties"]))


@pytest.mark.parametrize(
    ("schema", "fields"),
    [
        ("BackupInstance", {"currentProtectionState", "retainData", "stoppedAt", "lastBackup", "nextScheduledBackup"}),
        ("RecoveryPoint", {"state", "copyOption", "inArchiveStore", "integrity", "corruption"}),
        ("ErrorDetail", {"code", "message", "target", "recommendedAction"}),
        ("SimulatedBackup", {"time", "tag", "vaultExpiry", "archiveMove", "archiveExpiry", "copyOption", "deletion"}),
        ("SimulationSummary", {"from", "to", "timeZone", "backupsPerTag", "livePoints", "firstBackup"}),
        ("Job", {"jobId", "steps", "cancelRequestedTime", "links", "throughputBytesPerSecond"}),
    ],
)
def test_the_fields_the_api_answers_are_described(schema: str, fields: set[str]) -> None:
    described = set(openapi()["components"]["schemas"][schema]["properties"])
    assert fields <= described, sorted(fields - described)


def test_every_time_answered_is_described_in_utc_with_a_z() -> None:
    times = [
        choice
        for schema in openapi()["components"]["schemas"].values()
        for obj in _objects(schema)
        for prop in obj.get("properties", {}).values()
        for choice in [prop, *prop.get("anyOf", [])]
        if choice.get("format") == "date-time"
    ]
    assert len(times) > 20
    assert all(t.get("pattern") == "Z$" for t in times)
