"""Pages of the instances list on the in-memory state table: ``top`` per page, a nextLink token that
walks every instance exactly once, and a first page whose cost does not grow with the vault."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.errors import ErrorCode
from shared.instance_paging import decode_token, encode_token, list_page
from shared.instances import Instance, InstanceSpec, ProtectionStatus, Readiness
from shared.jobs import InvalidToken
from shared.policies import PolicyService
from shared.storage import layout
from shared.storage.memory import MemoryStateTable
from shared.storage.ports import Entity
from tests.examples import EXAMPLES

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SPEC = InstanceSpec("orders", "db1.example.com", 5432, "orders", "env:PGVAULT_SECRET_X", "weekly")


class CountingTable(MemoryStateTable):
    """The in-memory table, counting every read request and the rows each one returned."""

    def __init__(self) -> None:
        super().__init__("state")
        self.requests = 0
        self.rows_read = 0

    def reset(self) -> None:
        self.requests = self.rows_read = 0

    def get(self, pk: str, rk: str) -> Entity | None:
        self.requests += 1
        return super().get(pk, rk)

    def query(
        self, filter: str, parameters: Mapping[str, Any] | None = None, *, select: list[str] | None = None
    ) -> Iterator[Entity]:
        self.requests += 1
        for entity in super().query(filter, parameters, select=select):
            self.rows_read += 1
            yield entity

    def page(
        self, filter: str, parameters: Mapping[str, Any] | None, *, page_size: int, continuation: Any | None = None
    ) -> tuple[list[Entity], Any | None]:
        self.requests += 1
        items, token = super().page(filter, parameters, page_size=page_size, continuation=continuation)
        self.rows_read += len(items)
        return items, token


def _vault(count: int) -> CountingTable:
    state = CountingTable()
    PolicyService(state).put("weekly", json.loads((EXAMPLES / "sunday-default-only.json").read_text()), NOW)
    for n in range(count):
        name = f"Db{n:05d}"  # mixed case: row keys are lowercase, names keep their case
        spec = replace(SPEC, name=name, database=name.lower())
        instance = Instance(spec, ProtectionStatus.PROTECTED, Readiness.SUCCESS, "job-1", None, NOW)
        state.insert(layout.INSTANCE, layout.row_key(name), instance.data())
        state.insert(layout.LAST_BACKUP, layout.row_key(name), {"none": True})
        state.upsert(layout.USAGE, layout.row_key(name), {"instance": name, "points": 1, "totalSizeInBytes": n})
    state.reset()
    return state


def _walk(state: CountingTable, top: int) -> list[list[str]]:
    pages, after = [], None
    while True:
        page = list_page(state, NOW, top=top, after=after)
        pages.append([i.instance.spec.name for i in page.items])
        if page.next_token is None:
            return pages
        after = decode_token(page.next_token)


def test_pages_hold_top_instances_and_the_token_walks_every_instance_once() -> None:
    state = _vault(25)
    pages = _walk(state, 10)
    assert [len(p) for p in pages] == [10, 10, 5]
    names = [n for p in pages for n in p]
    assert names == [f"Db{n:05d}" for n in range(25)]  # by name, none twice, none skipped


def test_an_exact_multiple_of_top_ends_without_an_empty_page() -> None:
    state = _vault(20)
    assert [len(p) for p in _walk(state, 10)] == [10, 10]
    assert list_page(_vault(0), NOW).items == []


def test_each_listed_instance_carries_its_own_usage_and_times() -> None:
    state = _vault(12)
    page = list_page(state, NOW, top=5, after=layout.row_key("Db00003"))
    assert [i.instance.spec.name for i in page.items] == [f"Db{n:05d}" for n in range(4, 9)]
    assert [i.usage.total_size_in_bytes if i.usage else None for i in page.items] == [4, 5, 6, 7, 8]
    assert all(i.times.last_backup is None and i.times.next_scheduled is not None for i in page.items)


def test_the_first_page_costs_the_same_whatever_the_vault_holds() -> None:
    costs = []
    for count in (120, 1200):
        state = _vault(count)
        page = list_page(state, NOW, top=100)
        assert len(page.items) == 100 and page.next_token is not None
        costs.append((state.requests, state.rows_read))
    # Requests are constant and rows read are the page's own (instances + one extra, their
    # lastbackup and usage rows, the policy), never the rest of the vault.
    assert costs[0] == costs[1]
    assert costs[0][1] <= 3 * 100 + 2


def test_a_token_pgvault_did_not_write_is_refused_naming_the_parameter() -> None:
    token = encode_token("db00007")
    assert decode_token(token) == "db00007"
    raw = bytearray(base64.urlsafe_b64decode(token + "=="))
    raw[8] ^= 1
    for bad in (
        base64.urlsafe_b64encode(bytes(raw)).decode(),
        "nonsense",
        "",
        encode_token("Upper"),
        encode_token("a/b"),
    ):
        with pytest.raises(InvalidToken) as err:
            decode_token(bad, target="$skipToken")
        assert err.value.code is ErrorCode.INVALID_REQUEST and err.value.target == "$skipToken"
