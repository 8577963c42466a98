"""What a backup user needs on a database, checked against the catalog, and the script that grants it.

What ``pg_dump -Fc`` needs (PostgreSQL 15 pg_dump, checked against a real server):
- CONNECT on the database;
- USAGE on every schema whose objects it dumps;
- SELECT on every table and partitioned table (it runs ``LOCK TABLE ... IN ACCESS SHARE MODE``
  and ``COPY ... TO stdout``) and on every sequence (``SELECT last_value``); views, materialized
  views and foreign tables are dumped as definitions and need nothing more;
- SELECT on every large object (unless ``lo_compat_privileges`` is on);
- no row-level security in its way: a table with RLS enabled that the user does not own fails
  the dump unless the user has BYPASSRLS (pg_dump runs with ``row_security = off``).
Objects that belong to an extension are skipped by pg_dump and need nothing. A superuser or a
member of ``pg_read_all_data`` (PostgreSQL 14+) can read everything.

Default privileges (``ALTER DEFAULT PRIVILEGES FOR ROLE <owner> ...``) keep tables created later
readable; their absence is a warning, not a failure: the privileges are re-checked before every
backup, which catches the tables created since.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg

from shared.errors import ErrorCode, UserError

# How many objects an error message names before it says "and N more".
NAMED_IN_MESSAGE = 5

_USER = """
SELECT r.rolsuper, r.rolbypassrls,
       EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolname = 'pg_read_all_data'
               AND pg_has_role(r.oid, g.oid, 'MEMBER')) AS read_all,
       has_database_privilege(r.oid, current_database(), 'CONNECT') AS can_connect,
       current_setting('lo_compat_privileges')::bool AS lo_compat
FROM pg_roles r WHERE r.rolname = %(user)s
"""

_SCHEMAS = """
SELECT n.nspname, pg_get_userbyid(n.nspowner)
FROM pg_namespace n
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_namespace'::regclass
                  AND d.objid = n.oid AND d.deptype = 'e')
  AND NOT has_schema_privilege(%(user)s, n.oid, 'USAGE')
ORDER BY 1
"""

_RELATIONS = """
SELECT n.nspname, c.relname, c.relkind, pg_get_userbyid(c.relowner),
       NOT has_table_privilege(%(user)s, c.oid, 'SELECT') AS missing_select,
       c.relrowsecurity AND pg_get_userbyid(c.relowner) <> %(user)s AS rls
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'S')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
"""

_LARGE_OBJECTS = """
SELECT m.oid::bigint, pg_get_userbyid(m.lomowner)
FROM pg_largeobject_metadata m
WHERE pg_get_userbyid(m.lomowner) <> %(user)s
  AND NOT EXISTS (
    SELECT 1 FROM aclexplode(coalesce(m.lomacl, acldefault('L', m.lomowner))) a
    WHERE a.privilege_type = 'SELECT'
      AND CASE WHEN a.grantee = 0 THEN true ELSE pg_has_role(%(user)s, a.grantee, 'MEMBER') END)
ORDER BY 1
"""

_DEFAULTS = """
SELECT DISTINCT n.nspname, pg_get_userbyid(c.relowner)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'S')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
  AND pg_get_userbyid(c.relowner) <> %(user)s
  AND NOT EXISTS (
    SELECT 1 FROM pg_default_acl d, aclexplode(d.defaclacl) a
    WHERE d.defaclrole = c.relowner AND d.defaclobjtype = 'r'
      AND (d.defaclnamespace = 0 OR d.defaclnamespace = n.oid)
      AND a.privilege_type = 'SELECT'
      AND CASE WHEN a.grantee = 0 THEN true ELSE pg_has_role(%(user)s, a.grantee, 'MEMBER') END)
ORDER BY 1, 2
"""

_KINDS = {"r": "table", "p": "table", "S": "sequence"}


def quote_ident(name: str) -> str:
    """An SQL identifier, always double-quoted (a quote inside is doubled): safe for any name."""
    return '"' + name.replace('"', '""') + '"'


def quote_literal(value: str) -> str:
    """An SQL string literal for a script that sets ``standard_conforming_strings = on``."""
    return "'" + value.replace("'", "''") + "'"


@dataclass(frozen=True)
class MissingPrivilege:
    """One privilege the backup user lacks."""

    privilege: str  # CONNECT, USAGE, SELECT, BYPASSRLS
    kind: str  # database, schema, table, sequence, large object
    name: str  # qualified and quoted for display
    owner: str | None = None

    def describe(self) -> str:
        return f"{self.privilege} on {self.kind} {self.name}"


@dataclass(frozen=True)
class PrivilegeReport:
    """What the backup user can and cannot read in one database."""

    user: str
    database: str
    missing: tuple[MissingPrivilege, ...]
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """Whether pg_dump will be able to read everything."""
        return not self.missing

    def summary(self, limit: int = NAMED_IN_MESSAGE) -> str:
        """The missing privileges, the first ``limit`` named."""
        shown = ", ".join(m.describe() for m in self.missing[:limit])
        more = len(self.missing) - limit
        return shown + (f" and {more} more" if more > 0 else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "database": self.database,
            "ok": self.ok,
            "missing": [
                {"privilege": m.privilege, "kind": m.kind, "name": m.name, "owner": m.owner} for m in self.missing
            ],
            "warnings": list(self.warnings),
        }


def _qualified(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def check_backup_privileges(conn: psycopg.Connection[Any], user: str) -> PrivilegeReport:
    """Check, on a connection to the database to back up, what ``user`` lacks for ``pg_dump``."""
    database = str(conn.info.dbname)
    args = {"user": user}
    with conn.cursor() as cur:
        row = cur.execute(_USER, args).fetchone()
        if row is None:
            return PrivilegeReport(user, database, (MissingPrivilege("LOGIN", "role", quote_ident(user)),), ())
        superuser, bypassrls, read_all, can_connect, lo_compat = row
        if superuser:
            return PrivilegeReport(user, database, (), ())
        missing: list[MissingPrivilege] = []
        if not can_connect:
            missing.append(MissingPrivilege("CONNECT", "database", quote_ident(database)))
        if not read_all:
            for schema, owner in cur.execute(_SCHEMAS, args).fetchall():
                missing.append(MissingPrivilege("USAGE", "schema", quote_ident(schema), owner))
        for schema, name, kind, owner, missing_select, rls in cur.execute(_RELATIONS, args).fetchall():
            if missing_select and not read_all:
                missing.append(MissingPrivilege("SELECT", _KINDS[kind], _qualified(schema, name), owner))
            if rls and not bypassrls:
                missing.append(
                    MissingPrivilege("BYPASSRLS", "row-level security on table", _qualified(schema, name), owner)
                )
        if not lo_compat and not read_all:
            for oid, owner in cur.execute(_LARGE_OBJECTS, args).fetchall():
                missing.append(MissingPrivilege("SELECT", "large object", str(oid), owner))
        warnings = (
            tuple(
                f"tables that {quote_ident(owner)} creates later in schema {quote_ident(schema)} will not be readable: "
                "no default privileges grant SELECT on them"
                for schema, owner in cur.execute(_DEFAULTS, args).fetchall()
            )
            if not read_all
            else ()
        )
    return PrivilegeReport(user, database, tuple(missing), warnings)


def check_create_db(conn: psycopg.Connection[Any], user: str) -> bool:
    """Whether ``user`` may create databases (needed to restore as a new database)."""
    with conn.cursor() as cur:
        row = cur.execute("SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = %(u)s", {"u": user}).fetchone()
    return bool(row and row[0])


def to_user_error(report: PrivilegeReport, instance: str | None = None) -> UserError:
    """``UserErrorMissingDBPermissions`` naming the objects and pointing at the grant script."""
    where = f"/api/backupInstances/{instance}/grantScript" if instance else "the instance's grantScript"
    return UserError(
        ErrorCode.MISSING_DB_PERMISSIONS,
        f"{report.user} lacks privileges pg_dump needs in {report.database!r}: {report.summary()}",
        recommended_action=(
            f"Have the objects' owner or an administrator run the grant script (GET {where}), then re-validate."
        ),
    )
