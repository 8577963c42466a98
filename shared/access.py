"""Who may do what: the roles, the caller of a request, and the one table of routes and roles.

The roles are Azure Backup's (Backup Reader, Backup Operator, Backup Contributor) plus Backup
Guard, who approves critical operations (shared/approvals.py), as a Resource Guard does for
Azure's multi-user authorization. Reader < Operator < Contributor: each may do what the one
before may. A Guard may read (it must see what it approves) and approve; nothing else.

The caller comes from App Service Authentication: the platform puts the signed-in principal, its
claims and app roles (the ``roles`` claims) in ``X-MS-CLIENT-PRINCIPAL`` (base64 JSON
``{"auth_typ", "claims": [{"typ", "val"}], "name_typ", "role_typ"}``); only the platform can set
it in Azure. In the FunctionKeys mode the host has checked a function key before pgvault runs,
and the key caller is the emergency admin (every role); a test principal header is honoured there
only with ``PGVAULT_DEV_PRINCIPALS=true``, which the settings refuse on an Azure host.
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from typing import Any
from urllib.parse import unquote, urlsplit

from shared.errors import ErrorCode, UserError
from shared.settings import AccessSettings, AuthMode

PRINCIPAL_HEADER = "x-ms-client-principal"
PRINCIPAL_NAME_HEADER = "x-ms-client-principal-name"
PRINCIPAL_ID_HEADER = "x-ms-client-principal-id"
# App Service's claim types (claims go through its default claim mapping).
_OBJECT_ID_CLAIMS = ("http://schemas.microsoft.com/identity/claims/objectidentifier", "oid")
_NAME_CLAIMS = ("preferred_username", "name", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name")
_ROLE_CLAIMS = ("roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role")
# An Entra access token is a few kilobytes; a header far beyond that is not the platform's.
MAX_PRINCIPAL_HEADER_CHARS = 64 * 1024


class Role(StrEnum):
    """A role a principal may hold; the value is the name the API and the dashboard show."""

    READER = "Backup Reader"
    """Read everything (policies, instances, points, jobs, audit log, approvals); never a secret."""
    OPERATOR = "Backup Operator"
    """Also back up now, restore, verify a restore, validate, cancel a job."""
    CONTRIBUTOR = "Backup Contributor"
    """Also policies, instances (configure), stop and resume protection, undelete."""
    GUARD = "Backup Guard"
    """Approve critical operations requested by another principal (and read, to see them)."""

    @property
    def app_role(self) -> str:
        """The Entra app role value (infra/main.bicep): no spaces are allowed there."""
        return self.value.replace(" ", ".")


class Open(StrEnum):
    """A route that needs no role."""

    ANONYMOUS = "anonymous"
    """Anyone, no key (health, the dashboard's fixed files)."""
    SIGNED_IN = "signed in"
    """Any caller the host let through, whatever its roles (``GET /api/me``)."""


Need = Role | Open

_RANK = {Role.READER: 1, Role.OPERATOR: 2, Role.CONTRIBUTOR: 3}

# THE table: every HTTP route (method, route as registered) and the lowest role that may call it.
# tests/unit/test_access.py holds it against function_app.app.get_functions(): nothing missing,
# nothing extra. A new route without a row here fails that test (and is refused at run time).
ROUTE_ROLES: dict[tuple[str, str], Need] = {
    ("GET", "health"): Open.ANONYMOUS,
    ("GET", "health/checks"): Role.READER,
    ("GET", "openapi.json"): Role.READER,
    ("GET", "dashboard"): Open.ANONYMOUS,
    ("GET", "dashboard/{*path}"): Open.ANONYMOUS,
    ("GET", "me"): Open.SIGNED_IN,
    ("GET", "backupPolicies"): Role.READER,
    ("GET", "backupPolicies/{name}"): Role.READER,
    ("POST", "backupPolicies/{name}:simulate"): Role.READER,
    ("PUT", "backupPolicies/{name}"): Role.CONTRIBUTOR,
    ("DELETE", "backupPolicies/{name}"): Role.CONTRIBUTOR,
    ("GET", "backupInstances"): Role.READER,
    ("GET", "backupInstances/{name}"): Role.READER,
    ("GET", "backupInstances/{name}/grantScript"): Role.READER,
    ("GET", "backupInstances/{name}/roleAssignmentTemplate"): Role.READER,
    ("GET", "backupInstances/{name}/recoveryPoints"): Role.READER,
    ("GET", "backupInstances/{name}/recoveryPoints/{recoveryPointId}"): Role.READER,
    ("POST", "backupInstances"): Role.CONTRIBUTOR,
    ("PUT", "backupInstances/{name}"): Role.CONTRIBUTOR,
    # Reads a secret and connects with it: part of configuring protection.
    ("POST", "servers:listDatabases"): Role.CONTRIBUTOR,
    # Validating a would-be instance uses the secret it names, as configuring does.
    ("POST", "backupInstances:validateForBackup"): Role.CONTRIBUTOR,
    ("GET", "backupJobs/{jobId}/grantScript"): Role.READER,
    ("GET", "backupJobs/{jobId}/roleAssignmentTemplate"): Role.READER,
    ("POST", "backupInstances/{name}:validate"): Role.OPERATOR,
    ("POST", "backupInstances/{name}:backup"): Role.OPERATOR,
    ("POST", "backupInstances/{name}:restore"): Role.OPERATOR,
    ("POST", "backupInstances/{name}:verifyRestore"): Role.OPERATOR,
    ("POST", "backupInstances/{name}:stopProtection"): Role.CONTRIBUTOR,
    ("POST", "backupInstances/{name}:resumeProtection"): Role.CONTRIBUTOR,
    ("POST", "backupInstances/{name}:undelete"): Role.CONTRIBUTOR,
    ("GET", "protectedServers"): Role.READER,
    ("GET", "protectedServers/{name}"): Role.READER,
    ("PUT", "protectedServers/{name}"): Role.CONTRIBUTOR,
    ("DELETE", "protectedServers/{name}"): Role.CONTRIBUTOR,
    # Discovery configures (protects) the databases it finds: as configuring instances does.
    ("POST", "protectedServers/{name}:discover"): Role.CONTRIBUTOR,
    ("GET", "alerts"): Role.READER,
    ("GET", "backupJobs"): Role.READER,
    ("GET", "backupJobs/{jobId}"): Role.READER,
    ("POST", "backupJobs/{jobId}:cancel"): Role.OPERATOR,
    ("GET", "auditLog"): Role.READER,
    ("GET", "approvals"): Role.READER,
    ("GET", "approvals/{id}"): Role.READER,
    ("POST", "approvals/{id}:approve"): Role.GUARD,
}

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class Principal:
    """The caller of one request: who (id and name, for the audit trail) and its roles."""

    id: str
    name: str
    roles: frozenset[Role]
    function_key: bool = False
    """Called with a function key (the host checked it): the emergency admin."""

    def may(self, need: Need) -> bool:
        """Whether this caller may call a route that needs ``need``."""
        if isinstance(need, Open) or self.function_key:
            return True
        if need is Role.GUARD:
            return Role.GUARD in self.roles
        if need is Role.READER and Role.GUARD in self.roles:
            return True
        return any(_RANK.get(r, 0) >= _RANK[need] for r in self.roles)

    @property
    def highest(self) -> Role | None:
        """The highest of Reader/Operator/Contributor held (Contributor for a key), or None."""
        if self.function_key:
            return Role.CONTRIBUTOR
        held = [r for r in self.roles if r in _RANK]
        return max(held, key=_RANK.__getitem__) if held else None

    @property
    def label(self) -> str:
        """How the audit trail and approvals name the caller."""
        return "function key" if self.function_key else self.name


FUNCTION_KEY = Principal("function-key", "function key", frozenset(Role), function_key=True)

_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("pgvault_principal", default=None)


def current_principal() -> Principal:
    """The caller of the request this code runs for (set by the HTTP wrapper, functions/http.py)."""
    principal = _current.get()
    if principal is None:
        raise UserError(ErrorCode.INTERNAL, "no caller is known outside an HTTP request")
    return principal


def acting_as(principal: Principal | None) -> contextvars.Token[Principal | None]:
    """Make ``principal`` the current caller; give the token back to ``done`` when the request ends."""
    return _current.set(principal)


def done(token: contextvars.Token[Principal | None]) -> None:
    """The request ended: the caller before it is current again."""
    _current.reset(token)


def _unauthenticated(why: str) -> UserError:
    return UserError(ErrorCode.UNAUTHENTICATED, why, target=PRINCIPAL_HEADER)


def decode_principal(value: str, *, name_header: str | None = None, id_header: str | None = None) -> Principal:
    """The principal in an ``X-MS-CLIENT-PRINCIPAL`` value; ``Unauthenticated`` (401) when unreadable.

    App roles are the claims of the document's ``role_typ`` (``roles`` for Entra ID app roles);
    unknown role values are ignored. The id is the object id claim (else the id header, else the
    name), the name the name claim of ``name_typ`` (else the name header).
    """
    if len(value) > MAX_PRINCIPAL_HEADER_CHARS:
        raise _unauthenticated("the client principal header is too long")
    try:
        doc = json.loads(base64.b64decode(value.strip() + "=" * (-len(value.strip()) % 4), validate=True))
    except (binascii.Error, ValueError) as exc:
        raise _unauthenticated("the client principal header is not base64 JSON") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("claims"), list):
        raise _unauthenticated("the client principal header has no claims")
    claims: list[tuple[str, str]] = [
        (str(c["typ"]), str(c["val"]))
        for c in doc["claims"]
        if isinstance(c, dict) and isinstance(c.get("typ"), str) and isinstance(c.get("val"), str | int)
    ]

    def first(types: tuple[str, ...]) -> str | None:
        for wanted in types:
            for typ, val in claims:
                if typ == wanted and val:
                    return val
        return None

    role_types = {str(doc.get("role_typ") or "roles"), *_ROLE_CLAIMS}
    by_app_role = {r.app_role.lower(): r for r in Role} | {r.value.lower(): r for r in Role}
    roles = frozenset(
        by_app_role[val.lower()] for typ, val in claims if typ in role_types and val.lower() in by_app_role
    )
    name_typ = doc.get("name_typ")
    name = first(((str(name_typ),) if name_typ else ()) + _NAME_CLAIMS) or name_header
    principal_id = first(_OBJECT_ID_CLAIMS) or id_header or name
    if not principal_id or not name:
        raise _unauthenticated("the client principal header names no one (no object id or name claim)")
    return Principal(principal_id[:200], name[:200], roles)


def encode_principal(name: str, roles: tuple[Role, ...] | list[Role], *, object_id: str | None = None) -> str:
    """An ``X-MS-CLIENT-PRINCIPAL`` value as App Service writes it for an Entra ID user (devhost tests,
    the README's examples)."""
    claims: list[dict[str, Any]] = [
        {"typ": _OBJECT_ID_CLAIMS[0], "val": object_id or f"oid-{name}"},
        {"typ": "preferred_username", "val": name},
        *({"typ": "roles", "val": r.app_role} for r in roles),
    ]
    doc = {"auth_typ": "aad", "claims": claims, "name_typ": "preferred_username", "role_typ": "roles"}
    return base64.b64encode(json.dumps(doc).encode()).decode()


def caller(headers: Mapping[str, str], settings: AccessSettings) -> Principal:
    """Who is calling, as the settings say to tell.

    AppServiceAuthentication: the principal header is required (401 without: App Service lets no
    unauthenticated caller through, so its absence means the platform's authentication is off).
    FunctionKeys: the function key caller, unless dev principals are allowed and the request has
    a principal header.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    value = lower.get(PRINCIPAL_HEADER)
    if settings.auth_mode is AuthMode.APP_SERVICE_AUTHENTICATION:
        if not value:
            raise _unauthenticated("no signed-in caller: App Service Authentication must be on for this app")
    elif not (settings.dev_principals and value):
        return FUNCTION_KEY
    assert value is not None
    return decode_principal(
        value, name_header=lower.get(PRINCIPAL_NAME_HEADER), id_header=lower.get(PRINCIPAL_ID_HEADER)
    )


def _literal_chars(route: str) -> int:
    return len(re.sub(r"\{[^}]*\}", "", route))


@cache
def _patterns() -> list[tuple[str, str, re.Pattern[str]]]:
    out = []
    for method, route in ROUTE_ROLES:
        body = "".join(
            (".*" if part.startswith("{*") else "[^/]+") if part.startswith("{") else re.escape(part)
            for part in re.split(r"(\{[^}]*\})", route)
            if part
        )
        # Routes live under the host's one-segment routePrefix ("api"; "" has none).
        out.append((method, route, re.compile(rf"^(?:/[^/]+)?/{body}$")))
    # The most literal route first: backupInstances/{name}:validate before backupInstances/{name}.
    out.sort(key=lambda item: -_literal_chars(item[1]))
    return out


def route_of(method: str, url: str) -> tuple[str, str] | None:
    """The table's (method, route) that the host routed ``method url`` to; None if no row matches."""
    path = unquote(urlsplit(url).path)
    for row_method, route, pattern in _patterns():
        if row_method == method.upper() and pattern.match(path):
            return row_method, route
    return None


def required(method: str, url: str) -> Need:
    """The lowest role a request needs; a request outside the table needs more than any caller has."""
    row = route_of(method, url)
    if row is None:
        raise UserError(
            ErrorCode.INTERNAL, f"{method} {urlsplit(url).path} is not in pgvault's table of routes and roles"
        )
    return ROUTE_ROLES[row]


def authorize(principal: Principal, need: Need) -> None:
    """``UserErrorInsufficientRole`` (403, naming the role) unless ``principal`` may call a route needing ``need``."""
    if principal.may(need):
        return
    held = ", ".join(sorted(r.value for r in principal.roles)) or "no pgvault role"
    raise UserError(
        ErrorCode.INSUFFICIENT_ROLE,
        f"needs {need.value}; {principal.name} has {held}",
        target="role",
        recommended_action=f"Ask an owner of the app's Entra application to assign {principal.name} the app role "
        f"{need.value} ({need.app_role if isinstance(need, Role) else need.value}), or call with a function key "
        "in an emergency.",
    )
