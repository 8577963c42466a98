"""The ports of the storage adapters: what the rest of ``shared/`` may know about storage.

Nothing here imports the Azure SDK. ``StateStore`` is the state table (``tables.StateTable``
over Azure Tables, ``memory.MemoryStateTable`` in this process); ``BlockSinks`` and
``BlobReader`` are what a dump writes into and a restore reads from (``blobs.BlobStore`` over a
container of any account, ``memory.MemoryBlobStore`` in this process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from shared.errors import PgVaultError


class EntityExists(PgVaultError):
    """An insert found an entity with the same keys already there."""


class ETagMismatch(PgVaultError):
    """The entity changed (or vanished) since it was read; re-read and decide again."""


@dataclass(frozen=True)
class Entity:
    """One row of the state table as read, with the ETag that guards the next write."""

    partition_key: str
    row_key: str
    data: Mapping[str, Any] = field(default_factory=dict)
    etag: str | None = None
    timestamp: datetime | None = None
    """When the service last wrote the entity, by the service's clock (its ``Timestamp``)."""
    read_at: datetime | None = None
    """When the service answered the read that returned the entity, by its clock (the ``Date`` header)."""

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        """The property ``key``, or ``default`` when the entity does not have it."""
        return self.data.get(key, default)


class IntegrityError(PgVaultError):
    """What was read back is not what was stored: the checksum does not match."""


class BlobExists(PgVaultError):
    """A commit asked to create its blob (``if_missing``) found one of that name: nothing was changed."""


@dataclass(frozen=True)
class StreamResult:
    """A committed blob: where, how big, its checksum."""

    blob_name: str
    etag: str
    sha256: str
    stored_bytes: int
    blocks: int
    seconds: float


class BlobMissing(PgVaultError):
    """The blob an operation needs does not exist."""


@dataclass(frozen=True)
class BlobInfo:
    """What storage says about one blob: its tier, a copy's state, its metadata."""

    name: str
    tier: str = "Hot"
    archive_status: str | None = None
    """Azure's ``x-ms-archive-status`` while a rehydration runs (``rehydrate-pending-to-hot``)."""
    copy_status: str | None = None
    """``pending``, ``success``, ``failed``, ``aborted``; None when the blob is no copy."""
    metadata: Mapping[str, str] = field(default_factory=dict)
    last_modified: datetime | None = None


class StateStore(Protocol):
    """A table of entities addressed by partition and row key, every write ETag-guarded.

    ``insert`` raises ``EntityExists`` over existing keys; ``update`` and ``delete`` with a
    stale ETag raise ``ETagMismatch`` (``update`` also when the entity is gone; ``delete`` of a
    gone entity is fine). ``write_batch`` upserts and deletes rows of one partition unconditionally,
    in table transactions of ``MAX_TABLE_BATCH_ENTITIES`` (for index rows with one logical writer);
    ``insert_batch`` inserts up to that many rows of one partition in one transaction, all or none
    (False when any existed, or the service refused the transaction).
    Filters are OData with ``@name`` parameters, written with spaces
    around every word (``( PartitionKey eq @pk )``).
    """

    name: str

    def ensure(self) -> None: ...
    def get(self, pk: str, rk: str) -> Entity | None: ...
    def service_time(self) -> datetime: ...
    def insert(self, pk: str, rk: str, data: Mapping[str, Any]) -> Entity: ...
    def update(self, entity: Entity, data: Mapping[str, Any]) -> Entity: ...
    def upsert(self, pk: str, rk: str, data: Mapping[str, Any]) -> Entity: ...
    def delete(self, entity: Entity) -> None: ...
    def query(
        self, filter: str, parameters: Mapping[str, Any] | None = None, *, select: list[str] | None = None
    ) -> Iterator[Entity]: ...
    def partition(self, pk: str) -> Iterator[Entity]: ...
    def page(
        self, filter: str, parameters: Mapping[str, Any] | None, *, page_size: int, continuation: Any | None = None
    ) -> tuple[list[Entity], Any | None]: ...
    def write_batch(
        self, pk: str, upserts: Sequence[tuple[str, Mapping[str, Any]]] = (), deletes: Sequence[str] = ()
    ) -> int: ...
    def insert_batch(self, pk: str, rows: Sequence[tuple[str, Mapping[str, Any]]]) -> bool: ...


class BlockSink(Protocol):
    """A file-like sink for one blob: nothing is visible until ``commit``."""

    def write(self, data: bytes | bytearray | memoryview) -> int: ...
    def flush(self) -> None: ...
    def commit(
        self, metadata: Mapping[str, str], *, content_type: str = "application/zstd", if_missing: bool = False
    ) -> StreamResult: ...
    def close(self) -> None: ...


class BlockSinks(Protocol):
    """Where a dump or a restored file is streamed to: one sink per blob name."""

    def writer(self, name: str, *, expected_bytes: int = 0, streams: int = 1) -> BlockSink:
        """A sink for blob ``name``; ``streams`` sinks written at once share one budget of buffers."""
        ...


class BlobReader(Protocol):
    """Where a restore reads a stored dump from, its checksum checked at the end."""

    def read_verified(
        self,
        name: str,
        expected_sha256: str,
        *,
        decompress: bool = True,
        on_bytes: Callable[[int], None] | None = None,
        streams: int = 1,
    ) -> Iterator[bytes]:
        """Blob ``name``'s content; ``streams`` reads at once share one budget of buffers."""
        ...


class BlobContainer(BlockSinks, BlobReader, Protocol):
    """A container of blobs: documents, dumps, tiers and copies (``BlobStore``, ``MemoryBlobStore``)."""

    container: str

    def ensure(self) -> None: ...
    def create_once(self, name: str, document: Mapping[str, Any]) -> bool: ...
    def get_json(self, name: str) -> Any | None: ...
    def delete(self, name: str, *, etag: str | None = None) -> bool: ...
    def set_archive_tier(self, name: str) -> bool: ...
    def copy_to_archive(self, source: str, target: str) -> bool: ...
    def listing(self) -> Iterator[tuple[str, datetime]]: ...
    def tier(self, name: str) -> str | None: ...
    def exists(self, name: str) -> bool: ...
    def info(self, name: str) -> BlobInfo | None: ...
    def put(
        self,
        name: str,
        body: bytes,
        *,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
        overwrite: bool = True,
    ) -> None: ...
    def put_json(
        self, name: str, document: Any, *, metadata: Mapping[str, str] | None = None, overwrite: bool = True
    ) -> None: ...
    def probe_write(self, name: str) -> str | None: ...
    def start_rehydration(self, source: str, target: str, priority: str) -> None: ...
