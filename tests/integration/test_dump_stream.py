"""pg_dump → zstd → staged blocks on Azurite → read back verified → pg_restore, on real servers."""

from __future__ import annotations

import hashlib
import subprocess
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from azure.storage.blob import BlobServiceClient, ContainerClient
from psycopg import sql

from devhost.services import Azurite, Postgres
from shared.errors import TransientError, UserError
from shared.pg.archive import METHOD_COPY, stream_digests
from shared.pg.dump import dump_to_blob, dump_with_manifest, map_dump_error
from shared.pg.restore import RestoreOptions, restore_blob
from shared.pg.tools import pick_tool
from shared.storage.blobs import BlobStore
from shared.storage.blockstream import IntegrityError, blocks_needed, next_block_size, read_verified
from shared.storage.limits import MAX_BLOCKS_PER_BLOB

pytestmark = pytest.mark.integration
SCHEMA = '"Größe; ""x"""'
TABLE = SCHEMA + ".items"


@pytest.fixture
def container(azurite: Azurite) -> ContainerClient:
    c = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(
        f"dump-{uuid.uuid4().hex[:8]}"
    )
    c.create_container()
    return c


@pytest.fixture
def source(postgres: Postgres) -> Iterator[str]:
    name = f"src_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(host="127.0.0.1", port=postgres.port, dbname=name, user="postgres", autocommit=True) as c:
        c.execute("CREATE SCHEMA " + SCHEMA)
        c.execute("CREATE TABLE " + TABLE + " (id int PRIMARY KEY, note text, blob bytea)")
        c.execute(
            "INSERT INTO " + TABLE + " SELECT g, md5(g::text) || repeat('é', g % 50), "
            "decode(md5(g::text), 'hex') FROM generate_series(1, 20000) g"
        )
        c.execute("SELECT lo_from_bytea(0, 'a large object')")
    yield name
    with psycopg.connect(postgres.dsn(), autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _env(pg: Postgres, db: str) -> dict[str, str]:
    return {"PGHOST": "127.0.0.1", "PGPORT": str(pg.port), "PGUSER": "postgres", "PGDATABASE": db}


def _rows(pg: Postgres, db: str) -> tuple[int, str]:
    with psycopg.connect(host="127.0.0.1", port=pg.port, dbname=db, user="postgres") as c:
        row = c.execute(
            "SELECT count(*), md5(string_agg(note || encode(blob, 'hex'), ',' ORDER BY id)) FROM " + TABLE
        ).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


def test_dump_streams_into_a_blob_that_restores_identically(
    postgres: Postgres, source: str, container: ContainerClient
) -> None:
    pg_dump = pick_tool("pg_dump", 15).path
    progress: list[int] = []
    result = dump_to_blob(
        pg_dump,
        _env(postgres, source),
        BlobStore.of(container),
        "inst/rp1.pgdump.zst",
        {"serverversion": "15"},
        on_progress=progress.append,
        progress_every=0,
    )
    props = container.get_blob_client("inst/rp1.pgdump.zst").get_blob_properties()
    stored = container.get_blob_client("inst/rp1.pgdump.zst").download_blob().readall()
    assert hashlib.sha256(stored).hexdigest() == result.stream.sha256 == props.metadata["sha256"]
    assert props.metadata["codec"] == "zstd" and int(props.metadata["rawbytes"]) == result.raw_bytes
    assert result.stream.stored_bytes == len(stored) < result.raw_bytes
    assert progress and progress == sorted(progress)

    target = f"dst_{uuid.uuid4().hex[:6]}"
    subprocess.run(["createdb", "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres", target], check=True)
    report = restore_blob(
        pick_tool("pg_restore", 15).path,
        _env(postgres, target),
        BlobStore.of(container),
        "inst/rp1.pgdump.zst",
        result.stream.sha256,
        options=RestoreOptions(no_owner=True, no_acl=False),
    )
    assert report.ok and report.returncode == 0 and not report.warnings, report.stderr_tail
    assert _rows(postgres, target) == _rows(postgres, source) and _rows(postgres, target)[0] == 20000
    subprocess.run(["dropdb", "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres", target], check=True)


def test_a_tampered_blob_is_detected_when_read(postgres: Postgres, source: str, container: ContainerClient) -> None:
    result = dump_to_blob(pick_tool("pg_dump", 15).path, _env(postgres, source), BlobStore.of(container), "t.zst", {})
    blob = container.get_blob_client("t.zst")
    data = bytearray(blob.download_blob().readall())
    data[len(data) // 2] ^= 0xFF
    blob.upload_blob(bytes(data), overwrite=True)
    with pytest.raises(IntegrityError):
        for _ in read_verified(container, "t.zst", result.stream.sha256, decompress=False):
            pass


def test_a_failed_dump_commits_nothing_and_says_why(postgres: Postgres, container: ContainerClient) -> None:
    with pytest.raises(UserError) as err:
        dump_to_blob(
            pick_tool("pg_dump", 15).path, _env(postgres, "no_such_database"), BlobStore.of(container), "x.zst", {}
        )
    assert err.value.code.value == "UserErrorDBNotFound"
    assert not container.get_blob_client("x.zst").exists()


def test_pg_dump_messages_map_to_codes() -> None:
    denied = "pg_dump: error: query failed: ERROR:  permission denied for table orders\n"
    error = map_dump_error(denied, 1, "shop")
    assert isinstance(error, UserError) and error.code.value == "UserErrorMissingDBPermissions"
    assert "orders" in error.message
    gone = map_dump_error("pg_dump: error: server closed the connection unexpectedly\n", 1, "shop")
    assert isinstance(gone, TransientError) and gone.code.value == "UserErrorServerConnectionClosed"
    auth = map_dump_error('FATAL:  password authentication failed for user "u" password=hunter2', 1, "shop")
    assert isinstance(auth, UserError) and auth.code.value == "UserErrorDBUserAuthFailed"
    assert "hunter2" not in auth.message
    old = map_dump_error("pg_dump: error: aborting because of server version mismatch", 1, "shop")
    assert isinstance(old, UserError) and old.code.value == "UserErrorPgDumpVersionTooOld"


def test_block_sizes_keep_any_blob_under_the_block_limit() -> None:
    tib = 1024**4
    assert next_block_size(0) == 8 * 1024 * 1024
    # Without a size estimate: anything up to Azure Database for PostgreSQL's 64 TiB maximum.
    assert blocks_needed(64 * tib) < MAX_BLOCKS_PER_BLOB
    # With the database's size as the estimate: up to the blob size limit itself.
    assert blocks_needed(190 * tib, expected=190 * tib) < MAX_BLOCKS_PER_BLOB
    assert blocks_needed(500 * tib // 100, expected=5 * tib) < MAX_BLOCKS_PER_BLOB
    assert blocks_needed(1024**3) == 128


def test_the_stream_manifest_is_the_default_and_alike_on_either_thread(
    postgres: Postgres, source: str, container: ContainerClient
) -> None:
    env = _env(postgres, source)
    libpq = {"host": "127.0.0.1", "port": postgres.port, "user": "postgres", "dbname": source}
    store = BlobStore.of(container)
    tool = pick_tool("pg_dump", 15).path
    _, inline = dump_with_manifest(tool, libpq, env, store, "inline.pgdump.zst", metadata={})
    _, threaded = dump_with_manifest(tool, libpq, env, store, "thread.pgdump.zst", metadata={}, digest_on_thread=True)
    assert inline == threaded == stream_digests(tool, env)  # what :verifyRestore computes on a copy
    items = inline['Größe; "x".items'] if inline is not None else {}
    assert items["rows"] == 20000 and items["method"] == METHOD_COPY
