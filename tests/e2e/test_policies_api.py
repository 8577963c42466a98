"""The backup policy API over HTTP, on devhost and Azurite."""

from __future__ import annotations

import json

import pytest
import requests
from devhost_process import DevhostProcess

from tests.examples import EXAMPLES

pytestmark = pytest.mark.e2e


def _example(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def test_health_is_anonymous_and_healthy(app_host: DevhostProcess) -> None:
    r = requests.get(app_host.url + "/health", timeout=10)
    assert r.status_code == 200
    assert r.json()["status"] == "Healthy"


def test_policy_routes_need_the_function_key(app_host: DevhostProcess) -> None:
    r = requests.get(app_host.url + "/backupPolicies", timeout=10)
    assert r.status_code == 401


def test_put_creates_then_replaces_and_get_returns_the_normalised_policy(app_host: DevhostProcess) -> None:
    r = app_host.request("PUT", "/backupPolicies/weekly", data=_example("sunday-default-only.json"))
    assert r.status_code == 201, r.text
    r = app_host.request("PUT", "/backupPolicies/weekly", data=_example("sunday-default-only.json"))
    assert r.status_code == 200, r.text
    got = app_host.get("/backupPolicies/weekly").json()
    assert got["name"] == "weekly"
    rules = {rule["name"] for rule in got["properties"]["policyRules"]}
    assert rules == {"BackupWeekly", "Default"}
    listed = app_host.get("/backupPolicies").json()["value"]
    assert "weekly" in [p["name"] for p in listed]


def test_wrapped_properties_form_is_accepted(app_host: DevhostProcess) -> None:
    r = app_host.request("PUT", "/backupPolicies/mwf", data=_example("weekly-mon-wed-fri-with-archive.json"))
    assert r.status_code == 201, r.text
    tags = {
        c["tagInfo"]["tagName"]
        for rule in r.json()["properties"]["policyRules"]
        if rule["objectType"] == "AzureBackupRule"
        for c in rule["trigger"]["taggingCriteria"]
    }
    assert tags == {"Default", "Weekly", "Monthly", "Yearly"}


@pytest.mark.parametrize("name", sorted(p.name for p in (EXAMPLES / "invalid").glob("*.json")))
def test_invalid_examples_are_refused_with_invalid_policy_and_nothing_is_stored(
    app_host: DevhostProcess, name: str
) -> None:
    policy_name = "bad-" + name.removesuffix(".json")
    r = app_host.request("PUT", f"/backupPolicies/{policy_name}", data=_example(f"invalid/{name}"))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "InvalidPolicy"
    assert error["message"] and error["recommendedAction"]
    assert app_host.get(f"/backupPolicies/{policy_name}").status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"", 400, "InvalidRequest"),
        (b"{not json", 400, "InvalidRequest"),
        (b"[" * 100 + b"]" * 100, 400, "InvalidRequest"),
        (b'{"x": "' + b"a" * (2 * 1024 * 1024) + b'"}', 413, "PayloadTooLarge"),
        (b"[]", 400, "InvalidPolicy"),
    ],
)
def test_bad_bodies_get_clear_errors(app_host: DevhostProcess, body: bytes, status: int, code: str) -> None:
    r = app_host.request("PUT", "/backupPolicies/junk", data=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert app_host.get("/backupPolicies/junk").status_code == 404


def test_bad_policy_name_is_refused(app_host: DevhostProcess) -> None:
    r = app_host.request("PUT", "/backupPolicies/bad%20name!", data=_example("sunday-default-only.json"))
    assert r.status_code == 400
    assert r.json()["error"]["target"] == "name"


def test_get_and_delete_of_a_missing_policy_are_404(app_host: DevhostProcess) -> None:
    assert app_host.get("/backupPolicies/nothing").json()["error"]["code"] == "NotFound"
    assert app_host.request("DELETE", "/backupPolicies/nothing").status_code == 404


def test_delete_removes_the_policy(app_host: DevhostProcess) -> None:
    assert app_host.request("PUT", "/backupPolicies/gone", data=_example("sunday-default-only.json")).status_code == 201
    assert app_host.request("DELETE", "/backupPolicies/gone").status_code == 200
    assert app_host.get("/backupPolicies/gone").status_code == 404


def test_simulate_returns_backups_with_tags_and_a_summary(app_host: DevhostProcess) -> None:
    app_host.request("PUT", "/backupPolicies/sim", data=_example("weekly-mon-wed-fri-with-archive.json"))
    r = app_host.request(
        "POST", "/backupPolicies/sim:simulate", data=json.dumps({"from": "2025-01-01", "to": "2025-02-01"})
    )
    assert r.status_code == 200, r.text
    body = r.json()
    times = [b["time"] for b in body["backups"]]
    # Mon/Wed/Fri 22:00 UTC in January 2025, from Monday the 6th (the schedule's start).
    assert times[:3] == ["2025-01-06T22:00:00Z", "2025-01-08T22:00:00Z", "2025-01-10T22:00:00Z"]
    assert len(times) == 12
    assert body["backups"][0]["tag"] == "Yearly"
    assert {"backups", "summary"} <= set(body)


@pytest.mark.parametrize(
    ("body", "target"),
    [
        ({"to": "2025-02-01"}, "from"),
        ({"from": "2025-02-01", "to": "2025-01-01"}, "to"),
        ({"from": "yesterday", "to": "2025-01-01"}, "from"),
        ({"from": "2000-01-01", "to": "2099-01-01"}, "to"),
    ],
)
def test_simulate_refuses_bad_ranges_naming_the_field(
    app_host: DevhostProcess, body: dict[str, str], target: str
) -> None:
    app_host.request("PUT", "/backupPolicies/sim2", data=_example("sunday-default-only.json"))
    r = app_host.request("POST", "/backupPolicies/sim2:simulate", data=json.dumps(body))
    assert r.status_code == 400
    assert r.json()["error"]["target"] == target


def test_simulate_of_a_missing_policy_is_404(app_host: DevhostProcess) -> None:
    r = app_host.request(
        "POST", "/backupPolicies/none:simulate", data=json.dumps({"from": "2025-01-01", "to": "2025-02-01"})
    )
    assert r.status_code == 404


def _sunday_with(change: str) -> dict:
    doc = json.loads(_example("sunday-default-only.json"))
    if change == "timezone":
        schedule = doc["policyRules"][0]["trigger"]["schedule"]
        schedule["timezone"] = schedule.pop("timeZone")
    else:
        doc["policyRules"][1]["lifecycles"][0]["deleteAfter"]["duration"] = "P99999999999999999999D"
    return doc


@pytest.mark.parametrize(
    ("change", "target"),
    [
        ("timezone", "policyRules[0].trigger.schedule.timezone"),
        ("huge", "policyRules[1].lifecycles[0].deleteAfter.duration"),
    ],
)
def test_misspelled_field_or_huge_duration_is_refused_400_naming_it_and_nothing_is_stored(
    app_host: DevhostProcess, change: str, target: str
) -> None:
    r = app_host.request("PUT", f"/backupPolicies/bad-{change}", json=_sunday_with(change))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "InvalidPolicy"
    assert r.json()["error"]["target"] == target
    assert app_host.request("GET", f"/backupPolicies/bad-{change}").status_code == 404


@pytest.mark.parametrize(
    ("body", "target"),
    [
        ({"from": "9999-01-01", "to": "9999-12-31"}, "from"),
        ({"from": "2025-01-01", "to": "9999-12-31T23:59:59-05:00"}, "to"),
        ({"from": "2025-01-01", "to": "2026-01-01", "timeZone": "UTC"}, "timeZone"),
    ],
)
def test_simulation_to_year_9999_or_with_an_unknown_field_is_refused_400(
    app_host: DevhostProcess, body: dict, target: str
) -> None:
    r = app_host.request("PUT", "/backupPolicies/sim-bounds", data=_example("sunday-default-only.json"))
    assert r.status_code in (200, 201), r.text
    r = app_host.request("POST", "/backupPolicies/sim-bounds:simulate", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "InvalidRequest"
    assert r.json()["error"]["target"] == target
