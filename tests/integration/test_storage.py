"""The storage adapters on a real Azurite."""

from __future__ import annotations

import base64
import json
import threading

import pytest

from shared.storage.blobs import BlobStore
from shared.storage.clients import StorageAccount
from shared.storage.limits import MAX_QUEUE_MESSAGE_BYTES
from shared.storage.queues import QueueSender
from shared.storage.tables import EntityExists, ETagMismatch, StateTable

pytestmark = pytest.mark.integration


@pytest.fixture
def table(account: StorageAccount, unique: str) -> StateTable:
    t = StateTable(account.table_service(), f"t{unique}")
    t.ensure()
    t.ensure()  # idempotent
    return t


def test_insert_then_second_insert_of_same_keys_is_refused(table: StateTable) -> None:
    table.insert("p", "r", {"n": 1})
    with pytest.raises(EntityExists):
        table.insert("p", "r", {"n": 2})
    assert table.get("p", "r")["n"] == 1  # type: ignore[index]


def test_update_with_stale_etag_loses_and_changes_nothing(table: StateTable) -> None:
    first = table.insert("p", "r", {"status": "Queued"})
    read_a = table.get("p", "r")
    read_b = table.get("p", "r")
    assert read_a is not None and read_b is not None and first.etag == read_a.etag
    table.update(read_a, {"status": "InProgress"})
    with pytest.raises(ETagMismatch):
        table.update(read_b, {"status": "Cancelled"})
    assert table.get("p", "r")["status"] == "InProgress"  # type: ignore[index]


def test_two_writers_racing_on_one_etag_have_exactly_one_winner(table: StateTable) -> None:
    table.insert("p", "race", {"owner": ""})
    snapshot = table.get("p", "race")
    assert snapshot is not None
    wins: list[str] = []

    def writer(name: str) -> None:
        try:
            table.update(snapshot, {"owner": name})
            wins.append(name)
        except ETagMismatch:
            pass

    threads = [threading.Thread(target=writer, args=(f"w{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert table.get("p", "race")["owner"] == wins[0]  # type: ignore[index]


def test_large_integers_and_absent_values_round_trip(table: StateTable) -> None:
    big = 5 * 2**40
    table.upsert("p", "big", {"bytes": big, "small": 7, "missing": None, "flag": True})
    e = table.get("p", "big")
    assert e is not None
    assert e["bytes"] == big and e["small"] == 7 and e["flag"] is True
    assert e.get("missing") is None


def test_delete_with_stale_etag_is_refused_and_gone_is_fine(table: StateTable) -> None:
    old = table.insert("p", "d", {"v": 1})
    table.update(old, {"v": 2})
    with pytest.raises(ETagMismatch):
        table.delete(old)
    current = table.get("p", "d")
    assert current is not None
    table.delete(current)
    table.delete(current)
    assert table.get("p", "d") is None


def test_paging_returns_every_entity_once(table: StateTable) -> None:
    for i in range(25):
        table.upsert("pg", f"{i:03d}", {"i": i})
    seen: list[int] = []
    token = None
    while True:
        items, token = table.page("PartitionKey eq @pk", {"pk": "pg"}, page_size=10, continuation=token)
        seen.extend(int(e["i"]) for e in items)
        if token is None:
            break
    assert seen == list(range(25))


def test_queue_messages_are_base64_json_as_the_functions_host_expects(account: StorageAccount, unique: str) -> None:
    sender = QueueSender(account.queue_service())
    name = f"q-{unique}"
    sender.ensure(name)
    sender.ensure(name)
    sender.send(name, {"jobId": "j1", "note": "ünïcode"})
    raw = account.queue_service().get_queue_client(name).receive_message()
    assert raw is not None
    assert json.loads(base64.b64decode(raw.content)) == {"jobId": "j1", "note": "ünïcode"}


def test_oversized_queue_message_is_refused_before_sending(account: StorageAccount, unique: str) -> None:
    sender = QueueSender(account.queue_service())
    name = f"q-{unique}"
    sender.ensure(name)
    with pytest.raises(ValueError, match="64 KiB"):
        sender.send(name, {"blob": "x" * MAX_QUEUE_MESSAGE_BYTES})
    assert account.queue_service().get_queue_client(name).receive_message() is None


def test_create_once_has_one_winner_among_racing_writers(account: StorageAccount, unique: str) -> None:
    store = BlobStore(account.blob_service(), f"c-{unique}")
    store.ensure()
    store.ensure()
    wins: list[int] = []

    def claim(i: int) -> None:
        if store.create_once("claims/slot-1", {"by": i}):
            wins.append(i)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.get_json("claims/slot-1") == {"by": wins[0]}
    assert store.get_json("claims/none") is None
    assert store.delete("claims/slot-1") is True
    assert store.delete("claims/slot-1") is False
