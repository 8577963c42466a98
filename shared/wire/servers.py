"""``servers:listDatabases``: the databases a secret's user sees on its server."""

from __future__ import annotations

from shared.wire.common import Port, Request, Response


class ListDatabasesRequest(Request):
    """server and port default to the secret's Server and Port; others are refused (400), and a secret without a
    Server needs a server matching PGVAULT_ALLOWED_SERVERS."""

    secretUri: str
    server: str | None = None
    port: Port | None = None


class Database(Response):
    """One database; ``instance`` names the backup instance protecting it."""

    database: str
    protected: bool
    instance: str | None


class ExcludedDatabase(Response):
    """A database that cannot be protected (a template, a system database, one that refuses connections)."""

    database: str
    reason: str


class DatabaseList(Response):
    """The server asked, its port, the databases that can be protected, and those that cannot with why."""

    server: str
    port: int
    value: list[Database]
    excluded: list[ExcludedDatabase]
