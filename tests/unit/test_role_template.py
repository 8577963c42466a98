"""The ARM role-assignment template a backup instance offers for its missing Azure roles."""

from __future__ import annotations

import json

from shared.role_template import KEY_VAULT_SECRETS_USER, READER, role_assignment_template


def _role_ids(template: dict) -> list[str]:  # type: ignore[type-arg]
    text = json.dumps(template)
    return [role for role in (KEY_VAULT_SECRETS_USER, READER) if role in text]


def test_key_vault_secret_and_azure_server_need_both_roles() -> None:
    t = role_assignment_template("https://kv1.vault.azure.net/secrets/orders", "db1.postgres.database.azure.com")
    assert t["$schema"].endswith("deploymentTemplate.json#")
    assert t["parameters"]["keyVaultName"]["defaultValue"] == "kv1"
    assert t["parameters"]["serverName"]["defaultValue"] == "db1"
    assert "principalId" in t["parameters"] and "defaultValue" not in t["parameters"]["principalId"]
    assert _role_ids(t) == [KEY_VAULT_SECRETS_USER, READER]
    vault_assignment = t["resources"][0]
    assert vault_assignment["type"] == "Microsoft.Authorization/roleAssignments"
    assert "Microsoft.KeyVault/vaults" in vault_assignment["scope"]
    inner = t["resources"][1]["properties"]["template"]["resources"][0]
    assert "Microsoft.DBforPostgreSQL/flexibleServers" in inner["scope"]


def test_env_secret_and_other_servers_need_no_roles_and_say_so() -> None:
    t = role_assignment_template("env:PGVAULT_SECRET_ORDERS", "db.internal.example.com")
    assert t["resources"] == []
    assert len(t["metadata"]["notes"]) == 2
