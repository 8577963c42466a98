"""An in-memory state table and blob container with the interfaces and semantics of the real ones.

``MemoryStateTable`` is ``StateTable``'s twin, ``MemoryBlobStore`` ``BlobStore``'s (below).

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

import bisect
import hashlib
import itertools
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any
from uuid import UUID

import zstandard

from shared.errors import TransientError
from shared.storage.blobs import ARCHIVED_READ_ERROR
from shared.storage.faults import StorageRequestRefused
from shared.storage.limits import MAX_TABLE_BATCH_ENTITIES, MAX_TABLE_PROPERTY_STRING_CHARS
from shared.storage.ports import BlobExists, BlobInfo, BlobMissing, IntegrityError, StreamResult
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


class _Rows(dict[tuple[str, str], _Row]):
    """One table's rows, with its keys in order (rebuilt after a key came or went)."""

    def __init__(self) -> None:
        super().__init__()
        self._order: list[tuple[str, str]] | None = None

    def __setitem__(self, key: tuple[str, str], row: _Row) -> None:
        if key not in self:
            self._order = None
        super().__setitem__(key, row)

    def __delitem__(self, key: tuple[str, str]) -> None:
        self._order = None
        super().__delitem__(key)

    def between(self, lo: str | None, hi: str | None) -> list[tuple[str, str]]:
        """The keys whose partition key is in [lo, hi] (either end open when None), in order."""
        if self._order is None:
            self._order = sorted(self.keys())
        start = 0 if lo is None else bisect.bisect_left(self._order, (lo, ""))
        keys = self._order[start:]
        if hi is not None:
            keys = keys[: bisect.bisect_right([k[0] for k in keys], hi)]
        return keys


class MemoryTables:
    """An account's worth of in-memory tables: ``table(name)`` twice gives the same rows."""

    def __init__(self, clock: Callable[[], datetime] = _now) -> None:
        self.clock = clock
        self._rows: dict[str, _Rows] = {}
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
            self._rows = tables._rows.setdefault(name, _Rows())

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
        text = substitute(filter, parameters)
        test = parse_filter(text)
        with self._tables._lock:
            found = []
            for key in self._rows.between(*_partition_range(text)):
                row = self._rows[key]
                if test(key, row.data):
                    found.append((key, _Row(dict(row.data), row.etag, row.timestamp)))
            return found

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

    def write_batch(
        self, pk: str, upserts: Sequence[tuple[str, Mapping[str, Any]]] = (), deletes: Sequence[str] = ()
    ) -> int:
        """Upsert and delete rows of partition ``pk`` unconditionally; the requests the service would take."""
        stored = [(rk, _stored(pk, rk, data)) for rk, data in upserts]
        upserted = {rk for rk, _ in upserts}
        gone = [rk for rk in deletes if rk not in upserted]
        with self._tables._lock:
            for rk, data in stored:
                etag, stamp = self._stamp()
                self._rows[(pk, rk)] = _Row(data, etag, stamp)
            for rk in gone:
                if (pk, rk) in self._rows:
                    del self._rows[(pk, rk)]  # not pop(): that would keep the stale key order
        ops = len(stored) + len(gone)
        return -(-ops // MAX_TABLE_BATCH_ENTITIES)

    def insert_batch(self, pk: str, rows: Sequence[tuple[str, Mapping[str, Any]]]) -> bool:
        """Insert ``rows`` of partition ``pk`` all at once, or none when any exists (False)."""
        if len(rows) > MAX_TABLE_BATCH_ENTITIES:
            raise ValueError(f"at most {MAX_TABLE_BATCH_ENTITIES} rows in one transaction")
        stored = [(rk, _stored(pk, rk, data)) for rk, data in rows]
        with self._tables._lock:
            if len({rk for rk, _ in stored}) < len(stored) or any((pk, rk) in self._rows for rk, _ in stored):
                return False
            for rk, data in stored:
                etag, stamp = self._stamp()
                self._rows[(pk, rk)] = _Row(data, etag, stamp)
        return True

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


_STRING = re.compile(r"'(?:[^']|'')*'")
_PK_BOUND = re.compile(r"\bPartitionKey (eq|ge|gt|le|lt) ('(?:[^']|'')*')")


def _partition_range(text: str) -> tuple[str | None, str | None]:
    """Bounds on the partition key that every match obeys (None: open), read off a filter whose
    clauses are all joined by ``and``; the filter itself still decides each row."""
    if re.search(r"\b(or|not)\b", _STRING.sub("''", text)):
        return None, None
    lo: str | None = None
    hi: str | None = None
    for op, literal in _PK_BOUND.findall(text):
        value = literal[1:-1].replace("''", "'")
        if op in ("eq", "ge", "gt"):
            lo = value if lo is None else max(lo, value)
        if op in ("eq", "le", "lt"):
            hi = value if hi is None else min(hi, value)
    return lo, hi


def parse_filter(text: str) -> _Test:
    """A test of (keys, properties) for an OData filter with literals (parameters substituted)."""
    return _Parser(text).parse()


# ---- blobs -------------------------------------------------------------------------------------


@dataclass
class _Blob:
    body: bytes
    etag: str
    modified: datetime
    content_type: str = "application/octet-stream"
    metadata: dict[str, str] | None = None
    tier: str = "Hot"
    copy_status: str | None = None


class MemoryBlobStore:
    """A container held in this process, with ``BlobStore``'s methods and answers.

    What Azurite does is done here: a blob appears only when written or committed whole; a copy
    completes at once (to the Archive tier for ``copy_to_archive``, readable for a rehydration);
    an archived blob cannot be read (``BlobArchived``). ``last_modified`` comes from the clock.
    """

    def __init__(self, container: str = "memory", *, clock: Callable[[], datetime] = _now) -> None:
        self.container = container
        self.url = f"memory://{container}"
        self._clock = clock
        self._blobs: dict[str, _Blob] = {}
        self._lock = threading.RLock()
        self._etags = itertools.count(1)

    def _write(self, name: str, body: bytes, *, if_missing: bool = False, **props: Any) -> _Blob:
        with self._lock:
            if if_missing and name in self._blobs:
                raise BlobExists(f"{name} exists")
            blob = _Blob(body, f'"0x{next(self._etags):x}"', self._clock().astimezone(UTC), **props)
            self._blobs[name] = blob
            return blob

    def _readable(self, name: str) -> _Blob | None:
        with self._lock:
            blob = self._blobs.get(name)
        if blob is not None and blob.tier == "Archive":
            raise StorageRequestRefused(f"blob storage answered 409 ({ARCHIVED_READ_ERROR}) during reading {name}")
        return blob

    def content(self, name: str) -> bytes | None:
        """The bytes of blob ``name`` (for tests), or None."""
        with self._lock:
            blob = self._blobs.get(name)
            return None if blob is None else blob.body

    def ensure(self) -> None:
        """Nothing to create: the container exists from its construction."""

    def create_once(self, name: str, document: Mapping[str, Any]) -> bool:
        """Write ``name`` only if it does not exist yet; True for the one caller that wrote it."""
        try:
            self._write(name, json.dumps(document, sort_keys=True).encode(), if_missing=True)
        except BlobExists:
            return False
        return True

    def get_json(self, name: str) -> Any | None:
        """The JSON document stored under ``name``, or None when there is none."""
        blob = self._readable(name)
        return None if blob is None else json.loads(blob.body)

    def delete(self, name: str, *, etag: str | None = None) -> bool:
        """Delete ``name``; False if it was already gone (a stale ``etag`` is a transient 412, as there)."""
        with self._lock:
            blob = self._blobs.get(name)
            if blob is None:
                return False
            if etag is not None and blob.etag != etag:
                raise TransientError(f"blob storage answered 412 during deleting {name}")
            del self._blobs[name]
            return True

    def set_archive_tier(self, name: str) -> bool:
        """Move blob ``name`` to the Archive tier in place; False if it does not exist."""
        with self._lock:
            blob = self._blobs.get(name)
            if blob is None:
                return False
            blob.tier = "Archive"
            return True

    def copy_to_archive(self, source: str, target: str) -> bool:
        """Copy ``source`` to ``target`` in the Archive tier (idempotent); False if there is no source."""
        with self._lock:
            if target in self._blobs:
                return True
            blob = self._blobs.get(source)
            if blob is None:
                return False
            self._write(target, blob.body, metadata=blob.metadata, tier="Archive", copy_status="success")
            return True

    def listing(self) -> Iterator[tuple[str, datetime]]:
        """Every blob: its name and when it was last written, by name."""
        with self._lock:
            return iter([(name, blob.modified) for name, blob in sorted(self._blobs.items())])

    def tier(self, name: str) -> str | None:
        """The access tier of blob ``name``, or None when it does not exist."""
        with self._lock:
            blob = self._blobs.get(name)
            return None if blob is None else blob.tier

    def exists(self, name: str) -> bool:
        """Whether blob ``name`` exists."""
        with self._lock:
            return name in self._blobs

    def info(self, name: str) -> BlobInfo | None:
        """Tier, copy state and metadata of blob ``name``, or None."""
        with self._lock:
            blob = self._blobs.get(name)
            if blob is None:
                return None
            return BlobInfo(name, blob.tier, None, blob.copy_status, dict(blob.metadata or {}), blob.modified)

    def put(
        self,
        name: str,
        body: bytes,
        *,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
        overwrite: bool = True,
    ) -> None:
        """Write blob ``name``; without ``overwrite`` an existing one is left and ``BlobExists`` raised."""
        self._write(
            name, bytes(body), if_missing=not overwrite, content_type=content_type, metadata=dict(metadata or {})
        )

    def put_json(
        self, name: str, document: Any, *, metadata: Mapping[str, str] | None = None, overwrite: bool = True
    ) -> None:
        """Write ``document`` as JSON under ``name``."""
        body = json.dumps(document, indent=2, sort_keys=True).encode()
        self.put(name, body, content_type="application/json", metadata=metadata, overwrite=overwrite)

    def probe_write(self, name: str) -> str | None:
        """A memory container is always writable."""
        return None

    def writer(self, name: str, *, expected_bytes: int = 0, streams: int = 1) -> MemoryBlockSink:
        """A sink whose bytes become blob ``name`` only on ``commit``."""
        return MemoryBlockSink(self, name)

    def read_verified(
        self,
        name: str,
        expected_sha256: str,
        *,
        decompress: bool = True,
        on_bytes: Callable[[int], None] | None = None,
        streams: int = 1,
    ) -> Iterator[bytes]:
        """Blob ``name``'s content (decompressed), ``IntegrityError`` at the end on a checksum mismatch."""
        blob = self._readable(name)
        if blob is None:
            raise IntegrityError(f"{name} is missing from the vault")
        body = blob.body
        if on_bytes is not None:
            on_bytes(len(body))
        if decompress:
            try:
                reader = zstandard.ZstdDecompressor().stream_reader(body, read_across_frames=True)
                while out := reader.read(1024 * 1024):
                    yield out
            except zstandard.ZstdError as exc:
                raise IntegrityError(f"{name} is not a valid zstd stream: {exc}") from exc
        else:
            yield body
        digest = hashlib.sha256(body).hexdigest()
        if digest != expected_sha256:
            raise IntegrityError(
                f"{name}: SHA-256 of the stored bytes is {digest}, the recovery point says {expected_sha256}"
            )

    def start_rehydration(self, source: str, target: str, priority: str) -> None:
        """Copy archived ``source`` to a readable ``target`` at once (as Azurite does)."""
        with self._lock:
            blob = self._blobs.get(source)
            if blob is None:
                raise BlobMissing(f"{source} does not exist")
            self._write(target, blob.body, metadata=blob.metadata, copy_status="success")


class MemoryBlockSink:
    """``BlockWriter``'s twin: bytes gathered, the blob written whole on ``commit``."""

    def __init__(self, store: MemoryBlobStore, name: str) -> None:
        self._store, self.blob_name = store, name
        self._buffer = bytearray()
        self._closed = False

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self._closed:
            raise ValueError(f"{self.blob_name}: the writer is closed")
        self._buffer += data
        return len(data)

    def flush(self) -> None:
        """Nothing to do."""

    def commit(
        self, metadata: Mapping[str, str], *, content_type: str = "application/zstd", if_missing: bool = False
    ) -> StreamResult:
        """Write the blob with ``metadata`` (plus ``sha256`` and ``storedbytes``, as ``BlockWriter`` does)."""
        body = bytes(self._buffer)
        sha = hashlib.sha256(body).hexdigest()
        try:
            blob = self._store._write(
                self.blob_name,
                body,
                if_missing=if_missing,
                content_type=content_type,
                metadata={**metadata, "sha256": sha, "storedbytes": str(len(body))},
            )
        finally:
            self.close()
        return StreamResult(self.blob_name, blob.etag, sha, len(body), 1, 0.0)

    def close(self) -> None:
        self._closed = True
