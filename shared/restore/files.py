"""Restore as files: where a request may write, the container it names, and what is written there.

Where (``ExportRules``, checked when the request arrives and again by the worker, settings may
have changed): a container of a storage account listed in ``PGVAULT_EXPORT_ACCOUNTS``, named by
its blob endpoint, ``https://<account>.blob.core.windows.net/<container>`` (or another Azure
cloud's suffix). ``http`` and path-style URLs (``http://127.0.0.1:10000/devstoreaccount1/<c>``)
are the storage emulator's only: accepted when ``AzureWebJobsStorage`` itself is the emulator,
on the emulator's own endpoint, and still only for accounts listed in the setting (the settings
refuse ``devstoreaccount1`` there unless the vault runs on the emulator). Never the vault's own
containers on its own account (the backup container, the Flex Consumption deployment container,
the Functions host's), and never a Functions host's ``azure-webjobs-*`` containers on any account.
A refused URL is ``InvalidRequest`` naming ``restoreTargetInfo.targetDetails.url``, before any
byte is read or sent.

How: the vault's own account is reached with the vault's clients; another account with a
connection string from a secret (``targetDetails.connectionStringSecretUri``, whose account and
endpoint must be the URL's), or with ``DefaultAzureCredential``. A container that cannot be
written is ``UserErrorContainerNotAccessible``, found by writing a small probe (a new blob of a
random name, deleted at once) before any data moves. Every file is created with
``If-None-Match: *``: an existing blob is never overwritten.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shared.errors import ErrorCode, UserError
from shared.restore.request import RestoreRequest, parse_container_url
from shared.secrets import SecretProvider
from shared.settings import Settings, is_loopback
from shared.storage.blobs import BlobStore
from shared.storage.clients import StorageAccount, blob_endpoint_of, container_at
from shared.storage.ports import BlobExists

log = logging.getLogger(__name__)

URL_FIELD = "restoreTargetInfo.targetDetails.url"
SECRET_FIELD = "restoreTargetInfo.targetDetails.connectionStringSecretUri"  # noqa: S105 - a field name
SETTING = "PGVAULT_EXPORT_ACCOUNTS"
# Blob endpoints of Azure's clouds: <account>.blob.<suffix>, and the DNS-zone form
# <account>.z<nn>.blob.storage.azure.net (learn.microsoft.com, "Storage account endpoints").
_BLOB_HOST = re.compile(
    r"^(?P<account>[a-z0-9]{3,24})\.(?:z\d{1,2}\.blob\.storage\.azure\.net|"
    r"blob\.core\.(?:windows\.net|chinacloudapi\.cn|usgovcloudapi\.net))$"
)
# The Flex Consumption deployment container infra/main.bicep creates in the vault's account.
DEPLOYMENT_CONTAINER = "app-package"
# Containers the Functions host keeps in the account it runs on (keys, timer and singleton locks,
# run-from-package releases).
HOST_CONTAINER_PREFIXES = ("azure-webjobs-",)
HOST_CONTAINERS = ("scm-releases", "function-releases")


class FileExists(UserError):
    """A file of the restore exists in the target container (FailIfExists)."""

    def __init__(self, name: str) -> None:
        super().__init__(
            ErrorCode.CONFLICT,
            f"{name} exists in the target container; a restore never overwrites a file",
            target="restoreTargetInfo.targetDetails.filePrefix",
            recommended_action="Choose another filePrefix, or delete the existing file first.",
        )


@dataclass(frozen=True)
class Destination:
    """A checked container URL: the account's endpoint (``account_url``), its name and the container."""

    account_url: str
    account: str
    container: str
    emulator: bool

    @property
    def endpoint(self) -> tuple[str, str, int | None, str]:
        """What names the account's endpoint, loopback spellings made one (for comparing two)."""
        parts = urlsplit(self.account_url)
        host = parts.hostname or ""
        return ("loopback" if is_loopback(host) else host, self.account, parts.port, parts.scheme)


@dataclass(frozen=True)
class ExportRules:
    """Where restore-as-files may write: the listed accounts, less the vault's own containers."""

    accounts: tuple[str, ...] = ()
    own_account: str | None = None
    own_containers: tuple[str, ...] = ()
    # The storage emulator's blob endpoint when the vault itself runs on the emulator.
    emulator_endpoint: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ExportRules:
        """The rules the app settings make (``PGVAULT_EXPORT_ACCOUNTS``, the vault's account and containers)."""
        return cls(
            accounts=settings.export_accounts,
            own_account=settings.storage_account,
            own_containers=(settings.backup_container, DEPLOYMENT_CONTAINER, *HOST_CONTAINERS),
            emulator_endpoint=settings.storage_emulator_blob_endpoint,
        )

    def check(self, url: str) -> Destination:
        """The destination ``url`` names, if restore-as-files may write there; ``InvalidRequest`` if not."""
        account_url, container = parse_container_url(url, URL_FIELD)
        parts = urlsplit(account_url)
        host = (parts.hostname or "").lower()
        if is_loopback(host):
            dest = self._emulator(url, account_url, container)
        else:
            match = _BLOB_HOST.match(host)
            if match is None or parts.port is not None or parts.path.strip("/"):
                raise _refused(
                    url,
                    "name the storage account's blob endpoint, https://<account>.blob.core.windows.net/<container>",
                )
            if parts.scheme != "https":
                raise _refused(url, "backups leave only over https")
            dest = Destination(account_url, match["account"], container, emulator=False)
        if dest.account not in self.accounts:
            raise _refused(url, f"storage account {dest.account!r} is not one the vault may export to")
        if container.startswith(HOST_CONTAINER_PREFIXES):
            raise _refused(url, f"{container!r} is a Functions host's container")
        if dest.account == self.own_account and container in self.own_containers:
            raise _refused(url, f"{container!r} is one of the vault's own containers")
        return dest

    def _emulator(self, url: str, account_url: str, container: str) -> Destination:
        parts = urlsplit(account_url)
        account = parts.path.strip("/").lower()
        if self.emulator_endpoint is None:
            raise _refused(url, "a URL on this machine is the storage emulator's, and the vault does not run on one")
        if not account or "/" in account:
            raise _refused(url, "name the emulator's account and container, http://127.0.0.1:10000/<account>/<c>")
        dest = Destination(account_url, account, container, emulator=True)
        own = urlsplit(self.emulator_endpoint)
        if dest.endpoint[0] != "loopback" or parts.port != own.port or parts.scheme != own.scheme:
            raise _refused(url, f"the storage emulator answers at {own.scheme}://{own.netloc}, not here")
        return dest


def _refused(url: str, why: str) -> UserError:
    return UserError(
        ErrorCode.INVALID_REQUEST,
        f"{URL_FIELD}: {url} is refused: {why}",
        target=URL_FIELD,
        recommended_action=(
            f"Name a container of a storage account listed in the app setting {SETTING} (not one of the "
            "vault's own containers); an administrator adds accounts there."
        ),
    )


def _not_accessible(url: str, why: str) -> UserError:
    return UserError(ErrorCode.CONTAINER_NOT_ACCESSIBLE, f"cannot write to container {url}: {why}", target=URL_FIELD)


def check_destination(
    request: RestoreRequest, rules: ExportRules, secrets: SecretProvider
) -> tuple[Destination, str | None]:
    """Where a files restore goes, once ``rules`` allow its URL; with the connection string of its
    secret, when it names one (whose account must be the URL's)."""
    assert request.container_url is not None
    dest = rules.check(request.container_url)
    if request.connection_string_secret_uri is None:
        return dest, None
    value = secrets.get_secret(request.connection_string_secret_uri)
    try:
        url, account = blob_endpoint_of(value)
    except ValueError as exc:
        raise UserError(
            ErrorCode.SECRET_VALUE_IN_UNSUPPORTED_FORMAT,
            "the secret in connectionStringSecretUri is not a storage connection string",
            target=SECRET_FIELD,
        ) from exc
    # The client goes where the connection string says: that must be the account the URL names.
    reached = Destination(url, account.lower(), dest.container, dest.emulator)
    if reached.endpoint != dest.endpoint:
        raise UserError(
            ErrorCode.INVALID_REQUEST,
            f"{SECRET_FIELD}: the connection string is not for the account of {request.container_url}",
            target=SECRET_FIELD,
            recommended_action="Use the connection string of the account the URL names.",
        )
    return dest, value


def target_container(
    request: RestoreRequest, rules: ExportRules, vault_account: StorageAccount, secrets: SecretProvider
) -> BlobStore:
    """The container a files restore writes to, once ``check_destination`` allows it."""
    dest, connection_string = check_destination(request, rules, secrets)
    if connection_string is not None:
        return container_at(dest.account_url, dest.container, connection_string=connection_string)
    url, account = vault_account.blob_endpoint()
    own = Destination(url, account.lower(), dest.container, dest.emulator)
    if own.endpoint == dest.endpoint:
        return vault_account.container(dest.container)
    return container_at(dest.account_url, dest.container)


def probe_writable(container: BlobStore, prefix: str, url: str) -> None:
    """Create and delete a small blob beside the target files; ``UserErrorContainerNotAccessible`` if refused.

    Its name is random and it is created with If-None-Match: *, so the probe never touches a blob
    it did not create (a worker killed between the two calls leaves it behind).
    """
    refused = container.probe_write(f"{prefix}.pgvault-probe-{secrets.token_hex(8)}")
    if refused is not None:
        raise _not_accessible(url, refused)


def owner_of(container: BlobStore, name: str) -> str | None:
    """The job id recorded on blob ``name`` (``""`` when it names none); None when there is no such blob."""
    info = container.info(name)
    return None if info is None else str(info.metadata.get("jobid", ""))


def write_manifest(container: BlobStore, name: str, manifest: dict[str, Any], job_id: str) -> None:
    """Create the files restore's manifest; ``FileExists`` if a blob of that name exists."""
    try:
        container.put_json(name, manifest, metadata={"jobid": job_id}, overwrite=False)
    except BlobExists as exc:
        raise FileExists(name) from exc


def write_text(container: BlobStore, name: str, text: str, job_id: str) -> None:
    """Create a text file of a files restore (``roles.sql``); ``FileExists`` if a blob of that name exists."""
    try:
        container.put(name, text.encode(), content_type="application/sql", metadata={"jobid": job_id}, overwrite=False)
    except BlobExists as exc:
        raise FileExists(name) from exc
