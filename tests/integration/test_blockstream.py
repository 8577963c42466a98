"""The block writer's upload integrity on a real Azurite: every block carries its MD5, which the service checks."""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import pytest
import zstandard
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobServiceClient

from devhost.services import Azurite
from shared.errors import TransientError
from shared.storage.blockstream import (
    DOWNLOAD_RANGE_BYTES,
    MIN_BLOCK_BYTES,
    READ_OUT_BYTES,
    BlobExists,
    BlockWriter,
    read_verified,
)

pytestmark = pytest.mark.integration


def _container(azurite: Azurite, unique: str, hook: Any) -> Any:
    service = BlobServiceClient.from_connection_string(azurite.connection_string, raw_request_hook=hook)
    container = service.get_container_client(f"md5-{unique}")
    container.create_container()
    return container


def test_every_staged_block_carries_the_md5_of_its_bytes(azurite: Azurite, unique: str) -> None:
    sent: list[tuple[str, bytes]] = []

    def record(request: Any) -> None:
        http = request.http_request
        if http.method == "PUT" and "comp=block&" in http.url + "&":
            sent.append((http.headers.get("Content-MD5", ""), bytes(http.data)))

    container = _container(azurite, unique, record)
    data = os.urandom(MIN_BLOCK_BYTES * 2 + 12345)
    writer = BlockWriter(container, "three-blocks")
    writer.write(data)
    result = writer.commit({})

    assert result.blocks == 3 == len(sent)
    for md5, body in sent:
        assert md5 == base64.b64encode(hashlib.md5(body).digest()).decode()  # noqa: S324 - the service's checksum
    assert container.download_blob("three-blocks").readall() == data


def test_a_block_corrupted_on_the_way_is_refused_and_nothing_is_committed(azurite: Azurite, unique: str) -> None:
    def flip_a_bit(request: Any) -> None:
        http = request.http_request
        if http.method == "PUT" and "comp=block&" in http.url + "&":
            body = bytearray(http.data)
            body[len(body) // 2] ^= 0x01  # after the MD5 was computed: what a bad link would do
            http.data = bytes(body)

    container = _container(azurite, unique, flip_a_bit)
    writer = BlockWriter(container, "corrupted")
    writer.write(os.urandom(1000))
    with pytest.raises(TransientError, match="Md5Mismatch"):
        writer.commit({})
    with pytest.raises(ResourceNotFoundError):
        container.get_blob_client("corrupted").get_blob_properties()


def test_a_very_compressible_blob_is_read_back_a_bounded_piece_at_a_time(azurite: Azurite, unique: str) -> None:
    container = _container(azurite, unique, None)
    original = b" " * (64 * 1024 * 1024)  # 64 MiB of spaces: a few KiB stored, one download chunk
    writer = BlockWriter(container, "spaces")
    with zstandard.ZstdCompressor(level=1).stream_writer(writer, closefd=False) as out:  # type: ignore[arg-type]
        out.write(original)
    result = writer.commit({})
    assert result.stored_bytes < 64 * 1024
    pieces = list(read_verified(container, "spaces", result.sha256))
    assert b"".join(pieces) == original
    assert max(len(p) for p in pieces) <= READ_OUT_BYTES < len(original)


def test_a_commit_asked_to_create_its_blob_leaves_an_existing_one_as_it_was(azurite: Azurite, unique: str) -> None:
    container = _container(azurite, unique, None)
    writer = BlockWriter(container, "file.dump")
    writer.write(b"staged while the name was free")
    # Someone else's blob of that name appears between the check and the commit.
    container.upload_blob("file.dump", b"someone else's")
    etag = container.get_blob_client("file.dump").get_blob_properties().etag
    with pytest.raises(BlobExists):
        writer.commit({"jobid": "j"}, if_missing=True)
    assert container.download_blob("file.dump").readall() == b"someone else's"
    assert container.get_blob_client("file.dump").get_blob_properties().etag == etag
    # Without asking, a commit replaces it (what the vault's own backups rely on for a retry of theirs).
    other = BlockWriter(container, "file.dump")
    other.write(b"mine")
    other.commit({"jobid": "j"})
    assert container.download_blob("file.dump").readall() == b"mine"


def test_a_restore_reads_its_blob_in_ranges_of_the_block_size_from_one_version(azurite: Azurite, unique: str) -> None:
    gets: list[tuple[str, str]] = []

    def record(request: Any) -> None:
        http = request.http_request
        if http.method == "GET":
            gets.append((str(http.headers.get("x-ms-range", "")), str(http.headers.get("If-Match", ""))))

    container = _container(azurite, unique, record)
    data = os.urandom(DOWNLOAD_RANGE_BYTES * 2 + 4321)
    writer = BlockWriter(container, "ranged")
    writer.write(data)
    result = writer.commit({})
    etag = container.get_blob_client("ranged").get_blob_properties().etag
    gets.clear()

    assert b"".join(read_verified(container, "ranged", result.sha256, decompress=False)) == data
    # Ranges of the blocks' own size (Azurite serves a range within one block at a third of the CPU of
    # the SDK's 4 MiB pieces: bench/download.py), each from the version first read.
    step = DOWNLOAD_RANGE_BYTES
    wanted = [(f"bytes={a}-{min(a + step, len(data)) - 1}", etag) for a in range(0, len(data), step)]
    assert len(gets) == len(wanted) == 3 and set(gets) == set(wanted)
    # The blob overwritten between its ranges: the read fails rather than mixing two versions.
    chunks = read_verified(container, "ranged", result.sha256, decompress=False, range_bytes=1024 * 1024)
    next(chunks)  # 1 of 17 ranges read, at most 2 more asked for
    container.get_blob_client("ranged").upload_blob(os.urandom(len(data)), overwrite=True)
    with pytest.raises(TransientError):
        list(chunks)
