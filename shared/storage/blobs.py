"""Blob containers: small documents, markers written once, and the container lifecycle.

Streaming backups into staged blocks builds on this adapter; what is here is what every part
of the app needs: create a container idempotently, write and read small JSON documents, and
claim a name exactly once across processes (``create_once``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings, StandardBlobTier

from shared.errors import TransientError

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


class BlobStore:
    """One container of the storage account."""

    def __init__(self, service: BlobServiceClient, container: str) -> None:
        self._service = service
        self.container = container
        self._client: ContainerClient = service.get_container_client(container)

    @property
    def client(self) -> ContainerClient:
        """The underlying container client, for adapters that stream blocks."""
        return self._client

    def ensure(self) -> None:
        """Create the container if it does not exist."""
        try:
            self._client.create_container()
        except ResourceExistsError:
            pass
        except AzureError as exc:
            raise TransientError(f"blob storage failed creating {self.container}: {type(exc).__name__}") from exc

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
            raise TransientError(f"blob storage failed writing {name}: {type(exc).__name__}") from exc
        return True

    def get_json(self, name: str) -> Any | None:
        """The JSON document stored under ``name``, or None when there is none."""
        try:
            data = self._client.download_blob(name).readall()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise TransientError(f"blob storage failed reading {name}: {type(exc).__name__}") from exc
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
            raise TransientError(f"blob storage failed deleting {name}: {type(exc).__name__}") from exc
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
            raise TransientError(f"blob storage failed archiving {name}: {type(exc).__name__}") from exc
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
            raise TransientError(f"blob storage failed copying {source}: {type(exc).__name__}") from exc
        if result.get("copy_status") != "success":
            raise TransientError(f"archive copy of {source} is {result.get('copy_status')}; the next sweep checks it")
        return True

    def listing(self) -> Iterator[tuple[str, datetime]]:
        """Every committed blob of the container: its name and when it was last written (the service's clock)."""
        try:
            for blob in self._client.list_blobs():
                yield str(blob.name), blob.last_modified
        except AzureError as exc:
            raise TransientError(f"blob storage failed listing {self.container}: {type(exc).__name__}") from exc

    def tier(self, name: str) -> str | None:
        """The access tier of blob ``name`` (``Hot``, ``Cool``, ``Archive``...), or None when it does not exist."""
        try:
            props = self._client.get_blob_client(name).get_blob_properties()
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise TransientError(f"blob storage failed reading {name}: {type(exc).__name__}") from exc
        return str(props.blob_tier or "Hot")
