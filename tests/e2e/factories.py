"""What e2e modules make for their tests: databases on the session's PostgreSQL and devhosts of the app.

The fixtures in ``conftest.py`` hand these out as factories, one per module: a module asks for
what it needs (a role with a password, three databases, a devhost with two more settings) and
the factory removes it all at the end of the module, whatever the tests did.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from devhost_process import DevhostProcess
from psycopg import sql

from devhost.services import Postgres
from shared.pg.digests import table_digests
from shared.pg.grants import grant_sql


@dataclass
class Database:
    """A login role and its databases on a test cluster."""

    cluster: Postgres
    user: str
    names: list[str]
    password: str | None
    # Databases the tests make from these (restore targets): dropped with them.
    scratch: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The first database."""
        return self.names[0]

    @property
    def port(self) -> int:
        return self.cluster.port

    def spare(self, label: str) -> str:
        """A free database name for a test to create (a restore's target); dropped at the end."""
        name = f"{self.name}_{label}"
        self.scratch.append(name)
        return name

    def connection_string(self, *, with_server: bool = False) -> str:
        """The ADO.NET connection string of this role, as a vault's secret holds it."""
        server = f"Server=127.0.0.1;Port={self.port};" if with_server else ""
        return f"{server}User Id={self.user};Password={self.password or 'unused'};Ssl Mode=Disable"

    def connect(self, dbname: str | None = None, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        """A superuser connection to ``dbname``, the first database by default."""
        return psycopg.connect(
            host="127.0.0.1", port=self.port, dbname=dbname or self.name, user="postgres", autocommit=autocommit
        )

    def digests(self, dbname: str | None = None) -> dict[str, Any]:
        """Every table's row count and hash in ``dbname`` (the first database by default)."""
        with self.connect(dbname) as c:
            return table_digests(c)

    def grant(self, *dbnames: str) -> None:
        """Run the backup grant script for this role in ``dbnames``, in each of its databases by default."""
        for name in dbnames or self.names:
            self.cluster.psql(grant_sql(name, self.user), name)


class Databases:
    """Makes roles and databases on ``cluster``; ``drop_all`` removes every one it made."""

    def __init__(self, cluster: Postgres) -> None:
        self.cluster = cluster
        self.made: list[Database] = []

    def __call__(
        self,
        prefix: str,
        *,
        tables: str | Sequence[str] = "",
        databases: int = 1,
        password: str | None = None,
        password_required: bool = False,
        createdb: bool = False,
        grant: bool = True,
        user: str | None = None,
        name: str | None = None,
    ) -> Database:
        """A role and ``databases`` databases, each filled by ``tables`` (one script, or one per database).

        The role logs in; with ``password_required`` it must give its password (the cluster trusts
        everyone else). ``grant`` runs the backup grant script after the tables are made.
        """
        s = uuid.uuid4().hex[:6]
        names = [name] if name else [f"{prefix}_{s}"] + [f"{prefix}_{s}_{i}" for i in range(1, databases)]
        db = Database(self.cluster, user or f"{prefix}_{s}", names[:databases], password)
        self.made.append(db)
        role = sql.SQL("CREATE ROLE {} LOGIN" + (" CREATEDB" if createdb else "")).format(sql.Identifier(db.user))
        with db.connect("postgres") as c:
            c.execute(role if password is None else role + sql.SQL(" PASSWORD {}").format(sql.Literal(password)))
            if password_required:
                c.execute(sql.SQL("GRANT password_required TO {}").format(sql.Identifier(db.user)))
            for each in db.names:
                c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(each)))
        scripts = [tables] * len(db.names) if isinstance(tables, str) else list(tables)
        for each, script in zip(db.names, scripts, strict=True):
            if script:
                self.cluster.psql(script, each)
        if grant:
            db.grant()
        return db

    def drop_all(self) -> None:
        with psycopg.connect(self.cluster.dsn(), autocommit=True) as c:
            for db in reversed(self.made):
                for each in [*db.names, *db.scratch]:
                    c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(each)))
                c.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(db.user)))
                c.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(db.user)))


class Hosts:
    """Starts devhosts of the app on ``base`` settings; ``stop_all`` stops those still running."""

    def __init__(self, base: Mapping[str, str], tmp_path_factory: pytest.TempPathFactory) -> None:
        self.base = dict(base)
        self.tmp_path_factory = tmp_path_factory
        self.started: list[DevhostProcess] = []

    def __call__(
        self, settings: Mapping[str, str] | None = None, *, args: Sequence[str] = (), app: str = "function_app:app"
    ) -> DevhostProcess:
        """A devhost on the base settings with ``settings`` on top, sending the function key by default."""
        env = {**self.base, **(settings or {})}
        host = DevhostProcess(env, self.tmp_path_factory.mktemp("devhost") / "devhost.log", app=app, args=args)
        if "PGVAULT_DEVHOST_KEY" in env:
            host.headers = {"x-functions-key": env["PGVAULT_DEVHOST_KEY"]}
        self.started.append(host)
        return host

    def stop_all(self) -> None:
        """Stop every host still running; each must exit 0 (one a test stopped or killed is its business)."""
        running = [h for h in self.started if h.proc.poll() is None]
        for host in self.started:
            host.stop()  # closes the log of a host that ended on its own too
        failed = [f"exit {h.proc.returncode}:\n{h.log()[-3000:]}" for h in running if h.proc.returncode != 0]
        assert not failed, "\n".join(failed)
