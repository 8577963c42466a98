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


class DatabaseList(Response):
    """The server asked, its port, and its databases."""

    server: str
    port: int
    value: list[Database]
