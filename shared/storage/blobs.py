"""Blob containers: the one adapter over a container of any account, and the container lifecycle.

What every part of the app needs goes through ``BlobStore``: create a container idempotently,
write and read small JSON documents, claim a name exactly once across processes
(``create_once``), stream a dump in (``writer``) and out with its checksum checked
(``read_verified``), read a blob's tier and copy state (``info``), tier and copy it. Callers in
``shared/`` see only these methods and the types of this package, never the Azure SDK's. Every
Azure failure is sorted by ``shared.storage.faults``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import (
    BlobProperties,
    BlobServiceClient,
    ContainerClient,
    ContentSettings,
    RehydratePriority,
    StandardBlobTier,
)

from shared.errors import TransientError
from shared.storage.blockstream import DEFAULT_IN_FLIGHT, DOWNLOAD_RANGE_BYTES, BlobExists, BlockWriter, read_verified
from shared.storage.faults import Fault, classify, status_of, storage_error
from shared.storage.ports import BlobInfo, BlobMissing

# Azure Blob Storage, "Access tiers for blob data" (learn.microsoft.com/azure/storage/blobs/access-tiers-overview):
# a blob deleted or moved out of the Archive tier before 180 days is charged an early-deletion fee
# for the rest of the 180 days. A cost, not a limit: pgvault deletes on the policy's date anyway
# (the policy engine refuses archive retention below 6 months, which keeps most points past it).
ARCHIVE_EARLY_DELETION_DAYS = 180
# Same source: reading an Archive-tier blob fails with 409 BlobArchived until it is rehydrated
# (Standard priority up to 15 hours, High under 1 hour for blobs below 10 GB).
ARCHIVED_READ_ERROR = "BlobArchived"
# Suffix of the ArchiveStore copy of a point copied immediately (ImmediateCopyOption).
ARCHIVE_COPY_SUFFIX = ".archive"
_SERVICE = "blob storage"


def blob_info(name: str, props: BlobProperties) -> BlobInfo:
    """What Azure's blob properties say, in this package's terms."""
    copy = props.copy.status if props.copy is not None else None
    return BlobInfo(
        name,
        str(props.blob_tier or "Hot"),
        props.archive_status,
        copy,
        dict(props.metadata or {}),
        props.last_modified,
    )


class BlobStore:
    """One container of the storage account."""

    # Bytes a download asks for in one GET (``shared.storage.blockstream.read_verified``).
    download_range_bytes = DOWNLOAD_RANGE_BYTES

    def __init__(
        self, service: BlobServiceClient, container: str, *, download_range_bytes: int = DOWNLOAD_RANGE_BYTES
    ) -> None:
        self.container = container
        self._client: ContainerClient = service.get_container_client(container)
        self.download_range_bytes = download_range_bytes

    @classmethod
    def of(cls, client: ContainerClient) -> BlobStore:
        """The store over a container client made elsewhere (another account's, a test's)."""
        store = cls.__new__(cls)
        store.container = client.container_name
        store._client = client
        return store

    @property
    def client(self) -> ContainerClient:
        """The underlying container client (for tests and the adapters of this package)."""
        return self._client

    @property
    def url(self) -> str:
        """The container's URL."""
        return str(self._client.url)

    def ensure(self) -> None:
        """Create the container if it does not exist."""
        try:
            self._client.create_container()
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise storage_error(exc, _SERVICE, f"creating {self.container}") from exc

    def create_once(self, name: str, document: Mapping[str, Any]) -> bool:
        """Write ``name`` only if it does not exist yet; True for the one caller that wrote it.

        Many processes may race on the same name: exactly one gets True.
        """
        body = json.dumps(document, sort_keys=True).encode()
        try:
            self._client.upload_blob(
                name,
                body,
                overwrite=False,
                content_settings=ContentSettings(content_type="application/json"),
            )
        except ResourceExistsError:
            return False
        except ResourceModifiedError:
            # Azure answers a lost if-none-match race on a new blob with 412 as well as 409.
            return False
        except AzureError as exc:
            raise storage_error(exc, _SERVICE, f"writing {name}") from exc
        return True

    def get_json(self, name: str) -> Any | None:
        """The JSON document stored under ``name``, or None when there is none."""
        try:
            data = self._client.download_blob(name).readall()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise storage_error(exc, _SERVICE, f"reading {name}") from exc
        return json.loads(data)

    def delete(self, name: str, *, etag: str | None = None) -> bool:
        """Delete ``name`` (and its snapshots); False if it was already gone."""
        try:
            if etag is None:
                self._client.delete_blob(name, delete_snapshots="include")
            else:
                self._client.delete_blob(
                    name, delete_snapshots="include", etag=etag, match_condition=MatchConditions.IfNotModified
                )
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise storage_error(exc, _SERVICE, f"deleting {name}") from exc
        return True

    def set_archive_tier(self, name: str) -> bool:
        """Move blob ``name`` to the Archive tier (idempotent); False if the blob does not exist.

        Tiering is in place: the blob keeps its name, metadata and content; reads fail with
        ``BlobArchived`` until it is rehydrated. Early deletion within ``ARCHIVE_EARLY_DELETION_DAYS``
        is charged, not refused.
        """
        try:
            # Pass the enum: a plain string fails inside the SDK (docs/platform-notes.md).
            self._client.get_blob_client(name).set_standard_blob_tier(StandardBlobTier.ARCHIVE)
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise storage_error(exc, _SERVICE, f"archiving {name}") from exc
        return True

    def copy_to_archive(self, source: str, target: str) -> bool:
        """Copy blob ``source`` to ``target`` in the Archive tier (server-side; idempotent); False if no source.

        The target is written with the Archive tier in the same call, so it is never billed as hot.
        Within one account Azure usually completes the copy at once; a copy still pending raises
        ``TransientError`` and the next call (the next sweep) finds it done.
        """
        src = self._client.get_blob_client(source)
        dst = self._client.get_blob_client(target)
        try:
            try:
                copy = dst.get_blob_properties().copy
                if copy.status in (None, "success"):
                    return True
                if copy.status == "pending":
                    raise TransientError(f"archive copy of {source} is still pending")
            except ResourceNotFoundError:
                pass
            if self.tier(source) is None:
                return False
            result = dst.start_copy_from_url(src.url, standard_blob_tier=StandardBlobTier.ARCHIVE)
        except ResourceNotFoundError:
            return False
        except AzureError as exc:
            raise storage_error(exc, _SERVICE, f"copying {source}") from exc
        if result.get("copy_status") != "success":
            raise TransientError(f"archive copy of {source} is {result.get('copy_status')}; the next sweep checks it")
        return True

    def listing(self) -> Iterator[tuple[str, datetime]]:
        """Every committed blob of the container: its name and when it was last written (the service's clock)."""
        try:
            for blob in self._client.list_blobs():
                yield str(blob.name), blob.last_modified
        except AzureError as exc:
            raise storage_error(exc, _SERVICE, f"listing {self.container}") from exc

    def tier(self, name: str) -> str | None:
        """The access tier of blob ``name`` (``Hot``, ``Cool``, ``Archive``...), or None when it does not exist."""
        try:
            props = self._client.get_blob_client(name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise storage_error(exc, _SERVICE, f"reading {name}") from exc
        return str(props.blob_tier or "Hot")

    def exists(self, name: str) -> bool:
        """Whether blob ``name`` exists."""
        try:
            return bool(self._client.get_blob_client(name).exists())
        except AzureError as exc:
            raise storage_error(exc, _SERVICE, f"reading {name}") from exc

    def info(self, name: str) -> BlobInfo | None:
        """What storage says about blob ``name``, or None when it does not exist."""
        try:
            return blob_info(name, self._client.get_blob_client(name).get_blob_properties())
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise storage_error(exc, _SERVICE, f"reading {name}") from exc

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
        try:
            self._client.upload_blob(
                name,
                body,
                overwrite=overwrite,
                metadata=dict(metadata) if metadata else None,
                content_settings=ContentSettings(content_type=content_type),
                match_condition=None if overwrite else MatchConditions.IfMissing,
            )
        except (ResourceExistsError, ResourceModifiedError) as exc:
            if overwrite:
                raise storage_error(exc, _SERVICE, f"writing {name}") from exc
            raise BlobExists(f"{name} exists") from exc
        except AzureError as exc:
            raise storage_error(exc, _SERVICE, f"writing {name}") from exc

    def put_json(
        self, name: str, document: Any, *, metadata: Mapping[str, str] | None = None, overwrite: bool = True
    ) -> None:
        """Write ``document`` as JSON under ``name`` (see ``put``)."""
        body = json.dumps(document, indent=2, sort_keys=True).encode()
        self.put(name, body, content_type="application/json", metadata=metadata, overwrite=overwrite)

    def probe_write(self, name: str) -> str | None:
        """Create and delete a small blob ``name``: None when storage allowed both, else why it refused.

        Failures that may pass raise ``TransientError``; a container that does not exist, an
        identity refused, an account that does not answer are reasons (for a user to fix).
        """
        try:
            self._client.upload_blob(name, b"pgvault write probe", overwrite=False)
            self._client.delete_blob(name)
        except AzureError as exc:
            kind = classify(exc)
            if kind is Fault.BUSY:
                raise storage_error(exc, _SERVICE, f"probing {self.url}") from exc
            reasons = {
                Fault.MISSING: "the container does not exist",
                Fault.DENIED: "the app's identity may not write there",
                Fault.UNREACHABLE: f"storage did not answer ({type(exc).__name__})",
            }
            return reasons.get(kind, f"storage answered {status_of(exc)} {getattr(exc, 'reason', '')}".rstrip())
        return None

    def writer(self, name: str, *, expected_bytes: int = 0, streams: int = 1) -> BlockWriter:
        """A sink that streams blocks into blob ``name``, visible only once committed.

        ``streams`` writers at once (a multi-part backup) share ``DEFAULT_IN_FLIGHT`` uploads (at least one each).
        """
        in_flight = max(1, DEFAULT_IN_FLIGHT // max(1, streams))
        return BlockWriter(self._client, name, expected_bytes=expected_bytes, in_flight=in_flight)

    def read_verified(
        self,
        name: str,
        expected_sha256: str,
        *,
        decompress: bool = True,
        on_bytes: Callable[[int], None] | None = None,
        streams: int = 1,
    ) -> Iterator[bytes]:
        """Blob ``name``'s content as it downloads, checked against ``expected_sha256`` at the end.

        ``streams`` reads at once (a multi-part restore) share one budget of ranges in flight.
        """
        return read_verified(
            self._client,
            name,
            expected_sha256,
            decompress=decompress,
            on_bytes=on_bytes,
            streams=streams,
            range_bytes=self.download_range_bytes,
        )

    def start_rehydration(self, source: str, target: str, priority: str) -> None:
        """Copy archived blob ``source`` to ``target`` in the Hot tier at ``priority`` (``Standard``, ``High``).

        Azure takes hours (``info(target).archive_status`` says so meanwhile). ``BlobMissing`` when
        there is no ``source``.
        """
        try:
            url = self._client.get_blob_client(source).url
            self._client.get_blob_client(target).start_copy_from_url(
                url, standard_blob_tier=StandardBlobTier.HOT, rehydrate_priority=RehydratePriority(priority)
            )
        except ResourceNotFoundError as exc:
            raise BlobMissing(f"{source} does not exist") from exc
        except AzureError as exc:
            raise storage_error(exc, _SERVICE, f"rehydrating {source}") from exc


__all__ = ["ARCHIVE_COPY_SUFFIX", "BlobExists", "BlobInfo", "BlobMissing", "BlobStore", "blob_info"]
