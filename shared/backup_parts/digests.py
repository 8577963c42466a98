"""A data part's stream digests (the stream manifest, ``shared.pg.archive``) on their way from the worker that
dumped it to the coordinator that merges them into the point's manifest.

A part's digests can be far larger than a table row property holds (64 KiB / 32 K characters), so each part
keeps them in a small JSON blob beside its own, ``layout.part_digests_name(part_blob)``, written after the
part's blob is committed and before its row is recorded. The sidecar names the SHA-256 of the committed blob
it describes: one whose SHA-256 is not the committed blob's (left by a blob since deleted) is not the part's.
Digests are a function of the archive's bytes alone, so every writer of one committed blob's sidecar writes
the same document: a second delivery that finds the blob committed without its sidecar digests the committed
blob itself (read back from the vault, never from the server) and writes what the first would have.
"""

from __future__ import annotations

import logging
from typing import Any

from shared.pg.archive import ArchiveDigester, ArchiveError
from shared.storage import layout
from shared.storage.blobs import BlobStore

log = logging.getLogger(__name__)


def save(blobs: BlobStore, part_blob: str, sha256: str, tables: dict[str, Any] | None) -> None:
    """Keep the digests (None: the stream could not be digested) of committed part blob ``part_blob``."""
    blobs.put_json(layout.part_digests_name(part_blob), {"sha256": sha256, "tables": tables})


def load(blobs: BlobStore, part_blob: str, sha256: str) -> tuple[bool, dict[str, Any] | None]:
    """(found, digests) kept for the committed blob ``part_blob`` whose SHA-256 is ``sha256``: found is False
    when no sidecar describes that commit; digests is None when its stream could not be digested."""
    doc = blobs.get_json(layout.part_digests_name(part_blob))
    if not isinstance(doc, dict) or doc.get("sha256") != sha256:
        return False, None
    tables = doc.get("tables")
    return True, tables if isinstance(tables, dict) else None


def of_committed(blobs: BlobStore, part_blob: str, sha256: str) -> dict[str, Any] | None:
    """The digests of committed part blob ``part_blob`` read back from the vault (checked against ``sha256``);
    None when its archive cannot be digested."""
    digester = ArchiveDigester()
    for chunk in blobs.read_verified(part_blob, sha256):
        digester.feed(chunk)
    try:
        return digester.tables()
    except ArchiveError as exc:
        log.warning("%s: no digests, its archive could not be digested: %s", part_blob, exc)
        return None


def names(part_blobs: list[str]) -> list[str]:
    """The digests sidecars of ``part_blobs``."""
    return [layout.part_digests_name(name) for name in part_blobs]
