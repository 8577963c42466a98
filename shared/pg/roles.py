"""The cluster roles a database's objects need, as a backup stores them and a restore recreates them.

A ``pg_dump`` of one database names roles (``ALTER ... OWNER TO``, ``GRANT ... TO``) but never
creates them: roles belong to the cluster. A backup therefore also stores the roles the
database's objects need: every owner and grantee of an object in it (the database, schemas,
relations and their columns, functions, types, large objects, default privileges, row security
policies, foreign servers...), and the groups they are members of, with their attributes and
their memberships among themselves, never a password.

They are read from ``pg_roles`` and ``pg_auth_members`` with SQL rather than with
``pg_dumpall --roles-only --no-role-passwords``: that reads the same catalogs (``pg_roles``, not
``pg_authid``, so it too works for a non-superuser such as Azure's admin), but it dumps every role
of the cluster, and keeping only the needed ones would mean parsing its SQL. The SQL generated for
``roles.sql`` (``to_sql``) has pg_dumpall's shape: ``CREATE ROLE``, ``ALTER ROLE ... WITH``, ``GRANT``.

Roles the server owns are never stored: the bootstrap superuser and the ``pg_*`` roles (object ids
below 16384, PostgreSQL's FirstNormalObjectId), and Azure's reserved ``azure*`` roles.

A restore as a database may create the missing ones (``create_missing``) as Azure's service does
when restoring into a managed server: attributes the target user may not give (SUPERUSER,
REPLICATION, BYPASSRLS unless it is a superuser; CREATEDB and CREATEROLE unless it has them) are
left out and reported, and existing roles are never altered.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from shared.pg.privileges import quote_ident, quote_literal

log = logging.getLogger(__name__)

FORMAT = 1
# restoreOptions.roles: what a restore as a database does with the point's roles.
CREATE_MISSING = "CreateMissing"
MAP_TO_TARGET_USER = "MapToTargetUser"
# PostgreSQL's FirstNormalObjectId: roles below it come with the server (the bootstrap superuser, pg_*).
FIRST_NORMAL_OID = 16384
# Azure Database for PostgreSQL reserves role names starting with these (azure_pg_admin, azuresu, ...).
RESERVED_PREFIXES = ("pg_", "azure")

# Every role an object of the current database names as owner or grantee (PostgreSQL 12-17 catalogs).
_NEEDED = """
WITH RECURSIVE used(oid) AS (
    SELECT datdba FROM pg_database WHERE datname = current_database()
    UNION SELECT (aclexplode(datacl)).grantee FROM pg_database WHERE datname = current_database() AND datacl IS NOT NULL
    UNION SELECT nspowner FROM pg_namespace
    UNION SELECT (aclexplode(nspacl)).grantee FROM pg_namespace WHERE nspacl IS NOT NULL
    UNION SELECT relowner FROM pg_class
    UNION SELECT (aclexplode(relacl)).grantee FROM pg_class WHERE relacl IS NOT NULL
    UNION SELECT (aclexplode(attacl)).grantee FROM pg_attribute WHERE attacl IS NOT NULL
    UNION SELECT proowner FROM pg_proc
    UNION SELECT (aclexplode(proacl)).grantee FROM pg_proc WHERE proacl IS NOT NULL
    UNION SELECT typowner FROM pg_type
    UNION SELECT (aclexplode(typacl)).grantee FROM pg_type WHERE typacl IS NOT NULL
    UNION SELECT lomowner FROM pg_largeobject_metadata
    UNION SELECT (aclexplode(lomacl)).grantee FROM pg_largeobject_metadata WHERE lomacl IS NOT NULL
    UNION SELECT defaclrole FROM pg_default_acl
    UNION SELECT (aclexplode(defaclacl)).grantee FROM pg_default_acl
    UNION SELECT unnest(polroles) FROM pg_policy
    UNION SELECT srvowner FROM pg_foreign_server
    UNION SELECT (aclexplode(srvacl)).grantee FROM pg_foreign_server WHERE srvacl IS NOT NULL
    UNION SELECT fdwowner FROM pg_foreign_data_wrapper
    UNION SELECT (aclexplode(fdwacl)).grantee FROM pg_foreign_data_wrapper WHERE fdwacl IS NOT NULL
    UNION SELECT extowner FROM pg_extension
    UNION SELECT collowner FROM pg_collation
    UNION SELECT conowner FROM pg_conversion
    UNION SELECT oprowner FROM pg_operator
    UNION SELECT opcowner FROM pg_opclass
    UNION SELECT opfowner FROM pg_opfamily
    UNION SELECT stxowner FROM pg_statistic_ext
    UNION SELECT cfgowner FROM pg_ts_config
    UNION SELECT dictowner FROM pg_ts_dict
    UNION SELECT evtowner FROM pg_event_trigger
    UNION SELECT pubowner FROM pg_publication
),
needed(oid) AS (
    SELECT oid FROM used WHERE oid <> 0
    UNION SELECT m.roleid FROM pg_auth_members m JOIN needed n ON m.member = n.oid
)
SELECT r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
       r.rolreplication, r.rolbypassrls, r.rolconnlimit, r.rolvaliduntil::text
FROM pg_roles r JOIN needed n ON n.oid = r.oid
WHERE r.oid >= %(first)s AND NOT r.rolname LIKE ANY (%(reserved)s)
ORDER BY r.rolname
"""
_MEMBERSHIPS = """
SELECT g.rolname, m2.rolname, a.admin_option
FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m2 ON m2.oid = a.member
WHERE g.rolname = ANY (%(names)s) AND m2.rolname = ANY (%(names)s)
ORDER BY 1, 2
"""


@dataclass(frozen=True)
class Role:
    """One role as ``pg_roles`` shows it (no password: ``pg_roles`` never has one)."""

    name: str
    superuser: bool = False
    inherit: bool = True
    create_role: bool = False
    create_db: bool = False
    login: bool = False
    replication: bool = False
    bypass_rls: bool = False
    connection_limit: int = -1
    valid_until: str | None = None

    def options(self, *, allowed: frozenset[str] | None = None) -> tuple[list[str], list[str]]:
        """(the ``ALTER ROLE ... WITH`` options, the attributes left out as not in ``allowed``)."""
        flags = {
            "SUPERUSER": self.superuser,
            "INHERIT": self.inherit,
            "CREATEROLE": self.create_role,
            "CREATEDB": self.create_db,
            "LOGIN": self.login,
            "REPLICATION": self.replication,
            "BYPASSRLS": self.bypass_rls,
        }
        out, skipped = [], []
        for flag, on in flags.items():
            if on and allowed is not None and flag not in allowed:
                skipped.append(flag)
                on = False
            out.append(flag if on else f"NO{flag}")
        if self.connection_limit != -1:
            out.append(f"CONNECTION LIMIT {int(self.connection_limit)}")
        if self.valid_until is not None and self.valid_until != "infinity":
            out.append("VALID UNTIL " + quote_literal(self.valid_until))
        return out, skipped

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "superuser": self.superuser,
            "inherit": self.inherit,
            "createRole": self.create_role,
            "createDb": self.create_db,
            "login": self.login,
            "replication": self.replication,
            "bypassRls": self.bypass_rls,
            "connectionLimit": self.connection_limit,
            "validUntil": self.valid_until,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Role:
        return cls(
            str(d["name"]),
            bool(d.get("superuser")),
            bool(d.get("inherit", True)),
            bool(d.get("createRole")),
            bool(d.get("createDb")),
            bool(d.get("login")),
            bool(d.get("replication")),
            bool(d.get("bypassRls")),
            int(d.get("connectionLimit", -1)),
            d.get("validUntil"),
        )


@dataclass(frozen=True)
class Membership:
    """``member`` is a member of ``role`` (``GRANT role TO member``)."""

    role: str
    member: str
    admin_option: bool = False


@dataclass(frozen=True)
class Roles:
    """The roles a database needs and their memberships among themselves: what a backup stores."""

    roles: tuple[Role, ...] = ()
    memberships: tuple[Membership, ...] = ()

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.roles]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "roles": [r.to_json() for r in self.roles],
            "memberships": [
                {"role": m.role, "member": m.member, "adminOption": m.admin_option} for m in self.memberships
            ],
        }

    def to_bytes(self) -> bytes:
        """The stored form: canonical JSON, so its SHA-256 is checked again after a read (``from_stored``)."""
        return json.dumps(self.to_json(), sort_keys=True).encode()

    @classmethod
    def from_stored(cls, document: Any, sha256: str) -> Roles:
        """The roles of a stored document, ``ValueError`` when it fails its recorded checksum or shape."""
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise ValueError("the stored roles are not in a format this pgvault reads")
        if hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest() != sha256:
            raise ValueError("the stored roles fail their SHA-256")
        return cls(
            tuple(Role.from_json(r) for r in document.get("roles", [])),
            tuple(
                Membership(str(m["role"]), str(m["member"]), bool(m.get("adminOption")))
                for m in document.get("memberships", [])
            ),
        )

    def to_sql(self, about: str = "") -> str:
        """``roles.sql``: each missing role created with its attributes, memberships granted; no passwords.

        A role that exists is left as it is (``CREATE ROLE`` in a ``DO`` block that turns "already
        exists" into a notice), so the script runs on any server, as often as needed, and never
        changes a role someone already has; ``GRANT`` of a membership that exists is a notice too.
        Run it as a superuser, or leave out what a managed server refuses (SUPERUSER, REPLICATION...).
        """
        lines = ["--", "-- Roles the database's objects need (owners, grantees and their groups). No passwords."]
        if about:
            lines.append("-- " + " ".join(about.split()))  # one comment line, whatever ``about`` holds
        lines += ["--", ""]
        for role in self.roles:
            options, _ = role.options()
            create = f"CREATE ROLE {quote_ident(role.name)} WITH {' '.join(options)}"
            tag = _dollar_tag(create)
            lines.append(
                f"DO {tag}BEGIN {create}; EXCEPTION WHEN duplicate_object THEN "
                f"RAISE NOTICE 'role % exists, left as it is', {quote_literal(quote_ident(role.name))}; END{tag};"
            )
        if self.memberships:
            lines.append("")
        for m in self.memberships:
            admin = " WITH ADMIN OPTION" if m.admin_option else ""
            lines.append(f"GRANT {quote_ident(m.role)} TO {quote_ident(m.member)}{admin};")
        return "\n".join(lines) + "\n"


def _dollar_tag(body: str) -> str:
    """A dollar quote that ``body`` does not contain (role names may hold ``$``)."""
    tag, n = "$roles$", 0
    while tag in body:
        n += 1
        tag = f"$roles{n}$"
    return tag


def _role(r: Sequence[Any]) -> Role:
    return Role(
        name=str(r[0]),
        superuser=bool(r[1]),
        inherit=bool(r[2]),
        create_role=bool(r[3]),
        create_db=bool(r[4]),
        login=bool(r[5]),
        replication=bool(r[6]),
        bypass_rls=bool(r[7]),
        connection_limit=int(r[8]),
        valid_until=r[9],
    )


def needed_roles(conn: psycopg.Connection[Any]) -> Roles:
    """The roles the objects of ``conn``'s database need, read from the catalogs (any user may read them)."""
    rows = conn.execute(_NEEDED, {"first": FIRST_NORMAL_OID, "reserved": [f"{p}%" for p in RESERVED_PREFIXES]})
    roles = tuple(_role(r) for r in rows.fetchall())
    names = [r.name for r in roles]
    members = conn.execute(_MEMBERSHIPS, {"names": names}).fetchall() if names else []
    return Roles(roles, tuple(Membership(str(g), str(m), bool(a)) for g, m, a in members))


def read_needed_roles(conn: psycopg.Connection[Any]) -> Roles | None:
    """``needed_roles``, or None (logged) when the server refuses the catalog reads: a backup never fails
    for its roles, its point then restores as points taken before pgvault stored roles do."""
    try:
        return needed_roles(conn)
    except psycopg.Error as exc:
        log.warning("could not read the roles the database needs; the point will hold none: %s", exc)
        return None


@dataclass(frozen=True)
class Capabilities:
    """What the target user may give a role it creates."""

    superuser: bool
    create_role: bool
    create_db: bool

    @property
    def allowed(self) -> frozenset[str]:
        """The attributes it may set on a new role."""
        if self.superuser:
            return frozenset({"SUPERUSER", "INHERIT", "CREATEROLE", "CREATEDB", "LOGIN", "REPLICATION", "BYPASSRLS"})
        given = {"INHERIT", "LOGIN"}
        if self.create_role:
            given.add("CREATEROLE")
        if self.create_db:
            given.add("CREATEDB")
        return frozenset(given)


@dataclass(frozen=True)
class Plan:
    """What ``create_missing`` does: the statements, and what it leaves out and why."""

    statements: tuple[str, ...] = ()
    create: tuple[str, ...] = ()
    existing: tuple[str, ...] = ()
    skipped_attributes: dict[str, list[str]] = field(default_factory=dict)
    not_created: tuple[str, ...] = ()
    granted_to_target_user: tuple[str, ...] = ()
    """Roles it created that a non-superuser target user is made a member of, so that it may give them
    their objects and their grants (``ALTER ... OWNER TO`` needs membership, from 16 the SET option;
    ``GRANT`` on an object it does not own needs the owner's privileges, so INHERIT too)."""


def plan(roles: Roles, existing: Iterable[str], caps: Capabilities) -> Plan:
    """The statements that create the roles missing on the target (pure: tested without a server).

    A user that is neither a superuser nor has CREATEROLE creates nothing (every role goes to
    ``not_created``). Memberships are granted only where both roles exist or are created here. A
    non-superuser is then made a member of each role it created (``granted_to_target_user``).
    """
    there = set(existing)
    missing = [r for r in roles.roles if r.name not in there]
    if not (caps.superuser or caps.create_role):
        return Plan(existing=tuple(sorted(there & set(roles.names))), not_created=tuple(r.name for r in missing))
    statements: list[str] = []
    skipped: dict[str, list[str]] = {}
    for role in missing:
        options, left_out = role.options(allowed=caps.allowed)
        if left_out:
            skipped[role.name] = left_out
        statements.append(f"CREATE ROLE {quote_ident(role.name)} WITH {' '.join(options)}")
    created = {r.name for r in missing}
    for m in roles.memberships:
        if m.role in created or m.member in created:
            admin = " WITH ADMIN OPTION" if m.admin_option else ""
            statements.append(f"GRANT {quote_ident(m.role)} TO {quote_ident(m.member)}{admin}")
    granted: tuple[str, ...] = ()
    if not caps.superuser:
        granted = tuple(r.name for r in missing)
        statements.extend(f"GRANT {quote_ident(name)} TO CURRENT_USER" for name in granted)
    return Plan(
        tuple(statements),
        tuple(r.name for r in missing),
        tuple(sorted(there & set(roles.names))),
        skipped,
        granted_to_target_user=granted,
    )


def create_missing(conn: psycopg.Connection[Any], roles: Roles) -> tuple[Plan, list[str]]:
    """Create the roles of ``roles`` missing on ``conn``'s server: (what was planned, statements that failed).

    Each statement runs on its own (autocommit), so one the server refuses leaves the others.
    """
    existing = [str(r[0]) for r in conn.execute("SELECT rolname FROM pg_roles WHERE rolname = ANY (%s)",
                                                 [roles.names]).fetchall()]  # fmt: skip
    row = conn.execute(
        "SELECT rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = current_user"
    ).fetchone()
    assert row is not None
    the_plan = plan(roles, existing, Capabilities(bool(row[0]), bool(row[1]), bool(row[2])))
    failed: list[str] = []
    for statement in the_plan.statements:
        try:
            conn.execute(sql.SQL(statement))  # built from quote_ident and quote_literal only
        except psycopg.errors.DuplicateObject:
            pass  # created meanwhile (another restore), or a membership granted already
        except psycopg.Error as exc:
            failed.append(f"{statement}: {str(exc).strip().splitlines()[0]}")
    if failed:
        log.warning("creating roles: %s statement(s) refused: %s", len(failed), "; ".join(failed))
    return the_plan, failed


def summary(names: Sequence[str]) -> str:
    """``a, b, c`` (at most ten names, then how many more)."""
    shown = ", ".join(names[:10])
    return shown + (f" and {len(names) - 10} more" if len(names) > 10 else "")
