"""An in-memory state table with the interface and the semantics of ``StateTable``.

For fast unit tests of the logic above the table (jobs, instances, retention): the same ETag
rules (a stale or missing ETag loses with ``ETagMismatch``, an insert over existing keys with
``EntityExists``), the same values back (``None`` is absent, enums are stored as their string,
times come back in UTC, types the table service cannot hold are refused), the same ordering
(partition key, then row key) and the OData filter subset the code writes, with its ``@name``
parameters substituted by the SDK's rule (split on single spaces). The contract test
``tests/integration/test_memory_table.py`` runs the same operations here and on Azurite and
requires equal answers, so the two cannot drift apart unnoticed.

Tables of one ``MemoryTables`` share their rows by name, as two processes share one account's
table; the clock is injectable, so ``Timestamp`` and ``service_time`` can be driven by a test.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any
from uuid import UUID

from shared.storage.limits import MAX_TABLE_PROPERTY_STRING_CHARS
from shared.storage.tables import Entity, EntityExists, ETagMismatch

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Characters the table service refuses in keys.
_BAD_KEY = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
_SUPPORTED = (int, bool, float, str, bytes, UUID)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class _Row:
    data: dict[str, Any]
    etag: str
    timestamp: datetime


class MemoryTables:
    """An account's worth of in-memory tables: ``table(name)`` twice gives the same rows."""

    def __init__(self, clock: Callable[[], datetime] = _now) -> None:
        self.clock = clock
        self._rows: dict[str, dict[tuple[str, str], _Row]] = {}
        self._lock = threading.RLock()
        self._etags = itertools.count(1)

    def table(self, name: str) -> MemoryStateTable:
        """A state table of this account (created on first use, as ``ensure`` would)."""
        return MemoryStateTable(name, tables=self)


class MemoryStateTable:
    """A table of entities addressed by partition and row key, held in this process."""

    def __init__(
        self, name: str = "memory", *, tables: MemoryTables | None = None, clock: Callable[[], datetime] | None = None
    ) -> None:
        if tables is None:
            tables = MemoryTables(clock or _now)
        elif clock is not None:
            raise ValueError("give the clock to the MemoryTables the table belongs to")
        self.name = name
        self._tables = tables
        with tables._lock:
            self._rows = tables._rows.setdefault(name, {})

    def ensure(self) -> None:
        """Nothing to create: the table exists from its construction."""

    def _stamp(self) -> tuple[str, datetime]:
        return f'W/"{next(self._tables._etags)}"', self._tables.clock().astimezone(UTC)

    def _entity(self, key: tuple[str, str], row: _Row, read_at: datetime | None = None) -> Entity:
        return Entity(key[0], key[1], dict(row.data), row.etag, row.timestamp, read_at)

    def get(self, pk: str, rk: str) -> Entity | None:
        """The entity with these keys, or None. Its ``read_at`` is the (whole-second) time of the read."""
        with self._tables._lock:
            row = self._rows.get((pk, rk))
            return None if row is None else self._entity((pk, rk), row, self.service_time())

    def service_time(self) -> datetime:
        """The clock's time in whole seconds, as the service's ``Date`` header gives it."""
        return self._tables.clock().astimezone(UTC).replace(microsecond=0)

    def insert(self, pk: str, rk: str, data: Mapping[str, Any]) -> Entity:
        """Create the entity; ``EntityExists`` if one with these keys is already there."""
        stored = _stored(pk, rk, data)
        with self._tables._lock:
            if (pk, rk) in self._rows:
                raise EntityExists(f"{self.name}: ({pk!r}, {rk!r}) already exists")
            etag, stamp = self._stamp()
            self._rows[(pk, rk)] = _Row(stored, etag, stamp)
        return Entity(pk, rk, dict(data), etag)

    def update(self, entity: Entity, data: Mapping[str, Any]) -> Entity:
        """Replace the entity's properties if unchanged since ``entity`` was read; else ``ETagMismatch``."""
        if entity.etag is None:
            raise ValueError("update needs the ETag of the entity as read")
        key = (entity.partition_key, entity.row_key)
        stored = _stored(*key, data)
        with self._tables._lock:
            row = self._rows.get(key)
            if row is None or row.etag != entity.etag:
                raise ETagMismatch(f"{self.name}: ({key[0]!r}, {key[1]!r}) changed")
            etag, stamp = self._stamp()
            self._rows[key] = _Row(stored, etag, stamp)
        return Entity(*key, dict(data), etag)

    def upsert(self, pk: str, rk: str, data: Mapping[str, Any]) -> Entity:
        """Create or replace the entity unconditionally."""
        stored = _stored(pk, rk, data)
        with self._tables._lock:
            etag, stamp = self._stamp()
            self._rows[(pk, rk)] = _Row(stored, etag, stamp)
        return Entity(pk, rk, dict(data), etag)

    def delete(self, entity: Entity) -> None:
        """Delete the entity if unchanged since read (any, without an ETag); gone is fine."""
        key = (entity.partition_key, entity.row_key)
        with self._tables._lock:
            row = self._rows.get(key)
            if row is None:
                return
            if entity.etag is not None and row.etag != entity.etag:
                raise ETagMismatch(f"{self.name}: ({key[0]!r}, {key[1]!r}) changed")
            del self._rows[key]

    def _matching(self, filter: str, parameters: Mapping[str, Any] | None) -> list[tuple[tuple[str, str], _Row]]:
        test = parse_filter(substitute(filter, parameters))
        with self._tables._lock:
            rows = sorted(self._rows.items())
            return [(key, _Row(dict(row.data), row.etag, row.timestamp)) for key, row in rows if test(key, row.data)]

    def query(
        self, filter: str, parameters: Mapping[str, Any] | None = None, *, select: list[str] | None = None
    ) -> Iterator[Entity]:
        """Every entity matching an OData ``filter`` with ``@name`` parameters, in key order."""
        for key, row in self._matching(filter, parameters):
            if select is not None:
                row.data = {k: v for k, v in row.data.items() if k in select}
            yield self._entity(key, row)

    def partition(self, pk: str) -> Iterator[Entity]:
        """Every entity of one partition, in row key order."""
        return self.query("PartitionKey eq @pk", {"pk": pk})

    def page(
        self,
        filter: str,
        parameters: Mapping[str, Any] | None,
        *,
        page_size: int,
        continuation: Any | None = None,
    ) -> tuple[list[Entity], Any | None]:
        """One page of a query and the continuation token of the next (None at the end).

        The token has the service's shape: the keys of the next entity to return.
        """
        if page_size < 1:
            raise ValueError("page_size must be at least 1")
        rows = self._matching(filter, parameters)
        if continuation is not None:
            start = (continuation["PartitionKey"], continuation["RowKey"])
            rows = [(key, row) for key, row in rows if key >= start]
        items = [self._entity(key, row) for key, row in rows[:page_size]]
        if len(rows) <= page_size:
            return items, None
        pk, rk = rows[page_size][0]
        return items, {"PartitionKey": pk, "RowKey": rk}


def _check_key(what: str, key: object) -> None:
    if not isinstance(key, str):
        raise TypeError(f"{what} must be of type string")
    if _BAD_KEY.search(key) or len(key.encode("utf-8")) > 1024:
        raise ValueError(f"{what} {key!r}: the table service refuses '/', '\\', '#', '?', control characters, >1 KiB")


def _stored(pk: str, rk: str, data: Mapping[str, Any]) -> dict[str, Any]:
    """The properties as the service keeps them (and gives them back), refusing what it cannot hold."""
    _check_key("PartitionKey", pk)
    _check_key("RowKey", rk)
    stored: dict[str, Any] = {}
    for name, value in data.items():
        if value is None:
            continue
        if name in ("PartitionKey", "RowKey", "Timestamp"):
            raise ValueError(f"{name} is a system property")
        if isinstance(value, Enum):
            value = str(value)
        elif isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError(f"{name}: a naive datetime would be read as local time; give it a zone")
            value = value.astimezone(UTC)
        elif type(value) not in _SUPPORTED:
            raise TypeError(f"{name}: type {type(value).__name__} is not supported by the table service")
        elif type(value) is int and not _INT64_MIN <= value <= _INT64_MAX:
            raise TypeError(f"{name}: {value} does not fit in an Int64")
        elif isinstance(value, str) and len(value.encode("utf-16-le")) > 2 * MAX_TABLE_PROPERTY_STRING_CHARS:
            raise ValueError(f"{name}: a string property holds at most 64 KiB of UTF-16")
        stored[name] = value
    return stored


def substitute(filter: str, parameters: Mapping[str, Any] | None) -> str:
    """The filter with its ``@name`` words replaced by literals, by the Azure SDK's rule.

    The SDK splits the filter on single spaces and replaces each word that starts with ``@``
    whole: ``(PartitionKey eq @pk)`` would look up a parameter named ``pk)``. Its quirks are kept
    (``1`` and ``0`` equal ``True`` and ``False`` and become ``true``/``false``), so that a filter
    that works here works there.
    """
    if not parameters:
        return filter
    words = filter.split(" ")
    for index, word in enumerate(words):
        if word[0] != "@":  # an empty word (two spaces) fails in the SDK too
            continue
        value = parameters[word[1:]]
        if value in [True, False]:
            words[index] = str(value).lower()
        elif isinstance(value, float):
            words[index] = str(value)
        elif isinstance(value, int):
            words[index] = str(value) if value.bit_length() <= 32 else f"{value}L"
        elif isinstance(value, datetime):
            words[index] = f"datetime'{value.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%S.%fZ')}'"
        elif isinstance(value, UUID):
            words[index] = f"guid'{value}'"
        elif isinstance(value, bytes):
            words[index] = f"X'{value.hex()}'"
        else:
            words[index] = "'" + str(value).replace("'", "''") + "'"
    return " ".join(words)


# ---- the OData filter subset: comparisons joined by and/or/not, parentheses, typed literals ----

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<open>\() | (?P<close>\)) |
        (?P<string>'(?:[^']|'')*') |
        (?P<typed>(?:datetime|guid|X|binary)'[^']*') |
        (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?L?) |
        (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b,
    "lt": lambda a, b: a < b,
    "le": lambda a, b: a <= b,
}
_Test = Callable[[tuple[str, str], Mapping[str, Any]], bool]


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"filter {text!r}: cannot read it at {text[pos:]!r}")
        kind = m.lastgroup or ""
        out.append(_Tok(kind, m.group(kind)))
        pos = m.end()
    return out


def _literal(tok: _Tok) -> Any:
    if tok.kind == "string":
        return tok.text[1:-1].replace("''", "'")
    if tok.kind == "number":
        if tok.text.endswith("L"):
            return int(tok.text[:-1])
        return float(tok.text) if any(c in tok.text for c in ".eE") else int(tok.text)
    if tok.kind == "typed":
        return _typed(tok.text)
    if tok.kind == "word" and tok.text in ("true", "false"):
        return tok.text == "true"
    raise ValueError(f"expected a value, found {tok.text!r}")


def _typed(text: str) -> Any:
    prefix, _, rest = text.partition("'")
    body = rest[:-1]
    if prefix == "datetime":
        return datetime.fromisoformat(body.replace("Z", "+00:00")).astimezone(UTC)
    if prefix == "guid":
        return UUID(body)
    return bytes.fromhex(body)


def _either(a: _Test, b: _Test) -> _Test:
    return lambda key, data: a(key, data) or b(key, data)


def _both(a: _Test, b: _Test) -> _Test:
    return lambda key, data: a(key, data) and b(key, data)


def _comparable(a: Any, b: Any) -> bool:
    """Whether the service compares the two (same type; booleans are not numbers)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return True
    return type(a) is type(b) or (isinstance(a, datetime) and isinstance(b, datetime))


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.pos = 0

    def _peek(self) -> _Tok | None:
        return self.toks[self.pos] if self.pos < len(self.toks) else None

    def _next(self) -> _Tok:
        tok = self._peek()
        if tok is None:
            raise ValueError(f"filter {self.text!r} ends too early")
        self.pos += 1
        return tok

    def _word(self, *words: str) -> str | None:
        tok = self._peek()
        if tok is not None and tok.kind == "word" and tok.text in words:
            self.pos += 1
            return tok.text
        return None

    def parse(self) -> _Test:
        test = self._or()
        if self._peek() is not None:
            raise ValueError(f"filter {self.text!r}: unexpected {self._peek()!r}")
        return test

    def _or(self) -> _Test:
        left = self._and()
        while self._word("or"):
            left = _either(left, self._and())
        return left

    def _and(self) -> _Test:
        left = self._unary()
        while self._word("and"):
            left = _both(left, self._unary())
        return left

    def _unary(self) -> _Test:
        if self._word("not"):
            inner = self._unary()
            return lambda k, d: not inner(k, d)
        tok = self._peek()
        if tok is not None and tok.kind == "open":
            self.pos += 1
            inner = self._or()
            if self._next().kind != "close":
                raise ValueError(f"filter {self.text!r}: a parenthesis is not closed")
            return inner
        return self._comparison()

    def _comparison(self) -> _Test:
        prop = self._next()
        op = self._next()
        if prop.kind != "word" or op.kind != "word" or op.text not in _COMPARE:
            raise ValueError(f"filter {self.text!r}: expected '<property> <eq|ne|gt|ge|lt|le> <value>'")
        value, compare, name = _literal(self._next()), _COMPARE[op.text], prop.text

        def test(key: tuple[str, str], data: Mapping[str, Any]) -> bool:
            actual: Any = key[0] if name == "PartitionKey" else key[1] if name == "RowKey" else data.get(name)
            return actual is not None and _comparable(actual, value) and compare(actual, value)

        return test


def parse_filter(text: str) -> _Test:
    """A test of (keys, properties) for an OData filter with literals (parameters substituted)."""
    return _Parser(text).parse()
