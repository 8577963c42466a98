"""Where restore-as-files may write: the rules PGVAULT_EXPORT_ACCOUNTS and the vault's own account make."""

from __future__ import annotations

import pytest

from shared.errors import SettingsError, UserError
from shared.restore.files import ExportRules
from shared.settings import load_settings

SCHEDULE = {"PGVAULT_SCHEDULER_SCHEDULE": "0 */5 * * * *", "PGVAULT_RETENTION_SCHEDULE": "0 17 * * * *"}
KEY = "a2V5"
CLOUD = {
    "AzureWebJobsStorage": f"DefaultEndpointsProtocol=https;AccountName=vaultacct;AccountKey={KEY}",
    "PGVAULT_BACKUP_CONTAINER": "backups",
    "PGVAULT_EXPORT_ACCOUNTS": "Exports1, vaultacct",
    **SCHEDULE,
}
EMULATOR = {
    "AzureWebJobsStorage": (
        f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={KEY};"
        "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    ),
    "PGVAULT_EXPORT_ACCOUNTS": "devstoreaccount1",
    **SCHEDULE,
}


def _rules(env: dict[str, str]) -> ExportRules:
    return ExportRules.from_settings(load_settings(env))


@pytest.mark.parametrize(
    "url",
    [
        "https://exports1.blob.core.windows.net/restores",
        "https://exports1.z12.blob.storage.azure.net/restores",
        "https://exports1.blob.core.usgovcloudapi.net/restores",
        "https://vaultacct.blob.core.windows.net/restores",  # the vault's account, not its containers
        "https://exports1.blob.core.windows.net/backups",  # another account's container of that name
    ],
)
def test_a_container_of_a_listed_account_over_https_is_allowed(url: str) -> None:
    dest = _rules(CLOUD).check(url)
    assert dest.container in url and not dest.emulator


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://stranger.blob.core.windows.net/restores", "'stranger' is not one"),
        ("http://exports1.blob.core.windows.net/restores", "only over https"),
        ("https://exports1.blob.core.windows.net:8443/restores", "blob endpoint"),
        ("https://exports.example.com/restores", "blob endpoint"),  # a custom domain says no account
        ("https://10.0.0.5/exports1/restores", "blob endpoint"),
        ("https://exports1.blob.core.windows.net.evil.test/restores", "blob endpoint"),
        ("https://vaultacct.blob.core.windows.net/backups", "vault's own containers"),
        ("https://vaultacct.blob.core.windows.net/app-package", "vault's own containers"),
        ("https://vaultacct.blob.core.windows.net/azure-webjobs-secrets", "Functions host's"),
        ("https://exports1.blob.core.windows.net/azure-webjobs-hosts", "Functions host's"),
        ("http://127.0.0.1:10000/devstoreaccount1/restores", "does not run on one"),
        ("https://exports1.blob.core.windows.net/restores?sv=2024&sig=x", "container URL"),
    ],
)
def test_anything_else_is_refused_naming_the_url_field(url: str, why: str) -> None:
    with pytest.raises(UserError) as refused:
        _rules(CLOUD).check(url)
    assert refused.value.code.value == "InvalidRequest"
    assert refused.value.target == "restoreTargetInfo.targetDetails.url"
    assert why in refused.value.message, refused.value.message


def test_on_the_emulator_only_its_own_endpoint_and_listed_accounts_are_allowed() -> None:
    rules = _rules(EMULATOR)
    assert rules.check("http://127.0.0.1:10000/devstoreaccount1/restores").emulator
    assert rules.check("http://localhost:10000/devstoreaccount1/restores").account == "devstoreaccount1"
    for url in (
        "http://127.0.0.1:10001/devstoreaccount1/restores",  # another port: not the emulator
        "https://127.0.0.1:10000/devstoreaccount1/restores",
        "http://127.0.0.1:10000/otheraccount/restores",  # not listed
        "http://127.0.0.1:10000/restores",  # no account
        "http://127.0.0.1:10000/devstoreaccount1/pgvault-backups",  # the vault's backup container
        "http://localhost:10000/devstoreaccount1/pgvault-backups",
        "http://127.0.0.1:10000/devstoreaccount1/azure-webjobs-hosts",
        "https://exports1.blob.core.windows.net/restores",  # not listed here
    ):
        with pytest.raises(UserError):
            rules.check(url)


def test_use_development_storage_is_the_emulator() -> None:
    rules = _rules({**EMULATOR, "AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert rules.check("http://127.0.0.1:10000/devstoreaccount1/restores").emulator


def test_no_setting_means_no_exports() -> None:
    env = {k: v for k, v in CLOUD.items() if k != "PGVAULT_EXPORT_ACCOUNTS"}
    assert load_settings(env).export_accounts == ()
    with pytest.raises(UserError):
        _rules(env).check("https://vaultacct.blob.core.windows.net/restores")
    with pytest.raises(UserError):
        ExportRules().check("https://exports1.blob.core.windows.net/restores")


def test_the_setting_takes_account_names_and_the_emulators_only_on_the_emulator() -> None:
    assert load_settings(CLOUD).export_accounts == ("exports1", "vaultacct")
    with pytest.raises(SettingsError) as bad:
        load_settings({**CLOUD, "PGVAULT_EXPORT_ACCOUNTS": "ok1,https://x.blob.core.windows.net"})
    assert "PGVAULT_EXPORT_ACCOUNTS" in bad.value.problems
    with pytest.raises(SettingsError) as emulator:
        load_settings({**CLOUD, "PGVAULT_EXPORT_ACCOUNTS": "devstoreaccount1"})
    assert "emulator" in emulator.value.problems["PGVAULT_EXPORT_ACCOUNTS"]


def test_an_identity_based_vault_knows_its_own_account() -> None:
    env = {"AzureWebJobsStorage__accountName": "vaultacct", "PGVAULT_EXPORT_ACCOUNTS": "vaultacct", **SCHEDULE}
    rules = _rules(env)
    assert rules.emulator_endpoint is None
    with pytest.raises(UserError):
        rules.check("https://vaultacct.blob.core.windows.net/pgvault-backups")
    assert rules.check("https://vaultacct.blob.core.windows.net/restores").account == "vaultacct"
