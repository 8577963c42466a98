"""Pages of the instances list: ``top`` instances by name, an opaque token of where the next starts.

Instances live in one partition (``layout.INSTANCE``) keyed by their lowercase name, so a page is
one query "RowKey gt <last name returned>" asking for ``top + 1`` rows (the extra one tells whether
more remain); it costs the same whatever the vault holds. The extras each listed instance shows
(its last backup row, its usage row) are read with one range query per partition bounded by the
page's first and last row keys, never the whole partition.

The token is built like the jobs list's (``shared.jobs.paging``): base64url of a small JSON body
and a checksum of it, so an edited or truncated token is refused with a 400 naming the parameter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.backup_times import BackupTimes, BackupTimesReader
from shared.instances import Instance
from shared.jobs.paging import InvalidToken
from shared.jobs.store import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from shared.page_token import TamperedToken, seal, unseal
from shared.recovery_points import RecoveryPointStore, Usage
from shared.storage import layout
from shared.storage.ports import Entity, StateStore

_TOKEN_VERSION = 1

# Keep spaces inside the parentheses: the SDK splits on spaces when it substitutes parameters.
_AFTER = "( PartitionKey eq @pk ) and ( RowKey gt @after )"


def encode_token(after: str) -> str:
    """An opaque, URL-safe token saying the next page starts after row key ``after``."""
    return seal({"v": _TOKEN_VERSION, "r": after}, "instances")


def decode_token(token: str, target: str = "continuationToken") -> str:
    """The row key after which the page starts; ``InvalidToken`` (400 naming ``target``) unless
    pgvault wrote ``token`` for the instances list. A forged token can only move where a page starts."""
    try:
        fields = unseal(token, "instances")
        if not isinstance(fields, dict) or fields.get("v") != _TOKEN_VERSION:
            raise InvalidToken(target, "unknown version")
        after = fields["r"]
    except InvalidToken:
        raise
    except TamperedToken:
        raise InvalidToken(target, "checksum does not match") from None
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise InvalidToken(target, "not readable") from exc
    if not isinstance(after, str) or after != layout.row_key(after) or not layout.valid_name(after):
        raise InvalidToken(target, "malformed position")
    return after


@dataclass(frozen=True)
class ListedInstance:
    """One instance of a page with what the list shows beside it."""

    instance: Instance
    times: BackupTimes
    usage: Usage | None


@dataclass(frozen=True)
class InstancePage:
    """Up to ``top`` instances by name and the row key the next page starts after (None on the last)."""

    items: list[ListedInstance]
    after: str | None
    requests: int = 0
    """Table queries this page took (for benchmarks; an instance without a ``lastbackup`` row adds
    one history read, once: the row is written for the next reader)."""

    @property
    def next_token(self) -> str | None:
        """The continuation token of the next page, or None on the last."""
        return None if self.after is None else encode_token(self.after)


def _rows(state: StateStore, pk: str, where: str, params: Mapping[str, Any], wanted: int) -> tuple[list[Entity], int]:
    """Up to ``wanted`` rows of one query, following the service's own continuations (it may split
    an answer); and the number of requests made."""
    rows: list[Entity] = []
    continuation: Any = None
    requests = 0
    while len(rows) < wanted:
        items, continuation = state.page(
            where, {**params, "pk": pk}, page_size=wanted - len(rows), continuation=continuation
        )
        requests += 1
        rows.extend(items)
        if continuation is None:
            break
    return rows[:wanted], requests


def list_page(
    state: StateStore, now: datetime, *, top: int = DEFAULT_PAGE_SIZE, after: str | None = None
) -> InstancePage:
    """Up to ``top`` instances by name after row key ``after`` (the first page without), each with its
    last and next backup and its storage usage."""
    if not 1 <= top <= MAX_PAGE_SIZE:
        raise ValueError(f"top must be 1-{MAX_PAGE_SIZE}")
    entities, requests = _rows(state, layout.INSTANCE, _AFTER, {"after": after or ""}, top + 1)
    more = len(entities) > top
    instances = [Instance.from_entity(e) for e in entities[:top]]
    if not instances:
        return InstancePage([], None, requests)
    lo, hi = entities[0].row_key, entities[len(instances) - 1].row_key
    times = BackupTimesReader(state).of_range(instances, lo, hi, now)
    usage = RecoveryPointStore(state).usage_between(lo, hi)
    items = [ListedInstance(i, t, usage.get(layout.row_key(i.spec.name))) for i, t in times]
    return InstancePage(items, hi if more else None, requests + 2)
