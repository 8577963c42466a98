"""Refusals no retry changes fail at once with advice, whoever met them: psycopg, pg_dump, pg_restore."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from shared.errors import ErrorCode, TransientError, UserError
from shared.pg.connect import map_connect_error
from shared.pg.dump import map_dump_error
from shared.pg.restore import classify, error_for
from shared.pg.tools import libpq_version, list_tools

SERVER = 'connection to server at "db1.example.com" (10.0.0.7), port 5432 failed: '
REFUSALS = [
    (
        'FATAL:  no pg_hba.conf entry for host "10.1.2.3", user "backup", database "orders", no encryption',
        "Ssl Mode=Require",
    ),
    ('FATAL:  no pg_hba.conf entry for host "10.1.2.3", user "backup", database "orders", SSL off', "Ssl Mode=Require"),
    (
        'FATAL:  pg_hba.conf rejects connection for host "10.1.2.3", user "backup", database "orders", no encryption',
        "Ssl Mode=Require",
    ),
    ("FATAL:  SSL connection is required. Please specify SSL options and retry.", "Ssl Mode=Require"),
    ("server does not support SSL, but SSL was required", "ssl=on"),
    (
        'authentication method requirement "!password" failed: server requested a cleartext password',
        "VerifyFull",
    ),
    ("SSL error: certificate verify failed", "Root Certificate"),
    ('server certificate for "other.example.com" does not match host name "db1.example.com"', "Root Certificate"),
    (
        'FATAL:  no pg_hba.conf entry for host "10.1.2.3", user "backup", database "orders", SSL encryption',
        "pg_hba.conf",
    ),
]
PASSING = [
    "Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?",
    "FATAL:  the database system is starting up",
    "server closed the connection unexpectedly",
]


@pytest.mark.parametrize(("message", "advice"), REFUSALS)
def test_lasting_refusals_fail_at_once_with_advice(message: str, advice: str) -> None:
    kwargs = {"host": "db1.example.com", "port": 5432, "user": "backup", "dbname": "orders", "password": "pw-9f"}
    errors = [
        map_connect_error(psycopg.OperationalError(f"connection failed: {SERVER}{message}"), kwargs),
        map_dump_error(f"pg_dump: error: {SERVER}{message}\n", 1, "orders"),
        error_for(classify(f"pg_restore: error: {SERVER}{message}\n", 1)),
    ]
    for error in errors:
        assert isinstance(error, UserError), error
        # A certificate TLS cannot verify has a code of its own; every other lasting refusal shares one.
        untrusted = "certificate" in message
        expected = ErrorCode.SERVER_CERTIFICATE_NOT_TRUSTED if untrusted else ErrorCode.SERVER_REFUSED_CONNECTION
        assert error.code is expected, (message, error.code)
        assert advice in error.recommended_action, error.recommended_action
        assert "pw-9f" not in error.message


def test_each_try_of_ssl_mode_prefer_is_read() -> None:
    # libpq with Prefer tries TLS, then plain, and says so on two lines.
    text = (
        f'connection failed: {SERVER}FATAL:  password authentication failed for user "backup"\n'
        f'{SERVER}FATAL:  no pg_hba.conf entry for host "10.1.2.3", user "backup", database "orders", no encryption'
    )
    error = map_connect_error(psycopg.OperationalError(text), {"host": "db1.example.com"})
    assert isinstance(error, UserError) and error.code is ErrorCode.SERVER_REFUSED_CONNECTION


@pytest.mark.parametrize("message", PASSING)
def test_a_server_that_may_come_back_is_still_retried(message: str) -> None:
    assert isinstance(map_connect_error(psycopg.OperationalError(f"{SERVER}{message}"), {}), TransientError)
    assert isinstance(map_dump_error(f"pg_dump: error: {SERVER}{message}\n", 1, "orders"), TransientError)


@pytest.mark.skipif(not Path("/usr/lib/postgresql/15/bin/pg_dump").exists(), reason="needs Debian's PostgreSQL 15")
def test_the_libpq_a_tool_runs_with_is_read_from_the_library() -> None:
    tools = list_tools("pg_dump", search_path="/usr/bin")
    assert tools and all(t.libpq is not None and t.libpq // 10000 >= 10 for t in tools)
    # Debian 12's libpq5 is 15: it ignores PGREQUIREAUTH, so these tools cannot refuse cleartext.
    assert all(t.refuses_cleartext is (t.libpq is not None and t.libpq >= 160000) for t in tools)
    assert psycopg.pq.version() >= 160000  # psycopg's own libpq has require_auth


@pytest.mark.skipif(not Path("/usr/lib/postgresql/15/bin/pg_dump").exists(), reason="needs Debian's PostgreSQL 15")
def test_a_wrapper_script_is_followed_to_the_libpq_the_tool_loads(tmp_path: Path) -> None:
    # As wrappers lay tools out (Debian's pg_wrapper, hand-made bundles): bin/<tool> is a script that execs the binary.
    wrapper = tmp_path / "pg_dump"
    wrapper.write_text('#!/bin/sh\nexec /usr/lib/postgresql/15/bin/pg_dump "$@"\n')
    wrapper.chmod(0o755)
    assert libpq_version(wrapper) == libpq_version(Path("/usr/lib/postgresql/15/bin/pg_dump")) is not None
    assert libpq_version(tmp_path / "missing") is None
