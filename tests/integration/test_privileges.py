"""Backup privileges on a real PostgreSQL server: the check, the grant script, and pg_dump as proof."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from devhost.services import Postgres
from shared.pg.grants import ScriptFormat, grant_script, grant_sql
from shared.pg.privileges import check_backup_privileges, check_create_db, to_user_error

pytestmark = pytest.mark.integration


class Db:
    def __init__(self, pg: Postgres, name: str, user: str, owner: str) -> None:
        self.pg, self.name, self.user, self.owner = pg, name, user, owner

    def admin(self) -> psycopg.Connection:  # type: ignore[type-arg]
        return self.as_role("postgres")

    def as_role(self, role: str) -> psycopg.Connection:  # type: ignore[type-arg]
        return psycopg.connect(host="127.0.0.1", port=self.pg.port, dbname=self.name, user=role, autocommit=True)

    def check(self):  # type: ignore[no-untyped-def]
        with self.as_role(self.user) as conn:
            return check_backup_privileges(conn, self.user)

    def run_script(self, script: str, as_role: str = "postgres") -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.pg.port), "-U", as_role],
            env={"PGDATABASE": self.name, "PATH": "/usr/bin:/bin"},
            input=script,
            capture_output=True,
            text=True,
            check=False,
        )

    def pg_dump(self) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["pg_dump", "-Fc", "-Z0", "-h", "127.0.0.1", "-p", str(self.pg.port), "-U", self.user],
            env={"PGDATABASE": self.name, "PATH": "/usr/bin:/bin"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )


def _make(pg: Postgres, suffix: str, user: str, owner: str, dbname: str) -> Db:
    with psycopg.connect(pg.dsn(), autocommit=True) as c:
        for role in (user, owner):
            c.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        c.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(dbname), sql.Identifier(owner)))
    return Db(pg, dbname, user, owner)


def _drop(pg: Postgres, db: Db) -> None:
    with psycopg.connect(pg.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db.name)))
        for role in (db.user, db.owner):
            c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture(params=["plain", "hostile"])
def db(request: pytest.FixtureRequest, postgres: Postgres) -> Iterator[Db]:
    s = uuid.uuid4().hex[:6]
    if request.param == "plain":
        names = (f"backup_{s}", f"owner_{s}", f"orders_{s}")
    else:
        names = (f'Bä"ck; Up\\{s}', f"O'wner {s}", f'Or"d; ers\\ É {s}')
    d = _make(postgres, s, *names)
    schema = 'We"ird; Sch\\ema ü' if request.param == "hostile" else "sales"
    with d.as_role(d.owner) as c:
        c.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        c.execute(
            sql.SQL("CREATE TABLE {}.{} (id serial PRIMARY KEY, note text)").format(
                sql.Identifier(schema), sql.Identifier('ta"b;le')
            )
        )
        c.execute("CREATE TABLE public.items (id int)")
        c.execute("CREATE SEQUENCE public.counter")
        c.execute("SELECT lo_from_bytea(0, 'large object bytes')")
    d.schema = schema  # type: ignore[attr-defined]
    yield d
    _drop(postgres, d)


def test_a_fresh_user_misses_everything_and_the_error_names_objects(db: Db) -> None:
    report = db.check()
    assert not report.ok
    kinds = {(m.privilege, m.kind) for m in report.missing}
    assert ("USAGE", "schema") in kinds and ("SELECT", "table") in kinds
    assert ("SELECT", "sequence") in kinds and ("SELECT", "large object") in kinds
    error = to_user_error(report, "orders")
    assert error.code.value == "UserErrorMissingDBPermissions"
    assert "and" in error.message and "grantScript" in error.recommended_action
    assert error.message.count(" on ") <= 5 + 1
    assert db.pg_dump().returncode != 0  # the check agrees with pg_dump


def test_after_the_grant_script_the_check_passes_and_pg_dump_works(db: Db) -> None:
    for _ in range(2):  # idempotent
        out = db.run_script(grant_sql(db.name, db.user))
        assert out.returncode == 0, out.stderr
    report = db.check()
    assert report.ok, report.summary()
    assert report.warnings == ()
    dump = db.pg_dump()
    assert dump.returncode == 0, dump.stderr.decode()


def test_default_privileges_keep_later_tables_readable(db: Db) -> None:
    assert db.run_script(grant_sql(db.name, db.user)).returncode == 0
    with db.as_role(db.owner) as c:
        c.execute("CREATE TABLE public.later (id int)")
    assert db.check().ok


def test_a_table_of_another_owner_without_default_privileges_is_named(db: Db, postgres: Postgres) -> None:
    assert db.run_script(grant_sql(db.name, db.user)).returncode == 0
    with db.admin() as c:  # postgres (another owner) creates a table after the grant
        c.execute("CREATE TABLE public.by_admin (id int)")
    report = db.check()
    assert [m.name for m in report.missing] == ['"public"."by_admin"']
    assert any("postgres" in w for w in report.warnings) or report.warnings == ()


def test_row_level_security_is_reported(db: Db) -> None:
    assert db.run_script(grant_sql(db.name, db.user)).returncode == 0
    with db.as_role(db.owner) as c:
        c.execute("ALTER TABLE public.items ENABLE ROW LEVEL SECURITY")
    report = db.check()
    assert [(m.privilege, m.name) for m in report.missing] == [("BYPASSRLS", '"public"."items"')]
    assert db.pg_dump().returncode != 0


def test_sh_wrapper_runs_with_bash(db: Db, tmp_path: Path) -> None:
    script = tmp_path / "grant.sh"
    script.write_text(grant_script(db.name, db.user, "127.0.0.1", db.pg.port, ScriptFormat.SH))
    out = subprocess.run(
        ["sh", str(script)],
        env={"PGUSER": "postgres", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert db.check().ok


def test_create_db_check(db: Db) -> None:
    with db.admin() as c:
        assert check_create_db(c, "postgres") is True
        assert check_create_db(c, db.user) is False


@pytest.fixture
def stranger(db: Db) -> Iterator[str]:
    """A login role that owns nothing in the database and may grant nothing there."""
    role = f"stranger_{uuid.uuid4().hex[:6]}"
    with db.admin() as c:
        c.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    yield role
    with db.admin() as c:
        c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _run_sh(db: Db, tmp_path: Path, as_role: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "grant.sh"
    script.write_text(grant_script(db.name, db.user, "127.0.0.1", db.pg.port, ScriptFormat.SH))
    return subprocess.run(
        ["sh", str(script)],
        env={"PGUSER": as_role, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_sh_script_run_by_a_role_that_may_grant_nothing_exits_non_zero_saying_what_is_missing(
    db: Db, tmp_path: Path, stranger: str
) -> None:
    out = _run_sh(db, tmp_path, stranger)
    assert out.returncode != 0, out.stderr
    assert "still lacks" in out.stderr and "privilege(s) that pg_dump needs" in out.stderr, out.stderr
    assert "SELECT on table" in out.stderr and "as the owner of those objects or an administrator" in out.stderr
    assert not db.check().ok  # the exit code agrees with what validation finds


def test_sql_script_run_with_plain_psql_by_a_role_that_may_grant_nothing_exits_3(
    db: Db, tmp_path: Path, stranger: str
) -> None:
    script = tmp_path / "grant.sql"
    script.write_text(grant_sql(db.name, db.user))
    out = subprocess.run(  # no -v ON_ERROR_STOP: the script sets it itself
        ["psql", "-X", "-h", "127.0.0.1", "-p", str(db.pg.port), "-U", stranger, "-f", str(script)],
        env={"PGDATABASE": db.name, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 3, (out.returncode, out.stderr)
    assert "still lacks" in out.stderr


def test_sh_script_run_by_the_owner_or_a_superuser_exits_0(db: Db, tmp_path: Path) -> None:
    owner = _run_sh(db, tmp_path, db.owner)
    assert owner.returncode == 0, owner.stderr
    assert "can read everything pg_dump needs" in owner.stderr
    assert db.check().ok
    assert _run_sh(db, tmp_path, "postgres").returncode == 0


def test_a_member_of_pg_read_all_data_still_needs_select_on_large_objects(db: Db) -> None:
    """pg_read_all_data covers tables, sequences and schemas, not large objects: pg_dump fails on them."""
    with db.admin() as c:
        c.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(db.user)))
    report = db.check()
    assert [(m.privilege, m.kind) for m in report.missing] == [("SELECT", "large object")]
    assert report.warnings == ()  # it reads the tables created later too
    assert db.pg_dump().returncode != 0  # the check agrees with pg_dump
    assert db.run_script(grant_sql(db.name, db.user)).returncode == 0
    assert db.check().ok
    dump = db.pg_dump()
    assert dump.returncode == 0, dump.stderr.decode()


def test_the_scripts_last_check_fails_exactly_when_validation_finds_a_gap(db: Db, stranger: str) -> None:
    """One definition of what pg_dump needs: the script's own check and validation never disagree."""
    with db.admin() as c:
        c.execute(sql.SQL("GRANT pg_read_all_data TO {}").format(sql.Identifier(db.user)))
    assert [m.kind for m in db.check().missing] == ["large object"]
    out = db.run_script(grant_sql(db.name, db.user), as_role=stranger)  # may grant nothing
    assert out.returncode != 0 and "SELECT on large object" in out.stderr, out.stderr
    assert "SELECT on table" not in out.stderr  # pg_read_all_data reads those
