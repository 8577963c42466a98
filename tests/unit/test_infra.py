"""infra/main.json (and main.bicep, its source) against what the code needs.

The Bicep compiler cannot run here, so the ARM JSON form is written by hand; these tests read
both and check that they agree, and that the template gives the app every setting the code
requires, no storage key anywhere, and exactly the roles the issue names.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from shared.errors import SettingsError
from shared.settings import load_settings
from tests.arm_template import (
    REPO,
    Bicep,
    Call,
    Evaluator,
    arm_app_settings,
    bicep_literal,
    load_arm,
    load_bicep,
    parse_expression,
)

# Built-in role definition ids (learn.microsoft.com/azure/role-based-access-control/built-in-roles).
BLOB_DATA_OWNER = "b7e6dc6d-f1e8-4753-8033-0f276bb0955b"
QUEUE_DATA_CONTRIBUTOR = "974c5e8b-45b9-4653-ba55-5f855dd0fb88"
TABLE_DATA_CONTRIBUTOR = "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3"
KEY_VAULT_SECRETS_USER = "4633458b-17de-408a-b874-0445c86b69e6"

# Settings the code knows that the deployed app deliberately does not get, and why.
NOT_DEPLOYED = {
    "PGVAULT_DEVHOST_KEY": "devhost only; Azure uses function keys",
    "PGVAULT_DEVHOST_MESSAGE_LEASE": "devhost only; the Functions host keeps a running message hidden itself",
    "AzureWebJobsStorage": "a connection string holds the account key: the identity-based form is set instead",
    "FUNCTIONS_WORKER_RUNTIME": "Flex Consumption takes the runtime from functionAppConfig (Premium sets it)",
    "AzureWebJobsFeatureFlags": "EnableWorkerIndexing is the default of the v2 Python model on Functions 4",
}


@pytest.fixture(scope="module")
def arm() -> dict[str, Any]:
    return load_arm()


@pytest.fixture(scope="module")
def bicep() -> Bicep:
    return load_bicep()


@pytest.fixture(scope="module")
def settings(arm: dict[str, Any]) -> dict[str, Any]:
    return arm_app_settings(arm)


def _names_the_code_reads() -> set[str]:
    """Every setting name the code reads: settings.py's PGVAULT_ names, the sample settings file,
    and the %SETTING% placeholders of trigger bindings (the host resolves those itself)."""
    sample = json.loads((REPO / "local.settings.sample.json").read_text())["Values"]
    names = set(sample)
    names |= set(re.findall(r'"(PGVAULT_[A-Z_]+)"', (REPO / "shared" / "settings.py").read_text()))
    for source in (REPO / "functions").glob("*.py"):
        names |= set(re.findall(r'"%([A-Za-z0-9_]+)%"', source.read_text()))
    return names


def _connections_of_triggers() -> set[str]:
    found: set[str] = set()
    for source in (REPO / "functions").glob("*.py"):
        found |= set(re.findall(r'connection="([A-Za-z0-9_]+)"', source.read_text()))
    return found


# ------------------------------------------------------------------ what the app needs


def test_every_setting_the_code_reads_is_set_by_the_template(settings: dict[str, Any]) -> None:
    needed = _names_the_code_reads() - NOT_DEPLOYED.keys()
    assert "PGVAULT_SCHEDULER_SCHEDULE" in needed  # the derivation found the code's names
    missing = needed - settings.keys()
    assert not missing, f"app settings missing from infra/main.json: {sorted(missing)}"


def test_the_settings_the_template_gives_pass_the_apps_own_start_up_check(
    settings: dict[str, Any], tmp_path: Path
) -> None:
    env = {k: str(v) for k, v in settings.items()}
    # The bundled tools live in the deployed package; here any existing folder stands in for it.
    assert env["PGVAULT_PG_BIN_DIR"] == "/home/site/wwwroot/pgtools/bin"
    env["PGVAULT_PG_BIN_DIR"] = str(tmp_path)
    loaded = load_settings(env)  # raises SettingsError naming every problem
    assert loaded.storage_connection_string is None
    assert loaded.storage_account_name == settings["AzureWebJobsStorage__accountName"]
    assert loaded.allow_env_secrets is False


def test_a_template_without_the_schedule_would_fail_the_start_up_check(settings: dict[str, Any]) -> None:
    env = {k: str(v) for k, v in settings.items() if k not in ("PGVAULT_SCHEDULER_SCHEDULE", "PGVAULT_PG_BIN_DIR")}
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert set(err.value.problems) == {"PGVAULT_SCHEDULER_SCHEDULE"}


def test_trigger_connections_are_identity_based_with_the_user_assigned_identity(settings: dict[str, Any]) -> None:
    connections = _connections_of_triggers()
    assert connections == {"AzureWebJobsStorage"}
    for name in connections:
        assert name not in settings, f"{name} must not hold a connection string"
        assert re.fullmatch(r"[a-z0-9]{3,24}", str(settings[f"{name}__accountName"]))
        assert settings[f"{name}__credential"] == "managedidentity"
        assert str(settings[f"{name}__clientId"]) == "<reference:identity.clientId>"
    # DefaultAzureCredential (Key Vault, the app's own storage clients) picks the identity by this.
    assert str(settings["AZURE_CLIENT_ID"]) == "<reference:identity.clientId>"


def test_no_storage_key_or_connection_string_appears_in_the_settings(arm: dict[str, Any]) -> None:
    raw = arm["resources"]["appSettings"]["properties"]
    text = json.dumps(arm)
    for marker in ("listKeys", "listAccountSas", "listServiceSas", "AccountKey", "DefaultEndpointsProtocol"):
        assert marker not in text, f"{marker} found in infra/main.json"
    settings = arm_app_settings(arm)
    premium = arm_app_settings(arm, planKind="ElasticPremium")
    for values in (settings, premium):
        for key, value in values.items():
            assert key not in ("AzureWebJobsStorage", "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING"), key
            assert not re.search(r"ConnectionString$", key) or key == "APPLICATIONINSIGHTS_CONNECTION_STRING", key
            assert "AccountKey=" not in str(value) and "SharedAccessSignature=" not in str(value), key
    assert isinstance(parse_expression(raw), Call)
    assert arm["resources"]["storage"]["properties"]["allowSharedKeyAccess"] is False


def test_flex_consumption_gets_no_worker_runtime_setting_and_premium_does(arm: dict[str, Any]) -> None:
    flex = arm_app_settings(arm)
    premium = arm_app_settings(arm, planKind="ElasticPremium")
    assert "FUNCTIONS_WORKER_RUNTIME" not in flex and "FUNCTIONS_EXTENSION_VERSION" not in flex
    assert premium["FUNCTIONS_WORKER_RUNTIME"] == "python" and premium["FUNCTIONS_EXTENSION_VERSION"] == "~4"
    assert premium["PGVAULT_PG_BIN_DIR"] == "/usr/lib/postgresql/17/bin"  # where the Dockerfile installs them


def test_function_timeout_is_one_value_for_the_host_and_the_app(settings: dict[str, Any]) -> None:
    assert settings["AzureFunctionsJobHost__functionTimeout"] == settings["PGVAULT_FUNCTION_TIMEOUT"]
    assert load_settings({**{k: str(v) for k, v in settings.items()}, "PGVAULT_PG_BIN_DIR": ""}).function_timeout


def test_flex_app_runs_python_3_11_from_a_deployment_container_read_with_the_identity(arm: dict[str, Any]) -> None:
    app = Evaluator(arm).value(arm["resources"]["app"])
    config = app["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["value"].endswith("app-package")
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    assert app["identity"]["type"] == "UserAssigned"
    assert config["scaleAndConcurrency"] == {"maximumInstanceCount": 40, "instanceMemoryMB": 2048}
    premium = Evaluator(arm, {"planKind": "ElasticPremium", "containerImage": "r.azurecr.io/pgvault:1"})
    app = premium.value(arm["resources"]["app"])
    assert app["properties"]["functionAppConfig"] is None
    assert app["properties"]["siteConfig"]["linuxFxVersion"] == "DOCKER|r.azurecr.io/pgvault:1"
    plan = premium.value(arm["resources"]["plan"])
    assert plan["sku"] == {"name": "EP1", "tier": "ElasticPremium"}


# ------------------------------------------------------------------ identity and roles


def _role_assignments(arm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    ev = Evaluator(arm)
    return {
        name: ev.value(res)
        for name, res in arm["resources"].items()
        if res["type"] == "Microsoft.Authorization/roleAssignments"
    }


def test_each_role_assignment_names_the_identity_and_the_right_scope(arm: dict[str, Any]) -> None:
    ev = Evaluator(arm)
    storage_id = f"<resourceId:Microsoft.Storage/storageAccounts/{ev.value(arm['resources']['storage']['name'])}>"
    vault_id = f"<resourceId:Microsoft.KeyVault/vaults/{ev.value(arm['resources']['keyVault']['name'])}>"
    got = set()
    for assignment in _role_assignments(arm).values():
        props = assignment["properties"]
        assert str(props["principalId"]) == "<reference:identity.principalId>"
        assert props["principalType"] == "ServicePrincipal"
        prefix = "<subscriptionResourceId:Microsoft.Authorization/roleDefinitions/"
        role = props["roleDefinitionId"].removeprefix(prefix)
        got.add((role.rstrip(">"), assignment["scope"]))
    assert got == {
        (BLOB_DATA_OWNER, storage_id),
        (QUEUE_DATA_CONTRIBUTOR, storage_id),
        (TABLE_DATA_CONTRIBUTOR, storage_id),
        (KEY_VAULT_SECRETS_USER, vault_id),
    }


def test_role_assignment_names_are_stable_and_distinct(arm: dict[str, Any]) -> None:
    names = [a["name"] for a in _role_assignments(arm).values()]
    assert len(set(names)) == len(names) == 4
    assert names == [a["name"] for a in _role_assignments(arm).values()]  # deterministic: redeploys update


def test_the_app_runs_as_the_one_user_assigned_identity(arm: dict[str, Any]) -> None:
    app = Evaluator(arm).value(arm["resources"]["app"])
    identities = app["identity"]["userAssignedIdentities"]
    assert list(identities) == ["<resourceId:Microsoft.ManagedIdentity/userAssignedIdentities/id-pgvault>"]


# ------------------------------------------------------------------ storage and key vault


def test_blob_soft_delete_and_versioning_are_on(arm: dict[str, Any]) -> None:
    blob = Evaluator(arm).value(arm["resources"]["blobService"])["properties"]
    assert blob["isVersioningEnabled"] is True
    assert blob["deleteRetentionPolicy"] == {"enabled": True, "days": 14}
    assert blob["containerDeleteRetentionPolicy"]["enabled"] is True


def test_lifecycle_rules_never_tier_or_delete_a_current_blob(arm: dict[str, Any]) -> None:
    policy = Evaluator(arm).value(arm["resources"]["lifecycle"])["properties"]["policy"]
    assert policy["rules"]
    for rule in policy["rules"]:
        actions = rule["definition"]["actions"]
        # pgvault tiers and deletes recovery points itself: only previous versions are cleaned.
        assert set(actions) == {"version"}, rule["name"]
        assert set(actions["version"]) == {"delete"}, rule["name"]
    prefixes = {p for r in policy["rules"] for p in r["definition"]["filters"]["prefixMatch"]}
    assert prefixes == {"pgvault-backups/", "app-package/"}


def test_immutability_policy_is_optional_and_off_by_default(arm: dict[str, Any]) -> None:
    res = arm["resources"]["backupImmutability"]
    assert Evaluator(arm).value(res["condition"]) is False
    on = Evaluator(arm, {"backupImmutabilityDays": 7})
    assert on.value(res["condition"]) is True
    assert on.value(res)["properties"]["immutabilityPeriodSinceCreationInDays"] == 7


def test_key_vault_uses_rbac_and_keeps_deleted_secrets(arm: dict[str, Any]) -> None:
    props = arm["resources"]["keyVault"]["properties"]
    assert props["enableRbacAuthorization"] is True
    assert props["enableSoftDelete"] is True and props["enablePurgeProtection"] is True
    assert "accessPolicies" not in props


def test_default_names_fit_azure_naming_rules(arm: dict[str, Any]) -> None:
    ev = Evaluator(arm)
    storage = ev.value(arm["resources"]["storage"]["name"])
    assert re.fullmatch(r"[a-z0-9]{3,24}", storage), storage
    vault = ev.value(arm["resources"]["keyVault"]["name"])
    assert re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]", vault), vault
    assert "--" not in vault


# ------------------------------------------------------------------ the two forms agree


def test_bicep_and_json_declare_the_same_resources(arm: dict[str, Any], bicep: Bicep) -> None:
    def shape(conditional: bool, type_: str, api: str) -> tuple[str, str, bool]:
        return type_, api, conditional

    from_json = {
        name: shape("condition" in r, r["type"], r["apiVersion"]) for name, r in arm["resources"].items()
    }
    from_bicep = {name: shape(r.conditional, r.type, r.api_version) for name, r in bicep.resources.items()}
    assert from_bicep == from_json


def test_bicep_and_json_declare_the_same_parameters_and_defaults(arm: dict[str, Any], bicep: Bicep) -> None:
    assert set(bicep.params) == set(arm["parameters"])
    for name, p in bicep.params.items():
        j = arm["parameters"][name]
        assert p.type == j["type"], name
        literal = bicep_literal(p.default) if p.default is not None else None
        if literal is not None:
            assert literal == j["defaultValue"], name
        else:
            # An expression default: both forms must be expressions over the same parameters.
            assert isinstance(j["defaultValue"], str) and j["defaultValue"].startswith("["), name
            bicep_refs = {w for w in re.findall(r"(?<![.\w])[A-Za-z]+", p.default or "") if w in bicep.params}
            json_refs = set(re.findall(r"parameters\('(\w+)'\)", j["defaultValue"]))
            assert bicep_refs == json_refs, name
        for deco, key in (("minValue", "minValue"), ("maxValue", "maxValue"), ("minLength", "minLength"),
                          ("maxLength", "maxLength"), ("allowed", "allowedValues")):
            if deco in p.decorators:
                assert bicep_literal(p.decorators[deco]) == j.get(key), f"{name} @{deco}"
            else:
                assert key not in j, f"{name}: {key} only in main.json"


def test_bicep_and_json_set_the_same_app_settings(arm: dict[str, Any], bicep: Bicep) -> None:
    flex = arm_app_settings(arm)
    premium_only = arm_app_settings(arm, planKind="ElasticPremium").keys() - flex.keys()
    assert set(bicep.objects["commonAppSettings"]) == set(flex)
    assert set(bicep.objects["premiumAppSettings"]) == premium_only
    # Literal values agree; a value taken from a parameter comes from the same parameter.
    refs = _setting_sources(arm)
    for key, value in bicep.objects["commonAppSettings"].items():
        literal = bicep_literal(value)
        if literal is not None:
            assert flex[key] == literal, key
        elif value in bicep.params:
            assert refs[key] == ("parameters", value), key


def _setting_sources(arm: dict[str, Any]) -> dict[str, tuple[str, str]]:
    tree = parse_expression(arm["resources"]["appSettings"]["properties"])
    common = tree.args[0]
    assert common.name == "createObject"
    out = {}
    for key, val in zip(common.args[::2], common.args[1::2], strict=True):
        if isinstance(val, Call) and val.name in ("parameters", "variables"):
            out[key] = (val.name, val.args[0])
    return out


def test_bicep_and_json_assign_the_same_roles(arm: dict[str, Any], bicep: Bicep) -> None:
    guids = {name: bicep_literal(v) for name, v in bicep.variables.items()}
    from_bicep = set()
    for name, res in bicep.resources.items():
        if res.type != "Microsoft.Authorization/roleAssignments":
            continue
        scope = re.search(r"^\s+scope: (\w+)$", res.body, re.M)
        role = re.search(r"roleDefinitions', (\w+)\)", res.body)
        principal = re.search(r"principalId: (\w+)\.properties\.principalId", res.body)
        assert scope and role and principal, name
        from_bicep.add((name, guids[role.group(1)], scope.group(1), principal.group(1)))
    from_json = set()
    for name, res in arm["resources"].items():
        if res["type"] != "Microsoft.Authorization/roleAssignments":
            continue
        var = re.search(r"variables\('(\w+)'\)", res["properties"]["roleDefinitionId"])
        assert var is not None
        scope_type = re.search(r"resourceId\('([^']+)'", res["scope"])
        assert scope_type is not None
        scope = next(n for n, r in arm["resources"].items() if r["type"] == scope_type.group(1))
        principal = re.search(r"reference\('(\w+)'\)\.principalId", res["properties"]["principalId"])
        assert principal is not None
        from_json.add((name, arm["variables"][var.group(1)], scope, principal.group(1)))
    assert from_bicep == from_json


def test_bicep_and_json_have_the_same_outputs(arm: dict[str, Any], bicep: Bicep) -> None:
    assert bicep.outputs == {name: o["type"] for name, o in arm["outputs"].items()}


# Properties whose value decides security or data safety: Bicep and JSON must say the same.
GUARDED = [
    ("storage", "allowSharedKeyAccess", False),
    ("storage", "allowBlobPublicAccess", False),
    ("storage", "minimumTlsVersion", "TLS1_2"),
    ("storage", "supportsHttpsTrafficOnly", True),
    ("blobService", "isVersioningEnabled", True),
    ("backupContainer", "publicAccess", "None"),
    ("deploymentContainer", "publicAccess", "None"),
    ("backupImmutability", "allowProtectedAppendWrites", False),
    ("keyVault", "enableRbacAuthorization", True),
    ("keyVault", "enableSoftDelete", True),
    ("keyVault", "enablePurgeProtection", True),
    ("app", "httpsOnly", True),
    ("app", "ftpsState", "Disabled"),
]


def _find(node: Any, key: str) -> list[Any]:
    found = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                found.append(v)
            found += _find(v, key)
    elif isinstance(node, list):
        for v in node:
            found += _find(v, key)
    return found


@pytest.mark.parametrize(("resource", "key", "value"), GUARDED, ids=[f"{r}.{k}" for r, k, _ in GUARDED])
def test_bicep_and_json_agree_on_security_properties(
    arm: dict[str, Any], bicep: Bicep, resource: str, key: str, value: Any
) -> None:
    assert _find(arm["resources"][resource], key) == [value]
    lines = re.findall(rf"^\s+{key}: (.+)$", bicep.resources[resource].body, re.M)
    assert [bicep_literal(v) for v in lines] == [value]
