"""The grant script an administrator runs so a backup user can dump a database (docs/rules.md).

The script reads the catalog when it runs, so it stays right for schemas and owners created
after it was generated, and it can run any number of times. Each grant that the person running
it may not give is reported as a WARNING naming the role that can, instead of stopping half-way.
Names are always quoted: fixed ones here (``quote_ident``/``quote_literal``), catalog ones by
``format('%I')`` inside the script.
"""

from __future__ import annotations

import secrets
from enum import StrEnum

from shared.errors import ErrorCode, UserError
from shared.pg.privileges import DUMPED_SCHEMA, GAPS, quote_ident, quote_literal


class ScriptFormat(StrEnum):
    """The forms a grant script comes in."""

    SQL = "sql"
    SH = "sh"
    PS1 = "ps1"


_BODY = """\
DO {tag}
DECLARE
  backup_user text := {user_literal};
  s record;
  o record;
  lo record;
  stmt text;
BEGIN
  FOR s IN
    SELECT n.oid, n.nspname FROM pg_namespace n
    WHERE {dumped_schema}
  LOOP
    FOREACH stmt IN ARRAY ARRAY[
      format('GRANT USAGE ON SCHEMA %I TO %I', s.nspname, backup_user),
      format('GRANT SELECT ON ALL TABLES IN SCHEMA %I TO %I', s.nspname, backup_user),
      format('GRANT SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I', s.nspname, backup_user)]
    LOOP
      BEGIN
        EXECUTE stmt;
      EXCEPTION WHEN insufficient_privilege THEN
        RAISE WARNING 'pgvault: not allowed to run: % (run it as the owner of the objects)', stmt;
      END;
    END LOOP;
    -- Keep tables and sequences that each owner creates later readable.
    FOR o IN
      SELECT DISTINCT pg_get_userbyid(c.relowner) AS owner FROM pg_class c
      WHERE c.relnamespace = s.oid AND c.relkind IN ('r', 'p', 'S', 'v', 'm', 'f')
      UNION SELECT pg_get_userbyid(n.nspowner) FROM pg_namespace n WHERE n.oid = s.oid
    LOOP
      CONTINUE WHEN o.owner = backup_user;
      FOREACH stmt IN ARRAY ARRAY[
        format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT SELECT ON TABLES TO %I',
               o.owner, s.nspname, backup_user),
        format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA %I GRANT SELECT ON SEQUENCES TO %I',
               o.owner, s.nspname, backup_user)]
      LOOP
        BEGIN
          EXECUTE stmt;
        EXCEPTION WHEN insufficient_privilege THEN
          RAISE WARNING 'pgvault: not allowed to run: % (run it as %)', stmt, o.owner;
        END;
      END LOOP;
    END LOOP;
  END LOOP;
  FOR lo IN SELECT m.oid FROM pg_largeobject_metadata m LOOP
    stmt := format('GRANT SELECT ON LARGE OBJECT %s TO %I', lo.oid, backup_user);
    BEGIN
      EXECUTE stmt;
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE WARNING 'pgvault: not allowed to run: % (run it as the large object''s owner)', stmt;
    END;
  END LOOP;
END
{tag};
"""


# After the grants: what pg_dump still cannot read, by the query validation runs (GAPS), except
# row-level security, which no grant fixes. Anything left fails the script, so a run by someone who
# may grant nothing (every GRANT a warning "no privileges were granted") exits non-zero.
_CHECK = """\
DO {tag}
DECLARE
  backup_user text := {user_literal};
  missing text[];
BEGIN
  SELECT array_agg(format('%s on %s %s', g.privilege, g.kind,
                          CASE WHEN g.schema_name IS NOT NULL
                               THEN quote_ident(g.schema_name) || '.' || quote_ident(g.object_name)
                               WHEN g.kind = 'large object' THEN g.object_name
                               ELSE quote_ident(g.object_name) END))
  INTO missing FROM ({gaps}) AS g
  WHERE g.privilege <> 'BYPASSRLS';
  IF missing IS NOT NULL THEN
    RAISE EXCEPTION 'pgvault: % still lacks % privilege(s) that pg_dump needs, first: %',
      backup_user, cardinality(missing), array_to_string(missing[1:5], '; ')
      USING HINT = 'Run this script as the owner of those objects or an administrator '
                   '(on Azure Database for PostgreSQL: a member of azure_pg_admin); see the WARNINGs above.';
  END IF;
  RAISE NOTICE 'pgvault: % can read everything pg_dump needs in this database', backup_user;
END
{tag};
"""


def _dollar_tag(text: str) -> str:
    """A dollar-quote tag that does not occur in ``text`` (a user name could hold ``$pgvault$``)."""
    tag = "$pgvault$"
    while tag in text:
        tag = f"$pgvault_{secrets.token_hex(4)}$"
    return tag


def grant_sql(database: str, user: str) -> str:
    """The SQL script that grants ``user`` what ``pg_dump`` needs in ``database``.

    Run by psql, it exits non-zero (3) when, after its grants, the user still lacks any privilege
    pg_dump needs (for example when run by a role that owns nothing and may grant nothing).
    """
    tag = _dollar_tag(user)
    return (
        f"-- pgvault: grant the backup privileges on database {quote_ident(database)} to {quote_ident(user)}.\n"
        "-- Run it connected to that database, as the owner of its objects or an administrator\n"
        "-- (on Azure Database for PostgreSQL: a member of azure_pg_admin). It can run again safely.\n"
        "-- It fails (psql exits 3) when the user still lacks something pg_dump needs. Run it with psql;\n"
        "-- in another SQL tool, leave out the \\set line.\n"
        "\\set ON_ERROR_STOP on\n"
        "SET standard_conforming_strings = on;\n"
        f"GRANT CONNECT ON DATABASE {quote_ident(database)} TO {quote_ident(user)};\n"
        + _BODY.format(user_literal=quote_literal(user), tag=tag, dumped_schema=DUMPED_SCHEMA)
        + _CHECK.format(user_literal=quote_literal(user), tag=tag, gaps=GAPS.format(user="backup_user"))
        + "-- Tables with row-level security need a backup user that bypasses it. Only a superuser can\n"
        "-- grant that (Azure Database for PostgreSQL does not allow it; disable RLS or exclude those tables):\n"
        f"-- ALTER ROLE {quote_ident(user)} BYPASSRLS;\n"
    )


def _sh_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _ps_quote(value: str) -> str:
    return "'" + value.replace("'", "''").replace("\u2018", "\u2018\u2018").replace("\u2019", "\u2019\u2019") + "'"


def grant_script(database: str, user: str, host: str, port: int, fmt: ScriptFormat) -> str:
    """The grant script in ``fmt``: plain SQL, or SQL wrapped in ``psql`` for bash or PowerShell.

    The wrappers pass the server and database in ``PGHOST``/``PGPORT``/``PGDATABASE``, which
    psql never reads as a connection string, and ask for the administrator's login.
    """
    for label, value in (("database", database), ("user", user), ("server", host)):
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise UserError(
                ErrorCode.INVALID_REQUEST,
                f"the {label} name holds control characters; no script can be made for it",
                target=label,
            )
    sql = grant_sql(database, user)
    if fmt is ScriptFormat.SQL:
        return sql
    if fmt is ScriptFormat.SH:
        marker = f"PGVAULT_SQL_{secrets.token_hex(4).upper()}"
        return (
            "#!/bin/sh\n"
            f"# pgvault: grant backup privileges on {quote_ident(database)} to {quote_ident(user)}.\n"
            "# Run as the owner of the database's objects or an administrator:\n"
            "#   PGUSER=<admin> PGPASSWORD=... sh grant.sh\n"
            "set -eu\n"
            f"export PGHOST={_sh_quote(host)} PGPORT={_sh_quote(str(port))} PGDATABASE={_sh_quote(database)}\n"
            ': "${PGUSER:?set PGUSER to an administrator or the owner of the objects}"\n'
            f"psql -v ON_ERROR_STOP=1 <<'{marker}'\n{sql}{marker}\n"
        )
    return (
        f"# pgvault: grant backup privileges on {quote_ident(database)} to {quote_ident(user)}.\n"
        "# Run as the owner of the database's objects or an administrator:\n"
        "#   $env:PGUSER = '<admin>'; $env:PGPASSWORD = '...'; ./grant.ps1\n"
        "$ErrorActionPreference = 'Stop'\n"
        "if (-not $env:PGUSER) { throw 'Set $env:PGUSER to an administrator or the owner of the objects' }\n"
        f"$env:PGHOST = {_ps_quote(host)}\n$env:PGPORT = {_ps_quote(str(port))}\n"
        f"$env:PGDATABASE = {_ps_quote(database)}\n"
        "$OutputEncoding = [System.Text.UTF8Encoding]::new($false)\n"
        "$env:PGCLIENTENCODING = 'UTF8'\n"
        f"$sql = @'\n{sql}'@\n"
        "$sql | psql -v ON_ERROR_STOP=1\n"
        'if ($LASTEXITCODE -ne 0) { throw "psql failed with exit code $LASTEXITCODE" }\n'
    )
