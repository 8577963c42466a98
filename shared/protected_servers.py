"""Whole servers protected (issue 17): every database of a server that a secret's user can see.

``PUT /protectedServers/{name}`` names a server, its port, a secret, a policy and include/exclude
patterns (shell globs matched with ``fnmatch.fnmatchcase``: case-sensitive, as PostgreSQL's names
are). Each covered database becomes a backup instance of its own (``<server name>-<database>``,
``member_instance_name``), configured through the configure-many path and so validated as usual,
with its readiness and grant script. ``azure_maintenance``, ``azure_sys``, templates and databases
that refuse connections are never covered (``shared.servers.excluded_because``), nor excluded names.

A discovery (at PUT, on demand with ``:discover``, and by the discovery timer on
``PGVAULT_DISCOVERY_SCHEDULE``) compares the server's databases with what the server protects:

* a new database is configured (a ``Discover`` job on its instance, and its ``Validate`` job);
* a database gone from the server, or no longer matched by the patterns, is marked ``Dropped``: its
  instance's protection is stopped with ``retainData: asPerPolicy`` (Azure's SuspendBackups; its
  points keep expiring by the policy, the latest is kept), data never deleted here;
* a ``Dropped`` database that is back is protected again (resumed and re-validated);
* a database protected by an instance of its own is ``Skipped`` and reported, never protected twice;
  the other direction, configuring an instance for a database a protected server covers, is refused
  with ``UserErrorDatabaseAlreadyProtected`` naming the server (``refuse_if_covered``).

One protected server per host and port (a second one is refused naming the first). ``DELETE``
stops protection of the server's instances (``asPerPolicy`` by default, or ``forever``) and keeps
them and their points; protecting the server again under the same name adopts them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any, Protocol

from shared.errors import ErrorCode, PgVaultError, TransientError, UserError
from shared.instances import (
    MAX_BATCH,
    Configured,
    Instance,
    InstanceService,
    InstanceSpec,
    InstanceStore,
    ProtectionStatus,
    RetainData,
    check_secret_server,
    parse_spec,
)
from shared.jobs import Job, JobError, JobStatus, JobStore, Operation, new_job_id
from shared.policies import PolicyService, check_name
from shared.secrets import SecretProvider
from shared.storage import layout
from shared.storage.tables import Entity, EntityExists, ETagMismatch, StateStore

if TYPE_CHECKING:
    from shared.protection import ProtectionService
    from shared.wire import servers as wire_servers

log = logging.getLogger(__name__)

# New databases one discovery configures (as one configure-many request may); the rest next time.
DISCOVERY_BATCH = MAX_BATCH
# Names each list of a discovery keeps when stored on the server (a table property holds 64 KiB).
STORED_NAMES = 50
DEFAULT_DISCOVERY_SCHEDULE = "0 0 * * * *"  # hourly, on the hour
_NAME_SAFE = re.compile(r"^[a-z0-9_.-]+$")


class MemberStatus(StrEnum):
    """What a protected server does with one of its databases."""

    PROTECTED = "Protected"
    """An instance of this server protects it."""
    DROPPED = "Dropped"
    """Gone from the server, or no longer matched: its instance's protection stopped, data retained asPerPolicy."""
    SKIPPED = "Skipped"
    """Protected by an instance of its own: left to that instance, never protected twice."""
    FAILED = "Failed"
    """Configuring its instance failed (``error``); tried again at every discovery."""


def member_instance_name(server_name: str, database: str) -> str:
    """The instance a protected server gives ``database``: ``<server name>-<database>``.

    Deterministic and unique per database: a database name that is not already lowercase letters,
    digits, '_', '.', '-' (instance names are case-insensitive and take no other characters), or
    that would make the name too long, is cleaned and gets 8 hex digits of its SHA-256.
    """
    name = f"{server_name}-{database}"
    if _NAME_SAFE.match(database) and layout.valid_name(name):
        return name
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", database).strip("-.")
    digest = hashlib.sha256(database.encode()).hexdigest()[:8]
    stem = f"{server_name}-{cleaned}" if cleaned else server_name
    return f"{stem[: 150 - 9].rstrip('-.')}-{digest}"


def _host_identity(server: str, port: int) -> str:
    return f"{server.lower().rstrip('.')}\x00{port}"


def _host_key(server: str, port: int) -> str:
    return hashlib.sha256(_host_identity(server, port).encode()).hexdigest()


def _member_key(database: str) -> str:
    return hashlib.sha256(database.encode()).hexdigest()


@dataclass(frozen=True)
class ServerSpec:
    """What a protected server asks, checked: where, with which secret and policy, which names."""

    name: str
    server: str
    port: int
    secret_uri: str
    policy_name: str
    include: tuple[str, ...] = ("*",)
    exclude: tuple[str, ...] = ()

    @property
    def identity(self) -> str:
        """The host's identity (lowercase, no trailing dot) and port: one protected server per host."""
        return _host_identity(self.server, self.port)

    def not_covered_because(self, database: str) -> str | None:
        """Why the patterns leave ``database`` out, or None when they cover it."""
        if not any(fnmatchcase(database, p) for p in self.include):
            return f"matches no includePatterns ({', '.join(self.include)})"
        excluded_by = next((p for p in self.exclude if fnmatchcase(database, p)), None)
        if excluded_by is not None:
            return f"matches excludePatterns {excluded_by!r}"
        return None

    def entry(self, database: str) -> dict[str, Any]:
        """The configure-many entry of ``database``'s instance."""
        return {
            "name": member_instance_name(self.name, database),
            "server": self.server,
            "port": self.port,
            "database": database,
            "secretUri": self.secret_uri,
            "policyName": self.policy_name,
        }


@dataclass(frozen=True)
class Discovery:
    """What one discovery found and changed (``shared.wire.servers.Discovery``)."""

    time: datetime
    added: list[str] = field(default_factory=list)
    reprotected: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    excluded: list[dict[str, str]] = field(default_factory=list)
    remaining: int = 0
    error: dict[str, Any] | None = None

    @property
    def status(self) -> str:
        if self.error is not None:
            return "Failed"
        return "CompletedWithWarnings" if self.failed or self.skipped else "Completed"

    def to_dict(self, cap: int | None = None) -> dict[str, Any]:
        """The wire shape; with ``cap``, each list keeps its first ``cap`` names (the stored copy)."""

        def names(values: Sequence[Any]) -> list[Any]:
            return list(values[:cap] if cap is not None else values)

        out: dict[str, Any] = {
            "time": self.time.isoformat(),
            "status": self.status,
            "added": names(self.added),
            "reprotected": names(self.reprotected),
            "updated": names(self.updated),
            "dropped": names(self.dropped),
            "skipped": names(self.skipped),
            "failed": names(self.failed),
            "excluded": names(self.excluded),
            "remaining": self.remaining,
        }
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class Member:
    """One database of a protected server, as stored (``psdb-<server>``)."""

    database: str
    status: MemberStatus
    instance: str | None
    since: datetime
    reason: str | None = None
    error: dict[str, Any] | None = None

    def data(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "status": self.status.value,
            "instance": self.instance,
            "since": self.since,
            "reason": self.reason,
            "error": json.dumps(self.error) if self.error else None,
        }

    @classmethod
    def from_entity(cls, e: Entity) -> Member:
        return cls(
            str(e["database"]),
            MemberStatus(e["status"]),
            e.get("instance"),
            e["since"],
            e.get("reason"),
            json.loads(e["error"]) if e.get("error") else None,
        )

    def to_wire(self) -> wire_servers.ServerDatabase:
        from shared.wire import servers as wire
        from shared.wire.common import ErrorDetail

        return wire.ServerDatabase(
            database=self.database,
            status=self.status.value,
            instance=self.instance,
            reason=self.reason,
            error=ErrorDetail.model_validate(self.error) if self.error else None,
            since=self.since,
        )


@dataclass(frozen=True)
class ProtectedServer:
    """A protected server as stored and shown."""

    spec: ServerSpec
    created: datetime
    last_discovery: dict[str, Any] | None = None
    etag: str | None = None

    def data(self) -> dict[str, Any]:
        s = self.spec
        return {
            "name": s.name,
            "server": s.server,
            "port": s.port,
            "secretUri": s.secret_uri,
            "policyName": s.policy_name,
            "include": json.dumps(list(s.include)),
            "exclude": json.dumps(list(s.exclude)),
            "hostKey": _host_key(s.server, s.port),
            "created": self.created,
            "lastDiscovery": json.dumps(self.last_discovery) if self.last_discovery else None,
        }

    @classmethod
    def from_entity(cls, e: Entity) -> ProtectedServer:
        spec = ServerSpec(
            str(e["name"]),
            str(e["server"]),
            int(e["port"]),
            str(e["secretUri"]),
            str(e["policyName"]),
            tuple(json.loads(e["include"])),
            tuple(json.loads(e["exclude"])),
        )
        last = e.get("lastDiscovery")
        return cls(spec, e["created"], json.loads(last) if last else None, e.etag)

    @property
    def last_discovery_time(self) -> datetime:
        """When it was last discovered (its creation, before the first discovery)."""
        if self.last_discovery:
            return datetime.fromisoformat(self.last_discovery["time"])
        return self.created

    def to_wire(self, members: Sequence[Member] | None = None) -> wire_servers.ProtectedServer:
        """The API's shape; ``databases`` only when ``members`` are given."""
        from shared.wire import servers as wire

        s = self.spec
        extra: dict[str, Any] = {}
        if members is not None:
            extra["databases"] = [m.to_wire() for m in members]
        return wire.ProtectedServer(
            name=s.name,
            server=s.server,
            port=s.port,
            secretUri=s.secret_uri,
            policyName=s.policy_name,
            includePatterns=list(s.include),
            excludePatterns=list(s.exclude),
            createdTime=self.created,
            lastDiscovery=wire.Discovery.model_validate(self.last_discovery) if self.last_discovery else None,
            **extra,
        )


class DatabaseLister(Protocol):
    """Lists a server's databases as a protected server's secret's user sees them."""

    def databases(self, spec: ServerSpec) -> list[tuple[str, bool, bool]]:
        """``(name, allows connections, is template)`` of each database the user may connect to."""
        ...


class PostgresLister:
    """The real lister: connects with the secret's credentials (``shared.servers.visible_databases``)."""

    def __init__(self, secrets: SecretProvider, allowed_servers: Sequence[str] = ()) -> None:
        self._secrets = secrets
        self._allowed = tuple(allowed_servers)

    def databases(self, spec: ServerSpec) -> list[tuple[str, bool, bool]]:
        from shared.servers import visible_databases

        return visible_databases(self._secrets, spec.secret_uri, spec.server, spec.port, allowed_servers=self._allowed)


class ServerStore:
    """Protected servers, their host claims and their members in the state table."""

    def __init__(self, state: StateStore) -> None:
        self._state = state

    def find(self, name: str) -> ProtectedServer | None:
        e = self._state.get(layout.PROTECTED_SERVER, layout.row_key(name))
        return None if e is None else ProtectedServer.from_entity(e)

    def get(self, name: str) -> ProtectedServer:
        found = self.find(name)
        if found is None:
            raise UserError(ErrorCode.NOT_FOUND, f"protected server {name!r} does not exist", target="name")
        return found

    def all(self) -> Iterator[ProtectedServer]:
        return (ProtectedServer.from_entity(e) for e in self._state.partition(layout.PROTECTED_SERVER))

    def covering(self, server: str, port: int) -> ProtectedServer | None:
        """The protected server of host ``server:port``, or None."""
        claim = self._state.get(layout.SERVER_CLAIM, _host_key(server, port))
        return None if claim is None else self.find(str(claim["server"]))

    def members(self, name: str) -> list[Member]:
        rows = [Member.from_entity(e) for e in self._state.partition(layout.server_members(name))]
        return sorted(rows, key=lambda m: m.database)

    def put_member(self, server: str, member: Member) -> None:
        # Last writer wins: two discoveries at once compute the same outcome (the instance claims decide).
        self._state.upsert(layout.server_members(server), _member_key(member.database), member.data())

    def drop_member(self, server: str, database: str) -> None:
        e = self._state.get(layout.server_members(server), _member_key(database))
        if e is not None:
            self._state.delete(e)

    def claim_host(self, spec: ServerSpec, now: datetime) -> None:
        """Claim host and port for ``spec.name``; ``Conflict`` naming the protected server that has them."""
        data = {"server": spec.name, "claimedAt": now}
        for _ in range(3):
            try:
                self._state.insert(layout.SERVER_CLAIM, _host_key(spec.server, spec.port), data)
                return
            except EntityExists:
                pass
            held = self._state.get(layout.SERVER_CLAIM, _host_key(spec.server, spec.port))
            if held is None:
                continue
            holder = str(held["server"])
            if layout.row_key(holder) == layout.row_key(spec.name):
                return
            if self.find(holder) is not None:
                raise UserError(
                    ErrorCode.CONFLICT,
                    f"{spec.server}:{spec.port} is protected already by protected server {holder!r}",
                    target="body.server",
                    recommended_action=f"Change protected server {holder!r} (its patterns), or delete it first.",
                )
            try:  # its server record is gone (a request died between its writes): take the claim over
                self._state.update(held, data)
                return
            except ETagMismatch:
                continue
        raise UserError(ErrorCode.CONFLICT, "another request is protecting this server; retry", target="name")

    def release_host(self, spec: ServerSpec) -> None:
        held = self._state.get(layout.SERVER_CLAIM, _host_key(spec.server, spec.port))
        if held is not None and layout.row_key(str(held["server"])) == layout.row_key(spec.name):
            self._state.delete(held)

    def insert(self, server: ProtectedServer) -> ProtectedServer:
        written = self._state.insert(layout.PROTECTED_SERVER, layout.row_key(server.spec.name), server.data())
        return replace(server, etag=written.etag)

    def save(self, old: ProtectedServer, new: ProtectedServer) -> ProtectedServer:
        entity = Entity(layout.PROTECTED_SERVER, layout.row_key(old.spec.name), {}, old.etag)
        written = self._state.update(entity, new.data())
        return replace(new, etag=written.etag)

    def delete(self, server: ProtectedServer) -> None:
        self._state.delete(Entity(layout.PROTECTED_SERVER, layout.row_key(server.spec.name), {}, server.etag))


def refuse_if_covered(store: InstanceStore, spec: InstanceSpec, target: str) -> None:
    """``DatabaseAlreadyProtected`` naming the protected server when one covers ``spec``'s database.

    Called when an instance is configured on its own: a database a protected server covers is
    that server's to protect (even before its next discovery), never protected twice.
    """
    covering = ServerStore(store.state).covering(spec.server, spec.port)
    if covering is None:
        return
    from shared.servers import excluded_because

    if excluded_because(spec.database, True, False) or covering.spec.not_covered_because(spec.database):
        return
    name = covering.spec.name
    raise UserError(
        ErrorCode.DATABASE_ALREADY_PROTECTED,
        f"database {spec.database!r} on {spec.server}:{spec.port} is covered by protected server {name!r} "
        f"(its instance is {member_instance_name(name, spec.database)!r})",
        target=f"{target}.database",
        recommended_action=f"Let protected server {name!r} protect it, or add the database to its excludePatterns "
        "and configure it again.",
    )


def _parse_retain(raw: str | None) -> RetainData:
    value = (raw or RetainData.AS_PER_POLICY.value).strip()
    for option in (RetainData.AS_PER_POLICY, RetainData.FOREVER):
        if value.lower() == option.value.lower():
            return option
    raise UserError(
        ErrorCode.INVALID_REQUEST,
        f"retainData must be asPerPolicy (the default) or forever, got {value!r}: removing a protected server "
        "never deletes data",
        target="retainData",
        recommended_action="To delete an instance's data, stop that instance with retainData delete.",
    )


class ProtectedServerService:
    """Protect whole servers: PUT, read, list, discover (on demand and when due), delete."""

    def __init__(
        self,
        state: StateStore,
        instances: InstanceService,
        protection: ProtectionService,
        lister: DatabaseLister,
        *,
        secrets: SecretProvider | None = None,
        allow_env_secrets: bool = False,
        vault_region: str | None = None,
        allowed_servers: Sequence[str] = (),
        schedule: str = DEFAULT_DISCOVERY_SCHEDULE,
    ) -> None:
        self.store = ServerStore(state)
        self._instances = instances
        self._protection = protection
        self._lister = lister
        self._jobs = JobStore(state)
        self._policies = PolicyService(state)
        self._secrets = secrets
        self._allow_env = allow_env_secrets
        self._region = vault_region
        self._allowed = tuple(allowed_servers)
        self._schedule = schedule

    # -- PUT ------------------------------------------------------------------------------------

    def _parse(self, name: str, body: Any) -> ServerSpec:
        from shared.wire.check import parse
        from shared.wire.servers import ProtectedServerSpec

        check_name(name)
        entry = parse(ProtectedServerSpec, body)
        # The instance checks of server, port, secret reference and policy name, on a probe entry.
        probe = parse_spec(
            {
                "server": entry.server,
                "port": entry.port,
                "database": "postgres",
                "secretUri": entry.secretUri,
                "policyName": entry.policyName,
            },
            "body",
            allow_env_secrets=self._allow_env,
            vault_region=self._region,
            name=name,
        )
        for field_name, patterns in (
            ("includePatterns", entry.includePatterns),
            ("excludePatterns", entry.excludePatterns),
        ):
            for i, pattern in enumerate(patterns):
                if any(ord(c) < 32 or ord(c) == 127 for c in pattern):
                    raise UserError(
                        ErrorCode.INVALID_REQUEST,
                        f"{field_name}[{i}] holds a control character",
                        target=f"{field_name}[{i}]",
                    )
        try:
            self._policies.get(probe.policy_name)
        except UserError as exc:
            raise UserError(ErrorCode.NOT_FOUND, exc.message, target="policyName") from exc
        check_secret_server(probe, self._secrets, self._allowed, "body")
        return ServerSpec(
            name,
            probe.server,
            probe.port,
            probe.secret_uri,
            probe.policy_name,
            tuple(dict.fromkeys(entry.includePatterns)),
            tuple(dict.fromkeys(entry.excludePatterns)),
        )

    def put(self, name: str, body: Any, now: datetime) -> tuple[ProtectedServer, Discovery, bool]:
        """Create or change protected server ``name`` and discover it at once; True when created.

        The server's databases are listed before anything is written, so a wrong secret or an
        unreachable server refuses the request and stores nothing. A server cannot move to another
        host or port (``Conflict``), and a host has one protected server.
        """
        spec = self._parse(name, body)
        current = self.store.find(name)
        if current is not None and current.spec.identity != spec.identity:
            raise UserError(
                ErrorCode.CONFLICT,
                f"protected server {name!r} is {current.spec.server}:{current.spec.port}; it cannot move to another "
                "server",
                target="body.server",
                recommended_action="Protect the other server under a new name.",
            )
        rows = self._lister.databases(spec)
        if current is None:
            self.store.claim_host(spec, now)
            try:
                record = self.store.insert(ProtectedServer(spec, now))
            except EntityExists as exc:
                raise UserError(
                    ErrorCode.CONFLICT,
                    f"protected server {name!r} was created by another request; retry",
                    target="name",
                ) from exc
            created = True
        else:
            try:
                record = self.store.save(current, replace(current, spec=spec))
            except ETagMismatch as exc:
                raise UserError(
                    ErrorCode.CONFLICT, f"protected server {name!r} changed during this request; retry"
                ) from exc
            created = False
        log.info("protected server %s: %s:%s %s", name, spec.server, spec.port, "created" if created else "updated")
        discovery = self._apply(record, rows, now)
        return self.store.get(name), discovery, created

    # -- reads ----------------------------------------------------------------------------------

    def get(self, name: str) -> ProtectedServer:
        """Protected server ``name``; ``NotFound`` if there is none."""
        return self.store.get(name)

    def all(self) -> Iterator[ProtectedServer]:
        """Every protected server, by name."""
        return self.store.all()

    def members(self, name: str) -> list[Member]:
        """The databases protected server ``name`` covers or covered, by name."""
        return self.store.members(name)

    # -- discovery ------------------------------------------------------------------------------

    def discover(self, name: str, now: datetime) -> Discovery:
        """Discover protected server ``name`` now. A listing that fails is recorded on the server
        (``lastDiscovery.error``) and raised; nothing else changes then."""
        record = self.store.get(name)
        try:
            rows = self._lister.databases(record.spec)
        except (UserError, TransientError) as exc:
            self._record(record, self._failed(exc, now))
            raise
        return self._apply(record, rows, now)

    def due(self, now: datetime) -> list[ProtectedServer]:
        """The servers whose discovery schedule has a slot after their last discovery, up to ``now``."""
        from croniter import croniter

        out = []
        for record in self.store.all():
            slot = croniter(self._schedule, record.last_discovery_time, second_at_beginning=True).get_next(datetime)
            if slot <= now:
                out.append(record)
        return out

    def discover_due(self, now: datetime) -> dict[str, Discovery]:
        """Discover every server that is due (the discovery timer); one failing does not stop the others."""
        out: dict[str, Discovery] = {}
        for record in self.due(now):
            name = record.spec.name
            try:
                out[name] = self.discover(name, now)
            except (UserError, TransientError) as exc:
                log.warning("protected server %s: discovery failed (%s)", name, exc.code)
                out[name] = self._failed(exc, now)
        return out

    def _failed(self, exc: PgVaultError, now: datetime) -> Discovery:
        if isinstance(exc, UserError):
            error = exc.to_dict()
        else:
            assert isinstance(exc, TransientError)
            error = {"code": exc.code.value, "message": exc.message, "recommendedAction": exc.code.default_action}
        return Discovery(now, error=error)

    def _record(self, record: ProtectedServer, discovery: Discovery) -> None:
        stored = discovery.to_dict(cap=STORED_NAMES)
        for _ in range(3):
            try:
                self.store.save(record, replace(record, last_discovery=stored))
                return
            except ETagMismatch:
                found = self.store.find(record.spec.name)
                if found is None:
                    return
                record = found
        log.warning("protected server %s: last discovery not recorded (changed by others)", record.spec.name)

    def _apply(self, record: ProtectedServer, rows: list[tuple[str, bool, bool]], now: datetime) -> Discovery:
        """Bring the server's instances in line with the databases in ``rows``; record and return what changed."""
        from shared.servers import excluded_because

        spec = record.spec
        covered: list[str] = []
        excluded: list[dict[str, str]] = []
        for database, allows, template in rows:
            reason = excluded_because(database, allows, template) or spec.not_covered_because(database)
            if reason is None:
                covered.append(database)
            else:
                excluded.append({"database": database, "reason": reason})
        members = {m.database: m for m in self.store.members(spec.name)}
        found = Discovery(now, excluded=excluded)
        new: list[str] = []
        for database in covered:
            member = members.get(database)
            instance = self._instance_of(member, spec.name)
            if member is None or member.status in (MemberStatus.SKIPPED, MemberStatus.FAILED) or instance is None:
                new.append(database)
            elif member.status is MemberStatus.DROPPED:
                self._reprotect(spec, member, instance, now, found)
            else:
                self._update(spec, instance, found)
        found = replace(found, remaining=max(0, len(new) - DISCOVERY_BATCH))
        self._add(spec, new[:DISCOVERY_BATCH], members, now, found)
        gone = set(members) - set(covered)
        for database in sorted(gone):
            self._drop(spec, members[database], now, found, still_there=any(r[0] == database for r in rows))
        self._record(self.store.get(spec.name), found)
        log.info(
            "protected server %s discovered: %d added, %d dropped, %d skipped, %d failed",
            spec.name,
            len(found.added),
            len(found.dropped),
            len(found.skipped),
            len(found.failed),
        )
        return found

    def _instance_of(self, member: Member | None, server: str) -> Instance | None:
        if member is None or member.instance is None:
            return None
        instance = self._instances.store.find(member.instance)
        if instance is None or instance.protected_server != server:
            return None
        return instance

    def _job(
        self,
        instance: str,
        spec: ServerSpec,
        database: str,
        change: str,
        now: datetime,
        *,
        error: UserError | None = None,
        **details: Any,
    ) -> Job:
        key = f"discover\x00{spec.name}\x00{database}\x00{change}\x00{now.isoformat()}"
        job = Job(
            new_job_id(now, key),
            Operation.DISCOVER,
            instance,
            JobStatus.FAILED if error else JobStatus.COMPLETED,
            now,
            start_time=now,
            end_time=now,
            error=JobError.from_user_error(error) if error else None,
            details={"protectedServer": spec.name, "database": database, "change": change, **details},
        )
        created, _ = self._jobs.create(job)
        return created

    def _add(
        self, spec: ServerSpec, databases: list[str], members: dict[str, Member], now: datetime, found: Discovery
    ) -> None:
        if not databases:
            return
        results: list[Configured] = self._instances.configure_many(
            {"instances": [spec.entry(d) for d in databases]},
            now,
            allow_env_secrets=self._allow_env,
            vault_region=self._region,
            secrets=self._secrets,
            allowed_servers=self._allowed,
            protected_server=spec.name,
        )
        for database, result in zip(databases, results, strict=True):
            name = member_instance_name(spec.name, database)
            before = members.get(database)
            if result.error is None:
                assert result.job is not None
                self.store.put_member(spec.name, Member(database, MemberStatus.PROTECTED, name, now))
                self._job(name, spec, database, "Protected", now, validationJobId=result.job.job_id)
                found.added.append(database)
                continue
            error = result.error
            if error.code is ErrorCode.DATABASE_ALREADY_PROTECTED:
                holder = self._instances.store.holder(InstanceSpec(name, spec.server, spec.port, database, "", ""))
                held = self._instances.store.find(holder) if holder else None
                if (
                    held is not None
                    and held.protected_server is not None
                    and (layout.row_key(held.protected_server) == layout.row_key(spec.name))
                ):
                    # Its own instance from before (the server was deleted and protected again): adopt it.
                    self.store.put_member(spec.name, Member(database, MemberStatus.PROTECTED, held.spec.name, now))
                    if held.protection_status is ProtectionStatus.STOPPED:
                        self._resume(held, spec, database, now, found, change="Adopted")
                    else:
                        found.added.append(database)
                    continue
                if held is not None:
                    reason = f"protected by backup instance {held.spec.name!r} of its own; not protected twice"
                    if before is None or before.status is not MemberStatus.SKIPPED or before.instance != held.spec.name:
                        self._job(held.spec.name, spec, database, "Skipped", now, reason=reason)
                    self.store.put_member(
                        spec.name, Member(database, MemberStatus.SKIPPED, held.spec.name, now, reason=reason)
                    )
                    found.skipped.append(database)
                    continue
            # Any other refusal (a name taken by another instance, the policy gone, the secret's server).
            changed = (
                before is None
                or before.status is not MemberStatus.FAILED
                or (before.error or {}).get("code") != error.code.value
            )
            # The job goes to the instance's history; an unrelated instance of that name gets none
            # (the failure shows on the server's databases).
            other = self._instances.store.find(name)
            if changed and (other is None or other.protected_server == spec.name):
                self._job(name, spec, database, "Failed", now, error=error)
            self.store.put_member(
                spec.name, Member(database, MemberStatus.FAILED, None, now, reason=error.message, error=error.to_dict())
            )
            found.failed.append(database)

    def _resume(
        self, instance: Instance, spec: ServerSpec, database: str, now: datetime, found: Discovery, *, change: str
    ) -> None:
        name = instance.spec.name
        try:
            if instance.protection_status is ProtectionStatus.STOPPED:
                self._protection.resume(name, None, now)
            job = self._instances.revalidate(name, now)
        except UserError as exc:
            log.info("protected server %s: %s not resumed (%s)", spec.name, name, exc.code)
            self.store.put_member(
                spec.name, Member(database, MemberStatus.FAILED, name, now, reason=exc.message, error=exc.to_dict())
            )
            self._job(name, spec, database, "Failed", now, error=exc)
            found.failed.append(database)
            return
        self.store.put_member(spec.name, Member(database, MemberStatus.PROTECTED, name, now))
        self._job(name, spec, database, change, now, validationJobId=job.job_id)
        found.reprotected.append(database)

    def _reprotect(self, spec: ServerSpec, member: Member, instance: Instance, now: datetime, found: Discovery) -> None:
        if instance.retain_data is RetainData.DELETE:
            return  # being deleted by its user: the next discovery, once it is gone, protects the database anew
        self._resume(instance, spec, member.database, now, found, change="Reprotected")

    def _update(self, spec: ServerSpec, instance: Instance, found: Discovery) -> None:
        """Give a member instance the server's policy and secret when they changed (a new validation)."""
        s = instance.spec
        if (s.policy_name, s.secret_uri) == (spec.policy_name, spec.secret_uri) or instance.retain_data is not None:
            return
        entry = {k: v for k, v in spec.entry(s.database).items() if k != "name"}
        try:
            self._instances.configure_one(
                s.name,
                entry,
                found.time,
                allow_env_secrets=self._allow_env,
                vault_region=self._region,
                secrets=self._secrets,
                allowed_servers=self._allowed,
            )
        except UserError as exc:  # changed meanwhile, or refused: the next discovery tries again
            log.info("protected server %s: %s not updated (%s)", spec.name, s.name, exc.code)
            return
        found.updated.append(s.database)

    def _drop(self, spec: ServerSpec, member: Member, now: datetime, found: Discovery, *, still_there: bool) -> None:
        why = "no longer matched by the patterns" if still_there else "dropped from the server"
        if member.status in (MemberStatus.SKIPPED, MemberStatus.FAILED):
            self.store.drop_member(spec.name, member.database)  # nothing of ours to stop
            return
        if member.status is MemberStatus.DROPPED:
            return
        instance = self._instance_of(member, spec.name)
        reason = f"{why}: protection stopped, data retained as per policy"
        if instance is not None and instance.protection_status is not ProtectionStatus.STOPPED:
            try:
                self._protection.stop(instance.spec.name, {"retainData": RetainData.AS_PER_POLICY.value}, now)
            except UserError as exc:
                log.info("protected server %s: %s not stopped (%s)", spec.name, instance.spec.name, exc.code)
        if instance is not None:
            self._job(
                instance.spec.name, spec, member.database, "Dropped", now, reason=reason, retainData="asPerPolicy"
            )
        self.store.put_member(
            spec.name, Member(member.database, MemberStatus.DROPPED, member.instance, now, reason=reason)
        )
        found.dropped.append(member.database)

    # -- DELETE ---------------------------------------------------------------------------------

    def delete(self, name: str, retain_data: str | None, now: datetime) -> tuple[RetainData, list[str]]:
        """Stop protecting server ``name``: its instances stop (``asPerPolicy`` by default, or ``forever``)
        and stay, with their points; the server and its member records go. Never deletes data."""
        retain = _parse_retain(retain_data)
        record = self.store.get(name)
        stopped: list[str] = []
        for member in self.store.members(name):
            instance = self._instance_of(member, record.spec.name)
            if instance is not None and instance.protection_status is not ProtectionStatus.STOPPED:
                self._protection.stop(instance.spec.name, {"retainData": retain.value}, now)
                self._job(instance.spec.name, record.spec, member.database, "Unprotected", now, retainData=retain.value)
                stopped.append(instance.spec.name)
            self.store.drop_member(name, member.database)
        self.store.release_host(record.spec)
        try:
            self.store.delete(record)
        except ETagMismatch:
            self.store.delete(self.store.get(name))  # a discovery recorded itself meanwhile
        log.info("protected server %s deleted; %d instances stopped (%s)", name, len(stopped), retain.value)
        return retain, stopped
