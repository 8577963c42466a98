"""Session servers for the integration and e2e tiers: Azurite and a throwaway PostgreSQL.

They start only when a test asks for them, on free ports with their own folders, and stop at the
end of the session, also when tests fail or the run is interrupted (SIGINT, SIGTERM). Servers
left by a killed earlier run are reaped at start.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from devhost.services import Azurite, Postgres, new_run_dir, reap_stale  # noqa: E402
from tests.fake_postgres import FakePostgres  # noqa: E402

SHARED = REPO.parent / "shared"


def _terminate(signum: int, frame: object) -> None:
    # Turn SIGTERM into the same unwinding as Ctrl-C so session fixtures stop their servers.
    raise KeyboardInterrupt(f"signal {signum}")


signal.signal(signal.SIGTERM, _terminate)

# The slowest tier first: `make test` spreads the test files over two workers (pytest-xdist,
# --dist loadfile --no-loadscope-reorder), which hand out files in this order, so the long e2e files start early and the
# many short unit files fill the end instead of one worker finishing a long file alone.
_TIER_ORDER = {"e2e": 0, "integration": 1}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the tests e2e, integration, unit; a file's tests keep their order (a stable sort)."""
    items.sort(key=lambda item: _TIER_ORDER.get(item.path.parent.name, 2))


@pytest.fixture(scope="session")
def run_dir() -> Iterator[Path]:
    """This session's folder for server data, removed at the end."""
    reap_stale()
    path = new_run_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def azurite(run_dir: Path) -> Iterator[Azurite]:
    """Azurite (blobs, queues, tables) for the whole session."""
    server = Azurite(run_dir / "azurite").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres(run_dir: Path) -> Iterator[Postgres]:
    """A PostgreSQL cluster for the whole session (superuser ``postgres``, trust auth)."""
    server = Postgres(run_dir / "pg").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_postgres(run_dir: Path) -> Iterator[Postgres]:
    """A PostgreSQL cluster that accepts TLS connections only (self-signed ``cert_file``), started on demand."""
    server = Postgres(run_dir / "pg-tls", tls=True).start()
    yield server
    server.stop()


@pytest.fixture
def rogue() -> Iterator[FakePostgres]:
    """A PostgreSQL impostor on 127.0.0.1 that records what each test sends it (``tests/fake_postgres.py``)."""
    fake = FakePostgres().start()
    yield fake
    fake.stop()


@pytest.fixture
def storage_env(azurite: Azurite) -> dict[str, str]:
    """App settings pointing at the session's Azurite, with names unique to this test."""
    suffix = uuid.uuid4().hex[:10]
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "PGVAULT_VAULT_NAME": "pgvault-test",
        "PGVAULT_REGION": "westeurope",
        "PGVAULT_STATE_TABLE": f"state{suffix}",
        "PGVAULT_BACKUP_CONTAINER": f"backups-{suffix}",
        "PATH": os.environ.get("PATH", ""),
    }


@pytest.fixture
def unique() -> str:
    """A short suffix to keep names of tables, queues and containers apart between tests."""
    return uuid.uuid4().hex[:10]
