"""The OpenAPI 3.1 description of pgvault's whole HTTP API (README, API), served at ``/api/openapi.json``.

The paths table is written here; every schema under ``components`` is generated from the wire
models (``shared.wire``), the same models that check the requests and build the answers, so the
document cannot describe a field the API does not answer nor miss one it does. Enums (error
codes, job statuses and operations, datastores) come from the code that defines them. A test
checks that every registered HTTP route and method is described here (tests/unit/test_openapi.py),
and an e2e test checks every route's real answers against this document
(tests/e2e/test_conformance.py).

Auth: every path but ``/health`` and the dashboard's files needs a function key (``x-functions-key``
header or ``code`` query parameter) or, with App Service Authentication, a signed-in caller, and so
does this description itself. Each operation names the lowest role that may call it
(``x-pgvault-role``, from ``shared.access.ROUTE_ROLES``); a caller without it gets 403.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, models_json_schema
from pydantic_core import CoreSchema

from shared.access import ROUTE_ROLES, Open
from shared.alerts import store as alert_store
from shared.audit import DEFAULT_PAGE as AUDIT_PAGE
from shared.audit import MAX_DAYS as AUDIT_MAX_DAYS
from shared.audit import MAX_PAGE as AUDIT_MAX_PAGE
from shared.jobs import _JOB_ID, DEFAULT_PAGE_SIZE, MAX_LIST_DAYS, MAX_PAGE_SIZE
from shared.wire import (
    access,
    alerts,
    backups,
    common,
    health,
    instances,
    jobs,
    policies,
    recovery_points,
    restore,
    servers,
)

OPENAPI_VERSION = "3.1.0"
API_VERSION = "2026-11-01"
NAME_PATTERN = common.NAME_PATTERN
REF_TEMPLATE = "#/components/schemas/{model}"

Schema = dict[str, Any]
STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}

# What the API accepts (validation mode: defaults make a field optional) and what it answers.
REQUESTS: tuple[type[BaseModel], ...] = (
    policies.BackupPolicy,
    policies.SimulateRequest,
    instances.InstanceSpec,
    instances.ConfigureManyRequest,
    instances.StopProtectionRequest,
    common.EmptyBody,
    servers.ListDatabasesRequest,
    servers.ProtectedServerSpec,
    backups.TriggerBackupRequest,
    restore.RestoreRequest,
    restore.VerifyRestoreRequest,
)
RESPONSES: tuple[type[BaseModel], ...] = (
    common.Error,
    common.Deleted,
    common.Accepted,
    health.Health,
    health.HealthChecks,
    policies.StoredPolicy,
    policies.PolicyList,
    policies.Simulation,
    instances.BackupInstance,
    instances.BackupInstanceList,
    instances.Configured,
    instances.ConfiguredList,
    instances.DeletionAccepted,
    servers.DatabaseList,
    servers.ProtectedServer,
    servers.ProtectedServerList,
    servers.Discovery,
    servers.ServerUnprotected,
    recovery_points.RecoveryPoint,
    recovery_points.RecoveryPointList,
    jobs.Job,
    jobs.JobList,
    alerts.Alert,
    alerts.AlertList,
    access.Me,
    access.AuditLog,
    access.ApprovalRequest,
    access.ApprovalRequestList,
    access.ApprovalPending,
)


class _Generator(GenerateJsonSchema):
    """Pydantic's JSON Schema without a generated title on every field ("Recoverypointid")."""

    def field_title_should_be_set(self, schema: CoreSchema) -> bool:
        return False


def _ref(name: str) -> Schema:
    return {"$ref": REF_TEMPLATE.format(model=name)}


def schemas() -> dict[str, Schema]:
    """Every component schema, generated from the wire models (JSON Schema 2020-12, as OpenAPI 3.1 has it)."""
    modes: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        *((m, "validation") for m in REQUESTS),
        *((m, "serialization") for m in RESPONSES),
    ]
    _, document = models_json_schema(modes, ref_template=REF_TEMPLATE, schema_generator=_Generator)
    return dict(sorted(document["$defs"].items()))


def _err(*statuses: int) -> dict[str, Any]:
    texts = {
        400: "bad input: target names the field (an unknown or misspelled one by its dotted path, with a "
        "'did you mean' hint when a known name is close)",
        404: "not found",
        409: "conflict",
        403: "the caller lacks the role the route needs (UserErrorInsufficientRole names it), or approves its "
        "own request (UserErrorSelfApprovalNotAllowed)",
        413: "body too large",
        500: "failure inside pgvault, or invalid settings",
    }
    return {
        str(s): {"description": texts[s], "content": {"application/json": {"schema": _ref("Error")}}} for s in statuses
    }


def _ok(schema: Schema | str, status: int = 200, description: str = "OK", *, accepted: bool = False) -> dict[str, Any]:
    body = _ref(schema) if isinstance(schema, str) else schema
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": body}}}
    if accepted:
        response["headers"] = {
            "Location": {"description": "the job to poll: /api/backupJobs/{jobId}", "schema": STR},
            "Retry-After": {"description": "seconds before polling again", "schema": INT},
        }
    return {str(status): response}


def _body(schema: str, *, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": _ref(schema)}}}


def _op(
    op_id: str,
    summary: str,
    responses: dict[str, Any],
    *,
    tag: str,
    params: tuple[str, ...] = (),
    body: dict[str, Any] | None = None,
    query: list[dict[str, Any]] | None = None,
    anonymous: bool = False,
) -> dict[str, Any]:
    out: dict[str, Any] = {"operationId": op_id, "summary": summary, "tags": [tag], "responses": responses}
    parameters = [{"$ref": f"#/components/parameters/{p}"} for p in params] + (query or [])
    if parameters:
        out["parameters"] = parameters
    if body is not None:
        out["requestBody"] = body
    if anonymous:
        out["security"] = []
    else:
        out["responses"].setdefault(
            "403",
            {
                "description": "the caller lacks the role this route needs (UserErrorInsufficientRole)",
                "content": {"application/json": {"schema": _ref("Error")}},
            },
        )
        # Azure's host answers 401 with no body; devhost with the error shape (without recommendedAction).
        out["responses"] = {
            **out["responses"],
            "401": {"description": "the function key is missing or wrong, or no one is signed in"},
        }
        # Any keyed operation reads the state table: 503 while storage does not answer.
        out["responses"]["503"] = {
            "description": "the vault's storage did not answer; retry after Retry-After seconds",
            "headers": {"Retry-After": {"description": "seconds before retrying", "schema": INT}},
            "content": {"application/json": {"schema": _ref("Error")}},
        }
    return out


def _q(name: str, schema: Schema, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_NAME = ("name",)


def _job_filters() -> list[dict[str, Any]]:
    return [
        _q(
            "days", {"type": "integer", "minimum": 1, "maximum": MAX_LIST_DAYS, "default": 7}, "jobs of the last N days"
        ),
        _q("instance", STR, "only this backup instance's jobs"),
        _q("status", _ref("JobStatus"), "only jobs in this status"),
        _q("operation", _ref("Operation"), "only this kind of job"),
        *_page_params("jobs per page"),
    ]


def _page_params(per_page: str) -> list[dict[str, Any]]:
    return [
        _q(
            "top",
            {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE},
            per_page,
        ),
        _q("continuationToken", STR, "from the previous page's nextLink; opaque (400 if altered)"),
        _q("$skipToken", STR, "the same as continuationToken (Azure's other name for it)"),
    ]


def _health_paths() -> dict[str, Any]:
    return {
        "/health": {
            "get": _op(
                "Health_Get",
                "Liveness and the client tools' state; 503 naming the settings to fix. ?deep=true runs the "
                "self-check and answers only Healthy or Unhealthy (details: /health/checks)",
                {**_ok("Health"), **_ok("Health", 503, "settings missing or invalid, or (deep) a check failed")},
                tag="Health",
                anonymous=True,
                query=[_q("deep", {"type": "string", "enum": ["true", "false"]}, "run every self-check")],
            )
        },
        "/health/checks": {
            "get": _op(
                "Health_Checks",
                "The first-run self-check with each check's findings (status says whether all passed)",
                {**_ok("HealthChecks"), **_err(500)},
                tag="Health",
            )
        },
        "/openapi.json": {
            "get": _op("OpenApi_Get", "This description", _ok({"type": "object"}), tag="Health"),
        },
    }


def _policy_paths() -> dict[str, Any]:
    tag = "BackupPolicies"
    return {
        "/backupPolicies": {
            "get": _op("BackupPolicies_List", "Every policy", {**_ok("PolicyList"), **_err(500)}, tag=tag)
        },
        "/backupPolicies/{name}": {
            "put": _op(
                "BackupPolicies_CreateOrUpdate",
                "Create (201) or replace (200) a policy (409 when an immutable vault would shorten retention)",
                {
                    **_ok("StoredPolicy"),
                    **_ok("StoredPolicy", 201, "Created"),
                    **_ok(
                        "ApprovalPending",
                        202,
                        "Shortens retention: waits for a Backup Guard (multi-user authorization)",
                    ),
                    **_err(400, 409, 413, 500),
                },
                tag=tag,
                params=_NAME,
                body=_body("BackupPolicy"),
            ),
            "get": _op(
                "BackupPolicies_Get",
                "One policy",
                {**_ok("StoredPolicy"), **_err(400, 404, 500)},
                tag=tag,
                params=_NAME,
            ),
            "delete": _op(
                "BackupPolicies_Delete",
                "Delete a policy (409 while an instance uses it)",
                {**_ok("Deleted"), **_err(400, 404, 409, 500)},
                tag=tag,
                params=_NAME,
            ),
        },
        "/backupPolicies/{name}:simulate": {
            "post": _op(
                "BackupPolicies_Simulate",
                "Dry run: the backups of a date range, their tags, archive moves and deletions",
                {**_ok("Simulation"), **_err(400, 404, 413, 500)},
                tag=tag,
                params=_NAME,
                body=_body("SimulateRequest"),
            )
        },
    }


def _configure_paths() -> dict[str, Any]:
    tag = "BackupInstances"
    return {
        "/servers:listDatabases": {
            "post": _op(
                "Servers_ListDatabases",
                "The databases a secret's user sees on its server (no other server), those protected marked",
                {**_ok("DatabaseList"), **_err(400, 404, 413, 500)},
                tag=tag,
                body=_body("ListDatabasesRequest"),
            )
        },
        "/backupInstances": {
            "post": _op(
                "BackupInstances_ConfigureMany",
                "Protect many databases: 202 with each entry's outcome (400 when all failed)",
                {
                    **_ok("ConfiguredList", 202, "Accepted"),
                    **_ok(
                        {"oneOf": [_ref("ConfiguredList"), _ref("Error")]},
                        400,
                        "every entry failed (each entry's outcome), or the body itself is wrong (the error)",
                    ),
                    **_err(413, 500),
                },
                tag=tag,
                body=_body("ConfigureManyRequest"),
            ),
            "get": _op(
                "BackupInstances_List",
                "Backup instances by name, in pages (follow nextLink for the rest)",
                {**_ok("BackupInstanceList"), **_err(400, 500)},
                tag=tag,
                query=_page_params("instances per page"),
            ),
        },
        "/backupInstances/{name}": {
            "put": _op(
                "BackupInstances_CreateOrUpdate",
                "Protect one database (or change its policy or secret): 202 + validation job",
                {**_ok("Configured", 202, "Accepted", accepted=True), **_err(400, 404, 409, 413, 500)},
                tag=tag,
                params=_NAME,
                body=_body("InstanceSpec"),
            ),
            "get": _op(
                "BackupInstances_Get",
                "One backup instance, with its last and next backup",
                {**_ok("BackupInstance"), **_err(400, 404, 500)},
                tag=tag,
                params=_NAME,
            ),
        },
        "/backupInstances:validateForBackup": {
            "post": _op(
                "BackupInstances_ValidateForBackup",
                "Validate a would-be instance (one configure entry) without configuring it: 202 + Validate job; "
                "nothing but the job is stored",
                {**_ok("Accepted", 202, "Accepted", accepted=True), **_err(400, 404, 409, 413, 500)},
                tag=tag,
                body=_body("InstanceSpec"),
            )
        },
        "/backupInstances/{name}:validate": {
            "post": _op(
                "BackupInstances_Validate",
                "Re-validate: 202 + job",
                {**_ok("Accepted", 202, "Accepted", accepted=True), **_err(400, 404, 409, 500)},
                tag=tag,
                params=_NAME,
                body=_body("EmptyBody", required=False),
            )
        },
    }


def _server_paths() -> dict[str, Any]:
    tag = "ProtectedServers"
    retain = _q(
        "retainData",
        {"type": "string", "enum": ["asPerPolicy", "forever"], "default": "asPerPolicy"},
        "how the server's instances keep their points once stopped (never deleted here)",
    )
    return {
        "/protectedServers": {
            "get": _op(
                "ProtectedServers_List",
                "Every protected server with its last discovery",
                {**_ok("ProtectedServerList"), **_err(500)},
                tag=tag,
            )
        },
        "/protectedServers/{name}": {
            "put": _op(
                "ProtectedServers_CreateOrUpdate",
                "Protect every database of a server the secret's user sees (fnmatch include/exclude patterns), each "
                "an instance of its own, validated as usual: 201 created or 200 changed, after the first discovery",
                {
                    **_ok("ProtectedServer"),
                    **_ok("ProtectedServer", 201, "Created"),
                    **_err(400, 404, 409, 413, 500),
                },
                tag=tag,
                params=_NAME,
                body=_body("ProtectedServerSpec"),
            ),
            "get": _op(
                "ProtectedServers_Get",
                "One protected server with each of its databases and what protects it",
                {**_ok("ProtectedServer"), **_err(400, 404, 500)},
                tag=tag,
                params=_NAME,
            ),
            "delete": _op(
                "ProtectedServers_Delete",
                "Stop protecting a server: its instances stop (retainData asPerPolicy or forever) and stay with "
                "their data",
                {**_ok("ServerUnprotected"), **_err(400, 404, 409, 500)},
                tag=tag,
                params=_NAME,
                query=[retain],
            ),
        },
        "/protectedServers/{name}:discover": {
            "post": _op(
                "ProtectedServers_Discover",
                "Discover now: new databases protected, dropped ones stopped (asPerPolicy), doubles skipped",
                {**_ok("Discovery"), **_err(400, 404, 409, 500)},
                tag=tag,
                params=_NAME,
                body=_body("EmptyBody", required=False),
            )
        },
    }


def _grant_paths() -> dict[str, Any]:
    tag = "BackupInstances"
    script_format = _q(
        "format",
        {"type": "string", "enum": ["sql", "sh", "ps1"], "default": "sql"},
        "SQL, or a psql wrapper for bash or PowerShell",
    )
    return {
        "/backupInstances/{name}/grantScript": {
            "get": _op(
                "BackupInstances_GrantScript",
                "The script an administrator runs to grant the backup privileges",
                {
                    "200": {
                        "description": "the script",
                        "content": {"application/sql": {"schema": STR}, "text/plain": {"schema": STR}},
                    },
                    **_err(400, 404, 500),
                },
                tag=tag,
                params=_NAME,
                query=[script_format],
            )
        },
        "/backupJobs/{jobId}/grantScript": {
            "get": _op(
                "BackupJobs_GrantScript",
                "A validation for backup's grant script, for its would-be instance's database and user",
                {
                    "200": {
                        "description": "the script",
                        "content": {"application/sql": {"schema": STR}, "text/plain": {"schema": STR}},
                    },
                    **_err(400, 404, 500),
                },
                tag=tag,
                params=("jobId",),
                query=[script_format],
            )
        },
        "/backupJobs/{jobId}/roleAssignmentTemplate": {
            "get": _op(
                "BackupJobs_RoleAssignmentTemplate",
                "A validation for backup's ARM template of the Azure roles its would-be instance needs",
                {**_ok({"type": "object", "description": "an ARM deployment template"}), **_err(400, 404, 500)},
                tag=tag,
                params=("jobId",),
            )
        },
        "/backupInstances/{name}/roleAssignmentTemplate": {
            "get": _op(
                "BackupInstances_RoleAssignmentTemplate",
                "ARM template granting the app's identity the Azure roles the instance needs",
                {**_ok({"type": "object", "description": "an ARM deployment template"}), **_err(400, 404, 500)},
                tag=tag,
                params=_NAME,
            )
        },
    }


def _protection_paths() -> dict[str, Any]:
    tag = "BackupInstances"
    return {
        "/backupInstances/{name}:stopProtection": {
            "post": _op(
                "BackupInstances_StopProtection",
                "Stop backups, retaining data forever, as per policy, or soft-deleting it (delete: SoftDeleted for "
                "PGVAULT_SOFT_DELETE_DAYS, then purged; 409 UserErrorOperationBlockedByImmutability while the vault "
                "is immutable)",
                {
                    **_ok("BackupInstance"),
                    **_ok(
                        {"oneOf": [_ref("DeletionAccepted"), _ref("ApprovalPending")]},
                        202,
                        "Accepted (soft-deleted; Location is the Delete job that records it), or, under multi-user "
                        "authorization, waiting for a Backup Guard (ApprovalPending, no Location)",
                        accepted=True,
                    ),
                    **_err(400, 404, 409, 500),
                },
                tag=tag,
                params=_NAME,
                body=_body("StopProtectionRequest"),
            )
        },
        "/backupInstances/{name}:undelete": {
            "post": _op(
                "BackupInstances_Undelete",
                "Bring a soft-deleted instance back as ProtectionStopped (retain data forever) with every recovery "
                "point; 409 when it is not soft-deleted or its purge has begun",
                {**_ok("BackupInstance"), **_err(400, 404, 409, 500)},
                tag=tag,
                params=_NAME,
                body=_body("EmptyBody", required=False),
            )
        },
        "/backupInstances/{name}:resumeProtection": {
            "post": _op(
                "BackupInstances_ResumeProtection",
                "Resume scheduled backups of a stopped instance",
                {**_ok("BackupInstance"), **_err(400, 404, 409, 500)},
                tag=tag,
                params=_NAME,
                body=_body("EmptyBody", required=False),
            )
        },
    }


def _backup_paths() -> dict[str, Any]:
    tag = "Backups"
    return {
        "/backupInstances/{name}:backup": {
            "post": _op(
                "BackupInstances_AdhocBackup",
                "On-demand backup: 202 + job (409 while one runs)",
                {**_ok("Accepted", 202, "Accepted", accepted=True), **_err(400, 404, 409, 413, 500)},
                tag=tag,
                params=_NAME,
                body=_body("TriggerBackupRequest", required=False),
            )
        },
        "/backupInstances/{name}/recoveryPoints": {
            "get": _op(
                "RecoveryPoints_List",
                "The instance's recovery points, newest first",
                {**_ok("RecoveryPointList"), **_err(400, 404, 500)},
                tag=tag,
                params=_NAME,
            )
        },
        "/backupInstances/{name}/recoveryPoints/{recoveryPointId}": {
            "get": _op(
                "RecoveryPoints_Get",
                "One recovery point",
                {**_ok("RecoveryPoint"), **_err(400, 404, 500)},
                tag=tag,
                params=(*_NAME, "recoveryPointId"),
            )
        },
    }


def _restore_paths() -> dict[str, Any]:
    tag = "Restore"
    return {
        "/backupInstances/{name}:restore": {
            "post": _op(
                "BackupInstances_TriggerRestore",
                "Restore a point as a new database or as files: 202 + job",
                {**_ok("Accepted", 202, "Accepted", accepted=True), **_err(400, 404, 409, 413, 500)},
                tag=tag,
                params=_NAME,
                body=_body("RestoreRequest"),
            )
        },
        "/backupInstances/{name}:verifyRestore": {
            "post": _op(
                "BackupInstances_VerifyRestore",
                "Prove a point restores: scratch restore, compare with the backup's manifest, drop: 202 + job",
                {**_ok("Accepted", 202, "Accepted", accepted=True), **_err(400, 404, 409, 413, 500)},
                tag=tag,
                params=_NAME,
                body=_body("VerifyRestoreRequest"),
            )
        },
    }


def _job_paths() -> dict[str, Any]:
    tag = "Jobs"
    return {
        "/backupJobs": {
            "get": _op(
                "Jobs_List",
                "Jobs of the last days, newest first, in pages",
                {**_ok("JobList"), **_err(400, 500)},
                tag=tag,
                query=_job_filters(),
            )
        },
        "/backupJobs/{jobId}": {
            "get": _op(
                "Jobs_Get",
                "One job: steps, bytes, duration, throughput, error, links",
                {**_ok("Job"), **_err(404, 500)},
                tag=tag,
                params=("jobId",),
            )
        },
        "/backupJobs/{jobId}:cancel": {
            "post": _op(
                "Jobs_Cancel",
                "Cancel a running backup or restore: 202 + the job, which ends Cancelled (nothing committed, a "
                "half-restored database dropped); 200 + the job if it had finished; 409 for other operations",
                {
                    **_ok("Job", 202, "Cancel requested (or done, for a job not started yet)", accepted=True),
                    **_ok("Job", 200, "The job had finished already; it is returned as it ended"),
                    **_err(404, 409, 500),
                },
                tag=tag,
                params=("jobId",),
            )
        },
    }


def _alert_paths() -> dict[str, Any]:
    return {
        "/alerts": {
            "get": _op(
                "Alerts_List",
                "Alerts of the last days, newest first, in pages: failed or warned jobs, corrupted recovery points, "
                "missed scheduled backups, privilege drift; each with its webhook delivery state",
                {**_ok("AlertList"), **_err(400, 500)},
                tag="Alerts",
                query=[
                    _q(
                        "days",
                        {"type": "integer", "minimum": 1, "maximum": alert_store.MAX_LIST_DAYS, "default": 7},
                        "alerts of events in the last N days",
                    ),
                    _q(
                        "top",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": alert_store.MAX_PAGE_SIZE,
                            "default": alert_store.DEFAULT_PAGE_SIZE,
                        },
                        "alerts per page",
                    ),
                    _q("continuationToken", STR, "from the previous page's nextLink; opaque (400 if altered)"),
                    _q("$skipToken", STR, "the same as continuationToken (Azure's other name for it)"),
                ],
            )
        },
    }


def _dashboard_paths() -> dict[str, Any]:
    return {
        "/dashboard": {
            "get": _op(
                "Dashboard_Get",
                "The web dashboard (HTML; it asks for the function key and calls this API)",
                {"200": {"description": "HTML page", "content": {"text/html": {"schema": STR}}}},
                tag="Dashboard",
                anonymous=True,
            )
        },
        "/dashboard/{path}": {
            "get": _op(
                "Dashboard_Asset",
                "The dashboard's scripts and styles",
                {"200": {"description": "a static asset"}, "404": {"description": "no such asset"}},
                tag="Dashboard",
                query=[{"name": "path", "in": "path", "required": True, "schema": STR}],
                anonymous=True,
            )
        },
    }


def _access_paths() -> dict[str, Any]:
    tag = "Access"
    days = _q("days", {"type": "integer", "minimum": 1, "maximum": AUDIT_MAX_DAYS, "default": 7}, "the last N days")
    return {
        "/me": {
            "get": _op(
                "Me_Get",
                "The caller, its roles and every route it may call (what the dashboard shows)",
                {**_ok("Me"), **_err(500)},
                tag=tag,
            )
        },
        "/auditLog": {
            "get": _op(
                "AuditLog_List",
                "Every mutating call of the last days, newest first, in pages: who, when, what (redacted), outcome",
                {**_ok("AuditLog"), **_err(400, 500)},
                tag=tag,
                query=[
                    days,
                    _q(
                        "top",
                        {"type": "integer", "minimum": 1, "maximum": AUDIT_MAX_PAGE, "default": AUDIT_PAGE},
                        "records per page",
                    ),
                    _q("continuationToken", STR, "from the previous page's nextLink; opaque (400 if altered)"),
                    _q("$skipToken", STR, "the same as continuationToken"),
                ],
            )
        },
        "/approvals": {
            "get": _op(
                "Approvals_List",
                "Approval requests of critical operations (multi-user authorization), newest first",
                {**_ok("ApprovalRequestList"), **_err(400, 500)},
                tag=tag,
                query=[_q("days", {"type": "integer", "minimum": 1, "maximum": 90, "default": 7}, "the last N days")],
            )
        },
        "/approvals/{id}": {
            "get": _op(
                "Approvals_Get",
                "One approval request",
                {**_ok("ApprovalRequest"), **_err(404, 500)},
                tag=tag,
                params=("id",),
            )
        },
        "/approvals/{id}:approve": {
            "post": _op(
                "Approvals_Approve",
                "Approve a pending critical operation (Backup Guard, not its requester): it runs now, once; the "
                "answer is the request with the operation's status and answer",
                {**_ok("ApprovalRequest"), **_err(400, 403, 404, 409, 500)},
                tag=tag,
                params=("id",),
                body=_body("EmptyBody", required=False),
            )
        },
    }


def _with_roles(paths: dict[str, Any]) -> dict[str, Any]:
    """Each keyed operation says the lowest role that may call it (``x-pgvault-role``, shared/access.py)."""
    for path, operations in paths.items():
        for method, operation in operations.items():
            need = ROUTE_ROLES.get((method.upper(), _route_of_path(path)))
            if need is not None and need is not Open.ANONYMOUS:
                operation["x-pgvault-role"] = need.value
                operation["summary"] = f"{operation['summary']} [{need.value}]"
    return paths


def _route_of_path(path: str) -> str:
    route = path.lstrip("/")
    return "dashboard/{*path}" if route == "dashboard/{path}" else route


PATH_GROUPS = (
    _health_paths,
    _policy_paths,
    _configure_paths,
    _server_paths,
    _grant_paths,
    _protection_paths,
    _backup_paths,
    _restore_paths,
    _job_paths,
    _alert_paths,
    _dashboard_paths,
    _access_paths,
)


def _paths() -> dict[str, Any]:
    """The paths table: every route with its operation, parameters, body and answers."""
    out: dict[str, Any] = {}
    for group in PATH_GROUPS:
        out.update(group())
    return _with_roles(out)


TAGS = (
    "Health",
    "BackupPolicies",
    "BackupInstances",
    "ProtectedServers",
    "Backups",
    "Restore",
    "Jobs",
    "Alerts",
    "Dashboard",
)


@cache
def openapi() -> dict[str, Any]:
    """The OpenAPI document (built once; treat as read-only)."""
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "pgvault",
            "version": API_VERSION,
            "description": "Backup vault for PostgreSQL: policies, protected databases, backups, recovery points, "
            "restores and jobs. Long operations answer 202 with Location (the job) and Retry-After. Errors are "
            '{"error": {"code", "message", "target"?, "recommendedAction"}}.',
        },
        "servers": [{"url": "/api"}],
        "security": [{"functionKey": []}, {"functionKeyQuery": []}],
        "tags": [{"name": t} for t in TAGS],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"},
            },
            "parameters": {
                "name": {
                    "name": "name",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": NAME_PATTERN},
                },
                "jobId": {
                    "name": "jobId",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": _JOB_ID.pattern},
                },
                "recoveryPointId": {"name": "recoveryPointId", "in": "path", "required": True, "schema": STR},
                "id": {
                    "name": "id",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9a-f-]{1,99}$"},
                },
            },
            "schemas": schemas(),
        },
    }
