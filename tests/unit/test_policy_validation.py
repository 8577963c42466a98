"""Every way parse_policy refuses a policy: 400 InvalidPolicy, the field's path as target, a clear message."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from shared.errors import ErrorCode, UserError
from shared.policy import parse_policy, tag_on_demand
from tests.examples import EXAMPLES

BASE: dict[str, Any] = json.loads((EXAMPLES / "weekly-mon-wed-fri-with-archive.json").read_text())["properties"]
PG = "Microsoft.DBforPostgreSQL/servers/databases"

B = "policyRules[0]"
T = f"{B}.trigger"
S = f"{T}.schedule"
RTI = f"{S}.repeatingTimeIntervals"
TC = f"{T}.taggingCriteria"
C = f"{TC}[1].criteria[0]"
R = "policyRules[3]"  # Monthly: VaultStore P6M copied on expiry, ArchiveStore P24M
L0, L1 = f"{R}.lifecycles[0]", f"{R}.lifecycles[1]"
CP = f"{L0}.targetDataStoreCopySettings"
DELETE = object()
ARCHIVE_COPY = {"copyAfter": {"objectType": "CopyOnExpiryOption"}, "dataStore": {"dataStoreType": "ArchiveStore"}}

Mutation = Callable[[dict[str, Any]], None]
_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _walk(doc: Any, path: str) -> tuple[Any, str | int]:
    tokens: list[str | int] = [name if name else int(index) for name, index in _TOKEN.findall(path)]
    node = doc
    for token in tokens[:-1]:
        node = node[token]
    return node, tokens[-1]


def put(path: str, value: object) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        parent, last = _walk(doc, path)
        if value is DELETE:
            del parent[last]
        else:
            parent[last] = copy.deepcopy(value)

    return mutate


def both(*mutations: Mutation) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        for mutation in mutations:
            mutation(doc)

    return mutate


def with_second_backup_rule(doc: dict[str, Any]) -> None:
    second = copy.deepcopy(doc["policyRules"][0])
    second["name"] = "BackupTwice"
    doc["policyRules"].insert(1, second)


# (id, mutation, expected target, fragments the message must contain)
CASES: list[tuple[str, Mutation, str, list[str]]] = [
    ("policy-object-type", put("objectType", "Policy"), "objectType", ["'Policy'", "BackupPolicy"]),
    ("datasource-missing", put("datasourceTypes", DELETE), "datasourceTypes", ["is required"]),
    ("datasource-not-array", put("datasourceTypes", PG), "datasourceTypes", ["must be an array", "a string"]),
    ("datasource-empty", put("datasourceTypes", []), "datasourceTypes", ["must not be empty"]),
    (
        "datasource-unsupported",
        put("datasourceTypes", ["Microsoft.Compute/disks"]),
        "datasourceTypes[0]",
        ["'Microsoft.Compute/disks'", "not supported", PG, "flexibleServers"],
    ),
    ("datasource-twice", put("datasourceTypes", [PG, PG]), "datasourceTypes[1]", ["listed twice"]),
    ("rules-missing", put("policyRules", DELETE), "policyRules", ["is required"]),
    ("rules-empty", put("policyRules", []), "policyRules", ["must not be empty"]),
    ("rule-not-object", put("policyRules[1]", "Default"), "policyRules[1]", ["must be a JSON object", "a string"]),
    ("rule-name-missing", put("policyRules[1].name", DELETE), "policyRules[1].name", ["is required"]),
    ("rule-name-empty", put("policyRules[1].name", " "), "policyRules[1].name", ["non-empty string"]),
    ("rule-type-missing", put("policyRules[1].objectType", DELETE), "policyRules[1].objectType", ["is required"]),
    (
        "rule-type-unknown",
        put("policyRules[1].objectType", "AzureOtherRule"),
        "policyRules[1].objectType",
        ["'AzureOtherRule'", "AzureBackupRule", "AzureRetentionRule"],
    ),
    ("rule-name-twice", put("policyRules[2].name", "Default"), "policyRules[2].name", ["unique", "policyRules[1]"]),
    ("two-backup-rules", with_second_backup_rule, "policyRules[1]", ["second AzureBackupRule", "exactly one"]),
    ("no-backup-rule", lambda d: d["policyRules"].pop(0), "policyRules", ["exactly one AzureBackupRule", "none"]),
    ("params-not-object", put(f"{B}.backupParameters", "Full"), f"{B}.backupParameters", ["JSON object"]),
    (
        "params-object-type",
        put(f"{B}.backupParameters.objectType", "Other"),
        f"{B}.backupParameters.objectType",
        ["AzureBackupParams"],
    ),
    (
        "backup-type",
        put(f"{B}.backupParameters.backupType", "Incremental"),
        f"{B}.backupParameters.backupType",
        ["'Incremental'", "'Full'"],
    ),
    ("backup-store-not-object", put(f"{B}.dataStore", "VaultStore"), f"{B}.dataStore", ["JSON object"]),
    (
        "backup-store-unknown",
        put(f"{B}.dataStore.dataStoreType", "OperationalStore"),
        f"{B}.dataStore.dataStoreType",
        ["'OperationalStore'", "VaultStore, ArchiveStore"],
    ),
    (
        "backup-store-archive",
        put(f"{B}.dataStore.dataStoreType", "ArchiveStore"),
        f"{B}.dataStore.dataStoreType",
        ["backups land in VaultStore"],
    ),
    ("trigger-missing", put(f"{B}.trigger", DELETE), f"{B}.trigger", ["is required"]),
    (
        "trigger-adhoc",
        put(f"{T}.objectType", "AdhocBasedTriggerContext"),
        f"{T}.objectType",
        ["'AdhocBasedTriggerContext'", "ScheduleBasedTriggerContext"],
    ),
    ("schedule-missing", put(f"{T}.schedule", DELETE), f"{T}.schedule", ["is required"]),
    ("schedule-not-object", put(f"{T}.schedule", "weekly"), f"{T}.schedule", ["JSON object"]),
    ("zone-not-string", put(f"{S}.timeZone", 1), f"{S}.timeZone", ["non-empty string", "a number"]),
    (
        "zone-unknown",
        put(f"{S}.timeZone", "Mars Standard Time"),
        f"{S}.timeZone",
        ["'Mars Standard Time'", "not a known time zone", "W. Europe Standard Time", "Europe/Berlin"],
    ),
    ("intervals-missing", put(RTI, DELETE), RTI, ["is required"]),
    ("intervals-empty", put(RTI, []), RTI, ["must not be empty"]),
    ("intervals-not-array", put(RTI, "R/2025-01-06T22:00:00+00:00/P1W"), RTI, ["must be an array"]),
    ("interval-not-string", put(f"{RTI}[0]", 7), f"{RTI}[0]", ["must be a string", "R/<start"]),
    ("interval-no-r", put(f"{RTI}[0]", "2025-01-06T22:00:00+00:00/P1W"), f"{RTI}[0]", ["not a repeating interval"]),
    (
        "interval-period-garbage",
        put(f"{RTI}[0]", "R/2025-01-06T22:00:00+00:00/weekly"),
        f"{RTI}[0]",
        ["'weekly'", "not an ISO 8601 duration", "P1W"],
    ),
    (
        "interval-daily",
        put(f"{RTI}[0]", "R/2025-01-06T22:00:00+00:00/P1D"),
        f"{RTI}[0]",
        ["every P1D", "only weekly backups are supported", "P1W"],
    ),
    (
        "interval-hourly",
        put(f"{RTI}[0]", "R/2025-01-06T22:00:00+00:00/PT4H"),
        f"{RTI}[0]",
        ["every PT4H", "only weekly backups are supported"],
    ),
    ("interval-time-only", put(f"{RTI}[0]", "R/22:00:00+00:00/P1W"), f"{RTI}[0]", ["time without a date"]),
    ("interval-date-only", put(f"{RTI}[0]", "R/2025-01-06/P1W"), f"{RTI}[0]", ["no time of day"]),
    (
        "interval-bad-date",
        put(f"{RTI}[0]", "R/2025-13-45T22:00:00+00:00/P1W"),
        f"{RTI}[0]",
        ["'2025-13-45T22:00:00+00:00'", "not an ISO 8601 date and time"],
    ),
    ("interval-no-offset", put(f"{RTI}[0]", "R/2025-01-06T22:00:00/P1W"), f"{RTI}[0]", ["no UTC offset", "+01:00"]),
    (
        "interval-same-weekday",
        put(f"{RTI}[1]", "R/2025-01-13T06:00:00+00:00/P1W"),
        f"{RTI}[1]",
        ["second backup on Monday", "R/2025-01-06T22:00:00+00:00/P1W", "one start time per weekday"],
    ),
    ("criteria-not-array", put(TC, {"isDefault": True}), TC, ["must be an array"]),
    ("criterion-not-object", put(f"{TC}[1]", "Weekly"), f"{TC}[1]", ["JSON object"]),
    ("criterion-default-flag", put(f"{TC}[1].isDefault", "no"), f"{TC}[1].isDefault", ["true or false"]),
    ("priority-missing", put(f"{TC}[1].taggingPriority", DELETE), f"{TC}[1].taggingPriority", ["is required"]),
    ("priority-negative", put(f"{TC}[1].taggingPriority", -1), f"{TC}[1].taggingPriority", ["whole number", "-1"]),
    ("priority-bool", put(f"{TC}[1].taggingPriority", True), f"{TC}[1].taggingPriority", ["whole number"]),
    ("priority-text", put(f"{TC}[1].taggingPriority", "high"), f"{TC}[1].taggingPriority", ["whole number"]),
    ("tag-info-missing", put(f"{TC}[1].tagInfo", DELETE), f"{TC}[1].tagInfo", ["is required"]),
    ("tag-name-empty", put(f"{TC}[1].tagInfo.tagName", ""), f"{TC}[1].tagInfo.tagName", ["non-empty string"]),
    (
        "default-with-criteria",
        put(f"{TC}[0].criteria", [{"absoluteCriteria": ["AllBackup"]}]),
        f"{TC}[0].criteria",
        ["must be empty for the default criterion"],
    ),
    ("criteria-missing", put(f"{TC}[1].criteria", DELETE), f"{TC}[1].criteria", ["required", "isDefault: false"]),
    ("criteria-empty", put(f"{TC}[1].criteria", []), f"{TC}[1].criteria", ["must not be empty"]),
    (
        "tag-twice",
        put(f"{TC}[1].tagInfo.tagName", "Monthly"),
        f"{TC}[2].tagInfo.tagName",
        ["'Monthly'", f"already used by {TC}[1]"],
    ),
    (
        "priority-twice",
        put(f"{TC}[2].taggingPriority", 20),
        f"{TC}[2].taggingPriority",
        ["20 is already the priority", f"{TC}[1]"],
    ),
    (
        "two-default-criteria",
        both(put(f"{TC}[1].isDefault", True), put(f"{TC}[1].criteria", DELETE)),
        TC,
        ["exactly one criterion with isDefault: true", "found 2"],
    ),
    ("no-default-criterion", lambda d: d["policyRules"][0]["trigger"]["taggingCriteria"].pop(0), TC, ["found 0"]),
    ("backup-criterion-not-object", put(C, "FirstOfWeek"), C, ["JSON object"]),
    ("backup-criterion-type", put(f"{C}.objectType", "Other"), f"{C}.objectType", ["ScheduleBasedBackupCriteria"]),
    ("schedule-times", put(f"{C}.scheduleTimes", ["2025-01-06T22:00:00Z"]), f"{C}.scheduleTimes", ["not supported"]),
    (
        "marker-unknown",
        put(f"{C}.absoluteCriteria", ["FirstOfQuarter"]),
        f"{C}.absoluteCriteria[0]",
        ["'FirstOfQuarter'", "AllBackup, FirstOfDay, FirstOfWeek, FirstOfMonth, FirstOfYear"],
    ),
    ("markers-not-array", put(f"{C}.absoluteCriteria", "FirstOfWeek"), f"{C}.absoluteCriteria", ["an array"]),
    (
        "absolute-and-generic",
        put(f"{C}.daysOfTheWeek", ["Monday"]),
        C,
        ["both absoluteCriteria and daysOfTheWeek", "one or the other"],
    ),
    ("criterion-empty", put(C, {"objectType": "ScheduleBasedBackupCriteria"}), C, ["must give absoluteCriteria"]),
    (
        "weeks-without-days",
        put(C, {"weeksOfTheMonth": ["First"]}),
        f"{C}.weeksOfTheMonth",
        ["needs daysOfTheWeek"],
    ),
    (
        "days-of-month-and-week",
        put(C, {"daysOfMonth": [{"date": 1}], "daysOfTheWeek": ["Monday"]}),
        f"{C}.daysOfMonth",
        ["cannot be combined"],
    ),
    ("months-alone", put(C, {"monthsOfYear": ["January"]}), f"{C}.monthsOfYear", ["needs daysOfMonth"]),
    (
        "month-unknown",
        put(C, {"monthsOfYear": ["Janvier"], "daysOfMonth": [{"date": 1}]}),
        f"{C}.monthsOfYear[0]",
        ["'Janvier'", "January"],
    ),
    (
        "weekday-unknown",
        put(C, {"daysOfTheWeek": ["Funday"]}),
        f"{C}.daysOfTheWeek[0]",
        ["'Funday'", "Monday, Tuesday"],
    ),
    (
        "weekday-not-scheduled",
        put(C, {"daysOfTheWeek": ["Sunday"]}),
        f"{C}.daysOfTheWeek",
        ["no backup is scheduled on Sunday", "Monday, Wednesday, Friday"],
    ),
    ("day-not-object", put(C, {"daysOfMonth": [1]}), f"{C}.daysOfMonth[0]", ["JSON object"]),
    ("day-31", put(C, {"daysOfMonth": [{"date": 31}]}), f"{C}.daysOfMonth[0].date", ["1 to 28", "isLast"]),
    ("day-last-flag", put(C, {"daysOfMonth": [{"isLast": "yes"}]}), f"{C}.daysOfMonth[0].isLast", ["true or false"]),
    ("retention-default-flag", put("policyRules[1].isDefault", "yes"), "policyRules[1].isDefault", ["true or false"]),
    ("lifecycles-missing", put(f"{R}.lifecycles", DELETE), f"{R}.lifecycles", ["is required"]),
    ("lifecycles-empty", put(f"{R}.lifecycles", []), f"{R}.lifecycles", ["must not be empty"]),
    ("lifecycle-not-object", put(L0, "P6M"), L0, ["JSON object"]),
    ("source-missing", put(f"{L0}.sourceDataStore", DELETE), f"{L0}.sourceDataStore", ["is required"]),
    (
        "source-unknown",
        put(f"{L0}.sourceDataStore.dataStoreType", "OperationalStore"),
        f"{L0}.sourceDataStore.dataStoreType",
        ["'OperationalStore'", "VaultStore, ArchiveStore"],
    ),
    (
        "source-object-type",
        put(f"{L0}.sourceDataStore.objectType", "Other"),
        f"{L0}.sourceDataStore.objectType",
        ["DataStoreInfoBase"],
    ),
    (
        "source-twice",
        put(f"{L1}.sourceDataStore.dataStoreType", "VaultStore"),
        f"{L1}.sourceDataStore.dataStoreType",
        [f"{L0} already is the VaultStore lifecycle", "one lifecycle per datastore"],
    ),
    ("delete-missing", put(f"{L0}.deleteAfter", DELETE), f"{L0}.deleteAfter", ["is required"]),
    (
        "delete-option",
        put(f"{L0}.deleteAfter.objectType", "RelativeDeleteOption"),
        f"{L0}.deleteAfter.objectType",
        ["AbsoluteDeleteOption"],
    ),
    ("duration-missing", put(f"{L0}.deleteAfter.duration", DELETE), f"{L0}.deleteAfter.duration", ["is required"]),
    (
        "duration-number",
        put(f"{L0}.deleteAfter.duration", 30),
        f"{L0}.deleteAfter.duration",
        ["ISO 8601 duration string", "P7D and P10Y"],
    ),
    (
        "duration-hours",
        put(f"{L0}.deleteAfter.duration", "P1DT12H"),
        f"{L0}.deleteAfter.duration",
        ["'P1DT12H'", "whole days, weeks, months or years", "P7D and P10Y"],
    ),
    (
        "duration-negative",
        put(f"{L0}.deleteAfter.duration", "-P7D"),
        f"{L0}.deleteAfter.duration",
        ["'-P7D'", "not an ISO 8601 duration"],
    ),
    (
        "duration-zero",
        put(f"{L0}.deleteAfter.duration", "P0D"),
        f"{L0}.deleteAfter.duration",
        ["too short", "P7D and P10Y (7 days to 10 years)"],
    ),
    (
        "vault-longer-than-10-years-in-days",
        put(f"{L0}.deleteAfter.duration", "P3653D"),
        f"{L0}.deleteAfter.duration",
        ["'P3653D' is too long", "VaultStore", "P10Y"],
    ),
    (
        "archive-180-days",
        put(f"{L1}.deleteAfter.duration", "P180D"),
        f"{L1}.deleteAfter.duration",
        ["'P180D' is too short", "ArchiveStore", "P6M and P10Y (6 months to 10 years)"],
    ),
    (
        "archive-11-years",
        put(f"{L1}.deleteAfter.duration", "P11Y"),
        f"{L1}.deleteAfter.duration",
        ["'P11Y' is too long", "ArchiveStore", "P6M and P10Y"],
    ),
    ("copies-not-array", put(CP, "ArchiveStore"), CP, ["must be an array"]),
    ("copy-not-object", put(f"{CP}[0]", "ArchiveStore"), f"{CP}[0]", ["JSON object"]),
    ("copy-after-missing", put(f"{CP}[0].copyAfter", DELETE), f"{CP}[0].copyAfter", ["is required"]),
    (
        "copy-option-missing",
        put(f"{CP}[0].copyAfter.objectType", DELETE),
        f"{CP}[0].copyAfter.objectType",
        ["is required"],
    ),
    (
        "copy-option-custom",
        put(f"{CP}[0].copyAfter", {"objectType": "CustomCopyOption", "duration": "P1M"}),
        f"{CP}[0].copyAfter.objectType",
        ["'CustomCopyOption'", "CopyOnExpiryOption, ImmediateCopyOption"],
    ),
    ("copy-store-missing", put(f"{CP}[0].dataStore", DELETE), f"{CP}[0].dataStore", ["is required"]),
    (
        "copy-to-vault",
        put(f"{CP}[0].dataStore.dataStoreType", "VaultStore"),
        f"{CP}[0].dataStore.dataStoreType",
        ["'ArchiveStore' only"],
    ),
    (
        "copy-from-archive",
        put(f"{L1}.targetDataStoreCopySettings", [ARCHIVE_COPY]),
        f"{L1}.targetDataStoreCopySettings[0]",
        ["ArchiveStore are not copied anywhere"],
    ),
    ("two-copies", put(CP, [ARCHIVE_COPY, ARCHIVE_COPY]), f"{CP}[1]", ["at most once"]),
    (
        "no-vault-lifecycle",
        lambda d: d["policyRules"][3]["lifecycles"].pop(0),
        f"{R}.lifecycles",
        ["needs a lifecycle whose sourceDataStore is VaultStore"],
    ),
    (
        "copy-without-archive-lifecycle",
        lambda d: d["policyRules"][3]["lifecycles"].pop(1),
        f"{CP}[0]",
        ["no lifecycle with sourceDataStore ArchiveStore", "P6M to P10Y"],
    ),
    (
        "copy-object-without-archive-lifecycle",
        lambda d: d["policyRules"][4]["lifecycles"].pop(1),
        "policyRules[4].lifecycles[0].targetDataStoreCopySettings",
        ["no lifecycle with sourceDataStore ArchiveStore"],
    ),
    (
        "archive-lifecycle-without-copy",
        put(CP, []),
        L1,
        ["nothing reaches ArchiveStore", "CopyOnExpiryOption", L0],
    ),
    ("no-default-retention-rule", put("policyRules[1].isDefault", False), "policyRules", ["isDefault: true", "P3M"]),
    (
        "two-default-retention-rules",
        put("policyRules[2].isDefault", True),
        "policyRules[2].isDefault",
        ["policyRules[1] already is the default retention rule"],
    ),
    (
        "tag-without-rule",
        put(f"{TC}[1].tagInfo.tagName", "Quarterly"),
        f"{TC}[1].tagInfo.tagName",
        ["'Quarterly' has no retention rule", "Default, Weekly, Monthly, Yearly"],
    ),
    (
        "default-tag-not-default-rule",
        both(put(f"{TC}[0].tagInfo.tagName", "Weekly"), put(f"{TC}[1].tagInfo.tagName", "Default")),
        f"{TC}[0].tagInfo.tagName",
        ["'Weekly' must name the default retention rule", "'Default'"],
    ),
]


@pytest.mark.parametrize(("mutation", "target", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refusal_names_field_and_what_is_allowed(mutation: Mutation, target: str, fragments: list[str]) -> None:
    doc = copy.deepcopy(BASE)
    mutation(doc)
    with pytest.raises(UserError) as err:
        parse_policy(doc)
    error = err.value
    assert (error.code, error.http_status, error.target) == (ErrorCode.INVALID_POLICY, 400, target)
    assert error.message.startswith(f"{target}: ")
    for fragment in fragments:
        assert fragment in error.message


@pytest.mark.parametrize(
    ("mutation", "target", "fragments"), [c[1:] for c in CASES[:30]], ids=[c[0] for c in CASES[:30]]
)
def test_wrapped_policy_refusal_paths_start_with_properties(
    mutation: Mutation, target: str, fragments: list[str]
) -> None:
    doc = copy.deepcopy(BASE)
    mutation(doc)
    with pytest.raises(UserError) as err:
        parse_policy({"properties": doc})
    assert err.value.target == f"properties.{target}"
    assert err.value.message.startswith(f"properties.{target}: ")


@pytest.mark.parametrize("doc", [[], "policy", None, 3])
def test_policy_that_is_not_an_object_is_refused(doc: object) -> None:
    with pytest.raises(UserError) as err:
        parse_policy(doc)
    assert err.value.code is ErrorCode.INVALID_POLICY
    assert err.value.target is None
    assert "must be a JSON object" in err.value.message and '{"properties": {...}}' in err.value.message


def test_properties_that_are_not_an_object_are_refused() -> None:
    with pytest.raises(UserError) as err:
        parse_policy({"properties": [BASE]})
    assert (err.value.code, err.value.target) == (ErrorCode.INVALID_POLICY, "properties")
    assert "properties: must be a JSON object, got an array" in err.value.message


def test_the_base_document_itself_is_valid() -> None:
    assert parse_policy(copy.deepcopy(BASE)).tags == ("Default", "Weekly", "Monthly", "Yearly")


@pytest.mark.parametrize("requested", ["Quarterly", "", None, 3])
def test_on_demand_tag_without_rule_is_invalid_request_naming_override_field(requested: object) -> None:
    policy = parse_policy(copy.deepcopy(BASE))
    with pytest.raises(UserError) as err:
        tag_on_demand(policy, requested)
    target = "backupRuleOptions.triggerOption.retentionTagOverride"
    assert (err.value.code, err.value.http_status, err.value.target) == (ErrorCode.INVALID_REQUEST, 400, target)
    assert err.value.message.startswith(target)
    assert "Default, Weekly, Monthly, Yearly" in err.value.message


def test_on_demand_tag_takes_the_policy_spelling() -> None:
    policy = parse_policy(copy.deepcopy(BASE))
    assert tag_on_demand(policy, "Monthly") == "Monthly"
    assert tag_on_demand(policy, "monthly") == "Monthly"


# --- what is accepted beyond the examples ---------------------------------------------------


@pytest.mark.parametrize(
    ("mutation", "check"),
    [
        (put("datasourceTypes", ["Microsoft.DBforPostgreSQL/flexibleServers/databases"]), "flexible"),
        (put(f"{S}.timeZone", "Pacific Standard Time"), "America/Los_Angeles"),
        (put(f"{S}.timeZone", "Europe/Berlin"), "Europe/Berlin"),
        (put(f"{S}.timeZone", "w. europe standard time"), "Europe/Berlin"),
        (put(f"{S}.timeZone", DELETE), "UTC"),
        (put(f"{RTI}[0]", "R/2025-01-06T22:00:00Z/P1W"), "Z offset"),
        (put(f"{TC}", DELETE), "implicit default criterion"),
        (put(f"{CP}[0].copyAfter.objectType", "ImmediateCopyOption"), "immediate"),
        (put(f"{L1}.deleteAfter.duration", "P184D"), "184 days is never under 6 months"),
        (put(f"{L0}.deleteAfter.duration", "P3652D"), "3652 days is never over 10 years"),
        (put(f"{L0}.deleteAfter.duration", "P1Y6M"), "combined duration"),
        (put(C, {"daysOfMonth": [{"date": 0, "isLast": True}], "monthsOfYear": ["December"]}), "last day of December"),
        (put(C, {"daysOfTheWeek": ["Friday"], "weeksOfTheMonth": ["Last"]}), "last Friday"),
    ],
)
def test_accepted_variants(mutation: Mutation, check: str) -> None:
    doc = copy.deepcopy(BASE)
    mutation(doc)
    policy = parse_policy(doc)
    assert parse_policy(policy.to_dict()) == policy, check
