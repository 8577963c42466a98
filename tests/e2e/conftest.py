"""A devhost running pgvault's own app on the session's Azurite, one per test module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from devhost_process import DevhostProcess

from devhost.services import Azurite

DEVHOST_KEY = "e2e-function-key"


@pytest.fixture(scope="module")
def app_env(azurite: Azurite) -> dict[str, str]:
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
def app_host(app_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevhostProcess]:
    log: Path = tmp_path_factory.mktemp("devhost") / "devhost.log"
    host = DevhostProcess(app_env, log)
    host.headers = {"x-functions-key": DEVHOST_KEY}
    yield host
    assert host.stop() == 0, host.log()
