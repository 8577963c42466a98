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
SELECT r.rolsuper,
       EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolname = 'pg_read_all_data'
               AND pg_has_role(r.oid, g.oid, 'MEMBER')) AS read_all
FROM pg_roles r WHERE r.rolname = %(user)s
"""

# The schemas whose objects pg_dump dumps (``n`` is pg_namespace). No ``%`` and no backslash in
# these fragments, so they read the same as psycopg query text and inside the grant script.
DUMPED_SCHEMA = "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp_)'"


def _not_extension_member(catalog: str, oid: str) -> str:
    return (
        f"NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = '{catalog}'::regclass"  # noqa: S608 (constants)
        f" AND d.objid = {oid} AND d.deptype = 'e')"
    )


# Every object pg_dump would need and the user cannot read, in the order a report names them:
# the one definition of "what pg_dump needs", run by validation and by the grant script's last
# check. ``{user}`` is an SQL expression (a query parameter here, a PL/pgSQL variable there).
# has_*_privilege already count pg_read_all_data, which covers schemas, tables and sequences but
# not large objects (pg_dump fails on those: "permission denied for large object").
# Built from the constant fragments above only: S608 does not apply.
GAPS = f"""
SELECT privilege, kind, schema_name, object_name, owner FROM (
  SELECT 1 AS ord, NULL::oid AS lo, 'CONNECT' AS privilege, 'database' AS kind, NULL::text AS schema_name,
         current_database()::text AS object_name, NULL::text AS owner
  WHERE NOT has_database_privilege({{user}}, current_database(), 'CONNECT')
  UNION ALL
  SELECT 2, NULL, 'USAGE', 'schema', NULL, n.nspname::text, pg_get_userbyid(n.nspowner)::text
  FROM pg_namespace n
  WHERE {DUMPED_SCHEMA} AND {_not_extension_member("pg_namespace", "n.oid")}
    AND NOT has_schema_privilege({{user}}, n.oid, 'USAGE')
  UNION ALL
  SELECT 3, NULL, p.privilege, p.kind, n.nspname::text, c.relname::text, pg_get_userbyid(c.relowner)::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  CROSS JOIN LATERAL (VALUES
    ('SELECT', CASE c.relkind WHEN 'S' THEN 'sequence' ELSE 'table' END,
     NOT has_table_privilege({{user}}, c.oid, 'SELECT')),
    ('BYPASSRLS', 'row-level security on table',
     c.relrowsecurity AND pg_get_userbyid(c.relowner) <> {{user}}
     AND NOT (SELECT rolbypassrls FROM pg_roles WHERE rolname = {{user}}))
  ) AS p (privilege, kind, missing)
  WHERE c.relkind IN ('r', 'p', 'S') AND {DUMPED_SCHEMA} AND {_not_extension_member("pg_class", "c.oid")}
    AND p.missing
  UNION ALL
  SELECT 4, m.oid, 'SELECT', 'large object', NULL, m.oid::text, pg_get_userbyid(m.lomowner)::text
  FROM pg_largeobject_metadata m
  WHERE NOT current_setting('lo_compat_privileges')::bool
    AND pg_get_userbyid(m.lomowner) <> {{user}}
    AND NOT EXISTS (
      SELECT 1 FROM aclexplode(coalesce(m.lomacl, acldefault('L', m.lomowner))) a
      WHERE a.privilege_type = 'SELECT'
        AND CASE WHEN a.grantee = 0 THEN true ELSE pg_has_role({{user}}, a.grantee, 'MEMBER') END)
) AS gaps
WHERE NOT (SELECT rolsuper FROM pg_roles WHERE rolname = {{user}})
ORDER BY ord, lo, schema_name COLLATE "C", object_name COLLATE "C", privilege DESC
"""  # noqa: S608

_DEFAULTS = f"""
SELECT DISTINCT n.nspname, pg_get_userbyid(c.relowner)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'S') AND {DUMPED_SCHEMA}
  AND pg_get_userbyid(c.relowner) <> %(user)s
  AND NOT EXISTS (
    SELECT 1 FROM pg_default_acl d, aclexplode(d.defaclacl) a
    WHERE d.defaclrole = c.relowner AND d.defaclobjtype = 'r'
      AND (d.defaclnamespace = 0 OR d.defaclnamespace = n.oid)
      AND a.privilege_type = 'SELECT'
      AND CASE WHEN a.grantee = 0 THEN true ELSE pg_has_role(%(user)s, a.grantee, 'MEMBER') END)
ORDER BY 1, 2
"""  # noqa: S608 (constant fragments only)


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


def _display(kind: str, schema: str | None, name: str) -> str:
    if schema is not None:
        return _qualified(schema, name)
    return name if kind == "large object" else quote_ident(name)


def check_backup_privileges(conn: psycopg.Connection[Any], user: str) -> PrivilegeReport:
    """Check, on a connection to the database to back up, what ``user`` lacks for ``pg_dump``."""
    database = str(conn.info.dbname)
    args = {"user": user}
    with conn.cursor() as cur:
        row = cur.execute(_USER, args).fetchone()
        if row is None:
            return PrivilegeReport(user, database, (MissingPrivilege("LOGIN", "role", quote_ident(user)),), ())
        superuser, read_all = row
        if superuser:
            return PrivilegeReport(user, database, (), ())
        missing = tuple(
            MissingPrivilege(privilege, kind, _display(kind, schema, name), owner)
            for privilege, kind, schema, name, owner in cur.execute(GAPS.format(user="%(user)s"), args).fetchall()
        )
        warnings = (
            ()
            if read_all
            else tuple(
                f"tables that {quote_ident(owner)} creates later in schema {quote_ident(schema)} will not be readable: "
                "no default privileges grant SELECT on them"
                for schema, owner in cur.execute(_DEFAULTS, args).fetchall()
            )
        )
    return PrivilegeReport(user, database, missing, warnings)


def check_create_db(conn: psycopg.Connection[Any], user: str) -> bool:
    """Whether ``user`` may create databases (needed to restore as a new database)."""
    with conn.cursor() as cur:
        row = cur.execute("SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = %(u)s", {"u": user}).fetchone()
    return bool(row and row[0])


def to_user_error(report: PrivilegeReport, instance: str | None = None, *, script: str | None = None) -> UserError:
    """``UserErrorMissingDBPermissions`` naming the objects and pointing at the grant script (``script``: its path)."""
    where = script or (f"/api/backupInstances/{instance}/grantScript" if instance else "the instance's grantScript")
    return UserError(
        ErrorCode.MISSING_DB_PERMISSIONS,
        f"{report.user} lacks privileges pg_dump needs in {report.database!r}: {report.summary()}",
        recommended_action=(
            f"Have the objects' owner or an administrator run the grant script (GET {where}), then re-validate."
        ),
    )
