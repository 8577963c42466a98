"""HTTP API of jobs: ``/api/backupJobs``."""

from __future__ import annotations

import azure.functions as func

from functions.http import CONTINUATION_PARAMS, RETRY_AFTER_SECONDS, api, bounded, json_response, next_link
from shared.cancel import request_cancel
from shared.errors import ErrorCode, UserError
from shared.jobs import (
    DEFAULT_PAGE_SIZE,
    MAX_LIST_DAYS,
    MAX_PAGE_SIZE,
    Cursor,
    JobQuery,
    JobStatus,
    Operation,
)
from shared.vault import current_vault
from shared.wire.jobs import JobList

bp = func.Blueprint()


def _enum(kind: type[JobStatus] | type[Operation], value: str | None, target: str) -> JobStatus | Operation | None:
    if value is None or value == "":
        return None
    for member in kind:
        if member.value.lower() == value.lower():
            return member
    allowed = ", ".join(m.value for m in kind)
    raise UserError(ErrorCode.INVALID_REQUEST, f"{target} must be one of {allowed}; got {value!r}", target=target)


@bp.route(route="backupJobs", methods=["GET"])
@api
def list_jobs(req: func.HttpRequest) -> func.HttpResponse:
    """Jobs of the last ``days`` days (default 7), newest first, filtered by instance, status, operation;
    ``top`` per page (default 100) and a ``nextLink`` carrying ``continuationToken`` while more remain."""
    days = bounded(req, "days", 7, MAX_LIST_DAYS)
    top = bounded(req, "top", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    vault = current_vault()
    query = JobQuery.last_days(
        vault.clock(),
        days,
        instance=req.params.get("instance") or None,
        status=_enum(JobStatus, req.params.get("status"), "status"),  # type: ignore[arg-type]
        operation=_enum(Operation, req.params.get("operation"), "operation"),  # type: ignore[arg-type]
    )
    cursor = None
    for name in CONTINUATION_PARAMS:
        if req.params.get(name):
            cursor = Cursor.decode(req.params[name], query, target=name)
    page = vault.jobs.page(query, top=top, cursor=cursor)
    now = vault.clock()  # a running job's duration and rate are as of now
    more = {} if page.next is None else {"nextLink": next_link(req, page.next.encode())}
    return json_response(JobList(value=[j.to_wire(now) for j in page.jobs], **more))


@bp.route(route="backupJobs/{jobId}", methods=["GET"])
@api
def get_job(req: func.HttpRequest) -> func.HttpResponse:
    """One job with its steps, timings, bytes, throughput, error and links to its instance and recovery point."""
    vault = current_vault()
    return json_response(vault.jobs.get(req.route_params["jobId"]).to_wire(vault.clock()))


@bp.route(route="backupJobs/{jobId}:cancel", methods=["POST"])
@api
def cancel_job(req: func.HttpRequest) -> func.HttpResponse:
    """Stop a running backup or restore: 202 + the job (it ends Cancelled); 200 + the job if it had
    finished already; 409 for an operation that cannot be cancelled."""
    vault = current_vault()
    job, taken = request_cancel(vault.state, req.route_params["jobId"], vault.clock())
    if not taken:
        return json_response(job.to_wire(vault.clock()))
    return json_response(
        job.to_wire(vault.clock()),
        202,
        {"Location": f"/api/backupJobs/{job.job_id}", "Retry-After": str(RETRY_AFTER_SECONDS)},
    )
