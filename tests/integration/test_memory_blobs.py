"""The in-memory blob store against ``BlobStore`` on Azurite: the same operations, the same answers.

As for the state table (test_memory_table.py): one scenario, run on both, two equal transcripts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import zstandard

from shared.errors import PgVaultError
from shared.storage.blobs import BlobStore
from shared.storage.clients import StorageAccount
from shared.storage.memory import MemoryBlobStore

pytestmark = pytest.mark.integration

Store = BlobStore | MemoryBlobStore


class Transcript:
    def __init__(self) -> None:
        self.lines: list[Any] = []

    def attempt(self, what: str, call: Callable[[], Any]) -> Any:
        try:
            result = call()
        except PgVaultError as exc:
            self.lines.append((what, f"raised {type(exc).__name__}"))
            return None
        self.lines.append((what, result))
        return result


def _both(account: StorageAccount, unique: str, scenario: Callable[[Store, Transcript], None]) -> None:
    real = BlobStore(account.blob_service(), f"memb-{unique}")
    real.ensure()
    transcripts = []
    for store in (real, MemoryBlobStore()):
        t = Transcript()
        scenario(store, t)
        transcripts.append(t.lines)
    assert transcripts[1] == transcripts[0]


def test_documents_tiers_and_copies_answer_alike(account: StorageAccount, unique: str) -> None:
    def scenario(store: Store, t: Transcript) -> None:
        t.attempt("create once", lambda: store.create_once("a/marker.json", {"n": 1}))
        t.attempt("create once again", lambda: store.create_once("a/marker.json", {"n": 2}))
        t.attempt("get", lambda: store.get_json("a/marker.json"))
        t.attempt("get missing", lambda: store.get_json("nothing.json"))
        t.attempt("put json", lambda: store.put_json("b/doc.json", {"x": [1, 2]}, metadata={"jobid": "j1"}))
        t.attempt("put json, not over", lambda: store.put_json("b/doc.json", {"x": 3}, overwrite=False))
        t.attempt("put json over", lambda: store.put_json("b/doc.json", {"x": 4}))
        t.attempt("metadata is gone with the overwrite", lambda: dict(store.info("b/doc.json").metadata))  # type: ignore[union-attr]
        t.attempt("exists", lambda: (store.exists("b/doc.json"), store.exists("b/none")))
        t.attempt("tier", lambda: (store.tier("b/doc.json"), store.tier("b/none")))
        t.attempt("copy to archive", lambda: store.copy_to_archive("b/doc.json", "b/doc.json.archive"))
        t.attempt("copy again", lambda: store.copy_to_archive("b/doc.json", "b/doc.json.archive"))
        t.attempt("copy of nothing", lambda: store.copy_to_archive("b/none", "b/none.archive"))
        t.attempt("the copy is archived", lambda: store.tier("b/doc.json.archive"))
        t.attempt("archive in place", lambda: store.set_archive_tier("a/marker.json"))
        t.attempt("archive nothing", lambda: store.set_archive_tier("a/none"))
        t.attempt("tier after", lambda: store.tier("a/marker.json"))
        t.attempt("an archived blob cannot be read", lambda: store.get_json("a/marker.json"))
        t.attempt("listing", lambda: [name for name, _ in store.listing()])
        t.attempt("listing times are aware", lambda: {m.utcoffset() is not None for _, m in store.listing()})
        t.attempt("delete", lambda: store.delete("b/doc.json"))
        t.attempt("delete again", lambda: store.delete("b/doc.json"))
        t.attempt("listing after", lambda: [name for name, _ in store.listing()])

    _both(account, unique, scenario)


def test_streams_and_rehydrations_answer_alike(account: StorageAccount, unique: str) -> None:
    raw = b"pgvault " * 50_000
    packed = zstandard.ZstdCompressor().compress(raw)

    def scenario(store: Store, t: Transcript) -> None:
        writer = store.writer("i/1.pgdump.zst", expected_bytes=len(raw))
        writer.write(packed[:1000])
        t.attempt("nothing before commit", lambda: store.exists("i/1.pgdump.zst"))
        writer.write(packed[1000:])
        result = writer.commit({"jobid": "j1"})
        t.attempt("result", lambda: (result.blob_name, result.stored_bytes, result.sha256))
        t.attempt("metadata", lambda: dict(store.info("i/1.pgdump.zst").metadata))  # type: ignore[union-attr]
        t.attempt("read back", lambda: b"".join(store.read_verified("i/1.pgdump.zst", result.sha256)) == raw)
        t.attempt("read raw", lambda: b"".join(store.read_verified("i/1.pgdump.zst", result.sha256, decompress=False)))
        t.attempt("wrong checksum", lambda: b"".join(store.read_verified("i/1.pgdump.zst", "0" * 64)))
        t.attempt("missing", lambda: b"".join(store.read_verified("i/none", "0" * 64)))
        again = store.writer("i/1.pgdump.zst")
        again.write(b"other")
        t.attempt("commit if missing", lambda: again.commit({}, if_missing=True))
        t.attempt("left as it was", lambda: store.info("i/1.pgdump.zst").metadata["sha256"] == result.sha256)  # type: ignore[union-attr]
        t.attempt("archive", lambda: store.set_archive_tier("i/1.pgdump.zst"))
        t.attempt(
            "an archived dump cannot be read", lambda: b"".join(store.read_verified("i/1.pgdump.zst", result.sha256))
        )
        t.attempt("rehydrate", lambda: store.start_rehydration("i/1.pgdump.zst", "rehydrated/i/1.pgdump.zst", "High"))
        info = store.info("rehydrated/i/1.pgdump.zst")
        t.attempt("the copy", lambda: (info.tier, info.copy_status, info.archive_status))  # type: ignore[union-attr]
        t.attempt("rehydrate nothing", lambda: store.start_rehydration("i/none", "rehydrated/i/none", "Standard"))
        t.attempt(
            "read the copy", lambda: b"".join(store.read_verified("rehydrated/i/1.pgdump.zst", result.sha256)) == raw
        )

    _both(account, unique, scenario)
