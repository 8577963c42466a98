"""Unknown or misspelled fields anywhere in a request body are refused, naming their dotted path.

Before, a policy with ``"timezone"`` (for ``timeZone``) was stored with UTC, a restore with
``"restoreOption"`` restored the whole database, a trigger with ``"triggerOptions"`` used the
default tag: each silently changed what the request meant (docs/rules.md: unknown fields are refused).
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from shared.backups import parse_trigger
from shared.errors import ErrorCode, UserError
from shared.instances import parse_spec
from shared.policies import parse_simulation_request
from shared.policy import parse_policy
from shared.protection import ProtectionService, parse_stop
from shared.request_body import check_fields
from shared.restore.request import parse_restore_request, parse_verify_request
from shared.servers import list_databases
from tests.examples import EXAMPLES, UPSTREAM_EXAMPLES

WEEKLY: dict[str, Any] = json.loads((EXAMPLES / "weekly-mon-wed-fri-with-archive.json").read_text())
SUNDAY: dict[str, Any] = json.loads((EXAMPLES / "sunday-default-only.json").read_text())


def _refused(call: Any, *args: Any, code: ErrorCode = ErrorCode.INVALID_REQUEST, **kwargs: Any) -> UserError:
    with pytest.raises(UserError) as refused:
        call(*args, **kwargs)
    assert refused.value.code is code
    assert refused.value.http_status == 400
    return refused.value


# --- policies ---------------------------------------------------------------------------------


def test_misspelled_time_zone_is_refused_with_its_path_and_the_right_name() -> None:
    doc = copy.deepcopy(WEEKLY)
    schedule = doc["properties"]["policyRules"][0]["trigger"]["schedule"]
    schedule["timezone"] = schedule.pop("timeZone")
    schedule["timezone"] = "Pacific Standard Time"
    error = _refused(parse_policy, doc, code=ErrorCode.INVALID_POLICY)
    assert error.target == "properties.policyRules[0].trigger.schedule.timezone"
    assert "did you mean timeZone?" in error.message
    assert error.message.startswith(error.target)


def _set(doc: dict[str, Any], path: tuple[Any, ...], key: str, value: Any) -> dict[str, Any]:
    node: Any = doc
    for step in path:
        node = node[step]
    node[key] = value
    return doc


@pytest.mark.parametrize(
    ("path", "key", "target", "hint"),
    [
        ((), "tags", "tags", None),
        (("properties",), "policyRule", "properties.policyRule", "policyRules"),
        (("properties", "policyRules", 0), "triger", "properties.policyRules[0].triger", "trigger"),
        (("properties", "policyRules", 0, "backupParameters"), "type",
         "properties.policyRules[0].backupParameters.type", None),
        (("properties", "policyRules", 0, "dataStore"), "datastoreType",
         "properties.policyRules[0].dataStore.datastoreType", "dataStoreType"),
        (("properties", "policyRules", 0, "trigger", "taggingCriteria", 1), "taggingPriorty",
         "properties.policyRules[0].trigger.taggingCriteria[1].taggingPriorty", "taggingPriority"),
        (("properties", "policyRules", 0, "trigger", "taggingCriteria", 1, "tagInfo"), "tag",
         "properties.policyRules[0].trigger.taggingCriteria[1].tagInfo.tag", None),
        (("properties", "policyRules", 0, "trigger", "taggingCriteria", 1, "criteria", 0), "daysOfWeek",
         "properties.policyRules[0].trigger.taggingCriteria[1].criteria[0].daysOfWeek", "daysOfTheWeek"),
        # A backup rule's field in a retention rule (the discriminator decides the fields).
        (("properties", "policyRules", 1), "trigger", "properties.policyRules[1].trigger", None),
        (("properties", "policyRules", 1, "lifecycles", 0, "deleteAfter"), "durations",
         "properties.policyRules[1].lifecycles[0].deleteAfter.durations", "duration"),
        (("properties", "policyRules", 3, "lifecycles", 0, "targetDataStoreCopySettings", 0), "copyafter",
         "properties.policyRules[3].lifecycles[0].targetDataStoreCopySettings[0].copyafter", "copyAfter"),
        # targetDataStoreCopySettings written as a lone object (Azure allows it) is checked too.
        (("properties", "policyRules", 4, "lifecycles", 0, "targetDataStoreCopySettings"), "extra",
         "properties.policyRules[4].lifecycles[0].targetDataStoreCopySettings.extra", None),
        (("properties", "policyRules", 4, "lifecycles", 0, "sourceDataStore"), "objecttype",
         "properties.policyRules[4].lifecycles[0].sourceDataStore.objecttype", "objectType"),
    ],
)  # fmt: skip
def test_unknown_field_at_every_level_of_a_policy_is_refused(
    path: tuple[Any, ...], key: str, target: str, hint: str | None
) -> None:
    doc = _set(copy.deepcopy(WEEKLY), path, key, "x")
    error = _refused(parse_policy, doc, code=ErrorCode.INVALID_POLICY)
    assert error.target == target
    assert (f"did you mean {hint}?" in error.message) is (hint is not None), error.message


def test_unknown_field_of_a_bare_policy_is_named_without_properties() -> None:
    doc = _set(copy.deepcopy(SUNDAY), ("policyRules", 0, "trigger", "schedule"), "timezone", "UTC")
    error = _refused(parse_policy, doc, code=ErrorCode.INVALID_POLICY)
    assert error.target == "policyRules[0].trigger.schedule.timezone"


def test_every_unknown_field_is_listed_in_the_message() -> None:
    doc = _set(copy.deepcopy(SUNDAY), ("policyRules", 0, "trigger", "schedule"), "timezone", "UTC")
    doc["policyRules"][1]["isdefault"] = True
    error = _refused(parse_policy, doc, code=ErrorCode.INVALID_POLICY)
    assert "policyRules[1].isdefault (did you mean isDefault?)" in error.message


def test_azures_documented_fields_are_accepted_where_azure_sends_them() -> None:
    doc = copy.deepcopy(WEEKLY)
    doc.update(
        id="/subscriptions/s/resourceGroups/g/providers/Microsoft.DataProtection/backupVaults/v/backupPolicies/p",
        name="p",
        type="Microsoft.DataProtection/backupVaults/backupPolicies",
        eTag="W/1",
        systemData={"createdBy": "someone", "createdAt": "2025-01-01T00:00:00Z"},
    )
    criterion = doc["properties"]["policyRules"][0]["trigger"]["taggingCriteria"][0]
    criterion["tagInfo"].update(eTag=None, id="Default_")
    criterion["criteria"] = []
    parse_policy(doc)


@pytest.mark.parametrize(
    "path", sorted([*EXAMPLES.glob("*.json"), *UPSTREAM_EXAMPLES.glob("*.json")]), ids=lambda p: str(p.name)
)
def test_every_example_and_its_stored_form_still_parse(path: Any) -> None:
    policy = parse_policy(json.loads(path.read_text()))
    assert parse_policy(policy.to_dict()) == policy
    # What GET answers can be PUT back unchanged.
    assert parse_policy({"name": "p", "type": "backupPolicies", "properties": policy.to_dict()}) == policy


# --- trigger backup ---------------------------------------------------------------------------


def test_misspelled_trigger_option_is_refused_not_replaced_by_the_default_tag() -> None:
    body = {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOptions": {"retentionTagOverride": "Yearly"}}}
    error = _refused(parse_trigger, body, "BackupWeekly")
    assert error.target == "backupRuleOptions.triggerOptions"
    assert "did you mean triggerOption?" in error.message


def test_unknown_field_in_trigger_option_and_at_the_top_is_refused() -> None:
    inner = {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTag": "Yearly"}}}
    assert _refused(parse_trigger, inner, "BackupWeekly").target == "backupRuleOptions.triggerOption.retentionTag"
    top = {"backupRuleOption": {"ruleName": "BackupWeekly"}}
    assert _refused(parse_trigger, top, "BackupWeekly").target == "backupRuleOption"


# --- restore and verify -------------------------------------------------------------------------

_CREDENTIALS = {
    "objectType": "SecretStoreBasedAuthCredentials",
    "secretStoreResource": {"uri": "https://kv1.vault.azure.net/secrets/target", "secretStoreType": "AzureKeyVault"},
}


def _database_restore(**extra: Any) -> dict[str, Any]:
    return {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": "rp1",
        "sourceDataStoreType": "VaultStore",
        "sourceResourceId": "/subscriptions/x/resourceGroups/g/providers/Microsoft.DBforPostgreSQL/servers/s",
        "restoreTargetInfo": {
            "objectType": "RestoreTargetInfo",
            "recoveryOption": "FailIfExists",
            "restoreLocation": "westeurope",
            "datasourceInfo": {"objectType": "Datasource", "resourceName": "new_db", "resourceID": "/x",
                               "resourceLocation": "westeurope", "resourceUri": "", "resourceType": "t",
                               "datasourceType": "t"},
            "datasourceSetInfo": {"objectType": "DatasourceSet", "resourceID": "/x", "resourceName": "s"},
            "datasourceAuthCredentials": copy.deepcopy(_CREDENTIALS),
        },
        **extra,
    }  # fmt: skip


def _files_restore() -> dict[str, Any]:
    return {
        "objectType": "AzureBackupRestoreWithRehydrationRequest",
        "recoveryPointId": "rp1",
        "sourceDataStoreType": "ArchiveStore",
        "rehydrationPriority": "Standard",
        "rehydrationRetentionDuration": "P15D",
        "restoreTargetInfo": {
            "objectType": "RestoreFilesTargetInfo",
            "recoveryOption": "FailIfExists",
            "targetDetails": {
                "url": "https://acct.blob.core.windows.net/exports",
                "filePrefix": "orders",
                "restoreTargetLocationType": "AzureBlobs",
                "targetResourceArmId": "/subscriptions/x/.../containers/exports",
            },
        },
    }


def test_azures_restore_requests_with_all_their_documented_fields_are_accepted() -> None:
    assert parse_restore_request(_database_restore(), allow_env=False).database == "new_db"
    assert parse_restore_request(_files_restore(), allow_env=False).file_prefix == "orders"


@pytest.mark.parametrize(
    ("change", "target", "hint"),
    [
        (lambda b: b.update(restoreOption={"schemas": ["sales"]}), "restoreOption", "restoreOptions"),
        (lambda b: b.update(restoreOptions={"schema": ["sales"]}), "restoreOptions.schema", "schemas"),
        (lambda b: b["restoreTargetInfo"].update(recoveryOptions="FailIfExists"),
         "restoreTargetInfo.recoveryOptions", "recoveryOption"),
        (lambda b: b["restoreTargetInfo"]["datasourceInfo"].update(resourcename="other"),
         "restoreTargetInfo.datasourceInfo.resourcename", "resourceName"),
        (lambda b: b["restoreTargetInfo"]["datasourceAuthCredentials"]["secretStoreResource"].update(value="pw"),
         "restoreTargetInfo.datasourceAuthCredentials.secretStoreResource.value", None),
        # A files target's field in a database target.
        (lambda b: b["restoreTargetInfo"].update(targetDetails={}), "restoreTargetInfo.targetDetails", None),
    ],
)  # fmt: skip
def test_unknown_field_of_a_database_restore_is_refused(change: Any, target: str, hint: str | None) -> None:
    body = _database_restore()
    change(body)
    error = _refused(parse_restore_request, body, allow_env=False)
    assert error.target == target
    assert (f"did you mean {hint}?" in error.message) is (hint is not None), error.message
    assert "pw" not in error.message


@pytest.mark.parametrize(
    ("change", "target"),
    [
        (lambda b: b.update(rehydrationRetention="P30D"), "rehydrationRetention"),
        (lambda b: b["restoreTargetInfo"]["targetDetails"].update(fileprefix="x"),
         "restoreTargetInfo.targetDetails.fileprefix"),
        (lambda b: b["restoreTargetInfo"].update(datasourceInfo={"resourceName": "x"}),
         "restoreTargetInfo.datasourceInfo"),
    ],
)  # fmt: skip
def test_unknown_field_of_a_files_restore_with_rehydration_is_refused(change: Any, target: str) -> None:
    body = _files_restore()
    change(body)
    assert _refused(parse_restore_request, body, allow_env=False).target == target


def test_unknown_field_of_a_verification_is_refused() -> None:
    body = {"recoveryPointId": "rp1", "datasourceAuthCredentials": copy.deepcopy(_CREDENTIALS), "keepDatabase": True}
    assert _refused(parse_verify_request, body, allow_env=False).target == "keepDatabase"
    body = {"recoveryPointId": "rp1", "datasourceAuthCredentials": copy.deepcopy(_CREDENTIALS)}
    body["datasourceAuthCredentials"]["secretStoreResource"]["url"] = "x"
    error = _refused(parse_verify_request, body, allow_env=False)
    assert error.target == "datasourceAuthCredentials.secretStoreResource.url"
    assert "did you mean uri?" in error.message


# --- protection, simulation, servers, instances --------------------------------------------------


def test_unknown_field_of_stop_protection_is_refused_with_a_hint() -> None:
    error = _refused(parse_stop, {"retaindata": "delete"})
    assert error.target == "retaindata"
    assert "did you mean retainData?" in error.message


def test_resume_protection_refuses_any_field_before_touching_the_instance() -> None:
    service = ProtectionService(None, None)  # type: ignore[arg-type]  # refused before any storage is used
    assert _refused(service.resume, "x", {"retainData": "forever"}, None).target == "retainData"


def test_unknown_field_of_a_simulation_is_refused() -> None:
    error = _refused(parse_simulation_request, {"from": "2025-01-01", "to": "2026-01-01", "timeZone": "UTC"})
    assert error.target == "timeZone"
    error = _refused(parse_simulation_request, {"from": "2025-01-01", "until": "2026-01-01"})
    assert error.target == "until"


def test_unknown_field_of_list_databases_is_refused_before_the_secret_is_read() -> None:
    body = {"secretUri": "env:PGVAULT_SECRET_X", "prot": 5433}
    error = _refused(list_databases, None, None, body, allow_env=True)
    assert error.target == "prot"
    assert "did you mean port?" in error.message


def test_unknown_field_of_an_instance_names_the_entry_and_the_field() -> None:
    raw = {"server": "db1", "database": "orders", "secretUri": "env:PGVAULT_SECRET_X", "polcyName": "weekly"}
    error = _refused(parse_spec, raw, "instances[2]", allow_env_secrets=True, vault_region=None)
    assert error.target == "instances[2].polcyName"
    assert "did you mean policyName?" in error.message
    error = _refused(parse_spec, raw, "body", allow_env_secrets=True, vault_region=None, name="orders")
    assert error.target == "polcyName"


def test_check_fields_passes_a_body_with_only_known_fields_and_leaves_types_to_the_parser() -> None:
    check_fields({"a": 1, "b": {"c": [1, 2]}}, {"a": None, "b": {"c": None}})
    check_fields({"b": "not an object"}, {"b": {"c": None}})
    check_fields("not an object", {"a": None})


def test_a_huge_unknown_field_name_is_shown_cut_short() -> None:
    error = _refused(parse_stop, {"x" * 100_000: 1, "retainData": "forever"})
    assert error.target is not None and len(error.target) < 100 and len(error.message) < 1000
