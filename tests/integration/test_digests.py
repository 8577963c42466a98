"""Per-table digests on a real server: cheap hashes where the types allow, text hashes where not,
equal on a dump-and-restore copy, different when one value changes."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from devhost.services import Postgres
from shared.pg.digests import METHOD_HASH, METHOD_TEXT, compare_digests, methods_of, table_digests
from shared.pg.tools import pick_tool

pytestmark = pytest.mark.integration

TABLES = [
    # every column type has an extended hash function: hashed with hash_record_extended
    'CREATE TABLE "Sales; x".orders (id int PRIMARY KEY, amount numeric(12,2), at timestamptz, '
    "note text, tags text[], raw bytea, ratio float8, doc jsonb)",
    # json and point have no hash function: hashed from the rows' text
    'CREATE TABLE "Sales; x".events (id int, payload json, place point)',
    "CREATE TABLE public.empty (id int)",
]
ROWS = [
    """INSERT INTO "Sales; x".orders SELECT g, g * 1.25, '2026-03-01 12:00+01'::timestamptz + g * interval '1 h',
       'é' || g, ARRAY['a', g::text], decode(md5(g::text), 'hex'), g / 3.0, jsonb_build_object('g', g)
       FROM generate_series(1, 500) g""",
    """INSERT INTO "Sales; x".events SELECT g, json_build_object('k', g), point(g, -g)
       FROM generate_series(1, 200) g""",
]


def _connect(pg: Postgres, db: str) -> psycopg.Connection[Any]:
    return psycopg.connect(host="127.0.0.1", port=pg.port, dbname=db, user="postgres")


@pytest.fixture
def source(postgres: Postgres) -> Iterator[str]:
    name = f"dig_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with _connect(postgres, name) as c:
        c.execute('CREATE SCHEMA "Sales; x"')
        for statement in TABLES + ROWS:
            c.execute(statement)
    yield name
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _copy(pg: Postgres, source: str) -> str:
    target = source + "_copy"
    with psycopg.connect(pg.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
    env = {"PGHOST": "127.0.0.1", "PGPORT": str(pg.port), "PGUSER": "postgres", "PATH": "/usr/bin:/bin"}
    dump = subprocess.run(
        [str(pick_tool("pg_dump", 15).path), "-Fc", "-d", source], env=env, check=True, capture_output=True
    ).stdout
    subprocess.run(
        [str(pick_tool("pg_restore", 15).path), "-d", target], input=dump, env=env, check=True, capture_output=True
    )
    return target


def test_each_table_is_hashed_the_cheapest_way_its_types_allow(postgres: Postgres, source: str) -> None:
    with _connect(postgres, source) as c:
        digests = table_digests(c)
    assert {name: (d["rows"], d["method"]) for name, d in digests.items()} == {
        "Sales; x.orders": (500, METHOD_HASH),
        "Sales; x.events": (200, METHOD_TEXT),
        "public.empty": (0, METHOD_HASH),
    }


def test_a_restored_copy_has_the_same_digests_and_one_changed_value_shows(postgres: Postgres, source: str) -> None:
    with _connect(postgres, source) as c:
        expected = table_digests(c)
    target = _copy(postgres, source)
    try:
        with _connect(postgres, target) as c:
            assert compare_digests(expected, table_digests(c, methods_of(expected))) == []
            c.execute("""UPDATE "Sales; x".orders SET amount = amount + 0.01 WHERE id = 250""")
            c.execute("""UPDATE "Sales; x".events SET place = point(0, 0) WHERE id = 7""")
            changed = table_digests(c, methods_of(expected))
        problems = {
            p["table"]: (p["problem"], p["expectedRows"], p["restoredRows"]) for p in compare_digests(expected, changed)
        }
        assert problems == {"Sales; x.orders": ("rows differ", 500, 500), "Sales; x.events": ("rows differ", 200, 200)}
    finally:
        with psycopg.connect(postgres.dsn(), autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target)))


def test_a_manifest_method_is_honoured_and_old_manifests_mean_text_hashes(postgres: Postgres, source: str) -> None:
    with _connect(postgres, source) as c:
        as_text = table_digests(c, {"Sales; x.orders": METHOD_TEXT})
        default = table_digests(c)
    assert as_text["Sales; x.orders"]["method"] == METHOD_TEXT
    assert as_text["Sales; x.orders"]["hash"] != default["Sales; x.orders"]["hash"]
    assert as_text["Sales; x.orders"]["rows"] == 500
    assert methods_of({"a.t": {"rows": 1, "hash": "5"}}) == {"a.t": METHOD_TEXT}  # written before methods existed


def test_types_hashed_by_oid_are_hashed_from_text_so_a_restored_copy_matches(postgres: Postgres) -> None:
    """An enum's hash function hashes the label's OID, and reg* values are OIDs: a restored copy
    gives them new OIDs, so hashing them would report a faithful restore as differing."""
    name = f"dig_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        with _connect(postgres, name) as c:
            c.execute("CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy')")
            c.execute("CREATE DOMAIN good_mood AS mood CHECK (VALUE <> 'sad')")
            c.execute("CREATE TYPE pair AS (m mood, n int)")
            c.execute("CREATE TABLE direct (id int, m mood)")
            c.execute("CREATE TABLE nested (id int, ms mood[], g good_mood, p pair)")
            c.execute("CREATE TABLE refs (id int, r regclass)")
            c.execute("CREATE TABLE plain (id int, note text)")
            c.execute(
                "INSERT INTO direct SELECT g, (ARRAY['sad','ok','happy'])[g % 3 + 1]::mood "
                "FROM generate_series(1, 30) g"
            )
            c.execute(
                "INSERT INTO nested SELECT g, ARRAY['ok'::mood], 'happy', ROW('ok', g)::pair "
                "FROM generate_series(1, 30) g"
            )
            c.execute("INSERT INTO refs VALUES (1, 'plain'), (2, 'direct')")
            c.execute("INSERT INTO plain SELECT g, 'n' || g FROM generate_series(1, 30) g")
            expected = table_digests(c)
        assert {t: d["method"] for t, d in expected.items()} == {
            "public.direct": METHOD_TEXT,
            "public.nested": METHOD_TEXT,
            "public.plain": METHOD_HASH,
            "public.refs": METHOD_TEXT,
        }
        target = _copy(postgres, name)
        with _connect(postgres, target) as c:
            assert compare_digests(expected, table_digests(c, methods_of(expected))) == []
            copy_by_hash = table_digests(c, {"public.direct": METHOD_HASH})["public.direct"]["hash"]
        with _connect(postgres, name) as c:  # why: the same rows hash differently once their OIDs change
            assert table_digests(c, {"public.direct": METHOD_HASH})["public.direct"]["hash"] != copy_by_hash
    finally:
        with psycopg.connect(postgres.dsn(), autocommit=True) as c:
            for db in (name, name + "_copy"):
                c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))
