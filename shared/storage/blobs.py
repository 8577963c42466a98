"""Blob containers: small documents, markers written once, and the container lifecycle.

Streaming backups into staged blocks builds on this adapter; what is here is what every part
of the app needs: create a container idempotently, write and read small JSON documents, and
claim a name exactly once across processes (``create_once``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

from shared.errors import TransientError


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
