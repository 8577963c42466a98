"""Every registered route's real answers hold to ``/api/openapi.json``, additional properties forbidden.

One devhost with real PostgreSQL and Azurite; every route is driven at least once (policies,
configure, validate, backup, recovery points, restore as a database and as files, verify,
stop/resume, delete, jobs, cancel, dashboard, health and its self-check), and each answer's
status and body are checked against the document the app serves. The routes exercised must be
exactly the registered ones: a new route without a conformance call fails here.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import uuid
from typing import Any

import jsonschema
import pytest
import requests
from azure.storage.blob import BlobServiceClient
from devhost_process import DevhostProcess
from factories import Database, Databases, Hosts

import function_app
from tests.examples import EXAMPLES

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _spec_path(route: str) -> str:
    return "/" + re.sub(r"\{\*?([A-Za-z0-9_]+)(?::[^}]*)?\}", r"{\1}", route.strip("/"))


def _registered() -> set[tuple[str, str]]:
    # get_functions() may be called once per app: build a second app from the same module source.
    spec = importlib.util.spec_from_file_location("function_app_for_conformance", function_app.__file__)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    routes = set()
    for fn in module.app.get_functions():
        trigger = fn.get_trigger().get_dict_repr()
        if trigger["type"] == "httpTrigger":
            for method in trigger["methods"]:
                routes.add((_spec_path(trigger["route"]), str(getattr(method, "value", method)).lower()))
    return routes


class Conformance:
    """Sends requests through a devhost and checks every answer against the document it serves."""

    def __init__(self, host: DevhostProcess) -> None:
        self.host = host
        self.document: dict[str, Any] = host.get("/openapi.json").json()
        self.exercised: set[tuple[str, str]] = set()
        self.templates = [
            (template, re.compile("^" + re.sub(r"\\\{(\w+)\\\}", self._group, re.escape(template)) + "$"))
            for template in self.document["paths"]
        ]

    @staticmethod
    def _group(match: re.Match[str]) -> str:
        return ".+" if match.group(1) == "path" else "[^/:]+"

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        """The document's path template and operation for ``method path`` (the most specific template)."""
        bare = path.split("?", 1)[0]
        found = [t for t, pattern in self.templates if pattern.match(bare) and method in self.document["paths"][t]]
        assert found, f"{method.upper()} {bare}: no operation in the document"
        template = max(found, key=lambda t: len(re.sub(r"\{\w+\}", "", t)))
        return template, self.document["paths"][template][method]

    def check(self, method: str, path: str, response: requests.Response) -> None:
        """``response`` has a documented status and, for JSON, a body the document's schema accepts."""
        template, op = self.operation(method, path)
        status = str(response.status_code)
        assert status in op["responses"], f"{method.upper()} {template}: {status} is not documented"
        content = op["responses"][status].get("content")
        if content is None:
            return
        media = response.headers.get("Content-Type", "").split(";")[0]
        assert media in content, f"{method.upper()} {template} {status}: {media} is not documented"
        if media == "application/json":
            self.validate(content[media]["schema"], response.json(), f"{method.upper()} {template} {status}")

    def validate(self, schema: dict[str, Any], body: Any, label: str) -> None:
        """``body`` against ``schema`` (refs into the document), every error listed."""
        # The refs point into the document ("#/components/schemas/..."): the schema is checked with them beside it.
        rooted = {**schema, "components": self.document["components"]}
        validator = jsonschema.Draft202012Validator(
            rooted, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
        assert not errors, f"{label}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message[:300]}" for e in errors[:5]
        )

    def call(self, method: str, path: str, expect: int | None = None, **kw: Any) -> requests.Response:
        """Send, check against the document, record the route; ``expect`` the status when given."""
        headers = kw.pop("headers", None)
        response = (
            requests.request(method, self.host.url + path, timeout=30, headers=headers, **kw)
            if headers is not None
            else self.host.request(method, path, **kw)
        )
        if expect is not None:
            assert response.status_code == expect, f"{method} {path}: {response.status_code} {response.text[:500]}"
        self.check(method.lower(), path, response)
        self.exercised.add((self.operation(method.lower(), path)[0], method.lower()))
        return response

    def job(self, job_id: str) -> dict[str, Any]:
        """Poll the job (each answer checked) until it is no longer InProgress."""
        return self.host.wait_job(job_id, 180, interval=0.5, fetch=self._job_answer)

    def _job_answer(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.call("GET", f"/backupJobs/{job_id}", 200).json()
        return job


@pytest.fixture(scope="module")
def shop(make_database: Databases) -> Database:
    """``shop`` with a table and the backup grant; ``bare`` (its second database) empty and not granted."""
    db = make_database(
        "cshop",
        tables=["CREATE TABLE orders (id int PRIMARY KEY, item text); INSERT INTO orders VALUES (1, 'a');", ""],
        databases=2,
        grant=False,
    )
    db.grant(db.name)
    return db


@pytest.fixture(scope="module")
def fleet(make_database: Databases) -> Database:
    """Two empty databases of a role of their own, for a protected server."""
    return make_database("cfleet", databases=2)


@pytest.fixture(scope="module")
def api(make_host: Hosts, shop: Database, fleet: Database) -> Conformance:
    host = make_host(
        {
            "PGVAULT_SECRET_FLEET_CS": fleet.connection_string(),
            "PGVAULT_SECRET_SHOP_CS": shop.connection_string(),
            "PGVAULT_SECRET_TARGET_CS": (
                f"Server=127.0.0.1;Port={shop.port};User Id=postgres;Password=unused;Ssl Mode=Disable"
            ),
        }
    )
    return Conformance(host)


def _policies(api: Conformance) -> None:
    policy = json.loads((EXAMPLES / "weekly-mon-wed-fri-with-archive.json").read_text())
    api.call("PUT", "/backupPolicies/weekly", 201, json=policy)
    api.call("PUT", "/backupPolicies/weekly", 200, json=policy)
    api.call("PUT", "/backupPolicies/spare", 201, json=policy)
    api.call("GET", "/backupPolicies", 200)
    api.call("GET", "/backupPolicies/weekly", 200)
    api.call("GET", "/backupPolicies/absent", 404)
    api.call("PUT", "/backupPolicies/bad", 400, json={**policy, "tags": {}})
    api.call("POST", "/backupPolicies/weekly:simulate", 200, json={"from": "2025-01-01", "to": "2026-06-01"})
    api.call("DELETE", "/backupPolicies/spare", 200)


def _configure(api: Conformance, shop: Database) -> str:
    spec = {"server": "127.0.0.1", "port": shop.port, "secretUri": "env:PGVAULT_SECRET_SHOP_CS"}
    listing = {"secretUri": "env:PGVAULT_SECRET_SHOP_CS", "server": "127.0.0.1", "port": shop.port}
    api.call("POST", "/servers:listDatabases", 200, json=listing)
    many = {
        "instances": [
            {**spec, "name": "bare", "database": shop.names[1], "policyName": "weekly"},
            {**spec, "name": "broken", "database": shop.names[1], "policyName": "absent"},
        ]
    }
    api.call("POST", "/backupInstances", 202, json=many)
    # Validate for backup: a would-be instance (its database does not exist), then its job's script and template.
    would_be = {**spec, "database": "not_here_yet", "policyName": "weekly"}
    checked = api.job(api.call("POST", "/backupInstances:validateForBackup", 202, json=would_be).json()["jobId"])
    api.call("GET", f"/backupJobs/{checked['jobId']}/grantScript?format=ps1", 200)
    api.call("GET", f"/backupJobs/{checked['jobId']}/roleAssignmentTemplate", 200)
    api.call("POST", "/backupInstances:validateForBackup", 409, json={**would_be, "database": shop.names[1]})
    api.call("POST", "/backupInstances", 400, json={"instances": [many["instances"][1]]})
    configured = api.call(
        "PUT", "/backupInstances/shop", 202, json={**spec, "database": shop.name, "policyName": "weekly"}
    )
    assert api.job(configured.json()["validationJobId"])["status"] == "Completed"
    everything = [i["name"] for i in api.call("GET", "/backupInstances", 200).json()["value"]]
    # One instance a page: nextLink walks every instance once, by name; an altered token is a 400.
    page, walked = api.call("GET", "/backupInstances?top=1", 200).json(), []
    while True:
        walked += [i["name"] for i in page["value"]]
        if "nextLink" not in page:
            break
        link = page["nextLink"].split("/api", 1)[1]
        page = api.call("GET", link, 200).json()
    assert walked == everything and len(walked) >= 2 and len(set(walked)) == len(walked)
    api.call("GET", link[: link.index("continuationToken=") + 18] + "x" + link[-8:], 400)
    api.call("GET", "/backupInstances/shop", 200)
    api.job(api.call("POST", "/backupInstances/shop:validate", 202).json()["jobId"])
    api.call("GET", "/backupInstances/shop/grantScript?format=sh", 200)
    api.call("GET", "/backupInstances/shop/roleAssignmentTemplate", 200)
    return "shop"


def _servers(api: Conformance, fleet: Database) -> None:
    body = {
        "server": "127.0.0.1",
        "port": fleet.port,
        "secretUri": "env:PGVAULT_SECRET_FLEET_CS",
        "policyName": "weekly",
        "includePatterns": [f"{fleet.name}*"],
    }
    api.call("PUT", "/protectedServers/fleet", 201, json=body)
    api.call("PUT", "/protectedServers/fleet", 200, json={**body, "excludePatterns": [fleet.names[1]]})
    api.call("PUT", "/protectedServers/other", 409, json=body)  # one protected server per host
    api.call("PUT", "/protectedServers/fleet", 400, json={**body, "includePattern": ["*"]})
    api.call("GET", "/protectedServers", 200)
    api.call("GET", "/protectedServers/fleet", 200)
    api.call("GET", "/protectedServers/absent", 404)
    api.call("POST", "/protectedServers/fleet:discover", 200)
    api.call("DELETE", "/protectedServers/fleet?retainData=forever", 200)


def _backup_and_restore(api: Conformance, shop: Database, storage: str) -> None:
    trigger = {"backupRuleOptions": {"ruleName": "BackupWeekly", "triggerOption": {"retentionTagOverride": "Weekly"}}}
    backup = api.job(api.call("POST", "/backupInstances/shop:backup", 202, json=trigger).json()["jobId"])
    assert backup["status"] == "Completed", backup
    point = backup["recoveryPointId"]
    api.call("GET", "/backupInstances/shop/recoveryPoints", 200)
    api.call("GET", f"/backupInstances/shop/recoveryPoints/{point}", 200)
    api.call("GET", "/backupInstances/shop", 200)  # now with its lastBackup
    credentials = {
        "objectType": "SecretStoreBasedAuthCredentials",
        "secretStoreResource": {"uri": "env:PGVAULT_SECRET_TARGET_CS", "secretStoreType": "AzureKeyVault"},
    }
    as_database = {
        "objectType": "AzureBackupRecoveryPointBasedRestoreRequest",
        "recoveryPointId": point,
        "restoreTargetInfo": {
            "objectType": "RestoreTargetInfo",
            "datasourceInfo": {"resourceName": shop.spare("copy")},
            "datasourceAuthCredentials": credentials,
        },
    }
    restored = api.job(api.call("POST", "/backupInstances/shop:restore", 202, json=as_database).json()["jobId"])
    assert restored["status"] == "Completed", restored
    container = BlobServiceClient.from_connection_string(storage).get_container_client(f"c{uuid.uuid4().hex[:8]}")
    container.create_container()
    as_files = {
        "recoveryPointId": point,
        "restoreTargetInfo": {
            "objectType": "RestoreFilesTargetInfo",
            "targetDetails": {"url": container.url, "filePrefix": "shop"},
        },
    }
    exported = api.job(api.call("POST", "/backupInstances/shop:restore", 202, json=as_files).json()["jobId"])
    assert exported["status"] == "Completed", exported
    refused = copy.deepcopy(as_database)
    refused["restoreTargetInfo"]["datasourceInfo"]["resourcename"] = "x"
    api.call("POST", "/backupInstances/shop:restore", 400, json=refused)
    verify = {"recoveryPointId": point, "datasourceAuthCredentials": credentials}
    verified = api.job(api.call("POST", "/backupInstances/shop:verifyRestore", 202, json=verify).json()["jobId"])
    assert verified["status"] == "Completed", verified


def _protection_and_jobs(api: Conformance) -> None:
    api.call("POST", "/backupInstances/shop:stopProtection", 200, json={"retainData": "forever"})
    api.call("POST", "/backupInstances/shop:resumeProtection", 200)
    api.call("POST", "/backupInstances/shop:resumeProtection", 409)
    deleting = api.call("POST", "/backupInstances/bare:stopProtection", 202, json={"retainData": "delete"})
    api.job(deleting.json()["jobId"])
    api.call("GET", "/backupInstances/bare", 200)  # SoftDeleted, with its deletionInfo
    api.call("POST", "/backupInstances/bare:undelete", 200)
    api.call("POST", "/backupInstances/bare:undelete", 409)
    page = api.call("GET", "/backupJobs?days=1&top=2", 200).json()
    if "nextLink" in page:
        api.call("GET", page["nextLink"].split("/api", 1)[1], 200)
    api.call("GET", "/backupJobs?operation=Backup&status=Completed", 200)
    api.call("GET", "/backupJobs?days=400", 400)
    done = page["value"][0]["jobId"]
    api.call("POST", f"/backupJobs/{done}:cancel")
    api.call("GET", f"/backupJobs/{'0' * 12}-{'0' * 20}", 404)
    api.call("GET", "/alerts?days=1&top=5", 200)
    api.call("GET", "/alerts?days=400", 400)


def _the_rest(api: Conformance) -> None:
    tools = api.call("GET", "/health", 200, headers={}).json()["tools"]
    # The versions of every client tool found, psql included (the wheel's 17 at least).
    assert all(any(v.startswith("17.") for v in tools[k]) for k in ("pgDump", "pgRestore", "psql")), tools
    api.call("GET", "/health/checks", 200)
    api.call("GET", "/openapi.json", 200)
    api.call("GET", "/dashboard", 200, headers={})
    api.call("GET", "/dashboard/app.js", 200, headers={})
    assert api.call("GET", "/me", 200).json()["functionKey"] is True
    assert api.call("GET", "/auditLog?days=1&top=2", 200).json()["nextLink"]  # this run's calls, in pages
    assert api.call("GET", "/approvals", 200).json() == {"value": []}  # multi-user authorization is off here
    api.call("GET", "/approvals/00ab-cd", 404)
    api.call("POST", "/approvals/00ab-cd:approve", 404)


def test_every_route_answers_as_the_document_says(
    api: Conformance, shop: Database, fleet: Database, app_env: dict[str, str]
) -> None:
    _policies(api)
    _configure(api, shop)
    _servers(api, fleet)
    _backup_and_restore(api, shop, app_env["AzureWebJobsStorage"])
    _protection_and_jobs(api)
    _the_rest(api)
    assert api.exercised == _registered(), {
        "not exercised": sorted(_registered() - api.exercised),
        "not registered": sorted(api.exercised - _registered()),
    }


def test_the_checker_sees_a_field_the_document_does_not_name(api: Conformance) -> None:
    # A schema check that cannot see drift is a defect: a real answer plus one unknown field must fail.
    policy = json.loads((EXAMPLES / "sunday-default-only.json").read_text())
    api.call("PUT", "/backupPolicies/drift", json=policy)
    instance = {"server": "db.invalid", "database": "d", "secretUri": "env:PGVAULT_SECRET_NONE", "policyName": "drift"}
    api.call("PUT", "/backupInstances/drift", 202, json=instance)
    answer = api.call("GET", "/backupPolicies", 200).json()
    _, op = api.operation("get", "/backupPolicies")
    schema = op["responses"]["200"]["content"]["application/json"]["schema"]
    api.validate(schema, answer, "as answered")
    for drifted in ({**answer, "count": 1}, {"value": [{**answer["value"][0], "etag": "x"}]}):
        with pytest.raises(AssertionError, match="Additional properties"):
            api.validate(schema, drifted, "drifted")
    job = api.call("GET", "/backupJobs", 200).json()["value"][0]
    job_schema = api.document["components"]["schemas"]["Job"]
    with pytest.raises(AssertionError, match="does not match"):
        api.validate(job_schema, {**job, "createdTime": job["createdTime"].replace("Z", "+00:00")}, "offset time")
