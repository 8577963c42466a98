"""The state table: entities with ETag-guarded writes.

Every update of a job, an instance or a recovery point goes through ``update`` with the ETag it
read, so two workers acting on one entity cannot both win: the loser gets ``ETagMismatch`` and
re-reads. Failures of the service itself become ``TransientError`` so the queue retries.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import (
    EdmType,
    EntityProperty,
    TableClient,
    TableServiceClient,
    TableTransactionError,
    UpdateMode,
)

from shared.errors import TransientError
from shared.storage.faults import storage_error
from shared.storage.limits import MAX_TABLE_BATCH_ENTITIES
from shared.storage.ports import Entity, EntityExists, ETagMismatch, StateStore

# Table transactions of one ``write_batch`` in flight at once (each up to 100 rows of one partition).
PARALLEL_TRANSACTIONS = 4

log = logging.getLogger(__name__)

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1
_T = TypeVar("_T")
# The keys service_time() reads (never written: the 404's Date header is the answer).
_CLOCK = "service-clock"


def _to_table(pk: str, rk: str, data: Mapping[str, Any]) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": pk, "RowKey": rk}
    for key, value in data.items():
        if value is None:
            continue  # tables have no null; an absent property reads back as None
        if isinstance(value, int) and not isinstance(value, bool) and not _INT32_MIN <= value <= _INT32_MAX:
            value = EntityProperty(value, EdmType.INT64)
        entity[key] = value
    return entity


def _from_table(raw: Mapping[str, Any]) -> Entity:
    data: dict[str, Any] = {}
    for key, value in raw.items():
        if key in ("PartitionKey", "RowKey"):
            continue
        if isinstance(value, EntityProperty):
            value = value.value
        data[key] = value
    meta = getattr(raw, "metadata", {}) or {}
    return Entity(raw["PartitionKey"], raw["RowKey"], data, meta.get("etag"), meta.get("timestamp"))


class _ServiceDate:
    """A response hook that keeps the ``Date`` header of the last answer: the service's clock."""

    def __init__(self) -> None:
        self.value: datetime | None = None

    def __call__(self, response: Any) -> None:
        raw = response.http_response.headers.get("Date")
        if raw:
            self.value = parsedate_to_datetime(raw).astimezone(UTC)


def _guard(what: str, call: Callable[[], _T]) -> _T:
    """Run one service call; the answers callers act on (exists, changed, not found) pass through,
    every other failure is sorted by ``shared.storage.faults``."""
    try:
        return call()
    except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
        raise
    except AzureError as exc:
        raise storage_error(exc, "table storage", what) from exc


class StateTable:
    """A table of entities addressed by partition and row key."""

    def __init__(self, service: TableServiceClient, name: str) -> None:
        self._service = service
        self.name = name
        self._client: TableClient = service.get_table_client(name)

    def ensure(self) -> None:
        """Create the table if it does not exist (safe to call from many processes at once)."""
        with contextlib.suppress(ResourceExistsError):
            _guard("create table", lambda: self._service.create_table(self.name))

    def get(self, pk: str, rk: str) -> Entity | None:
        """The entity with these keys, or None. Its ``read_at`` is the service's time of the read."""
        date = _ServiceDate()
        try:
            raw = _guard("read", lambda: self._client.get_entity(pk, rk, raw_response_hook=date))
        except ResourceNotFoundError:
            return None
        entity = _from_table(raw)
        return Entity(entity.partition_key, entity.row_key, entity.data, entity.etag, entity.timestamp, date.value)

    def service_time(self) -> datetime:
        """The storage service's current time (the ``Date`` of its answer to one small read).

        Whole seconds: the header has no finer resolution. Judging ages with this clock and the
        entities' ``Timestamp`` keeps a host whose own clock is wrong from misjudging them.
        """
        date = _ServiceDate()
        with contextlib.suppress(ResourceNotFoundError):
            _guard("read the service time", lambda: self._client.get_entity(_CLOCK, _CLOCK, raw_response_hook=date))
        if date.value is None:
            raise TransientError("table storage answered without a Date header")
        return date.value

    def insert(self, pk: str, rk: str, data: Mapping[str, Any]) -> Entity:
        """Create the entity; ``EntityExists`` if one with these keys is already there."""
        try:
            meta = _guard("insert", lambda: self._client.create_entity(_to_table(pk, rk, data)))
        except ResourceExistsError as exc:
            raise EntityExists(f"{self.name}: ({pk!r}, {rk!r}) already exists") from exc
        return Entity(pk, rk, dict(data), meta.get("etag"))

    def update(self, entity: Entity, data: Mapping[str, Any]) -> Entity:
        """Replace the entity's properties with ``data`` if it is unchanged since ``entity`` was read.

        Raises ``ETagMismatch`` when another writer got there first or the entity is gone.
        """
        if entity.etag is None:
            raise ValueError("update needs the ETag of the entity as read")
        body = _to_table(entity.partition_key, entity.row_key, data)
        try:
            meta = _guard(
                "update",
                lambda: self._client.update_entity(
                    body, mode=UpdateMode.REPLACE, etag=entity.etag, match_condition=MatchConditions.IfNotModified
                ),
            )
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise ETagMismatch(f"{self.name}: ({entity.partition_key!r}, {entity.row_key!r}) changed") from exc
        return Entity(entity.partition_key, entity.row_key, dict(data), meta.get("etag"))

    def upsert(self, pk: str, rk: str, data: Mapping[str, Any]) -> Entity:
        """Create or replace the entity unconditionally (for records with a single writer)."""
        meta = _guard("upsert", lambda: self._client.upsert_entity(_to_table(pk, rk, data), mode=UpdateMode.REPLACE))
        return Entity(pk, rk, dict(data), meta.get("etag"))

    def delete(self, entity: Entity) -> None:
        """Delete the entity if unchanged since read; ``ETagMismatch`` if it changed. Gone is fine."""
        try:
            _guard(
                "delete",
                lambda: self._client.delete_entity(
                    entity.partition_key,
                    entity.row_key,
                    etag=entity.etag,
                    match_condition=MatchConditions.IfNotModified if entity.etag else MatchConditions.Unconditionally,
                ),
            )
        except ResourceModifiedError as exc:
            raise ETagMismatch(f"{self.name}: ({entity.partition_key!r}, {entity.row_key!r}) changed") from exc

    def query(
        self, filter: str, parameters: Mapping[str, Any] | None = None, *, select: list[str] | None = None
    ) -> Iterator[Entity]:
        """Every entity matching an OData ``filter`` with ``@name`` parameters.

        Write filters with spaces inside parentheses, ``( PartitionKey eq @pk )``: the SDK splits
        on spaces when it substitutes parameters (docs/platform-notes.md).
        """
        pages = _guard(
            "query",
            lambda: self._client.query_entities(filter, parameters=dict(parameters or {}), select=select),
        )
        try:
            for raw in pages:
                yield _from_table(raw)
        except AzureError as exc:
            raise storage_error(exc, "table storage", "query") from exc

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
        """One page of a query and the continuation token of the next (None at the end)."""
        pager = _guard(
            "query",
            lambda: self._client.query_entities(
                filter, parameters=dict(parameters or {}), results_per_page=page_size
            ).by_page(continuation_token=continuation),
        )
        items = _guard("query", lambda: [_from_table(raw) for raw in next(pager, [])])
        return items, getattr(pager, "continuation_token", None)

    def write_batch(
        self, pk: str, upserts: Sequence[tuple[str, Mapping[str, Any]]] = (), deletes: Sequence[str] = ()
    ) -> int:
        """Upsert (replace) and delete rows of partition ``pk``, unconditionally, in transactions of
        ``MAX_TABLE_BATCH_ENTITIES``; the requests made. A transaction the service refuses (a delete
        of a row that is gone fails the whole transaction) is done again one row at a time."""
        ops: list[tuple[str, Any]] = [("upsert", _to_table(pk, rk, data)) for rk, data in upserts]
        upserted = {rk for rk, _ in upserts}
        ops += [("delete", {"PartitionKey": pk, "RowKey": rk}) for rk in deletes if rk not in upserted]
        chunks = [
            ops[start : start + MAX_TABLE_BATCH_ENTITIES] for start in range(0, len(ops), MAX_TABLE_BATCH_ENTITIES)
        ]

        def submit(chunk: list[tuple[str, Any]]) -> int:
            try:
                self._transaction(chunk)
            except TableTransactionError:
                for op, entity in chunk:
                    self._one(op, entity)
                return 1 + len(chunk)
            return 1

        # The rows are distinct and written unconditionally: the transactions may go in any order,
        # so a few go at once (the SDK's clients are thread-safe for requests).
        if len(chunks) <= 1:
            return sum(submit(chunk) for chunk in chunks)
        with ThreadPoolExecutor(max_workers=min(PARALLEL_TRANSACTIONS, len(chunks))) as pool:
            return sum(pool.map(submit, chunks))

    def insert_batch(self, pk: str, rows: Sequence[tuple[str, Mapping[str, Any]]]) -> bool:
        """Insert ``rows`` of partition ``pk`` in one transaction (at most ``MAX_TABLE_BATCH_ENTITIES``):
        True when all were written, False when the service refused it (a row existed) and none was."""
        if len(rows) > MAX_TABLE_BATCH_ENTITIES:
            raise ValueError(f"at most {MAX_TABLE_BATCH_ENTITIES} rows in one transaction")
        if not rows:
            return True
        try:
            self._transaction([("create", _to_table(pk, rk, data)) for rk, data in rows])
        except TableTransactionError:
            return False
        return True

    def _transaction(self, chunk: list[tuple[str, Any]]) -> None:
        actions = [(op, e, {"mode": UpdateMode.REPLACE}) if op == "upsert" else (op, e) for op, e in chunk]
        _guard("batch", lambda: self._client.submit_transaction(actions))

    def _one(self, op: str, entity: dict[str, Any]) -> None:
        if op == "upsert":
            _guard("upsert", lambda: self._client.upsert_entity(entity, mode=UpdateMode.REPLACE))
            return
        with contextlib.suppress(ResourceNotFoundError):
            _guard("delete", lambda: self._client.delete_entity(entity["PartitionKey"], entity["RowKey"]))


__all__ = ["ETagMismatch", "Entity", "EntityExists", "StateStore", "StateTable"]
