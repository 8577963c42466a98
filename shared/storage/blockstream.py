"""Streaming a backup into a block blob, and reading it back with its checksum verified.

Writing: bytes arrive as they are produced (zstd output), are cut into blocks and staged while
the producer goes on, with a bounded number of uploads in flight, so memory stays near
``block size × (in flight + 1)`` however large the database. The SHA-256 of exactly what is
stored is computed on the way. Nothing is visible until ``commit``; a writer that fails or is
killed leaves only uncommitted blocks, which Azure discards (after 7 days, or when the next
commit of the same blob name lists its own blocks).

Block size grows with the amount written (``stored / 4000``, at least 8 MiB, at most 4,000 MiB):
without any estimate a 64 TiB blob (Azure Database for PostgreSQL's largest) takes about 41,000
blocks. Given the expected size (the database's), the first blocks are ``expected / 10,000``, so
a blob up to Azure's 190.7 TiB limit stays near 10,000 blocks. Both under 50,000.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import zstandard
from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobClient, ContainerClient, ContentSettings

from shared.errors import PgVaultError, TransientError
from shared.process_memory import release_large_buffers
from shared.storage.faults import storage_error
from shared.storage.limits import MAX_BLOCK_BYTES, MAX_BLOCKS_PER_BLOB
from shared.storage.ports import BlobExists, IntegrityError, StreamResult

log = logging.getLogger(__name__)

MIN_BLOCK_BYTES = 8 * 1024 * 1024
# Block size is stored bytes so far / this: see the module docstring for why it bounds the count.
BLOCK_GROWTH_DIVISOR = 4000
# With an expected size, blocks start at expected / this.
EXPECTED_BLOCKS = 10_000
DEFAULT_IN_FLIGHT = 2


def next_block_size(stored_so_far: int, expected: int = 0) -> int:
    """The size of the next block, given how many bytes are staged and the expected total."""
    wanted = max(stored_so_far // BLOCK_GROWTH_DIVISOR, expected // EXPECTED_BLOCKS)
    return max(MIN_BLOCK_BYTES, min(MAX_BLOCK_BYTES, wanted))


def blocks_needed(total: int, expected: int = 0) -> int:
    """How many blocks ``next_block_size`` makes for ``total`` stored bytes."""
    count, done = 0, 0
    while done < total:
        done += next_block_size(done, expected)
        count += 1
    return count


class BlockWriter:
    """A file-like sink that stages what it is given as blocks of one blob, then commits them."""

    def __init__(
        self,
        container: ContainerClient,
        blob_name: str,
        *,
        in_flight: int = DEFAULT_IN_FLIGHT,
        expected_bytes: int = 0,
    ) -> None:
        self._blob = container.get_blob_client(blob_name)
        self._expected = expected_bytes
        self.blob_name = blob_name
        self._buffer = bytearray()
        self._target = next_block_size(0, expected_bytes)
        self._ids: list[str] = []
        self._pool = ThreadPoolExecutor(in_flight, thread_name_prefix="stage")
        self._slots = threading.Semaphore(in_flight)
        self._pending: list[Future[None]] = []
        self._hash = hashlib.sha256()
        self.stored = 0
        self._started = time.monotonic()
        self._closed = False
        self._writer_id = secrets.token_hex(8)

    # The file-like API zstandard's stream_writer needs.
    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Take ``data``; stage a block whenever a full one is buffered."""
        self._hash.update(data)
        self._buffer += data
        self.stored += len(data)
        while len(self._buffer) >= self._target:
            with memoryview(self._buffer) as view:
                block = bytes(view[: self._target])  # one copy (a slice of the bytearray would be a second)
            del self._buffer[: self._target]
            self._stage(block)
        return len(data)

    def flush(self) -> None:
        """Nothing to do: blocks are staged as they fill."""

    def _stage(self, block: bytes) -> None:
        self._raise_failed()
        if len(self._ids) >= MAX_BLOCKS_PER_BLOB:
            raise TransientError(f"{self.blob_name}: more than {MAX_BLOCKS_PER_BLOB} blocks")
        # Ids are this writer's own: a second writer of the same blob name (a worker taken over
        # while it still ran) stages other blocks, so a commit never lists bytes it did not write.
        block_id = base64.b64encode(f"{self._writer_id}-{len(self._ids):08d}".encode()).decode()
        self._ids.append(block_id)
        self._slots.acquire()  # bounds memory: at most in_flight blocks waiting to upload
        future = self._pool.submit(self._upload, block_id, block)
        self._pending.append(future)
        self._target = next_block_size(self.stored - len(self._buffer), self._expected)

    def _upload(self, block_id: str, block: bytes) -> None:
        try:
            # validate_content sends each block's MD5 (Content-MD5), which the service checks before
            # it accepts the block: a bit flipped on the way fails the upload instead of the restore.
            # The service then skips the CRC64 it otherwise computes per block, which in Azurite costs
            # three times the CPU of the MD5 (bench/README.md).
            self._blob.stage_block(block_id, block, length=len(block), validate_content=True)
        finally:
            self._slots.release()

    def _raise_failed(self) -> None:
        for future in [f for f in self._pending if f.done()]:
            self._pending.remove(future)
            error = future.exception()
            if error is not None:
                raise _transient(self.blob_name, error)

    def commit(
        self, metadata: Mapping[str, str], *, content_type: str = "application/zstd", if_missing: bool = False
    ) -> StreamResult:
        """Stage what is left, then commit every block with ``metadata``. The blob appears only now.

        ``if_missing`` commits with If-None-Match: *, so an existing blob of that name is left as it
        is and ``BlobExists`` raised.
        """
        if self._buffer or not self._ids:
            self._stage(bytes(self._buffer))
            self._buffer.clear()
        try:
            for future in self._pending:
                future.result()
            self._pending.clear()
            result = self._blob.commit_block_list(
                [BlobBlock(block_id=i) for i in self._ids],
                metadata={**metadata, "sha256": self._hash.hexdigest(), "storedbytes": str(self.stored)},
                content_settings=ContentSettings(content_type=content_type),
                match_condition=MatchConditions.IfMissing if if_missing else None,
            )
        except (ResourceExistsError, ResourceModifiedError) as exc:
            if not if_missing:
                raise _transient(self.blob_name, exc) from exc
            raise BlobExists(f"{self.blob_name} exists") from exc
        except AzureError as exc:
            raise _transient(self.blob_name, exc) from exc
        finally:
            self.close()
        return StreamResult(
            self.blob_name,
            str(result["etag"]),
            self._hash.hexdigest(),
            self.stored,
            len(self._ids),
            time.monotonic() - self._started,
        )

    def close(self) -> None:
        """Stop the upload threads (uncommitted blocks are left for Azure to discard)."""
        if not self._closed:
            self._closed = True
            self._pool.shutdown(wait=True, cancel_futures=True)

    @property
    def closed(self) -> bool:
        return self._closed


def _transient(blob_name: str, error: BaseException) -> PgVaultError:
    if isinstance(error, AzureError):
        return storage_error(error, "blob storage", f"writing {blob_name}")
    return TransientError(f"blob storage failed while writing {blob_name}: {type(error).__name__}: {error}")


# Decompressed bytes handed out at a time: a 4 MiB chunk of a very compressible dump (pgbench's
# filler column is spaces) inflates to hundreds of MiB if decompressed whole.
READ_OUT_BYTES = 1024 * 1024
# Stored bytes the decompressor asks for at a time: the download's own chunk size (4 MiB).
READ_IN_BYTES = 4 * 1024 * 1024


# A restore's download: ranges of this size, this many requested at once (bench/download.py). The
# SDK's ``download_blob().chunks()`` asks for one 4 MiB range at a time after a first GET of 32 MiB,
# whose rest it re-slices (copies) for every 4 MiB handed out.
DOWNLOAD_RANGE_BYTES = 8 * 1024 * 1024
DOWNLOAD_IN_FLIGHT = 2


def download_ranges(
    blob: BlobClient,
    *,
    chunk: int = DOWNLOAD_RANGE_BYTES,
    in_flight: int = DOWNLOAD_IN_FLIGHT,
    hook: Callable[[Any], None] | None = None,
) -> Iterator[bytes]:  # not a generator: the properties are read at the call
    """The blob's bytes in order, ``chunk`` bytes a GET, ``in_flight`` GETs under way at once.

    The blob's properties are read at once (so a missing blob raises ``ResourceNotFoundError`` here);
    every range is read from that version (If-Match its ETag): a blob overwritten meanwhile fails the
    read instead of mixing two versions. Memory stays near ``chunk × (in_flight + 1)``. Raises the
    SDK's errors.
    """
    extra: dict[str, Any] = {"raw_request_hook": hook} if hook is not None else {}
    props = blob.get_blob_properties(**extra)
    return _ranges(blob, int(props.size), str(props.etag), chunk=chunk, in_flight=in_flight, extra=extra)


def _ranges(
    blob: BlobClient, size: int, etag: str, *, chunk: int, in_flight: int, extra: dict[str, Any]
) -> Iterator[bytes]:
    def get(offset: int) -> bytes:
        length = min(chunk, size - offset)
        download = blob.download_blob(
            offset=offset, length=length, etag=etag, match_condition=MatchConditions.IfNotModified, **extra
        )
        data: bytes = download.readall()
        return data

    # Not a `with`: a download abandoned mid-way (a cancelled restore) is closed wherever its generator
    # is finalised, and the garbage collector may run that on one of these threads, which must not wait
    # for itself. GETs still under way end on their own; their bytes are dropped.
    pool = ThreadPoolExecutor(max(1, in_flight), thread_name_prefix="download")
    pending: deque[Future[bytes]] = deque()
    offsets = iter(range(0, size, chunk))
    try:
        for offset in itertools.islice(offsets, max(1, in_flight)):
            pending.append(pool.submit(get, offset))
        while pending:
            data = pending.popleft().result()
            for offset in itertools.islice(offsets, 1):
                pending.append(pool.submit(get, offset))
            yield data
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


class _Hashing:
    """A file-like view of a blob download that hashes what it hands out."""

    def __init__(self, chunks: Iterator[bytes], on_bytes: Callable[[int], None] | None) -> None:
        self._chunks, self._on_bytes = chunks, on_bytes
        self._pending = memoryview(b"")
        self.digest = hashlib.sha256()
        self.read_bytes = 0

    def read(self, size: int = -1) -> bytes:
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return b""
            self.digest.update(chunk)
            self.read_bytes += len(chunk)
            if self._on_bytes is not None:
                self._on_bytes(self.read_bytes)
            self._pending = memoryview(chunk)
        size = len(self._pending) if size < 0 else size
        out, self._pending = self._pending[:size], self._pending[size:]  # views: no copy of the rest
        return bytes(out)


def read_verified(
    container: ContainerClient,
    blob_name: str,
    expected_sha256: str,
    *,
    decompress: bool = True,
    on_bytes: Callable[[int], None] | None = None,
    streams: int = 1,
    range_bytes: int = DOWNLOAD_RANGE_BYTES,
) -> Iterator[bytes]:
    """The blob's content, decompressed, as it downloads; ``IntegrityError`` at the end on a mismatch.

    The checksum covers the stored (compressed) bytes; a reader must treat what it received as
    untrusted until the iterator finishes without error. Memory stays bounded whatever the
    compression ratio: decompressed output comes ``READ_OUT_BYTES`` at a time, the download
    ``range_bytes`` a GET with ``DOWNLOAD_IN_FLIGHT`` GETs under way, shared among ``streams``
    downloads running at once (a multi-part restore: at least one each).
    """
    if streams > 1:
        release_large_buffers()  # parts at once: peak memory follows what they hold (shared.process_memory)
    in_flight = max(1, DOWNLOAD_IN_FLIGHT // max(1, streams))
    try:
        chunks = download_ranges(container.get_blob_client(blob_name), chunk=range_bytes, in_flight=in_flight)
    except ResourceNotFoundError as exc:
        raise IntegrityError(f"{blob_name} is missing from the vault") from exc
    except AzureError as exc:
        raise storage_error(exc, "blob storage", f"reading {blob_name}") from exc
    raw = _Hashing(chunks, on_bytes)
    try:
        if decompress:
            reader = zstandard.ZstdDecompressor().stream_reader(
                raw,  # type: ignore[arg-type]
                read_size=READ_IN_BYTES,
                read_across_frames=True,
            )
            while out := reader.read(READ_OUT_BYTES):
                yield out
        else:
            while out := raw.read():
                yield out
        while raw.read():  # bytes after the last frame still count in the checksum
            pass
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"{blob_name} is not a valid zstd stream: {exc}") from exc
    except AzureError as exc:
        raise storage_error(exc, "blob storage", f"reading {blob_name}") from exc
    if raw.digest.hexdigest() != expected_sha256:
        raise IntegrityError(
            f"{blob_name}: SHA-256 of the stored bytes is {raw.digest.hexdigest()}, "
            f"the recovery point says {expected_sha256}"
        )


__all__ = ["BlobExists", "BlockWriter", "IntegrityError", "StreamResult", "read_verified"]
