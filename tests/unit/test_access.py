"""Who may do what: the route table against the registered routes, and each role over every route.

The role checks run through the real in-process app (``function_app.app``'s registered
functions, the ``api`` wrapper included) with dev principals; no storage is configured, so a call
that passes the check goes on into its handler and stops there (a settings error, a bad body),
never with the 403 of a refusal.
"""

from __future__ import annotations

import base64
import importlib.util
import json
from typing import Any

import azure.functions as func
import pytest

import function_app
from shared.access import (
    FUNCTION_KEY,
    ROUTE_ROLES,
    Open,
    Principal,
    Role,
    caller,
    decode_principal,
    encode_principal,
    route_of,
)
from shared.errors import SettingsError, UserError
from shared.settings import AccessSettings, AuthMode, load_access_settings

_SAMPLE = {"name": "db1", "jobId": "0000-abc", "id": "00ab-cd", "recoveryPointId": "rp1", "*path": "app.js"}


@pytest.fixture(scope="module")
def routes() -> dict[tuple[str, str], Any]:
    # get_functions() may be called once per app (docs/platform-notes.md) and test_function_app.py calls it
    # on function_app.app: a second app from the same module source, as test_openapi.py does.
    spec = importlib.util.spec_from_file_location("function_app_for_access", function_app.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = {}
    for fn in module.app.get_functions():
        trigger = fn.get_trigger().get_dict_repr()
        if trigger.get("type") != "httpTrigger":
            continue
        for method in trigger["methods"]:
            out[(str(getattr(method, "value", method)), trigger["route"])] = fn.get_user_function()
    return out


def test_every_registered_route_is_in_the_table_and_nothing_else(routes: dict[tuple[str, str], Any]) -> None:
    assert set(routes) - set(ROUTE_ROLES) == set(), "routes without a role"
    assert set(ROUTE_ROLES) - set(routes) == set(), "table rows for routes that do not exist"


def _url(route: str) -> tuple[str, dict[str, str]]:
    params: dict[str, str] = {}
    path = route
    for key, value in _SAMPLE.items():
        if "{" + key + "}" in path:
            params[key.lstrip("*")] = value
            path = path.replace("{" + key + "}", value)
    return f"http://localhost/api/{path}", params


def _call(handler: Any, method: str, route: str, headers: dict[str, str]) -> func.HttpResponse:
    url, params = _url(route)
    request = func.HttpRequest(method=method, url=url, headers=headers, params={}, route_params=params, body=b"{}")
    response = handler(request)
    assert isinstance(response, func.HttpResponse)
    return response


@pytest.fixture
def dev_principals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGVAULT_DEV_PRINCIPALS", "true")
    for name in ("PGVAULT_AUTH_MODE", "WEBSITE_INSTANCE_ID", "WEBSITE_SITE_NAME", "AzureWebJobsStorage"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("AzureWebJobsStorage__accountName", raising=False)


# Each principal and the routes' needs it is allowed.
PRINCIPALS = {
    "reader": ((Role.READER,), {Role.READER}),
    "operator": ((Role.OPERATOR,), {Role.READER, Role.OPERATOR}),
    "contributor": ((Role.CONTRIBUTOR,), {Role.READER, Role.OPERATOR, Role.CONTRIBUTOR}),
    "guard": ((Role.GUARD,), {Role.READER, Role.GUARD}),
    "nobody": ((), set()),
}


@pytest.mark.usefixtures("dev_principals")
@pytest.mark.parametrize("who", sorted(PRINCIPALS))
def test_each_role_is_allowed_and_refused_exactly_as_the_table_says_on_every_route(
    who: str, routes: dict[tuple[str, str], Any]
) -> None:
    roles, allowed = PRINCIPALS[who]
    headers = {"X-MS-CLIENT-PRINCIPAL": encode_principal(f"{who}@contoso.com", list(roles))}
    refused_seen = allowed_seen = 0
    for (method, route), handler in sorted(routes.items()):
        need = ROUTE_ROLES[(method, route)]
        response = _call(handler, method, route, headers)
        if isinstance(need, Open) or need in allowed:
            allowed_seen += 1
            assert response.status_code != 403, (method, route, response.get_body())
        else:
            refused_seen += 1
            assert response.status_code == 403, (method, route)
            error = json.loads(response.get_body())["error"]
            assert error["code"] == "UserErrorInsufficientRole"
            assert error["message"].startswith(f"needs {need.value}"), error
            assert error["target"] == "role"
    assert allowed_seen > 0
    assert refused_seen > 0  # every role lacks something: even a Contributor may not approve


@pytest.mark.usefixtures("dev_principals")
def test_a_function_key_caller_may_call_every_route(routes: dict[tuple[str, str], Any]) -> None:
    for (method, route), handler in sorted(routes.items()):
        assert _call(handler, method, route, {}).status_code != 403, (method, route)


def test_the_principal_header_is_decoded_as_app_service_writes_it() -> None:
    doc = {
        "auth_typ": "aad",
        "claims": [
            {"typ": "http://schemas.microsoft.com/identity/claims/objectidentifier", "val": "5f3c-oid"},
            {"typ": "name", "val": "Ada Lovelace"},
            {"typ": "preferred_username", "val": "ada@contoso.com"},
            {"typ": "roles", "val": "Backup.Operator"},
            {"typ": "roles", "val": "Some.Other.Role"},
        ],
        "name_typ": "preferred_username",
        "role_typ": "roles",
    }
    principal = decode_principal(base64.b64encode(json.dumps(doc).encode()).decode())
    assert principal == Principal("5f3c-oid", "ada@contoso.com", frozenset({Role.OPERATOR}))
    assert principal.may(Role.READER) and principal.may(Role.OPERATOR)
    assert not principal.may(Role.CONTRIBUTOR) and not principal.may(Role.GUARD)


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"[1]").decode(), base64.b64encode(b"{}").decode()])
def test_an_unreadable_principal_header_is_401(value: str) -> None:
    with pytest.raises(UserError) as raised:
        decode_principal(value)
    assert raised.value.http_status == 401


def test_app_service_mode_needs_the_header_and_function_key_mode_ignores_it_without_dev_principals() -> None:
    header = {"X-MS-CLIENT-PRINCIPAL": encode_principal("eve", [Role.READER])}
    easy = AccessSettings(auth_mode=AuthMode.APP_SERVICE_AUTHENTICATION)
    with pytest.raises(UserError) as raised:
        caller({}, easy)
    assert raised.value.code.value == "Unauthenticated"
    assert caller(header, easy).roles == {Role.READER}
    # Without dev principals a key caller cannot make itself someone else (and weaker or stronger).
    assert caller(header, AccessSettings()) is FUNCTION_KEY
    assert caller(header, AccessSettings(dev_principals=True)).name == "eve"


def test_dev_principals_are_refused_on_an_azure_host() -> None:
    with pytest.raises(SettingsError) as raised:
        load_access_settings({"PGVAULT_DEV_PRINCIPALS": "true", "WEBSITE_INSTANCE_ID": "abc"})
    assert "PGVAULT_DEV_PRINCIPALS" in raised.value.problems
    with pytest.raises(SettingsError) as bad:
        load_access_settings({"PGVAULT_AUTH_MODE": "Kerberos", "PGVAULT_AUDIT_RETENTION_DAYS": "30"})
    assert set(bad.value.problems) == {"PGVAULT_AUTH_MODE", "PGVAULT_AUDIT_RETENTION_DAYS"}


def test_the_most_literal_route_wins_and_encoded_paths_are_matched_decoded() -> None:
    assert route_of("POST", "http://h/api/backupInstances/db1:validate") == ("POST", "backupInstances/{name}:validate")
    assert route_of("POST", "http://h/api/backupInstances/db1%3AstopProtection") == (
        "POST",
        "backupInstances/{name}:stopProtection",
    )
    assert route_of("GET", "http://h/api/backupInstances/db1") == ("GET", "backupInstances/{name}")
    assert route_of("PATCH", "http://h/api/backupInstances/db1") is None


def test_the_app_roles_manifest_defines_every_role_the_code_reads() -> None:
    from pathlib import Path

    manifest = json.loads((Path(__file__).resolve().parents[2] / "infra" / "app-roles.json").read_text())
    assert {r["value"]: r["displayName"] for r in manifest} == {r.app_role: r.value for r in Role}
    assert all(r["isEnabled"] and "Application" in r["allowedMemberTypes"] for r in manifest)
