"""A partial restore's schemas and tables, checked against what the backup holds.

``pg_restore --schema``/``--table`` restore nothing, and say nothing, for a name that is not in
the archive: a typo would give a "Completed" restore of an empty database. So a request is
checked up front against the point's manifest (every ordinary table of the dump, ``schema.table``)
where there is one: a name not in it is refused with 400, and a table given without its schema
is resolved to the one schema that has it (or refused: in none, in several). After the restore,
:func:`missing_after_restore` looks in the restored database for what was asked, which also
covers points without a manifest.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from dataclasses import replace
from typing import Any

import psycopg

from shared.errors import ErrorCode, UserError
from shared.pg.restore import RestoreOptions

NAMED_IN_MESSAGE = 8


def _bad(message: str, target: str) -> UserError:
    return UserError(
        ErrorCode.INVALID_REQUEST,
        f"{target}: {message}",
        target=target,
        recommended_action="Name schemas and tables as the backup has them (schema.table); the recovery point's "
        "tables are listed in the message.",
    )


def _listed(names: Collection[str]) -> str:
    shown = sorted(names)[:NAMED_IN_MESSAGE]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "") if shown else "none"


def _hint(name: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _schema_of(key: str, schemas: Collection[str]) -> str | None:
    # A manifest key is "<schema>.<table>"; the schema is the longest known prefix (names may hold dots).
    fits = [s for s in schemas if key.startswith(s + ".")]
    return max(fits, key=len) if fits else None


def resolve_selection(options: RestoreOptions, backup_tables: Collection[str], point_id: str) -> RestoreOptions:
    """``options`` with every table qualified by its schema, checked against ``backup_tables`` (a manifest's keys).

    ``InvalidRequest`` naming ``restoreOptions.schemas[i]`` or ``restoreOptions.tables[i]`` for a
    schema without a table in the backup, a table not in it, or a table name found in several schemas.
    """
    schemas_in_backup = {key.rpartition(".")[0] for key in backup_tables}
    for i, schema in enumerate(options.schemas):
        if not any(key.startswith(schema + ".") for key in backup_tables):
            raise _bad(
                f"schema {schema!r} has no table in recovery point {point_id}{_hint(schema, schemas_in_backup)} "
                f"(its schemas: {_listed(schemas_in_backup)})",
                f"restoreOptions.schemas[{i}]",
            )
    resolved: list[str] = []
    for i, table in enumerate(options.tables):
        target = f"restoreOptions.tables[{i}]"
        if table in backup_tables:
            resolved.append(table)
            continue
        candidates = [key for key in backup_tables if key.endswith("." + table)]
        if options.schemas:
            candidates = [key for key in candidates if _schema_of(key, options.schemas) is not None]
        if len(candidates) == 1 and "." not in table:
            resolved.append(candidates[0])
            continue
        if len(candidates) > 1 and "." not in table:
            raise _bad(
                f"table {table!r} is in several schemas of recovery point {point_id} ({_listed(candidates)}); "
                "name it with its schema (schema.table)",
                target,
            )
        raise _bad(
            f"table {table!r} is not in recovery point {point_id}{_hint(table, backup_tables)} "
            f"(its tables: {_listed(backup_tables)})",
            target,
        )
    if not options.schemas:
        schemas = {_schema_of(key, schemas_in_backup) for key in resolved}
        if len(schemas) > 1:
            raise _bad(
                f"the tables are in several schemas ({_listed({s for s in schemas if s})}); pg_restore selects "
                "tables by name within the selected schemas, so send one request per schema",
                "restoreOptions.tables",
            )
    return replace(options, tables=tuple(resolved))


_RELATION = """
SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relname = %(name)s AND (n.nspname = %(schema)s OR (%(schema)s IS NULL AND n.nspname = ANY(%(schemas)s)))
"""
_SCHEMA_HAS_OBJECTS = """
SELECT 1 FROM pg_namespace n WHERE n.nspname = %(schema)s AND (
  EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid)
  OR EXISTS (SELECT 1 FROM pg_proc p WHERE p.pronamespace = n.oid)
  OR EXISTS (SELECT 1 FROM pg_type t WHERE t.typnamespace = n.oid))
"""


def missing_after_restore(conn: psycopg.Connection[Any], options: RestoreOptions) -> list[str]:
    """What a partial restore asked for and the restored database (``conn``) does not hold.

    Tables are looked up by name (in their schema, or in the selected schemas, or anywhere); a
    schema asked for without tables must hold some object (pgvault creates the schemas it
    restores into, so an empty one means the backup had nothing there).
    """
    missing: list[str] = []
    anywhere = [
        row[0]
        for row in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
    ]
    for table in options.tables:
        schema, _, name = table.rpartition(".")
        params = {"name": name, "schema": schema or None, "schemas": list(options.schemas) or anywhere}
        if conn.execute(_RELATION, params).fetchone() is None:
            missing.append(f"table {table}")
    if not options.tables:
        for schema in options.schemas:
            if conn.execute(_SCHEMA_HAS_OBJECTS, {"schema": schema}).fetchone() is None:
                missing.append(f"schema {schema}")
    return missing
