"""What a secret's user can see on its server: the databases that could be protected."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from shared.errors import ErrorCode, UserError
from shared.instances import DEFAULT_PORT, UNSUPPORTED_DATABASES, InstanceSpec, InstanceStore
from shared.pg.connect import connect
from shared.pg.connstring import ConnectionParams, check_server, parse_connection_string
from shared.request_body import whole_number
from shared.secrets import SecretProvider, validate_secret_reference
from shared.storage.tables import StateStore
from shared.wire.check import parse
from shared.wire.servers import Database, DatabaseList, ExcludedDatabase, ListDatabasesRequest

_DATABASES = """
SELECT datname, datallowconn, datistemplate FROM pg_database
WHERE has_database_privilege(datname, 'CONNECT')
ORDER BY datname
"""


def excluded_because(name: str, allows_connections: bool, is_template: bool) -> str | None:
    """Why a database cannot be protected (as configuring it would answer), or None."""
    if name in UNSUPPORTED_DATABASES or is_template:
        return "a system or template database: azure_maintenance, azure_sys, template0 and template1 are not supported"
    if not allows_connections:
        return "the database accepts no connections (datallowconn is false)"
    return None


def visible_databases(
    secrets: SecretProvider,
    reference: str,
    server: str,
    port: int,
    *,
    allowed_servers: Sequence[str] = (),
    params: ConnectionParams | None = None,
) -> list[tuple[str, bool, bool]]:
    """``(name, allows connections, is template)`` of every database on ``server:port`` that the user
    of secret ``reference`` may connect to, by name. The secret may not name another server
    (``check_server``, 400 naming ``server``); connection failures raise as validation's do."""
    if params is None:
        params = parse_connection_string(secrets.get_secret(reference))
    check_server(params, server, port, allowed_servers=allowed_servers, target="server")
    kwargs = params.libpq_kwargs(
        host=server, port=port, dbname=params.database or "postgres", allowed_servers=allowed_servers
    )
    with connect(kwargs) as conn:
        return [(str(n), bool(a), bool(t)) for n, a, t in conn.execute(_DATABASES).fetchall()]


def list_databases(
    state: StateStore,
    secrets: SecretProvider,
    body: Any,
    *,
    allow_env: bool,
    allowed_servers: Sequence[str] = (),
) -> DatabaseList:
    """The databases on the secret's server that its user may connect to, minus unsupported ones.

    Body: ``{"secretUri", "server"?, "port"?}``; the server defaults to the secret's Host. A
    ``server``/``port`` other than the secret's is refused (400) before anything connects; a
    secret without a Server needs a ``server`` matching ``allowed_servers``. Each database says
    whether this vault protects it already; ``excluded`` lists those that cannot be protected and why.
    """
    if not isinstance(body, dict):
        raise UserError(ErrorCode.INVALID_REQUEST, 'the body must be {"secretUri": "..."}', target="body")
    parse(ListDatabasesRequest, body)
    reference = body.get("secretUri")
    if not isinstance(reference, str):
        raise UserError(ErrorCode.INVALID_REQUEST, "secretUri is required", target="secretUri")
    validate_secret_reference(reference, allow_env)
    params = parse_connection_string(secrets.get_secret(reference))
    server = body.get("server") or params.host
    if not isinstance(server, str) or not server:
        raise UserError(
            ErrorCode.INVALID_REQUEST,
            "no server: give 'server' in the body or a Server/Host in the secret's connection string",
            target="server",
        )
    port = whole_number(body.get("port") or params.port or DEFAULT_PORT, "port", 1, 65535)
    rows = visible_databases(secrets, reference, server, port, allowed_servers=allowed_servers, params=params)
    value: list[Database] = []
    excluded: list[ExcludedDatabase] = []
    for name, allows_connections, is_template in rows:
        reason = excluded_because(name, allows_connections, is_template)
        if reason is not None:
            excluded.append(ExcludedDatabase(database=name, reason=reason))
            continue
        spec = InstanceSpec("probe", server, port, name, reference, "probe")
        holder = InstanceStore(state).holder(spec)
        value.append(Database(database=name, protected=holder is not None, instance=holder))
    return DatabaseList(server=server, port=port, value=value, excluded=excluded)
