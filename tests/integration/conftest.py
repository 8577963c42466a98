"""Fixtures of the integration tier, built from tests/integration/world.py (see there)."""

from __future__ import annotations

import uuid

import pytest

from devhost.services import Azurite
from shared.storage.clients import StorageAccount
from shared.storage.tables import StateTable
from tests.integration.world import Storage, account_of, open_storage


@pytest.fixture
def account(azurite: Azurite) -> StorageAccount:
    """The session Azurite as the app's storage account."""
    return account_of(azurite)


@pytest.fixture
def storage(azurite: Azurite) -> Storage:
    """A state table, a backup container and the work queues of this test's own."""
    return open_storage(azurite, "it")


@pytest.fixture
def state_table(account: StorageAccount) -> StateTable:
    """A state table of this test's own (no container, no queues)."""
    table = StateTable(account.table_service(), f"st{uuid.uuid4().hex[:10]}")
    table.ensure()
    return table
