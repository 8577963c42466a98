"""Where database credentials come from: Key Vault secrets, or environment variables locally.

A backup instance names its secret by reference:
- ``https://<vault>.vault.azure.net/secrets/<name>[/<version>]``: read with the real
  ``SecretClient`` and ``DefaultAzureCredential``; the latest version at every run unless the URI
  pins one; cached for a few minutes so a burst of jobs reads it once.
- ``env:PGVAULT_SECRET_<NAME>``: for local use, only when ``PGVAULT_ALLOW_ENV_SECRETS=true``, and
  only variables with that prefix, so no reference can read the app's own settings
  (``AzureWebJobsStorage``, keys) as if they were database credentials.

Key Vault's failures become the codes Azure Backup uses: ``UserErrorInvalidSecret`` (no such
secret), ``UserErrorMissingPermissionsOnSecretStore`` (403, or the identity cannot get a token),
``UserErrorInvalidSecretStore`` (vault unknown or unreachable). Throttling (429) and server errors
are retried by azure-core's retry policy with backoff, then raised as ``TransientError``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from azure.core.exceptions import AzureError

from shared.errors import ErrorCode, PgVaultError, TransientError, UserError
from shared.storage.faults import Fault, classify, status_of

log = logging.getLogger(__name__)

# Key Vault DNS suffixes of the Azure clouds.
_KV_URI = re.compile(
    r"^https://(?P<vault>[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9])\."
    r"(?P<suffix>vault\.azure\.net|vault\.azure\.cn|vault\.usgovcloudapi\.net|vault\.microsoftazure\.de)(?::443)?"
    r"/secrets/(?P<name>[A-Za-z0-9-]{1,127})(?:/(?P<version>[0-9A-Fa-f]{32}))?/?$"
)
# The prefix every env: reference's variable must carry.
ENV_SECRET_PREFIX = "PGVAULT_SECRET_"  # noqa: S105 - a variable name prefix, not a password
_ENV_REF = re.compile(r"^env:(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")
_FORMS = f"https://<vault>.vault.azure.net/secrets/<name>[/<version>] or, for local use, env:{ENV_SECRET_PREFIX}<NAME>"
DEFAULT_CACHE_SECONDS = 300.0


class SecretProvider(Protocol):
    """Reads the value a secret reference names."""

    def get_secret(self, reference: str) -> str:
        """The secret's value; ``UserError`` (or ``TransientError``) when it cannot be read."""
        ...


@dataclass(frozen=True)
class KeyVaultRef:
    """A parsed Key Vault secret URI."""

    vault_url: str
    name: str
    version: str | None


def parse_key_vault_uri(reference: str) -> KeyVaultRef | None:
    """The parts of a Key Vault secret URI, or None when ``reference`` is not one."""
    m = _KV_URI.match(reference.strip())
    if m is None:
        return None
    return KeyVaultRef(f"https://{m['vault'].lower()}.{m['suffix']}", m["name"], m["version"])


def _invalid(reference: str, why: str) -> UserError:
    return UserError(
        ErrorCode.INVALID_SECRET,
        f"secret reference {reference!r} {why}; use {_FORMS}",
        target="secretUri",
    )


def validate_secret_reference(reference: str, allow_env: bool) -> None:
    """Check a reference's form without reading it (``UserError`` naming ``secretUri``)."""
    if not isinstance(reference, str) or not reference.strip():
        raise _invalid(str(reference), "is empty")
    if reference.startswith("env:"):
        if _ENV_REF.match(reference) is None:
            raise _invalid(reference, "names no valid environment variable")
        if not reference[len("env:") :].startswith(ENV_SECRET_PREFIX) or reference == f"env:{ENV_SECRET_PREFIX}":
            raise UserError(
                ErrorCode.INVALID_SECRET,
                f"env: secret references may name only variables starting with {ENV_SECRET_PREFIX}",
                target="secretUri",
                recommended_action=f"Put the connection string in a variable named {ENV_SECRET_PREFIX}<NAME> and "
                f"refer to it as env:{ENV_SECRET_PREFIX}<NAME>.",
            )
        if not allow_env:
            raise UserError(
                ErrorCode.INVALID_SECRET,
                "env: secret references are for local use and are turned off",
                target="secretUri",
                recommended_action="Store the secret in Key Vault, or set PGVAULT_ALLOW_ENV_SECRETS=true (local only).",
            )
        return
    if parse_key_vault_uri(reference) is None:
        raise _invalid(reference, "is not a Key Vault secret URI")


class EnvSecretProvider:
    """``env:NAME`` references, read from the environment when allowed."""

    def __init__(self, allowed: bool, environ: Mapping[str, str] | None = None) -> None:
        self._allowed = allowed
        self._environ = os.environ if environ is None else environ

    def get_secret(self, reference: str) -> str:
        """The variable's value; InvalidSecret when not allowed, malformed or unset."""
        validate_secret_reference(reference, self._allowed)
        name = reference[len("env:") :]
        value = self._environ.get(name)
        if value is None:
            raise UserError(
                ErrorCode.INVALID_SECRET,
                f"environment variable {name} (from secret reference {reference!r}) is not set",
                target="secretUri",
                recommended_action=f"Set {name} in the app's environment (local.settings.json Values).",
            )
        return value


class KeyVaultSecretProvider:
    """Key Vault secrets through ``SecretClient``, one client per vault, values cached briefly."""

    def __init__(
        self,
        credential: Any,
        *,
        cache_seconds: float = DEFAULT_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        transport: Any = None,
        retry_total: int = 4,
        retry_backoff_factor: float = 0.8,
    ) -> None:
        self._credential = credential
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._transport = transport
        self._retry = {"retry_total": retry_total, "retry_backoff_factor": retry_backoff_factor}
        self._clients: dict[str, Any] = {}
        self._cache: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    @classmethod
    def with_app_identity(cls, *, retry_total: int = 4) -> KeyVaultSecretProvider:
        """The provider the app uses: the app's identity (``DefaultAzureCredential``)."""
        from azure.identity import DefaultAzureCredential

        return cls(DefaultAzureCredential(), retry_total=retry_total)

    def _client(self, vault_url: str) -> Any:
        from azure.keyvault.secrets import SecretClient

        with self._lock:
            if vault_url not in self._clients:
                kwargs: dict[str, Any] = dict(self._retry)
                if self._transport is not None:
                    kwargs["transport"] = self._transport
                self._clients[vault_url] = SecretClient(vault_url, self._credential, **kwargs)
            return self._clients[vault_url]

    def get_secret(self, reference: str) -> str:
        """The secret's value (cached for ``cache_seconds``); errors mapped to Azure Backup's codes."""
        ref = parse_key_vault_uri(reference)
        if ref is None:
            raise _invalid(reference, "is not a Key Vault secret URI")
        now = self._clock()
        with self._lock:
            cached = self._cache.get(reference)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            secret = self._client(ref.vault_url).get_secret(ref.name, ref.version)
        except AzureError as exc:
            raise _key_vault_error(exc, ref) from exc
        value = secret.value
        if value is None:
            raise UserError(
                ErrorCode.INVALID_SECRET, f"secret {ref.name!r} in {ref.vault_url} has no value", target="secretUri"
            )
        with self._lock:
            self._cache[reference] = (now + self._cache_seconds, value)
        return str(value)


def _key_vault_error(exc: AzureError, ref: KeyVaultRef) -> PgVaultError:
    """What a Key Vault failure means for the user, by the one rule of ``shared.storage.faults``."""
    kind, status = classify(exc), status_of(exc)
    if kind.transient and kind is not Fault.UNREACHABLE:
        return TransientError(
            f"key vault {ref.vault_url} answered {status} after retries", code=ErrorCode.INVALID_SECRET_STORE
        )
    if kind is Fault.UNREACHABLE:  # a vault name that does not resolve, or a network that shuts it out
        return UserError(
            ErrorCode.INVALID_SECRET_STORE,
            f"key vault {ref.vault_url} is unknown or unreachable ({type(exc).__name__})",
            target="secretUri",
        )
    if kind is Fault.DENIED:
        how = f"HTTP {status}" if status is not None else type(exc).__name__
        return UserError(
            ErrorCode.MISSING_PERMISSIONS_ON_SECRET_STORE,
            f"the app's identity may not read secrets of {ref.vault_url} ({how})",
            target="secretUri",
        )
    if kind is Fault.MISSING:
        version = f" version {ref.version}" if ref.version else ""
        return UserError(
            ErrorCode.INVALID_SECRET,
            f"secret {ref.name!r}{version} does not exist in {ref.vault_url}",
            target="secretUri",
        )
    return UserError(
        ErrorCode.INVALID_SECRET, f"key vault {ref.vault_url} refused the request (HTTP {status})", target="secretUri"
    )


class SecretResolver:
    """Chooses the provider by the reference's form."""

    def __init__(self, key_vault: SecretProvider, env: SecretProvider) -> None:
        self._key_vault = key_vault
        self._env = env

    def get_secret(self, reference: str) -> str:
        """The value ``reference`` names, from Key Vault or (when allowed) the environment."""
        if not isinstance(reference, str):
            raise _invalid(str(reference), "is not a string")
        if reference.startswith("env:"):
            return self._env.get_secret(reference)
        if parse_key_vault_uri(reference) is not None:
            return self._key_vault.get_secret(reference)
        raise _invalid(reference, "is neither a Key Vault secret URI nor an env: reference")
