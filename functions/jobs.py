"""HTTP API of jobs: ``/api/backupJobs``."""

from __future__ import annotations

import azure.functions as func

from functions.http import api, json_response
from shared.errors import ErrorCode, UserError
from shared.jobs import JobStatus, JobStore, Operation
from shared.vault import current_vault

bp = func.Blueprint()
MAX_DAYS = 90


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
    """Jobs of the last ``days`` days (default 7), newest first, filtered by instance, status, operation."""
    raw_days = req.params.get("days", "7")
    if not raw_days.isdigit() or not 1 <= int(raw_days) <= MAX_DAYS:
        raise UserError(ErrorCode.INVALID_REQUEST, f"days must be a whole number 1-{MAX_DAYS}", target="days")
    status = _enum(JobStatus, req.params.get("status"), "status")
    operation = _enum(Operation, req.params.get("operation"), "operation")
    vault = current_vault()
    jobs = JobStore(vault.state).recent(
        vault.clock(),
        days=int(raw_days),
        instance=req.params.get("instance") or None,
        status=status,  # type: ignore[arg-type]
        operation=operation,  # type: ignore[arg-type]
    )
    return json_response({"value": [j.to_dict() for j in jobs]})


@bp.route(route="backupJobs/{jobId}", methods=["GET"])
@api
def get_job(req: func.HttpRequest) -> func.HttpResponse:
    """One job with its steps, timings, bytes and error."""
    return json_response(JobStore(current_vault().state).get(req.route_params["jobId"]).to_dict())
