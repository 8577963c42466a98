"""A Locked vault stays Locked: the lock recorded at the first start, every later start checked, on Azurite."""

from __future__ import annotations

import pytest

from devhost.services import Azurite
from shared.errors import SettingsError
from shared.immutability import Immutability
from shared.settings import load_settings
from shared.vault import Vault

pytestmark = pytest.mark.integration


def test_a_vault_started_locked_refuses_every_later_start_that_is_not_locked(azurite: Azurite, unique: str) -> None:
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "PGVAULT_SCHEDULER_SCHEDULE": "0 */5 * * * *",
        "PGVAULT_RETENTION_SCHEDULE": "0 17 * * * *",
        "PGVAULT_STATE_TABLE": f"lock{unique}",
        "PGVAULT_BACKUP_CONTAINER": f"lock-{unique}",
    }
    # Unlocked may still be turned off: nothing is recorded.
    Vault.connect(load_settings({**env, "PGVAULT_IMMUTABILITY": "Unlocked"}))
    assert Vault.connect(load_settings(env)).settings.immutability is Immutability.DISABLED
    locked = Vault.connect(load_settings({**env, "PGVAULT_IMMUTABILITY": "Locked"}))
    assert locked.settings.immutability is Immutability.LOCKED
    for weaker in ("Disabled", "Unlocked", ""):
        with pytest.raises(SettingsError) as refused:
            Vault.connect(load_settings({**env, "PGVAULT_IMMUTABILITY": weaker}))
        assert set(refused.value.problems) == {"PGVAULT_IMMUTABILITY"}
    assert Vault.connect(load_settings({**env, "PGVAULT_IMMUTABILITY": "Locked"})).settings.immutability.enabled
