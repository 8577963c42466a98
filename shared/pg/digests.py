"""Per-table digests: a row count and an order-free hash of every user table, in one snapshot.

A backup stores them beside its dump (the manifest, taken in the very snapshot pg_dump reads);
``:verifyRestore`` computes them again on the restored copy and compares. They must cost the
production server little, since every backup pays them: the hash is the sum of each row's
``hash_record_extended`` (PostgreSQL 14+), which hashes every column with its type's own extended
hash function, about six times cheaper than ``md5`` of each row's text (0.9 s against 5.4 s on
the 1 GB reference database of bench/backup.py). Those functions keep their results across major
versions and machines of one byte order, because hash-partitioned tables depend on that
(pg_upgrade keeps their rows in place). A table with a column type that has no hash function
(``json``, ``point``, ``xml``, ...), or a server older than 14, is hashed from the text of its
rows instead, with output settings fixed so both sides print values alike. So is a table holding,
anywhere in a column's type (domain, array, composite, range), an enum or a ``reg*`` type: their
hash functions hash OIDs, which a restored copy gives anew. Each digest records its method, and
verification uses the manifest's method for each table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import psycopg
from psycopg import sql

METHOD_HASH = "hash_record_extended"
METHOD_TEXT = "md5"

# Settings that fix how values print, so the same rows give the same text on both sides.
STABLE_OUTPUT = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 1",
    "SET bytea_output = 'hex'",
)
_TABLES = """
SELECT n.nspname, c.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.deptype = 'e')
ORDER BY 1, 2
"""
# Tables with a column whose type, followed through domains, arrays, composites, ranges and
# multiranges, is an enum or a reg* type: their hashes are of OIDs, which differ in a restored copy.
# Run on PostgreSQL 14+ only (pg_range.rngmultitypid), where hash_record_extended exists.
_HASHED_BY_OID = """
WITH RECURSIVE used (rel, typ) AS (
  SELECT a.attrelid, a.atttypid FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  WHERE c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
  UNION
  SELECT u.rel, x.child FROM used u JOIN pg_type t ON t.oid = u.typ
  CROSS JOIN LATERAL (
    SELECT t.typbasetype WHERE t.typtype = 'd'
    UNION ALL SELECT t.typelem WHERE t.typcategory = 'A' AND t.typelem <> 0
    UNION ALL SELECT a.atttypid FROM pg_attribute a
              WHERE t.typtype = 'c' AND a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
    UNION ALL SELECT r.rngsubtype FROM pg_range r WHERE t.typtype = 'r' AND r.rngtypid = t.oid
    UNION ALL SELECT r.rngsubtype FROM pg_range r WHERE t.typtype = 'm' AND r.rngmultitypid = t.oid
  ) AS x (child)
)
SELECT DISTINCT n.nspname, c.relname
FROM used u JOIN pg_type t ON t.oid = u.typ
JOIN pg_class c ON c.oid = u.rel JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE t.typtype = 'e' OR (t.typnamespace = 'pg_catalog'::regnamespace AND t.typname IN (
  'regclass', 'regcollation', 'regconfig', 'regdictionary', 'regnamespace', 'regoper', 'regoperator',
  'regproc', 'regprocedure', 'regrole', 'regtype'))
"""
# Order-free: sums, so neither side sorts a table. The sum of signed 64-bit hashes is a numeric.
_DIGESTS = {
    METHOD_HASH: "SELECT count(*), coalesce(sum(hash_record_extended(t, 0)), 0)::text FROM {} t",
    METHOD_TEXT: "SELECT count(*), coalesce(sum(('x' || left(md5(t::text), 15))::bit(60)::bigint), 0)::text FROM {} t",
}
HASH_SINCE = 140000  # server_version_num of PostgreSQL 14, which added hash_record_extended


def table_digests(conn: psycopg.Connection[Any], methods: Mapping[str, str] | None = None) -> dict[str, dict[str, Any]]:
    """``{"schema.table": {"rows": n, "hash": "...", "method": ...}}`` for every user table ``conn`` sees.

    ``methods`` (a manifest's, per table) says how to hash; otherwise the cheapest method that
    works. Run inside the transaction whose snapshot matters (the dump's, or the restored
    database's); ``conn`` must not be in autocommit mode (a failed attempt rolls back to a savepoint).
    """
    for statement in STABLE_OUTPUT:
        conn.execute(statement)
    hashable = conn.info.server_version >= HASH_SINCE
    by_oid = {f"{s}.{t}" for s, t in conn.execute(_HASHED_BY_OID).fetchall()} if hashable else set()
    out: dict[str, dict[str, Any]] = {}
    for schema, table in conn.execute(_TABLES).fetchall():
        name = f"{schema}.{table}"
        ident = sql.Identifier(schema, table)
        asked = (methods or {}).get(name)
        preferred = METHOD_HASH if hashable and name not in by_oid else METHOD_TEXT
        for method in (asked,) if asked else dict.fromkeys((preferred, METHOD_TEXT)):
            try:
                with conn.transaction():
                    row = conn.execute(sql.SQL(_DIGESTS[method]).format(ident)).fetchone()
            except (psycopg.errors.UndefinedFunction, KeyError):
                continue  # a column type without a hash function, a server without the function
            assert row is not None
            out[name] = {"rows": int(row[0]), "hash": str(row[1]), "method": method}
            break
        else:
            out[name] = {"rows": None, "hash": None, "method": asked}
    return out


def compare_digests(
    expected: Mapping[str, Mapping[str, Any]], actual: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The tables whose rows differ between a manifest and a restore (empty when all match)."""
    problems: list[dict[str, Any]] = []
    for name in sorted(set(expected) | set(actual)):
        want, got = expected.get(name), actual.get(name)
        if want is None:
            problems.append({"table": name, "problem": "restored but not in the manifest"})
        elif got is None:
            problems.append({"table": name, "problem": "missing from the restore"})
        elif got["hash"] is None:
            problem = f"this server cannot hash it as the backup did ({got['method']})"
            problems.append({"table": name, "problem": problem})
        elif want["rows"] != got["rows"] or want["hash"] != got["hash"]:
            problems.append(
                {"table": name, "problem": "rows differ", "expectedRows": want["rows"], "restoredRows": got["rows"]}
            )
    return problems


def methods_of(manifest_tables: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """How each table of a manifest was hashed (manifests written before methods existed used md5)."""
    return {name: str(digest.get("method") or METHOD_TEXT) for name, digest in manifest_tables.items()}
