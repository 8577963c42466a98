"""The e2e tier's fixtures: the app's settings, and factories of databases and devhosts, one set per module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from devhost_process import DevhostProcess
from factories import Databases, Hosts

from devhost.services import Azurite, Postgres

DEVHOST_KEY = "e2e-function-key"


@pytest.fixture(scope="module")
def app_env(azurite: Azurite) -> dict[str, str]:
    """pgvault's settings on the session's Azurite, with a state table and container of the module's own."""
    suffix = uuid.uuid4().hex[:10]
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "PGVAULT_VAULT_NAME": "pgvault-e2e",
        "PGVAULT_REGION": "westeurope",
        "PGVAULT_ALLOW_ENV_SECRETS": "true",
        "PGVAULT_SCHEDULER_SCHEDULE": "0 */5 * * * *",
        "PGVAULT_RETENTION_SCHEDULE": "0 17 * * * *",
        "PGVAULT_STATE_TABLE": f"state{suffix}",
        "PGVAULT_BACKUP_CONTAINER": f"backups-{suffix}",
        "PGVAULT_DEVHOST_KEY": DEVHOST_KEY,
        # Restores as files may write to the emulator's account (never to the vault's own containers).
        "PGVAULT_EXPORT_ACCOUNTS": "devstoreaccount1",
        # The test secrets without a Server are for the test clusters on this machine.
        "PGVAULT_ALLOWED_SERVERS": "127.0.0.1",
    }


@pytest.fixture(scope="module")
def make_database(postgres: Postgres) -> Iterator[Databases]:
    """``make_database(prefix, tables=..., password=...)``: a role and its databases, dropped after the module."""
    databases = Databases(postgres)
    yield databases
    databases.drop_all()


@pytest.fixture(scope="module")
def make_host(
    app_env: dict[str, str], make_database: Databases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hosts]:
    """``make_host({setting: value}, args=[...])``: a devhost on ``app_env`` plus those settings.

    Every host still running at the end of the module is stopped and must exit 0. It asks for
    ``make_database`` so that the hosts stop before the databases they use are dropped.
    """
    hosts = Hosts(app_env, tmp_path_factory)
    yield hosts
    hosts.stop_all()


@pytest.fixture(scope="module")
def app_host(make_host: Hosts) -> DevhostProcess:
    """A devhost on the plain e2e settings."""
    return make_host()
