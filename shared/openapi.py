"""The OpenAPI 3.1 description of pgvault's whole HTTP API (DESIGN.md §3), served at ``/api/openapi.json``.

Built here rather than kept as a hand-edited file so the enums (error codes, job statuses and
operations, datastores) come from the code that defines them and cannot drift. A test checks
that every registered HTTP route and method is described here (tests/unit/test_openapi.py).

Auth: every path but ``/health`` needs a function key (``x-functions-key`` header or ``code``
query parameter), and so does this description itself: it is served like the rest of the API.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from shared.errors import ErrorCode
from shared.jobs import _JOB_ID, DEFAULT_PAGE_SIZE, MAX_LIST_DAYS, MAX_PAGE_SIZE, JobStatus, Operation
from shared.policy import DataStore
from shared.recovery_points import Integrity, PointState

OPENAPI_VERSION = "3.1.0"
API_VERSION = "2026-11-01"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,149}$"
RETAIN_DATA = ("forever", "asPerPolicy", "delete")

Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _obj(required: list[str], props: dict[str, Schema], *, extra: bool = True, doc: str | None = None) -> Schema:
    out: Schema = {"type": "object", "required": required, "properties": props}
    if not extra:
        out["additionalProperties"] = False
    if doc:
        out["description"] = doc
    return out


def _list(item: str) -> Schema:
    return _obj(
        ["value"],
        {
            "value": {"type": "array", "items": _ref(item)},
            "nextLink": {"type": "string", "description": "URL of the next page; absent on the last page"},
        },
    )


STR: Schema = {"type": "string"}
TIME: Schema = {"type": "string", "format": "date-time"}
NTIME = _nullable(TIME)
NSTR = _nullable(STR)
INT: Schema = {"type": "integer"}
NAME: Schema = {"type": "string", "pattern": NAME_PATTERN}
PORT: Schema = {"type": "integer", "minimum": 1, "maximum": 65535}


def _schemas() -> dict[str, Schema]:
    error_codes = [c.value for c in ErrorCode]
    job_error = _obj(["code", "message", "recommendedAction"], {"code": STR, "message": STR, "recommendedAction": STR})
    return {
        "ErrorCode": {"type": "string", "enum": error_codes},
        "Error": _obj(
            ["error"],
            {
                "error": _obj(
                    ["code", "message", "recommendedAction"],
                    {
                        "code": _ref("ErrorCode"),
                        "message": STR,
                        "target": {"type": "string", "description": "the field, parameter or name at fault"},
                        "recommendedAction": STR,
                    },
                )
            },
            doc="Every error answer.",
        ),
        "JobError": job_error,
        "JobStatus": {"type": "string", "enum": [s.value for s in JobStatus]},
        "Operation": {"type": "string", "enum": [o.value for o in Operation]},
        "DataStore": {"type": "string", "enum": [d.value for d in DataStore]},
        "Health": _obj(
            ["status"],
            {
                "status": {"type": "string", "enum": ["Healthy", "Unhealthy"]},
                "vault": STR,
                "region": NSTR,
                "settings": {
                    "type": "object",
                    "additionalProperties": STR,
                    "description": "Unhealthy: each setting to fix and why",
                },
            },
        ),
        "BackupPolicy": _obj(
            [],
            {
                "properties": {
                    "type": "object",
                    "description": "Azure's BackupPolicy properties: objectType, datasourceTypes, policyRules",
                },
                "objectType": {"const": "BackupPolicy"},
                "datasourceTypes": {"type": "array", "items": STR},
                "policyRules": {"type": "array", "items": {"type": "object"}},
                "id": STR,
                "name": STR,
                "type": STR,
                "eTag": STR,
                "systemData": {"type": "object"},
            },
            extra=False,
            doc='Azure Data Protection BackupPolicy, wrapped in {"properties": ...} (with Azure\'s resource fields '
            "id, name, type, eTag, systemData) or bare (examples: tests/policy-examples/). Checked completely; a "
            "refused one is 400 InvalidPolicy. A field Azure's BackupPolicy does not have, at any level (such as "
            "timezone for timeZone), is refused naming its path, e.g. "
            "properties.policyRules[0].trigger.schedule.timezone.",
        ),
        "StoredPolicy": _obj(
            ["name", "type", "properties"],
            {"name": STR, "type": {"const": "backupPolicies"}, "properties": {"type": "object"}},
        ),
        "PolicyList": _list("StoredPolicy"),
        "Deleted": _obj(["name", "deleted"], {"name": STR, "deleted": {"type": "boolean"}}),
        "SimulateRequest": _obj(
            ["from", "to"],
            {
                "from": {**STR, "description": "date or date-time, from 1900-01-01"},
                "to": {**STR, "description": "exclusive; at most 7320 days after from and at most 9900-01-01"},
            },
            extra=False,
        ),
        "Simulation": _obj(
            ["backups", "summary"],
            {
                "backups": {
                    "type": "array",
                    "items": _obj(
                        ["time", "tag", "vaultExpiry", "deletion"],
                        {
                            "time": TIME,
                            "tag": STR,
                            "vaultExpiry": TIME,
                            "archiveMove": TIME,
                            "archiveExpiry": TIME,
                            "copyOption": STR,
                            "deletion": NTIME,
                        },
                    ),
                },
                "summary": {"type": "object"},
            },
        ),
        "InstanceSpec": _obj(
            ["server", "database", "secretUri", "policyName"],
            {
                "name": NAME,
                "server": {
                    "type": "string",
                    "minLength": 1,
                    "description": "one host name or IP address; when the secret names a Server (and Port), the "
                    "same server and port (host case, a trailing dot and the default port 5432 aside), else 400 "
                    "InvalidRequest naming both; a secret without a Server only for hosts matching "
                    "PGVAULT_ALLOWED_SERVERS",
                },
                "port": PORT,
                "database": {"type": "string", "minLength": 1},
                "secretUri": {
                    "type": "string",
                    "description": "https://<vault>.vault.azure.net/secrets/<name>[/<version>], or "
                    "env:PGVAULT_SECRET_<NAME> when PGVAULT_ALLOW_ENV_SECRETS=true (only variables with that prefix)",
                },
                "policyName": NAME,
                "serverRegion": STR,
            },
            extra=False,
        ),
        "ConfigureManyRequest": _obj(
            ["instances"],
            {"instances": {"type": "array", "items": _ref("InstanceSpec"), "minItems": 1}},
            extra=False,
        ),
        "Configured": _obj(
            ["name", "status"],
            {
                "name": STR,
                "status": {"type": "string", "enum": ["Validating", "Failed"]},
                "validationJobId": STR,
                "instance": _ref("BackupInstance"),
                "error": _ref("JobError"),
            },
        ),
        "ConfiguredList": _list("Configured"),
        "BackupInstance": _obj(
            ["name", "server", "port", "database", "secretUri", "policyName", "protectionStatus", "backupReadiness"],
            {
                "name": STR,
                "server": STR,
                "port": INT,
                "database": STR,
                "secretUri": STR,
                "policyName": STR,
                "serverRegion": NSTR,
                "protectionStatus": STR,
                "backupReadiness": _obj(
                    ["status"],
                    {
                        "status": {"type": "string", "enum": ["Validating", "Success", "Failed"]},
                        "jobId": NSTR,
                        "error": _nullable(_ref("JobError")),
                    },
                ),
            },
        ),
        "BackupInstanceList": _list("BackupInstance"),
        "ListDatabasesRequest": _obj(
            ["secretUri"],
            {"secretUri": STR, "server": STR, "port": PORT},
            extra=False,
            doc="server and port default to the secret's Server and Port; others are refused (400), and a secret "
            "without a Server needs a server matching PGVAULT_ALLOWED_SERVERS",
        ),
        "DatabaseList": _obj(
            ["server", "port", "value"],
            {
                "server": STR,
                "port": INT,
                "value": {
                    "type": "array",
                    "items": _obj(
                        ["database", "protected"], {"database": STR, "protected": {"type": "boolean"}, "instance": NSTR}
                    ),
                },
                "excluded": {
                    "type": "array",
                    "description": "databases the user sees that cannot be protected, with the reason",
                    "items": _obj(["database", "reason"], {"database": STR, "reason": STR}),
                },
            },
        ),
        "TriggerBackupRequest": _obj(
            [],
            {
                "backupRuleOptions": _obj(
                    [],
                    {
                        "ruleName": {"type": "string", "description": "the policy's backup rule, e.g. BackupWeekly"},
                        "triggerOption": _obj(
                            [],
                            {
                                "retentionTagOverride": {
                                    "type": "string",
                                    "description": "Default|Weekly|Monthly|Yearly",
                                }
                            },
                            extra=False,
                        ),
                    },
                    extra=False,
                ),
            },
            extra=False,
            doc="Azure's TriggerBackupRequest; the body may be empty (the Default tag).",
        ),
        "Accepted": _obj(["jobId"], {"jobId": {"type": "string", "pattern": _JOB_ID.pattern}}),
        "RecoveryPoint": _obj(
            ["recoveryPointId", "time", "datastore", "retentionTag", "sizeInBytes", "sha256"],
            {
                "recoveryPointId": STR,
                "instance": STR,
                "time": TIME,
                "datastore": _ref("DataStore"),
                "retentionTag": STR,
                "expiry": NTIME,
                "vaultExpiry": NTIME,
                "archiveMove": NTIME,
                "archiveExpiry": NTIME,
                "deletion": NTIME,
                "sizeInBytes": INT,
                "rawBytes": _nullable(INT),
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "serverVersion": STR,
                "pgDumpVersion": STR,
                "jobId": STR,
                "onDemand": {"type": "boolean"},
                "state": {
                    "type": "string",
                    "enum": [s.value for s in PointState],
                    "description": "where the point is in its retention life (the sweep's state machine)",
                },
                "integrity": {
                    "type": "string",
                    "enum": [i.value for i in Integrity],
                    "description": "Corrupted once a read found its blob failing its SHA-256; a Corrupted point is "
                    "refused as a restore source (409 RecoveryPointCorrupted)",
                },
                "corruption": _nullable(
                    _obj(["detectedTime", "reason"], {"detectedTime": TIME, "reason": STR}),
                ),
            },
        ),
        "RecoveryPointList": _list("RecoveryPoint"),
        "SecretStoreBasedAuthCredentials": _obj(
            ["objectType", "secretStoreResource"],
            {
                "objectType": {"const": "SecretStoreBasedAuthCredentials"},
                "secretStoreResource": _obj(
                    ["uri"],
                    {"uri": STR, "secretStoreType": {"const": "AzureKeyVault"}},
                    extra=False,
                    doc="Azure's value field is refused: a secret never travels in a request.",
                ),
            },
            extra=False,
        ),
        "RestoreTargetInfo": _obj(
            ["objectType", "recoveryOption", "datasourceInfo", "datasourceAuthCredentials"],
            {
                "objectType": {"const": "RestoreTargetInfo"},
                "recoveryOption": {"const": "FailIfExists"},
                "restoreLocation": STR,
                "datasourceInfo": _obj(
                    ["resourceName"],
                    {
                        "resourceName": {"type": "string", "minLength": 1, "description": "the new database's name"},
                        "objectType": STR,
                        "resourceID": STR,
                        "resourceType": STR,
                        "resourceLocation": STR,
                        "datasourceType": STR,
                        "resourceUri": STR,
                        "resourceProperties": {"type": "object"},
                    },
                    extra=False,
                ),
                "datasourceSetInfo": {"type": "object"},
                "datasourceAuthCredentials": _ref("SecretStoreBasedAuthCredentials"),
            },
            extra=False,
            doc="Restore as a new database on the server named in the target secret's connection string.",
        ),
        "RestoreFilesTargetInfo": _obj(
            ["objectType", "recoveryOption", "targetDetails"],
            {
                "objectType": {"const": "RestoreFilesTargetInfo"},
                "recoveryOption": {"const": "FailIfExists"},
                "restoreLocation": STR,
                "targetDetails": _obj(
                    ["url", "filePrefix"],
                    {
                        "url": {
                            "type": "string",
                            "description": "the blob container's URL, https://<account>.blob.core.windows.net/"
                            "<container>, of an account listed in PGVAULT_EXPORT_ACCOUNTS; never one of the "
                            "vault's own containers (else 400 InvalidRequest naming this field)",
                        },
                        "filePrefix": {"type": "string", "minLength": 1},
                        "restoreTargetLocationType": {"const": "AzureBlobs"},
                        "connectionStringSecretUri": {
                            "type": "string",
                            "description": "pgvault: a secret with the connection string of the URL's account",
                        },
                        "targetResourceArmId": STR,
                    },
                    extra=False,
                ),
            },
            extra=False,
            doc="Restore as files (<prefix>.dump and <prefix>.manifest.json) into a blob container.",
        ),
        "RestoreOptions": _obj(
            [],
            {
                "noOwner": {"type": "boolean", "default": True},
                "noAcl": {"type": "boolean", "default": True},
                "schemas": {"type": "array", "items": STR},
                "tables": {
                    "type": "array",
                    "items": STR,
                    "description": "schema.table, or a table name the backup has in one schema only",
                },
                "fileFormat": {"type": "string", "enum": ["dump", "zstd"]},
            },
            extra=False,
            doc="pgvault extensions (not in Azure's request). Schemas and tables are checked against the recovery "
            "point's manifest: a name the backup does not hold is 400 naming restoreOptions.tables[i] (or "
            "schemas[i]); for a point without a manifest, the job ends CompletedWithWarnings naming what was "
            "missing, or Failed (the database dropped) when nothing asked for was there.",
        ),
        "RestoreRequest": _obj(
            ["objectType", "recoveryPointId", "restoreTargetInfo"],
            {
                "objectType": {
                    "type": "string",
                    "enum": ["AzureBackupRecoveryPointBasedRestoreRequest", "AzureBackupRestoreWithRehydrationRequest"],
                },
                "recoveryPointId": {"type": "string", "minLength": 1},
                "sourceDataStoreType": _ref("DataStore"),
                "sourceResourceId": STR,
                "restoreTargetInfo": {"oneOf": [_ref("RestoreTargetInfo"), _ref("RestoreFilesTargetInfo")]},
                "rehydrationPriority": {"type": "string", "enum": ["Standard", "High"]},
                "rehydrationRetentionDuration": {"type": "string", "description": "ISO 8601, P10D..P30D (P15D)"},
                "restoreOptions": _ref("RestoreOptions"),
            },
            extra=False,
            doc="Azure's AzureBackupRecoveryPointBasedRestoreRequest (or ...WithRehydrationRequest for an "
            "ArchiveStore point).",
        ),
        "VerifyRestoreRequest": _obj(
            ["recoveryPointId", "datasourceAuthCredentials"],
            {
                "recoveryPointId": STR,
                "datasourceAuthCredentials": _ref("SecretStoreBasedAuthCredentials"),
                "secretUri": {"type": "string", "description": "instead of datasourceAuthCredentials"},
                "sourceDataStoreType": _ref("DataStore"),
                "restoreOptions": _ref("RestoreOptions"),
            },
            extra=False,
            doc="Restore a point into a scratch database on the target secret's server, compare every table "
            "with the manifest taken at backup time, drop the scratch database.",
        ),
        "StopProtectionRequest": _obj(
            ["retainData"], {"retainData": {"type": "string", "enum": list(RETAIN_DATA)}}, extra=False
        ),
        "Job": _obj(
            ["jobId", "operation", "status", "instance", "createdTime", "bytes", "progress", "steps", "error"],
            {
                "jobId": STR,
                "operation": _ref("Operation"),
                "status": _ref("JobStatus"),
                "instance": STR,
                "createdTime": TIME,
                "startTime": NTIME,
                "endTime": NTIME,
                "durationSeconds": _nullable({"type": "number"}),
                "bytes": INT,
                "progress": {"type": "number", "minimum": 0, "maximum": 1},
                "retentionTag": NSTR,
                "ruleName": NSTR,
                "recoveryPointId": NSTR,
                "throughputBytesPerSecond": _nullable(INT),
                "steps": {
                    "type": "array",
                    "items": _obj(["name"], {"name": STR, "status": STR, "startTime": NTIME, "endTime": NTIME}),
                },
                "details": {"type": "object"},
                "error": _nullable(_ref("JobError")),
                "cancelRequestedTime": {
                    **NTIME,
                    "description": "when POST .../{jobId}:cancel was accepted; the job then ends Cancelled",
                },
                "links": _obj(["self", "instance"], {"self": STR, "instance": STR, "recoveryPoint": NSTR}),
            },
        ),
        "JobList": _list("Job"),
    }


def _err(*statuses: int) -> dict[str, Any]:
    texts = {
        400: "bad input: target names the field (an unknown or misspelled one by its dotted path, with a "
        "'did you mean' hint when a known name is close)",
        404: "not found",
        409: "conflict",
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
        # Azure's host answers 401 with no body; devhost with the error shape (without recommendedAction).
        out["responses"] = {**responses, "401": {"description": "the function key is missing or wrong"}}
        # Any keyed operation reads the state table: 503 while storage does not answer.
        out["responses"]["503"] = {
            "description": "the vault's storage did not answer; retry after Retry-After seconds",
            "headers": {"Retry-After": {"description": "seconds before retrying", "schema": INT}},
            "content": {"application/json": {"schema": _ref("Error")}},
        }
    return out


def _q(name: str, schema: Schema, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _paths() -> dict[str, Any]:
    inst = ("name",)
    job_filters = [
        _q(
            "days", {"type": "integer", "minimum": 1, "maximum": MAX_LIST_DAYS, "default": 7}, "jobs of the last N days"
        ),
        _q("instance", STR, "only this backup instance's jobs"),
        _q("status", _ref("JobStatus"), "only jobs in this status"),
        _q("operation", _ref("Operation"), "only this kind of job"),
        _q(
            "top",
            {"type": "integer", "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE},
            "jobs per page",
        ),
        _q("continuationToken", STR, "from the previous page's nextLink; opaque (400 if altered)"),
        _q("$skipToken", STR, "the same as continuationToken (Azure's other name for it)"),
    ]
    return {
        "/health": {
            "get": _op(
                "Health_Get",
                "Liveness; 503 naming the settings to fix",
                {**_ok("Health"), **_ok("Health", 503, "settings missing or invalid")},
                tag="Health",
                anonymous=True,
            )
        },
        "/openapi.json": {
            "get": _op("OpenApi_Get", "This description", _ok({"type": "object"}), tag="Health"),
        },
        "/backupPolicies": {
            "get": _op("BackupPolicies_List", "Every policy", {**_ok("PolicyList"), **_err(500)}, tag="BackupPolicies")
        },
        "/backupPolicies/{name}": {
            "put": _op(
                "BackupPolicies_CreateOrUpdate",
                "Create (201) or replace (200) a policy",
                {**_ok("StoredPolicy"), **_ok("StoredPolicy", 201, "Created"), **_err(400, 413, 500)},
                tag="BackupPolicies",
                params=inst,
                body=_body("BackupPolicy"),
            ),
            "get": _op(
                "BackupPolicies_Get",
                "One policy",
                {**_ok("StoredPolicy"), **_err(400, 404, 500)},
                tag="BackupPolicies",
                params=inst,
            ),
            "delete": _op(
                "BackupPolicies_Delete",
                "Delete a policy (409 while an instance uses it)",
                {**_ok("Deleted"), **_err(400, 404, 409, 500)},
                tag="BackupPolicies",
                params=inst,
            ),
        },
        "/backupPolicies/{name}:simulate": {
            "post": _op(
                "BackupPolicies_Simulate",
                "Dry run: the backups of a date range, their tags, archive moves and deletions",
                {**_ok("Simulation"), **_err(400, 404, 413, 500)},
                tag="BackupPolicies",
                params=inst,
                body=_body("SimulateRequest"),
            )
        },
        "/servers:listDatabases": {
            "post": _op(
                "Servers_ListDatabases",
                "The databases a secret's user sees on its server (no other server), those protected marked",
                {**_ok("DatabaseList"), **_err(400, 404, 413, 500)},
                tag="BackupInstances",
                body=_body("ListDatabasesRequest"),
            )
        },
        "/backupInstances": {
            "post": _op(
                "BackupInstances_ConfigureMany",
                "Protect many databases: 202 with each entry's outcome (400 when all failed)",
                {
                    **_ok("ConfiguredList", 202, "Accepted"),
                    **_ok("ConfiguredList", 400, "every entry failed"),
                    **_err(413, 500),
                },
                tag="BackupInstances",
                body=_body("ConfigureManyRequest"),
            ),
            "get": _op(
                "BackupInstances_List",
                "Every backup instance",
                {**_ok("BackupInstanceList"), **_err(500)},
                tag="BackupInstances",
            ),
        },
        "/backupInstances/{name}": {
            "put": _op(
                "BackupInstances_CreateOrUpdate",
                "Protect one database (or change its policy or secret): 202 + validation job",
                {**_ok("Configured", 202, "Accepted", accepted=True), **_err(400, 404, 409, 413, 500)},
                tag="BackupInstances",
                params=inst,
                body=_body("InstanceSpec"),
            ),
            "get": _op(
                "BackupInstances_Get",
                "One backup instance",
                {**_ok("BackupInstance"), **_err(400, 404, 500)},
                tag="BackupInstances",
                params=inst,
            ),
        },
        "/backupInstances/{name}:validate": {
            "post": _op(
                "BackupInstances_Validate",
                "Re-validate: 202 + job",
                {**_ok("Accepted", 202, "Accepted", accepted=True), **_err(400, 404, 409, 500)},
                tag="BackupInstances",
                params=inst,
            )
        },
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
                tag="BackupInstances",
                params=inst,
                query=[
                    _q(
                        "format",
                        {"type": "string", "enum": ["sql", "sh", "ps1"], "default": "sql"},
                        "SQL, or a psql wrapper for bash or PowerShell",
                    )
                ],
            )
        },
        "/backupInstances/{name}/roleAssignmentTemplate": {
            "get": _op(
                "BackupInstances_RoleAssignmentTemplate",
                "ARM template granting the app's identity the Azure roles the instance needs",
                {**_ok({"type": "object"}), **_err(400, 404, 500)},
                tag="BackupInstances",
                params=inst,
            )
        },
        "/backupInstances/{name}:backup": {
            "post": _op(
                "BackupInstances_AdhocBackup",
                "On-demand backup: 202 + job (409 while one runs)",
                {**_ok("Accepted", 202, "Accepted", accepted=True), **_err(400, 404, 409, 413, 500)},
                tag="Backups",
                params=inst,
                body=_body("TriggerBackupRequest", required=False),
            )
        },
        "/backupInstances/{name}/recoveryPoints": {
            "get": _op(
                "RecoveryPoints_List",
                "The instance's recovery points, newest first",
                {**_ok("RecoveryPointList"), **_err(400, 404, 500)},
                tag="Backups",
                params=inst,
            )
        },
        "/backupInstances/{name}/recoveryPoints/{recoveryPointId}": {
            "get": _op(
                "RecoveryPoints_Get",
                "One recovery point",
                {**_ok("RecoveryPoint"), **_err(400, 404, 500)},
                tag="Backups",
                params=(*inst, "recoveryPointId"),
            )
        },
        "/backupInstances/{name}:restore": {
            "post": _op(
                "BackupInstances_TriggerRestore",
                "Restore a point as a new database or as files: 202 + job",
                {**_ok("Accepted", 202, "Accepted", accepted=True), **_err(400, 404, 409, 413, 500)},
                tag="Restore",
                params=inst,
                body=_body("RestoreRequest"),
            )
        },
        "/backupInstances/{name}:verifyRestore": {
            "post": _op(
                "BackupInstances_VerifyRestore",
                "Prove a point restores: scratch restore, compare with the backup's manifest, drop: 202 + job",
                {**_ok("Accepted", 202, "Accepted", accepted=True), **_err(400, 404, 409, 413, 500)},
                tag="Restore",
                params=inst,
                body=_body("VerifyRestoreRequest"),
            )
        },
        "/backupInstances/{name}:stopProtection": {
            "post": _op(
                "BackupInstances_StopProtection",
                "Stop backups, retaining data forever, as per policy, or deleting it",
                {
                    **_ok("BackupInstance"),
                    **_ok("Accepted", 202, "Accepted (data being deleted)", accepted=True),
                    **_err(400, 404, 409, 500),
                },
                tag="BackupInstances",
                params=inst,
                body=_body("StopProtectionRequest"),
            )
        },
        "/backupInstances/{name}:resumeProtection": {
            "post": _op(
                "BackupInstances_ResumeProtection",
                "Resume scheduled backups of a stopped instance",
                {**_ok("BackupInstance"), **_err(400, 404, 409, 500)},
                tag="BackupInstances",
                params=inst,
            )
        },
        "/backupJobs": {
            "get": _op(
                "Jobs_List",
                "Jobs of the last days, newest first, in pages",
                {**_ok("JobList"), **_err(400, 500)},
                tag="Jobs",
                query=job_filters,
            )
        },
        "/backupJobs/{jobId}": {
            "get": _op(
                "Jobs_Get",
                "One job: steps, bytes, duration, throughput, error, links",
                {**_ok("Job"), **_err(404, 500)},
                tag="Jobs",
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
                tag="Jobs",
                params=("jobId",),
            )
        },
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
        "tags": [
            {"name": t}
            for t in ("Health", "BackupPolicies", "BackupInstances", "Backups", "Restore", "Jobs", "Dashboard")
        ],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": "x-functions-key"},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": "code"},
            },
            "parameters": {
                "name": {"name": "name", "in": "path", "required": True, "schema": NAME},
                "jobId": {
                    "name": "jobId",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": _JOB_ID.pattern},
                },
                "recoveryPointId": {"name": "recoveryPointId", "in": "path", "required": True, "schema": STR},
            },
            "schemas": _schemas(),
        },
    }
