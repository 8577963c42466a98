"""Restore as files: the container a request names, and what is written there.

The vault's own storage account (same account URL as ``AzureWebJobsStorage``) is reached with
the vault's clients; another account with a connection string from a secret
(``targetDetails.connectionStringSecretUri``), or with ``DefaultAzureCredential``. A container
that cannot be written is ``UserErrorContainerNotAccessible``, found by writing a small probe
before any data moves.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings

from shared.errors import ErrorCode, TransientError, UserError
from shared.restore.request import RestoreRequest, parse_container_url
from shared.secrets import SecretProvider

log = logging.getLogger(__name__)


def _not_accessible(url: str, why: str) -> UserError:
    return UserError(
        ErrorCode.CONTAINER_NOT_ACCESSIBLE,
        f"cannot write to container {url}: {why}",
        target="restoreTargetInfo.targetDetails.url",
    )


def target_container(
    request: RestoreRequest, vault_blobs: BlobServiceClient, secrets: SecretProvider
) -> ContainerClient:
    """The container a files restore writes to."""
    assert request.container_url is not None
    account, container = parse_container_url(request.container_url, "restoreTargetInfo.targetDetails.url")
    if account.rstrip("/").lower() == vault_blobs.url.rstrip("/").lower():
        return vault_blobs.get_container_client(container)
    if request.connection_string_secret_uri is not None:
        value = secrets.get_secret(request.connection_string_secret_uri)
        try:
            service = BlobServiceClient.from_connection_string(value)
        except ValueError as exc:
            raise UserError(
                ErrorCode.SECRET_VALUE_IN_UNSUPPORTED_FORMAT,
                "the secret in connectionStringSecretUri is not a storage connection string",
                target="restoreTargetInfo.targetDetails.connectionStringSecretUri",
            ) from exc
        return service.get_container_client(container)
    from azure.identity import DefaultAzureCredential

    return ContainerClient(account, container, credential=DefaultAzureCredential())


def probe_writable(container: ContainerClient, prefix: str, url: str) -> None:
    """Write and delete a small blob beside the target files; ``UserErrorContainerNotAccessible`` if refused."""
    name = f"{prefix}.pgvault-probe"
    try:
        container.upload_blob(name, b"pgvault write probe", overwrite=True)
        container.delete_blob(name)
    except ResourceNotFoundError as exc:
        raise _not_accessible(url, "the container does not exist") from exc
    except ClientAuthenticationError as exc:
        raise _not_accessible(url, "the app's identity could not authenticate") from exc
    except HttpResponseError as exc:
        if exc.status_code in (401, 403, 404, 409):
            raise _not_accessible(url, f"storage answered {exc.status_code} {exc.reason}") from exc
        raise TransientError(f"storage failed probing {url}: {exc.status_code}") from exc
    except AzureError as exc:
        raise _not_accessible(url, f"{type(exc).__name__}") from exc


def exists(container: ContainerClient, name: str) -> bool:
    """Whether blob ``name`` exists in ``container``."""
    try:
        return bool(container.get_blob_client(name).exists())
    except AzureError as exc:
        raise TransientError(f"storage failed reading {name}: {type(exc).__name__}") from exc


def write_manifest(container: ContainerClient, name: str, manifest: dict[str, Any]) -> None:
    """Store the files restore's manifest (a retry overwrites its own)."""
    try:
        container.upload_blob(
            name,
            json.dumps(manifest, indent=2, sort_keys=True).encode(),
            overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
        )
    except AzureError as exc:
        raise TransientError(f"storage failed writing {name}: {type(exc).__name__}") from exc
