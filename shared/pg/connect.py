"""Connect to a PostgreSQL server with error codes users recognise.

Failures the user must fix (wrong password, no such database, no CONNECT privilege) become
``UserError`` with Azure Backup's codes; a server that is down, restarting or unreachable is a
``TransientError`` (``UserErrorServerConnectionClosed`` once retries run out). A server that
refuses the connection for a reason no retry changes (pg_hba has no entry for it, TLS required
or missing, an authentication method pgvault will not use, a certificate that does not verify)
is ``UserErrorServerRefusedConnection`` at once, with the change that fixes it (``refusal``,
also read from pg_dump's and pg_restore's messages); a certificate that TLS cannot verify (an
unknown CA, a name the certificate does not hold) is ``UserErrorServerCertificateNotTrusted``.
"""

from __future__ import annotations

import re
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


# libpq's and the server's words for refusals that retrying cannot fix, each with its advice.
_SET_SSL = "Set Ssl Mode=Require (better: VerifyFull) in the secret's connection string, then re-validate."
_REFUSALS: tuple[tuple[re.Pattern[str], str, str] | tuple[re.Pattern[str], str, str, ErrorCode], ...] = (
    (
        re.compile(r"SSL connection is required|no pg_hba\.conf entry .*(?:no encryption|SSL off)", re.IGNORECASE),
        "the server accepts only TLS connections here, and the secret's Ssl Mode does not use TLS",
        _SET_SSL,
    ),
    (
        re.compile(r"pg_hba\.conf rejects connection .*(?:no encryption|SSL off)", re.IGNORECASE),
        "the server rejects connections without TLS",
        _SET_SSL,
    ),
    (
        re.compile(r"server does not support SSL", re.IGNORECASE),
        "the server does not offer TLS, and the secret's Ssl Mode requires it",
        "Turn on TLS on the server (ssl=on). Only on a network you trust, lower Ssl Mode in the secret's "
        "connection string.",
    ),
    (
        re.compile(r'authentication method requirement "[^"]*" failed', re.IGNORECASE),
        "the server asked for the password in cleartext, and pgvault sends a password in cleartext only to a "
        "server verified by TLS",
        "Set Ssl Mode=VerifyFull in the secret's connection string (with Root Certificate=<file> for a private "
        "CA), or have the server use scram-sha-256 for this user (password_encryption, pg_hba.conf).",
    ),
    (
        re.compile(r"authentication method \d+ not supported|authentication method .* (?:is )?not supported", re.I),
        "the server asks for an authentication method pgvault's client does not support",
        "Have the server use scram-sha-256 or md5 for this user (pg_hba.conf).",
    ),
    (
        re.compile(
            r"certificate verify failed|does not match host name|root certificate file .* does not exist|"
            r"could not read root certificate file|weak sslmode",
            re.IGNORECASE,
        ),
        "TLS could not verify the server's certificate",
        "Check Root Certificate in the secret (the CA file that signed the server's certificate) and that the "
        "instance's server is the name on the certificate; or use Ssl Mode=Require, which encrypts without "
        "verifying.",
        ErrorCode.SERVER_CERTIFICATE_NOT_TRUSTED,
    ),
    (
        re.compile(r"no pg_hba\.conf entry|pg_hba\.conf rejects connection", re.IGNORECASE),
        "the server's pg_hba.conf allows no connection of this user to this database from the app's address",
        "Have the server's administrator allow this user, database and the app's address (pg_hba.conf, or the "
        "server's firewall and network rules), then re-validate.",
    ),
)


def refusal(text: str, where: str) -> UserError | None:
    """``UserErrorServerRefusedConnection`` (``UserErrorServerCertificateNotTrusted`` for a certificate TLS cannot
    verify) when ``text`` (a libpq or tool message) is a lasting refusal."""
    for pattern, why, advice, *code in _REFUSALS:
        if pattern.search(text):
            return UserError(
                code[0] if code else ErrorCode.SERVER_REFUSED_CONNECTION,
                f"{where}: {why} ({text})",
                recommended_action=advice,
            )
    return None


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
    # libpq tries TLS then plain (Ssl Mode Prefer) and reports each try on a line of its own.
    whole = " | ".join(line.strip() for line in str(exc).strip().splitlines() if line.strip())
    if password and password in whole:
        whole = whole.replace(password, "***")
    refused = refusal(whole, f"connecting to {where}")
    if refused is not None:
        return refused
    # Connection-time failures come without an SQLSTATE from libpq: read the server's message.
    role_missing = 'role "' in text and "does not exist" in text
    auth_failed = "authentication failed" in text
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
