"""The integration tier's world: storage on the session's Azurite, policies, protected instances.

Every integration test module builds its world from these pieces instead of its own copy:

- ``account_of``: the session Azurite as a ``StorageAccount`` (as the app reads ``AzureWebJobsStorage``);
- ``open_storage`` (the ``storage`` fixture of conftest.py for one test): a state table, a backup
  container and the work queues of their own, ready to use;
- ``Storage.put_policy`` / ``Storage.protect``: a policy from tests/policy-examples, an instance
  configured on it and made ready (validation Success, ProtectionConfigured), as a passed
  validation leaves it;
- ``restore_request``: the body of a restore of a point into a new database;
- ``host_sends``: what the Functions host does with the message a request hands to its queue
  output binding (``shared.jobs.messages.Started``) once the handler returned: the tier calls the
  services the handlers call, and sends their messages this way where a test needs them queued.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from devhost.services import Azurite
from shared.instances import Instance, InstanceService, InstanceStore, ProtectionStatus, Readiness
from shared.jobs import Job
from shared.jobs.messages import Started
from shared.policies import PolicyService, StoredPolicy
from shared.storage import layout
from shared.storage.blobs import BlobStore
from shared.storage.clients import StorageAccount
from shared.storage.queues import QueueSender
from shared.storage.tables import StateTable
from tests.examples import EXAMPLES

# The env secret the integration worlds put the restore login in (a name, not a password).
TARGET_SECRET = "env:PGVAULT_SECRET_TARGET_CS"


def restore_request(point_id: str, database: str, secret_uri: str = TARGET_SECRET) -> dict[str, Any]:
    """The body of a restore of point ``point_id`` into a new database ``database`` (FailIfExists), with the
    login of the secret ``secret_uri``."""
    return {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": point_id,
        "sourceDataStoreType": "VaultStore",
        "restoreTargetInfo": {
            "objectType": "RestoreTargetInfo",
            "recoveryOption": "FailIfExists",
            "datasourceInfo": {"objectType": "Datasource", "resourceName": database},
            "datasourceAuthCredentials": {
                "objectType": "SecretStoreBasedAuthCredentials",
                "secretStoreResource": {"uri": secret_uri, "secretStoreType": "AzureKeyVault"},
            },
        },
    }


def host_sends(queues: QueueSender, started: Started) -> Job:
    """Send the message a request returned, as the host's queue output binding does after the handler
    returned (the same text, base64-encoded as host.json's messageEncoding says); the request's job."""
    if started.message is not None:
        queues.send(started.message.queue, started.message.payload())
    return started.job


def account_of(azurite: Azurite) -> StorageAccount:
    """The session Azurite as the app's storage account."""
    return StorageAccount.from_connection_setting(
        "AzureWebJobsStorage", {"AzureWebJobsStorage": azurite.connection_string}
    )


@dataclass
class Storage:
    """A state table, a backup container and the work queues of one test (or module)."""

    account: StorageAccount
    state: StateTable
    backups: BlobStore
    queues: QueueSender

    def fresh(self) -> tuple[StateTable, BlobStore]:
        """Adapters of their own on the same table and container (another worker's, another thread's)."""
        return (
            StateTable(self.account.table_service(), self.state.name),
            BlobStore(self.account.blob_service(), self.backups.container),
        )

    def put_policy(self, name: str, document: str | dict[str, Any], now: datetime) -> StoredPolicy:
        """Store policy ``name``: ``document``, or tests/policy-examples/``document``.json."""
        doc = json.loads((EXAMPLES / f"{document}.json").read_text()) if isinstance(document, str) else document
        stored, _ = PolicyService(self.state).put(name, doc, now)
        return stored

    def protect(self, name: str, spec: dict[str, Any], now: datetime, *, ready: bool = True) -> Instance:
        """Configure instance ``name`` (``spec``: server, database, secretUri, policyName...); with
        ``ready``, as its validation passing leaves it: Success and ProtectionConfigured."""
        InstanceService(self.state, lambda job, instance: None).configure_one(
            name, spec, now, allow_env_secrets=True, vault_region=None
        )
        store = InstanceStore(self.state)
        current = store.get(name)
        if not ready:
            return current
        ready_now = replace(current, readiness=Readiness.SUCCESS, protection_status=ProtectionStatus.PROTECTED)
        return store.save(current, ready_now)


def open_storage(azurite: Azurite, prefix: str, *, queues: Iterable[str] = layout.QUEUES) -> Storage:
    """A table ``<prefix><id>``, a container ``<prefix>-<id>`` and ``queues``, created now."""
    suffix = uuid.uuid4().hex[:10]
    account = account_of(azurite)
    state = StateTable(account.table_service(), f"{prefix}{suffix}")
    state.ensure()
    backups = BlobStore(account.blob_service(), f"{prefix}-{suffix}")
    backups.ensure()
    sender = QueueSender(account.queue_service())
    for name in queues:
        sender.ensure(name)
    return Storage(account, state, backups, sender)
