"""Connect to a PostgreSQL server with error codes users recognise.

Failures the user must fix (wrong password, no such database, no CONNECT privilege) become
``UserError`` with Azure Backup's codes; a server that is down, restarting or unreachable is a
``TransientError`` (``UserErrorServerConnectionClosed`` once retries run out).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg

from shared.errors import ErrorCode, TransientError, UserError

# Seconds to wait for a connection before calling the server unreachable.
CONNECT_TIMEOUT = 15

_AUTH_FAILED = {"28P01", "28000"}
_DB_NOT_FOUND = {"3D000"}
_NO_PRIVILEGE = {"42501"}
_SERVER_GOING_AWAY = {"57P01", "57P02", "57P03", "08000", "08003", "08006", "08001", "08004", "53300"}


def describe(kwargs: Mapping[str, Any]) -> str:
    """``user@host:port/dbname`` for messages: never the password."""
    return f"{kwargs.get('user')}@{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('dbname')}"


def map_connect_error(exc: psycopg.Error, kwargs: Mapping[str, Any]) -> Exception:
    """The pgvault error for a failed connection attempt (the message never holds the password)."""
    where = describe(kwargs)
    state = getattr(exc, "sqlstate", None)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    password = str(kwargs.get("password") or "")
    if password and password in text:
        text = text.replace(password, "***")
    # Connection-time failures come without an SQLSTATE from libpq: read the server's message.
    role_missing = 'role "' in text and "does not exist" in text
    auth_failed = any(t in text for t in ("authentication failed", "no pg_hba.conf entry"))
    if state in _AUTH_FAILED or auth_failed or role_missing:
        return UserError(ErrorCode.DB_USER_AUTH_FAILED, f"login to {where} failed: {text}")
    if state in _DB_NOT_FOUND or ("database" in text and "does not exist" in text):
        return UserError(ErrorCode.DB_NOT_FOUND, f"database {kwargs.get('dbname')!r} does not exist on {where}")
    if state in _NO_PRIVILEGE or "permission denied for database" in text:
        return UserError(
            ErrorCode.MISSING_DB_PERMISSIONS,
            f"{kwargs.get('user')} may not connect to {kwargs.get('dbname')!r}: {text}",
            recommended_action="Have an administrator run the grant script (it grants CONNECT), then re-validate.",
        )
    return TransientError(f"could not reach {where}: {text}", code=ErrorCode.SERVER_CONNECTION_CLOSED)


def connect(kwargs: Mapping[str, Any], *, autocommit: bool = True) -> psycopg.Connection[Any]:
    """A connection with libpq parameters ``kwargs``; errors mapped by ``map_connect_error``."""
    params = {"connect_timeout": CONNECT_TIMEOUT, **kwargs}
    try:
        return psycopg.connect(autocommit=autocommit, **params)
    except psycopg.Error as exc:
        raise map_connect_error(exc, params) from None


def server_gone(exc: psycopg.Error) -> bool:
    """Whether a failure mid-session means the server went away (worth a retry)."""
    return getattr(exc, "sqlstate", None) in _SERVER_GOING_AWAY or isinstance(exc, psycopg.OperationalError)
