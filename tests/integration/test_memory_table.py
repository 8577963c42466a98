"""The in-memory state table against the real one: the same operations, the same answers.

Each scenario runs once on a ``StateTable`` over Azurite and once on a ``MemoryStateTable`` and
records what it saw (values and their types, which writes won, which raised what, the results
of every query the code writes); the two transcripts must be equal. ETags are compared by
identity (the first one seen is 1, ...), times by their zone and resolution.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import pytest

from shared.storage.clients import StorageAccount
from shared.storage.memory import MemoryStateTable
from shared.storage.tables import Entity, EntityExists, ETagMismatch, StateTable

pytestmark = pytest.mark.integration

Table = StateTable | MemoryStateTable
T0 = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)


class Colour(enum.StrEnum):
    RED = "Red"


class Transcript:
    """What a scenario saw, with ETags replaced by the order they first appeared in."""

    def __init__(self) -> None:
        self.lines: list[Any] = []
        self._etags: dict[str, int] = {}

    def etag(self, etag: str | None) -> int | None:
        return None if etag is None else self._etags.setdefault(etag, len(self._etags) + 1)

    def entity(self, e: Entity | None) -> Any:
        if e is None:
            return None
        values = {
            k: (type(v).__name__ if not isinstance(v, datetime) else "datetime", _shown(v)) for k, v in e.data.items()
        }
        return (e.partition_key, e.row_key, values, self.etag(e.etag))

    def see(self, what: str, value: Any) -> None:
        self.lines.append((what, value))

    def attempt(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            result = call()
        except (EntityExists, ETagMismatch, TypeError, ValueError, KeyError) as exc:
            self.see(what, f"raised {type(exc).__name__}")
            return None
        self.see(what, self.entity(result) if isinstance(result, Entity) else result)
        return result


def _shown(value: Any) -> Any:
    if isinstance(value, datetime):
        return (value.isoformat(), value.utcoffset())
    return value


@pytest.fixture
def both(account: StorageAccount, unique: str) -> Callable[[Callable[[Table, Transcript], None]], None]:
    """Run a scenario on Azurite and in memory; their transcripts must be equal."""

    def run(scenario: Callable[[Table, Transcript], None]) -> None:
        real = StateTable(account.table_service(), f"mem{unique}{len(seen)}")
        real.ensure()
        transcripts = []
        for table in (real, MemoryStateTable("memory")):
            t = Transcript()
            scenario(table, t)
            transcripts.append(t.lines)
        seen.append(1)
        assert transcripts[1] == transcripts[0]

    seen: list[int] = []
    return run


def test_values_round_trip_alike(both: Callable[[Callable[[Table, Transcript], None]], None]) -> None:
    def scenario(table: Table, t: Transcript) -> None:
        data = {
            "s": "ünïcode 'quoted'",
            "small": 7,
            "negative": -(2**31),
            "big": 5 * 2**40,
            "flag": True,
            "off": False,
            "ratio": 0.25,
            "whole": 3.0,
            "at": T0,
            "elsewhere": T0.astimezone(ZoneInfo("Asia/Tokyo")),
            "raw": b"\x00\x01\xff",
            "id": UUID("12345678-1234-5678-1234-567812345678"),
            "colour": Colour.RED,
            "missing": None,
            "empty": "",
        }
        t.attempt("insert", lambda: table.insert("p", "r", data))
        t.attempt("get", lambda: table.get("p", "r"))
        t.attempt("a dict is refused", lambda: table.upsert("p", "bad", {"d": {"a": 1}}))
        t.attempt("a list is refused", lambda: table.upsert("p", "bad", {"d": [1]}))
        t.attempt("beyond int64 is refused", lambda: table.upsert("p", "bad", {"n": 2**64}))
        t.attempt("nothing was written by the refusals", lambda: table.get("p", "bad"))

    both(scenario)


def test_etag_rules_alike(both: Callable[[Callable[[Table, Transcript], None]], None]) -> None:
    def scenario(table: Table, t: Transcript) -> None:
        first = t.attempt("insert", lambda: table.insert("p", "r", {"status": "Queued"}))
        t.attempt("insert again", lambda: table.insert("p", "r", {"status": "Other"}))
        a, b = table.get("p", "r"), table.get("p", "r")
        assert a is not None and b is not None
        t.see("read etag is the insert's", t.etag(a.etag) == t.etag(first.etag))
        second = t.attempt("update a", lambda: table.update(a, {"status": "InProgress", "n": 1}))
        t.attempt("update b (stale)", lambda: table.update(b, {"status": "Cancelled"}))
        t.attempt("get", lambda: table.get("p", "r"))
        t.attempt("delete stale", lambda: table.delete(b))
        t.attempt("update a missing entity", lambda: table.update(Entity("p", "nobody", {}, a.etag), {"x": 1}))
        t.attempt("update without etag", lambda: table.update(Entity("p", "r", {}), {"x": 1}))
        t.attempt("upsert replaces", lambda: table.upsert("p", "r", {"only": "this"}))
        t.attempt("get", lambda: table.get("p", "r"))
        t.attempt("update with the pre-upsert etag", lambda: table.update(second, {"x": 1}))
        current = table.get("p", "r")
        assert current is not None
        t.attempt("delete current", lambda: table.delete(current))
        t.attempt("delete again (gone is fine)", lambda: table.delete(current))
        t.attempt("get gone", lambda: table.get("p", "r"))
        table.upsert("p", "u", {"v": 1})
        t.attempt("delete without etag", lambda: table.delete(Entity("p", "u")))
        t.attempt("get", lambda: table.get("p", "u"))
        t.attempt("upsert creates", lambda: table.upsert("p", "new", {"v": 2}))

    both(scenario)


def _fill(table: Table) -> None:
    for day in ("20260301", "20260302", "20260303"):
        for i, status in enumerate(("Succeeded", "InProgress", "Failed", "InProgress")):
            table.insert(
                f"jobs-{day}",
                f"{9 - i:03d}-job",
                {
                    "status": status,
                    "operation": "Backup" if i % 2 else "Restore",
                    "instanceKey": f"db{i % 2}",
                    "created": T0 + timedelta(days=int(day[-1]), hours=i),
                    "attempt": i,
                    "big": 2**40 + i,
                    "done": status != "InProgress",
                    "ratio": i / 4,
                },
            )
    table.insert("instance", "a", {"policyKey": "daily", "name": "A"})
    table.insert("instance", "b", {"policyKey": "weekly", "name": "B"})
    table.insert("instance", "c", {"name": "C"})
    table.insert("rp-a", "1", {"blobName": "a/1.pgdump.zst"})
    table.insert("rp-b", "2", {"blobName": "b/2.pgdump.zst", "archiveBlobName": "arch/b/2"})
    table.insert("rp.x", "3", {"blobName": "not a point"})
    table.insert("due-20260301", "a|1", {"at": T0})
    table.insert("due-20260305", "b|2", {"at": T0 + timedelta(days=4)})


QUERIES: list[tuple[str, dict[str, Any] | None]] = [
    ("PartitionKey eq @pk", {"pk": "jobs-20260302"}),
    ("PartitionKey eq @pk and instanceKey eq @instance", {"pk": "jobs-20260302", "instance": "db1"}),
    (
        "PartitionKey eq @pk and RowKey gt @after and RowKey lt @before and status eq @status and operation eq @op",
        {"pk": "jobs-20260301", "after": "006", "before": "009.", "status": "InProgress", "op": "Backup"},
    ),
    (
        "PartitionKey ge @lo and PartitionKey le @hi and status eq @status",
        {"lo": "jobs-", "hi": "jobs-20260302", "status": "InProgress"},
    ),
    ("PartitionKey ge @lo and PartitionKey lt @hi", {"lo": "rp-", "hi": "rp."}),
    ("PartitionKey ge @lo and PartitionKey le @hi", {"lo": "due-", "hi": "due-20260303"}),
    ("PartitionKey eq @pk and policyKey eq @policy", {"pk": "instance", "policy": "daily"}),
    ("PartitionKey eq @pk and policyKey ne @policy", {"pk": "instance", "policy": "daily"}),
    ("created ge @since", {"since": T0 + timedelta(days=2, hours=2)}),
    ("created lt @since and PartitionKey gt @pk", {"since": T0 + timedelta(days=3), "pk": "jobs-20260301"}),
    ("attempt ge @n", {"n": 2}),
    ("big gt @n", {"n": 2**40 + 1}),
    ("done eq @yes", {"yes": True}),
    ("done eq @no and PartitionKey eq @pk", {"no": False, "pk": "jobs-20260303"}),
    ("ratio gt @r", {"r": 0.3}),
    (
        "( status eq @a or status eq @b ) and PartitionKey eq @pk",
        {"a": "Failed", "b": "Succeeded", "pk": "jobs-20260301"},
    ),
    ("not ( status eq @s ) and PartitionKey eq @pk", {"s": "InProgress", "pk": "jobs-20260301"}),
    ("PartitionKey ne ''", None),
    ("PartitionKey eq 'instance' and name eq 'B'", None),
    ("RowKey eq @rk", {"rk": "a|1"}),
    ("status eq @s", {"s": "no such status"}),
    ("archiveBlobName ne @x", {"x": ""}),
]


def test_the_code_s_queries_answer_alike(both: Callable[[Callable[[Table, Transcript], None]], None]) -> None:
    def scenario(table: Table, t: Transcript) -> None:
        _fill(table)
        for where, params in QUERIES:
            t.see(where, [t.entity(e) for e in table.query(where, params)])
        t.see("partition", [t.entity(e) for e in table.partition("instance")])
        t.see(
            "a parameter glued to a parenthesis",
            t.attempt("(", lambda: list(table.query("(PartitionKey eq @pk)", {"pk": "x"}))),
        )

    both(scenario)


def test_pages_alike(both: Callable[[Callable[[Table, Transcript], None]], None]) -> None:
    def scenario(table: Table, t: Transcript) -> None:
        for i in range(25):
            table.upsert("pg", f"{i:03d}", {"i": i, "even": i % 2 == 0})
        for i in range(20):
            table.upsert("pg2", f"{i:03d}", {"i": i})
        for where, params, size in (
            ("PartitionKey eq @pk", {"pk": "pg"}, 10),
            ("PartitionKey eq @pk", {"pk": "pg2"}, 10),
            ("PartitionKey eq @pk and even eq @e", {"pk": "pg", "e": True}, 4),
            ("PartitionKey eq @pk and RowKey gt @after", {"pk": "pg", "after": "020"}, 1),
            ("PartitionKey eq @pk", {"pk": "none"}, 5),
        ):
            pages: list[list[int]] = []
            token = None
            while True:
                items, token = table.page(where, params, page_size=size, continuation=token)
                pages.append([int(e["i"]) for e in items])
                if token is None or len(pages) > 30:
                    break
            t.see(f"{where} / {size}", pages)

    both(scenario)


def test_times_alike(both: Callable[[Callable[[Table, Transcript], None]], None]) -> None:
    def scenario(table: Table, t: Transcript) -> None:
        table.insert("p", "r", {"v": 1})
        e = table.get("p", "r")
        assert e is not None
        now = table.service_time()
        t.see("service time: UTC, whole seconds", (now.utcoffset(), now.microsecond))
        t.see("service time is about now", abs(now - datetime.now(UTC)) < timedelta(minutes=5))
        assert e.read_at is not None and e.timestamp is not None
        t.see("read_at: UTC, whole seconds", (e.read_at.utcoffset(), e.read_at.microsecond))
        t.see("timestamp: UTC", e.timestamp.utcoffset())
        t.see("timestamp about now", abs(e.timestamp - now) < timedelta(minutes=5))
        t.see(
            "query gives the timestamp, not read_at",
            [(x.timestamp == e.timestamp, x.read_at) for x in table.query("PartitionKey eq @pk", {"pk": "p"})],
        )

    both(scenario)
