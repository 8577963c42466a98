"""HTTP API of backup instances: ``/api/backupInstances``."""

from __future__ import annotations

import azure.functions as func

from functions.http import CONTINUATION_PARAMS, accepted, api, bounded, json_response, next_link
from shared.backup_times import BackupTimesReader
from shared.instance_paging import decode_token, list_page
from shared.instances import InstanceService
from shared.jobs import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from shared.request_body import parse_json_body
from shared.role_template import role_assignment_template
from shared.servers import list_databases
from shared.validation import revalidate
from shared.vault import Vault, current_vault
from shared.wire.check import parse
from shared.wire.common import Accepted, EmptyBody
from shared.wire.instances import BackupInstanceList, ConfiguredList

bp = func.Blueprint()


def _service(vault: Vault) -> InstanceService:
    return vault.instance_service()


@bp.route(route="backupInstances", methods=["POST"])
@api
def configure_instances(req: func.HttpRequest) -> func.HttpResponse:
    """Configure many databases at once: 202 with each entry's outcome (400 when all failed)."""
    vault = current_vault()
    results = _service(vault).configure_many(
        parse_json_body(req.get_body()),
        vault.clock(),
        allow_env_secrets=vault.settings.allow_env_secrets,
        vault_region=vault.settings.region,
        secrets=vault.secrets,
        allowed_servers=vault.settings.allowed_servers,
    )
    status = 400 if all(r.error is not None for r in results) else 202
    return json_response(ConfiguredList(value=[r.to_wire() for r in results]), status)


@bp.route(route="backupInstances:validateForBackup", methods=["POST"])
@api
def validate_for_backup(req: func.HttpRequest) -> func.HttpResponse:
    """Validate one would-be instance (a configure entry's fields) without configuring it: 202 + Validate job."""
    vault = current_vault()
    job = vault.validate_for_backup().start(
        parse_json_body(req.get_body()),
        vault.clock(),
        allow_env_secrets=vault.settings.allow_env_secrets,
        vault_region=vault.settings.region,
        secrets=vault.secrets,
        allowed_servers=vault.settings.allowed_servers,
    )
    return accepted(Accepted(jobId=job.job_id), job.job_id)


@bp.route(route="backupInstances/{name}", methods=["PUT"])
@api
def configure_instance(req: func.HttpRequest) -> func.HttpResponse:
    """Configure one database under ``name`` (or update its policy and secret): 202 + validation job."""
    vault = current_vault()
    result = _service(vault).configure_one(
        req.route_params["name"],
        parse_json_body(req.get_body()),
        vault.clock(),
        allow_env_secrets=vault.settings.allow_env_secrets,
        vault_region=vault.settings.region,
        secrets=vault.secrets,
        allowed_servers=vault.settings.allowed_servers,
    )
    assert result.job is not None
    return accepted(result.to_wire(), result.job.job_id)


@bp.route(route="backupInstances", methods=["GET"])
@api
def list_instances(req: func.HttpRequest) -> func.HttpResponse:
    """Backup instances by name with protection status, readiness, last and next backup and storage:
    ``top`` per page (default 100) and a ``nextLink`` carrying ``continuationToken`` while more remain."""
    vault = current_vault()
    top = bounded(req, "top", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    after = None
    for name in CONTINUATION_PARAMS:
        if req.params.get(name):
            after = decode_token(req.params[name], target=name)
    page = list_page(vault.state, vault.clock(), top=top, after=after)
    value = [i.instance.to_wire(i.times, i.usage, storage=True) for i in page.items]
    token = page.next_token
    more = {} if token is None else {"nextLink": next_link(req, token)}
    return json_response(BackupInstanceList(value=value, **more))


@bp.route(route="backupInstances/{name}", methods=["GET"])
@api
def get_instance(req: func.HttpRequest) -> func.HttpResponse:
    """One backup instance, with its last and next backup."""
    vault = current_vault()
    instance = _service(vault).get(req.route_params["name"])
    times = BackupTimesReader(vault.state).of(instance, vault.clock())
    return json_response(instance.to_wire(times, vault.points.usage_of(instance.spec.name), storage=True))


@bp.route(route="backupInstances/{name}:validate", methods=["POST"])
@api
def validate_instance(req: func.HttpRequest) -> func.HttpResponse:
    """Re-validate an instance: 202 + job."""
    vault = current_vault()
    body = parse_json_body(req.get_body(), required=False)
    if body is not None:
        parse(EmptyBody, body)
    job = revalidate(vault.state, vault.queues, req.route_params["name"], vault.clock())
    return accepted(Accepted(jobId=job.job_id), job.job_id)


@bp.route(route="backupInstances/{name}/grantScript", methods=["GET"])
@api
def grant_script(req: func.HttpRequest) -> func.HttpResponse:
    """The grant script for the instance's database and user: ``format=sql|sh|ps1`` (default sql)."""
    vault = current_vault()
    fmt = req.params.get("format", "sql").lower()
    script = _service(vault).grant_script(req.route_params["name"], fmt, vault.secrets)
    return _script(script, req.route_params["name"], fmt)


def _script(script: str, name: str, fmt: str) -> func.HttpResponse:
    return func.HttpResponse(
        script,
        mimetype="application/sql" if fmt == "sql" else "text/plain",
        charset="utf-8",
        headers={"Content-Disposition": f'attachment; filename="grant-{name}.{fmt}"'},
    )


@bp.route(route="backupJobs/{jobId}/grantScript", methods=["GET"])
@api
def candidate_grant_script(req: func.HttpRequest) -> func.HttpResponse:
    """A validation for backup's grant script (its would-be instance's database and user): ``format=sql|sh|ps1``."""
    vault = current_vault()
    fmt = req.params.get("format", "sql").lower()
    name, script = vault.validate_for_backup().grant_script(req.route_params["jobId"], fmt, vault.secrets)
    return _script(script, name, fmt)


@bp.route(route="backupJobs/{jobId}/roleAssignmentTemplate", methods=["GET"])
@api
def candidate_role_assignment(req: func.HttpRequest) -> func.HttpResponse:
    """A validation for backup's ARM template of the Azure roles its would-be instance needs."""
    return json_response(current_vault().validate_for_backup().role_assignment_template(req.route_params["jobId"]))


@bp.route(route="backupInstances/{name}/roleAssignmentTemplate", methods=["GET"])
@api
def role_assignment(req: func.HttpRequest) -> func.HttpResponse:
    """An ARM template granting the app's identity the Azure roles the instance needs."""
    instance = _service(current_vault()).get(req.route_params["name"])
    return json_response(role_assignment_template(instance.spec.secret_uri, instance.spec.server))


@bp.route(route="servers:listDatabases", methods=["POST"])
@api
def list_databases_route(req: func.HttpRequest) -> func.HttpResponse:
    """The databases a secret's user can see on its server, marking those already protected."""
    vault = current_vault()
    body = parse_json_body(req.get_body())
    return json_response(
        list_databases(
            vault.state,
            vault.secrets,
            body,
            allow_env=vault.settings.allow_env_secrets,
            allowed_servers=vault.settings.allowed_servers,
        )
    )
