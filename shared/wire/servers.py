"""``servers:listDatabases``: the databases a secret's user sees on its server."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from shared.wire.common import NAME_PATTERN, ErrorDetail, Port, Request, Response, UtcTime


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


# -- protected servers (shared/protected_servers.py) -------------------------------------------------

Pattern = Annotated[str, Field(min_length=1, max_length=128)]


class ProtectedServerSpec(Request):
    """``PUT /protectedServers/{name}``: protect every database of a server that the secret's user can see.

    Patterns are shell-style globs matched against database names with Python's
    ``fnmatch.fnmatchcase`` (``*``, ``?``, ``[abc]``, ``[!abc]``; case-sensitive, as PostgreSQL's names
    are). A database is covered when it matches an include pattern and no exclude pattern."""

    server: str = Field(
        min_length=1,
        description="one host name or IP address; when the secret names a Server (and Port), the same, else 400",
    )
    port: Port = 5432
    secretUri: str = Field(description="as a backup instance's secretUri: the user every database is listed with")
    policyName: str = Field(pattern=NAME_PATTERN)
    includePatterns: list[Pattern] = Field(
        default_factory=lambda: ["*"], min_length=1, max_length=50, description="fnmatch globs; default every name"
    )
    excludePatterns: list[Pattern] = Field(default_factory=list, max_length=50, description="fnmatch globs")


MemberStatusName = Literal["Protected", "Dropped", "Skipped", "Failed"]


class ServerDatabase(Response):
    """One database a protected server covers (or covered), and what protects it."""

    database: str
    status: MemberStatusName = Field(
        description="Protected: by instance; Dropped: gone from the server or no longer matched, protection "
        "stopped with data retained asPerPolicy; Skipped: protected by an instance of its own, never twice; "
        "Failed: configuring failed (error), tried again at every discovery"
    )
    instance: str | None
    reason: str | None = None
    error: ErrorDetail | None = None
    since: UtcTime


class Discovery(Response):
    """What one discovery found and changed; each change is also a job on the instance it concerns."""

    time: UtcTime
    status: Literal["Completed", "CompletedWithWarnings", "Failed"]
    added: list[str] = Field(description="databases newly protected (each an instance, validated by its job)")
    reprotected: list[str] = Field(description="databases marked Dropped before that are back: protection resumed")
    updated: list[str] = Field(description="databases whose instance took the server's new policy or secret")
    dropped: list[str] = Field(description="databases gone or no longer matched: protection stopped (asPerPolicy)")
    skipped: list[str] = Field(description="databases protected by an instance of their own: left to it")
    failed: list[str] = Field(description="databases whose configuration failed (see databases[].error)")
    excluded: list[ExcludedDatabase] = Field(description="databases never protected here, with why")
    remaining: int = Field(description="new databases beyond this run's limit, protected by the next discoveries")
    error: ErrorDetail | None = None


class ProtectedServer(Response):
    """A protected server. ``databases`` comes with one server's answers, not with the list."""

    name: str
    server: str
    port: int
    secretUri: str
    policyName: str
    includePatterns: list[str]
    excludePatterns: list[str]
    createdTime: UtcTime
    lastDiscovery: Discovery | None
    databases: list[ServerDatabase] | None = None


class ProtectedServerList(Response):
    """Every protected server."""

    value: list[ProtectedServer]


class ServerUnprotected(Response):
    """``DELETE /protectedServers/{name}``: the server is gone; its instances stay, protection stopped."""

    name: str
    deleted: bool
    retainData: str
    stoppedInstances: list[str]
