"""Build the Azure Storage service clients from settings.

With ``AzureWebJobsStorage`` set to a connection string (Azurite, or an account key) the
clients come from it; otherwise the identity-based form of the Functions host is used:
``AzureWebJobsStorage__accountName`` (or the explicit ``__blobServiceUri`` /
``__queueServiceUri`` / ``__tableServiceUri``) with ``DefaultAzureCredential``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueServiceClient

from shared.errors import SettingsError
from shared.settings import Settings
from shared.storage.blobs import BlobStore


@dataclass(frozen=True)
class StorageAccount:
    """Where the state table, queues and blobs live, and how to reach them."""

    connection_string: str | None
    blob_uri: str | None = None
    queue_uri: str | None = None
    table_uri: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> StorageAccount:
        """The account the app settings point at (connection string first, then identity)."""
        return cls._build(
            settings.storage_connection_string,
            settings.storage_account_name,
            settings.storage_blob_uri,
            settings.storage_queue_uri,
            settings.storage_table_uri,
        )

    @classmethod
    def from_connection_setting(cls, name: str, env: Mapping[str, str]) -> StorageAccount:
        """The account a binding's ``connection`` setting names, read as the Functions host does.

        ``name`` alone holds a connection string; ``name__accountName`` or the
        ``name__*ServiceUri`` settings make an identity-based connection.
        """

        def get(key: str) -> str | None:
            return env.get(key, "").strip() or None

        conn = get(name)
        account, blob, queue, table = (
            get(f"{name}__{s}") for s in ("accountName", "blobServiceUri", "queueServiceUri", "tableServiceUri")
        )
        if conn is None and account is None and not (blob or queue or table):
            raise SettingsError({name: f"missing: set a storage connection string or {name}__accountName"})
        return cls._build(conn, account, blob, queue, table)

    @classmethod
    def _build(
        cls, conn: str | None, account: str | None, blob: str | None, queue: str | None, table: str | None
    ) -> StorageAccount:
        if conn:
            return cls(conn)
        return cls(
            None,
            blob_uri=blob or f"https://{account}.blob.core.windows.net",
            queue_uri=queue or f"https://{account}.queue.core.windows.net",
            table_uri=table or f"https://{account}.table.core.windows.net",
        )

    @cached_property
    def _credential(self) -> Any:
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential()

    def blob_service(self) -> BlobServiceClient:
        """A blob service client for this account."""
        if self.connection_string:
            return BlobServiceClient.from_connection_string(self.connection_string)
        return BlobServiceClient(str(self.blob_uri), credential=self._credential)

    def queue_service(self) -> QueueServiceClient:
        """A queue service client for this account (message encoding is set per queue)."""
        if self.connection_string:
            return QueueServiceClient.from_connection_string(self.connection_string)
        return QueueServiceClient(str(self.queue_uri), credential=self._credential)

    def table_service(self) -> TableServiceClient:
        """A table service client for this account."""
        if self.connection_string:
            return TableServiceClient.from_connection_string(self.connection_string)
        return TableServiceClient(endpoint=str(self.table_uri), credential=self._credential)

    def blob_endpoint(self) -> tuple[str, str]:
        """The account's blob endpoint URL and account name (as its blob client sees them)."""
        service = self.blob_service()
        return str(service.url), str(service.account_name or "")

    def container(self, name: str) -> BlobStore:
        """Container ``name`` of this account."""
        return BlobStore(self.blob_service(), name)


def blob_endpoint_of(connection_string: str) -> tuple[str, str]:
    """The blob endpoint URL and account name a storage connection string reaches; ``ValueError`` if
    it is not one."""
    service = BlobServiceClient.from_connection_string(connection_string)
    return str(service.url), str(service.account_name or "")


def container_at(account_url: str, container: str, *, connection_string: str | None = None) -> BlobStore:
    """A container of another account: by its connection string, else with the app's identity."""
    if connection_string is not None:
        return BlobStore(BlobServiceClient.from_connection_string(connection_string), container)
    from azure.identity import DefaultAzureCredential

    return BlobStore(BlobServiceClient(account_url, credential=DefaultAzureCredential()), container)
