"""The shared policy examples are accepted or refused exactly as their README says."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import pytest

from shared.errors import ErrorCode, UserError
from shared.policy import CopyOption, DataStore, Policy, parse_policy
from tests.examples import EXAMPLES


def load(name: str) -> Any:
    return json.loads((EXAMPLES / name).read_text(encoding="utf-8"))


def test_every_example_file_is_covered_by_a_test() -> None:
    files = {p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*.json")}
    assert files == {
        "weekly-mon-wed-fri-with-archive.json",
        "sunday-default-only.json",
        "sunday-implicit-default-3-months.json",
        *(f"invalid/{name}" for name in REFUSALS),
    }


def test_mon_wed_fri_example_runs_at_22_utc_with_four_rules_by_priority() -> None:
    policy = parse_policy(load("weekly-mon-wed-fri-with-archive.json"))
    assert policy.backup_rule_name == "BackupWeekly"
    assert policy.rule_names == ("Default", "Weekly", "Monthly", "Yearly")
    assert [c.tag_name for c in policy.tagging_criteria] == ["Yearly", "Monthly", "Weekly", "Default"]
    assert [(i.weekday.value, i.local_time) for i in policy.schedule.intervals] == [
        ("Monday", dt.time(22)),
        ("Wednesday", dt.time(22)),
        ("Friday", dt.time(22)),
    ]
    yearly, monthly = policy.retention_rule("Yearly"), policy.retention_rule("Monthly")
    assert (yearly.vault.delete_after.text, yearly.archive and yearly.archive.delete_after.text) == ("P1Y", "P10Y")
    assert (monthly.vault.delete_after.text, monthly.archive and monthly.archive.delete_after.text) == ("P6M", "P24M")
    assert yearly.copy_option is monthly.copy_option is CopyOption.COPY_ON_EXPIRY
    assert policy.retention_rule("Weekly").vault.delete_after.text == "P12W"
    assert policy.retention_rule("Default").archive is None
    assert policy.data_stores == (DataStore.VAULT_STORE, DataStore.ARCHIVE_STORE)


@pytest.mark.parametrize("form", [[], {}, None, "list-of-one"])
def test_copy_settings_as_list_object_or_null_mean_the_same(form: object) -> None:
    doc = load("weekly-mon-wed-fri-with-archive.json")
    yearly_vault = doc["properties"]["policyRules"][4]["lifecycles"][0]
    setting = {"copyAfter": {"objectType": "CopyOnExpiryOption"}, "dataStore": {"dataStoreType": "ArchiveStore"}}
    yearly_vault["targetDataStoreCopySettings"] = [setting] if form == "list-of-one" else setting
    default_vault = doc["properties"]["policyRules"][1]["lifecycles"][0]
    default_vault["targetDataStoreCopySettings"] = None if form == "list-of-one" else form
    assert parse_policy(doc) == parse_policy(load("weekly-mon-wed-fri-with-archive.json"))


def test_sunday_default_only_is_0330_in_berlin_kept_seven_days() -> None:
    policy = parse_policy(load("sunday-default-only.json"))
    assert policy.schedule.time_zone == "W. Europe Standard Time"
    assert policy.zone.key == "Europe/Berlin"
    (interval,) = policy.schedule.intervals
    assert (interval.weekday.value, interval.local_time) == ("Sunday", dt.time(3, 30))
    assert policy.tags == ("Default",)
    assert policy.retention_rule("Default").vault.delete_after.text == "P7D"


def test_no_retention_rule_gives_implicit_default_of_three_months_in_vault() -> None:
    policy = parse_policy(load("sunday-implicit-default-3-months.json"))
    (rule,) = policy.retention_rules
    assert (rule.name, rule.is_default, rule.vault.source, rule.vault.delete_after.text) == (
        "Default",
        True,
        DataStore.VAULT_STORE,
        "P3M",
    )
    assert rule.archive is None
    assert policy.to_dict()["policyRules"][1]["lifecycles"][0]["deleteAfter"]["duration"] == "P3M"


@pytest.mark.parametrize(
    "name",
    ["weekly-mon-wed-fri-with-archive.json", "sunday-default-only.json", "sunday-implicit-default-3-months.json"],
)
def test_normalised_json_parses_back_to_the_same_policy(name: str) -> None:
    policy = parse_policy(load(name))
    normalised = policy.to_dict()
    assert "properties" not in normalised
    assert parse_policy(normalised) == policy
    assert parse_policy({"properties": copy.deepcopy(normalised)}) == policy
    json.dumps(normalised)  # storable as is


def test_wrapped_and_bare_forms_give_equal_policies() -> None:
    wrapped = load("weekly-mon-wed-fri-with-archive.json")
    assert parse_policy(wrapped) == parse_policy(wrapped["properties"])


# file -> (target without "properties." prefix, fragments the message must contain)
REFUSALS: dict[str, tuple[str, list[str]]] = {
    "archive-retention-below-6-months.json": (
        "policyRules[3].lifecycles[1].deleteAfter.duration",
        ["'P3M'", "ArchiveStore", "P6M", "P10Y", "too short"],
    ),
    "daily-schedule.json": (
        "policyRules[0].trigger.schedule.repeatingTimeIntervals[0]",
        ["P1D", "only weekly backups are supported", "P1W"],
    ),
    "duration-not-iso8601.json": (
        "policyRules[1].lifecycles[0].deleteAfter.duration",
        ["'three months'", "ISO 8601", "P7D", "P10Y"],
    ),
    "tag-without-retention-rule.json": (
        "policyRules[0].trigger.taggingCriteria[2].tagInfo.tagName",
        ["'Quarterly'", "no retention rule", "Default, Weekly, Monthly, Yearly"],
    ),
    "time-without-date.json": (
        "policyRules[0].trigger.schedule.repeatingTimeIntervals[0]",
        ["'T03:30'", "time without a date", "R/2025-03-02T03:30:00+01:00/P1W"],
    ),
    "vault-retention-above-10-years.json": (
        "policyRules[1].lifecycles[0].deleteAfter.duration",
        ["'P11Y'", "VaultStore", "P7D", "P10Y", "too long"],
    ),
    "vault-retention-below-7-days.json": (
        "policyRules[1].lifecycles[0].deleteAfter.duration",
        ["'P6D'", "VaultStore", "P7D", "P10Y", "too short"],
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_invalid_example_is_refused_with_400_naming_field_and_allowed_range(name: str) -> None:
    doc = load(f"invalid/{name}")
    target, fragments = REFUSALS[name]
    if "properties" in doc:  # the path is given as the user sent it
        target = f"properties.{target}"
    with pytest.raises(UserError) as err:
        parse_policy(doc)
    error = err.value
    assert error.code is ErrorCode.INVALID_POLICY
    assert error.http_status == 400
    assert error.to_dict()["code"] == "InvalidPolicy"
    assert error.target == target
    assert error.message.startswith(f"{target}: ")
    for fragment in fragments:
        assert fragment in error.message


def test_policy_is_frozen() -> None:
    policy = parse_policy(load("sunday-default-only.json"))
    with pytest.raises(AttributeError):
        policy.retention_rules = ()  # type: ignore[misc]
    assert isinstance(policy, Policy)


def test_vendored_examples_match_the_design_cards_copy() -> None:
    from tests.examples import UPSTREAM_EXAMPLES

    if not UPSTREAM_EXAMPLES.is_dir():
        pytest.skip("the upstream policy examples (../shared/policy-examples) are not beside this checkout")
    ours = {p.relative_to(EXAMPLES): p.read_bytes() for p in EXAMPLES.rglob("*") if p.is_file()}
    theirs = {p.relative_to(UPSTREAM_EXAMPLES): p.read_bytes() for p in UPSTREAM_EXAMPLES.rglob("*") if p.is_file()}
    assert ours == theirs
