"""Secret references: the Key Vault provider over the real SecretClient, and env: references."""

from __future__ import annotations

import pytest

from shared.errors import TransientError, UserError
from shared.secrets import (
    EnvSecretProvider,
    KeyVaultSecretProvider,
    SecretResolver,
    parse_key_vault_uri,
    validate_secret_reference,
)
from tests.keyvault_fake import FakeCredential, FakeKeyVault

HOST = "kv1.vault.azure.net"
URI = f"https://{HOST}/secrets/orders-backup"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def vault() -> FakeKeyVault:
    fake = FakeKeyVault()
    fake.set_secret(HOST, "orders-backup", "Server=x;User Id=u;Password=first")
    return fake


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def provider(vault: FakeKeyVault, clock: Clock) -> KeyVaultSecretProvider:
    return KeyVaultSecretProvider(FakeCredential(), transport=vault.transport(), clock=clock, retry_backoff_factor=0)


def test_challenge_then_secret_is_read(provider: KeyVaultSecretProvider, vault: FakeKeyVault) -> None:
    assert provider.get_secret(URI) == "Server=x;User Id=u;Password=first"
    # The first request carried no token and got the 401 challenge; the second carried it.
    assert [auth for _, _, auth in vault.requests] == [False, True]


def test_cached_for_a_while_then_the_latest_version_is_read(
    provider: KeyVaultSecretProvider, vault: FakeKeyVault, clock: Clock
) -> None:
    provider.get_secret(URI)
    vault.set_secret(HOST, "orders-backup", "Server=x;User Id=u;Password=rotated")
    assert provider.get_secret(URI).endswith("first")  # within the cache period
    assert vault.authorized_gets("orders-backup") == 1
    clock.now += 301
    assert provider.get_secret(URI).endswith("rotated")
    assert vault.authorized_gets("orders-backup") == 2


def test_a_pinned_version_is_read_as_pinned(provider: KeyVaultSecretProvider, vault: FakeKeyVault) -> None:
    old = vault.vaults[HOST]["orders-backup"][0][0]
    vault.set_secret(HOST, "orders-backup", "newer")
    assert provider.get_secret(f"{URI}/{old}").endswith("first")
    assert provider.get_secret(URI) == "newer"


def _code(call: object) -> str:
    with pytest.raises(UserError) as err:
        call()  # type: ignore[operator]
    assert err.value.target == "secretUri"
    return err.value.code.value


def test_missing_secret_is_invalid_secret(provider: KeyVaultSecretProvider) -> None:
    assert _code(lambda: provider.get_secret(f"https://{HOST}/secrets/nothing")) == "UserErrorInvalidSecret"


def test_forbidden_is_missing_permissions_on_secret_store(
    provider: KeyVaultSecretProvider, vault: FakeKeyVault
) -> None:
    vault.forbidden.add((HOST, "orders-backup"))
    assert _code(lambda: provider.get_secret(URI)) == "UserErrorMissingPermissionsOnSecretStore"


def test_unknown_vault_is_invalid_secret_store(provider: KeyVaultSecretProvider) -> None:
    code = _code(lambda: provider.get_secret("https://nosuchvault.vault.azure.net/secrets/x"))
    assert code == "UserErrorInvalidSecretStore"


def test_throttling_is_retried_then_succeeds(provider: KeyVaultSecretProvider, vault: FakeKeyVault) -> None:
    vault.throttle_next = 2
    assert provider.get_secret(URI).endswith("first")
    assert vault.throttle_next == 0


def test_throttling_that_never_ends_is_transient(vault: FakeKeyVault, clock: Clock) -> None:
    provider = KeyVaultSecretProvider(
        FakeCredential(), transport=vault.transport(), clock=clock, retry_total=2, retry_backoff_factor=0
    )
    vault.throttle_next = 10
    with pytest.raises(TransientError):
        provider.get_secret(URI)


def test_server_error_after_retries_is_transient(vault: FakeKeyVault, clock: Clock) -> None:
    provider = KeyVaultSecretProvider(
        FakeCredential(), transport=vault.transport(), clock=clock, retry_total=0, retry_backoff_factor=0
    )
    vault.fail_next_with = 503
    with pytest.raises(TransientError):
        provider.get_secret(URI)


@pytest.mark.parametrize(
    "reference",
    [
        "",
        "kv1.vault.azure.net/secrets/x",
        "http://kv1.vault.azure.net/secrets/x",
        "https://kv1.vault.azure.net/keys/x",
        "https://kv1.vault.azure.net/secrets/",
        "https://kv1.vault.azure.net/secrets/bad_name",
        "https://kv1.vault.azure.net/secrets/x/notahexversion",
        "https://evil.example.com/secrets/x",
        "env:",
        "env:1BAD",
    ],
)
def test_malformed_references_are_refused_naming_the_forms(reference: str) -> None:
    with pytest.raises(UserError) as err:
        validate_secret_reference(reference, allow_env=True)
    assert err.value.code.value == "UserErrorInvalidSecret"
    assert "vault.azure.net/secrets" in err.value.message


def test_key_vault_uri_parts() -> None:
    ref = parse_key_vault_uri("https://KV1.vault.azure.net/secrets/orders/0123456789abcdef0123456789abcdef")
    assert ref is not None
    assert (ref.vault_url, ref.name, ref.version) == (
        "https://kv1.vault.azure.net",
        "orders",
        "0123456789abcdef0123456789abcdef",
    )
    assert parse_key_vault_uri("https://kv1.vault.azure.cn/secrets/x") is not None


def test_env_references_only_when_allowed() -> None:
    env = {"PGVAULT_SECRET_ORDERS_CS": "Server=x;User Id=u;Password=p"}
    assert EnvSecretProvider(True, env).get_secret("env:PGVAULT_SECRET_ORDERS_CS").endswith("Password=p")
    with pytest.raises(UserError) as err:
        EnvSecretProvider(False, env).get_secret("env:PGVAULT_SECRET_ORDERS_CS")
    assert "PGVAULT_ALLOW_ENV_SECRETS" in err.value.recommended_action
    with pytest.raises(UserError) as err:
        EnvSecretProvider(True, env).get_secret("env:PGVAULT_SECRET_MISSING")
    assert "MISSING" in err.value.message


@pytest.mark.parametrize(
    "name", ["AzureWebJobsStorage", "PGVAULT_DEVHOST_KEY", "APPLICATIONINSIGHTS_CONNECTION_STRING", "PGVAULT_SECRET_"]
)
def test_env_references_name_only_variables_with_the_secret_prefix(name: str) -> None:
    env = {name: "UseDevelopmentStorage=true"}
    with pytest.raises(UserError) as err:
        validate_secret_reference(f"env:{name}", allow_env=True)
    assert err.value.code.value == "UserErrorInvalidSecret" and "PGVAULT_SECRET_" in err.value.message
    assert err.value.target == "secretUri"
    with pytest.raises(UserError):
        EnvSecretProvider(True, env).get_secret(f"env:{name}")
    with pytest.raises(UserError):
        SecretResolver(EnvSecretProvider(True, env), EnvSecretProvider(True, env)).get_secret(f"env:{name}")
    assert "UseDevelopmentStorage" not in err.value.message


def test_resolver_chooses_by_form(provider: KeyVaultSecretProvider) -> None:
    resolver = SecretResolver(provider, EnvSecretProvider(True, {"PGVAULT_SECRET_A": "from-env"}))
    assert resolver.get_secret("env:PGVAULT_SECRET_A") == "from-env"
    assert resolver.get_secret(URI).endswith("first")
    with pytest.raises(UserError):
        resolver.get_secret("file:/etc/passwd")
