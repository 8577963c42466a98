"""The ARM template that grants the app's managed identity what a backup instance needs in Azure.

Two roles, as Azure Backup asks for PostgreSQL: Key Vault Secrets User on the key vault that
holds the instance's secret, and Reader on the database server (so the vault can read the
server's region and settings). The template is deployed by someone allowed to assign roles:
``az deployment group create -g <key vault's resource group> --template-file t.json
--parameters principalId=<app identity's principal id>``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

# https://learn.microsoft.com/azure/role-based-access-control/built-in-roles
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
_AZURE_PG_SUFFIX = ".postgres.database.azure.com"
_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#"


def _key_vault_name(secret_uri: str) -> str | None:
    host = urlsplit(secret_uri).hostname if secret_uri.lower().startswith("https://") else None
    return host.split(".")[0] if host else None


def _role_definition(role: str) -> str:
    return f"[subscriptionResourceId('Microsoft.Authorization/roleDefinitions', '{role}')]"


def _server_name(server: str) -> str | None:
    host = server.lower().rstrip(".")
    return host[: -len(_AZURE_PG_SUFFIX)] if host.endswith(_AZURE_PG_SUFFIX) else None


def _key_vault_role() -> dict[str, Any]:
    """Key Vault Secrets User on the vault named by the ``keyVaultName`` parameter."""
    return {
        "type": "Microsoft.Authorization/roleAssignments",
        "apiVersion": "2022-04-01",
        "scope": "[resourceId('Microsoft.KeyVault/vaults', parameters('keyVaultName'))]",
        "name": (
            "[guid(resourceId('Microsoft.KeyVault/vaults', parameters('keyVaultName')), "
            f"parameters('principalId'), '{KEY_VAULT_SECRETS_USER}')]"
        ),
        "properties": {
            "roleDefinitionId": _role_definition(KEY_VAULT_SECRETS_USER),
            "principalId": "[parameters('principalId')]",
            "principalType": "[parameters('principalType')]",
            "description": "pgvault reads the database credentials of its backup instances",
        },
    }


def _server_reader_deployment() -> dict[str, Any]:
    """Reader on the flexible server ``serverName``, deployed into the server's resource group."""
    server_id = "[resourceId('Microsoft.DBforPostgreSQL/flexibleServers', parameters('serverName'))]"
    return {
        "type": "Microsoft.Resources/deployments",
        "apiVersion": "2022-09-01",
        "name": "pgvault-server-reader",
        "resourceGroup": "[parameters('serverResourceGroup')]",
        "properties": {
            "mode": "Incremental",
            "expressionEvaluationOptions": {"scope": "inner"},
            "parameters": {
                "principalId": {"value": "[parameters('principalId')]"},
                "principalType": {"value": "[parameters('principalType')]"},
                "serverName": {"value": "[parameters('serverName')]"},
            },
            "template": {
                "$schema": _SCHEMA,
                "contentVersion": "1.0.0.0",
                "parameters": {
                    "principalId": {"type": "string"},
                    "principalType": {"type": "string"},
                    "serverName": {"type": "string"},
                },
                "resources": [
                    {
                        "type": "Microsoft.Authorization/roleAssignments",
                        "apiVersion": "2022-04-01",
                        "scope": server_id,
                        "name": f"[guid({server_id[1:-1]}, parameters('principalId'), '{READER}')]",
                        "properties": {
                            "roleDefinitionId": _role_definition(READER),
                            "principalId": "[parameters('principalId')]",
                            "principalType": "[parameters('principalType')]",
                            "description": "pgvault reads the server's region and settings",
                        },
                    }
                ],
            },
        },
    }


def role_assignment_template(secret_uri: str, server: str) -> dict[str, Any]:
    """An ARM deployment template assigning the roles this instance needs to ``principalId``.

    A secret outside Key Vault (``env:``) needs no Key Vault role, and a server that is not an
    Azure Database for PostgreSQL flexible server needs no Reader role; what is left out is said
    in the template's ``metadata.notes``.
    """
    vault = _key_vault_name(secret_uri)
    server_name = _server_name(server)
    notes: list[str] = []
    resources: list[dict[str, Any]] = []
    parameters: dict[str, Any] = {
        "principalId": {
            "type": "string",
            "metadata": {"description": "Object (principal) id of the pgvault app's managed identity"},
        },
        "principalType": {"type": "string", "defaultValue": "ServicePrincipal"},
    }
    if vault:
        parameters["keyVaultName"] = {"type": "string", "defaultValue": vault}
        resources.append(_key_vault_role())
    else:
        notes.append("The secret is not in Key Vault: no Key Vault role is needed.")
    if server_name:
        parameters["serverName"] = {"type": "string", "defaultValue": server_name}
        parameters["serverResourceGroup"] = {
            "type": "string",
            "defaultValue": "[resourceGroup().name]",
            "metadata": {"description": "Resource group of the PostgreSQL flexible server"},
        }
        resources.append(_server_reader_deployment())
    else:
        notes.append(f"{server} is not an Azure Database for PostgreSQL flexible server: no Reader role is needed.")
    return {
        "$schema": _SCHEMA,
        "contentVersion": "1.0.0.0",
        "metadata": {"generator": "pgvault", "notes": notes},
        "parameters": parameters,
        "resources": resources,
    }
