"""A 403 from the vault's storage means the same from every service: ``StorageAccessDenied``, not retried.

Azurite answers 403 (AuthorizationFailure) to requests signed with a wrong account key, as Azure
does to an identity without its role: the table, the blob container, the block stream and the
queue each give the same error, with the action that fixes it.
"""

from __future__ import annotations

import base64

import pytest

from devhost.services import Azurite
from shared.errors import ErrorCode, TransientError
from shared.storage.blobs import BlobStore
from shared.storage.clients import StorageAccount
from shared.storage.faults import StorageAccessDenied
from shared.storage.queues import QueueSender
from shared.storage.tables import StateTable

pytestmark = pytest.mark.integration


@pytest.fixture
def wrong_key(azurite: Azurite) -> StorageAccount:
    parts = dict(p.split("=", 1) for p in azurite.connection_string.split(";") if p)
    parts["AccountKey"] = base64.b64encode(b"not the account key, 32 bytes!!").decode()
    return StorageAccount(";".join(f"{k}={v}" for k, v in parts.items()))


def _denied(call: object) -> StorageAccessDenied:
    with pytest.raises(StorageAccessDenied) as caught:
        call()  # type: ignore[operator]
    assert not isinstance(caught.value, TransientError)
    assert caught.value.code is ErrorCode.STORAGE_ACCESS_DENIED and "403" in caught.value.message
    assert "Storage Table Data Contributor" in caught.value.recommended_action
    return caught.value


def test_a_403_is_access_denied_from_tables_blobs_streams_and_queues(wrong_key: StorageAccount, unique: str) -> None:
    table = StateTable(wrong_key.table_service(), f"denied{unique}")
    _denied(table.ensure)
    _denied(lambda: table.get("p", "r"))
    _denied(lambda: table.insert("p", "r", {"v": 1}))
    _denied(lambda: list(table.query("PartitionKey eq @pk", {"pk": "p"})))
    blobs = BlobStore(wrong_key.blob_service(), f"denied-{unique}")
    _denied(blobs.ensure)
    _denied(lambda: blobs.get_json("doc.json"))
    _denied(lambda: blobs.create_once("doc.json", {"a": 1}))
    _denied(lambda: list(blobs.listing()))
    writer = blobs.writer("dump.zst")
    writer.write(b"x" * 100)
    _denied(lambda: writer.commit({}))
    queues = QueueSender(wrong_key.queue_service())
    _denied(lambda: queues.ensure(f"denied-{unique}"))
    _denied(lambda: queues.send(f"denied-{unique}", {"jobId": "j"}))
