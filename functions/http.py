"""Helpers every HTTP blueprint shares: JSON answers and the mapping of errors to statuses."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import azure.functions as func
from pydantic import BaseModel

from shared import access
from shared.audit import body_for_audit
from shared.errors import ErrorCode, SettingsError, TransientError, UserError, error_body
from shared.jobs.messages import Started
from shared.request_body import whole_number
from shared.settings import load_access_settings
from shared.telemetry import install_record_factory, redact_keys
from shared.wire import dump

log = logging.getLogger(__name__)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    """A JSON answer; a wire model (``shared.wire``) is serialised through it."""
    if isinstance(body, BaseModel):
        body = dump(body)
    return func.HttpResponse(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        mimetype="application/json",
        headers=headers or {},
    )


# How long a client should wait before polling a job again (the 202 pattern of long operations).
RETRY_AFTER_SECONDS = 5


def accepted(body: Any, job_id: str) -> func.HttpResponse:
    """202 for long work: ``Location`` of the job to poll and ``Retry-After``."""
    return json_response(body, 202, {"Location": f"/api/backupJobs/{job_id}", "Retry-After": str(RETRY_AFTER_SECONDS)})


def hand_to_host(out: func.Out[str], queue: str, started: Started) -> str:
    """Give the started job's message to the queue output binding ``out`` (bound to ``queue``); the job id.

    The host sends it after the function returns, then its listener of ``queue`` polls at once
    (shared/jobs/messages.py). A failed send fails the invocation: the caller gets a 500, the job
    stays queued without a message until the hung-jobs timer sends it (shared/hung_jobs.py).
    """
    if started.message is not None:
        if started.message.queue != queue:
            raise RuntimeError(f"a message for {started.message.queue} given to the output of {queue}")
        out.set(started.message.text())
    return started.job.job_id


def error_response(error: UserError) -> func.HttpResponse:
    """The public error shape with the status of the error's code."""
    return json_response(error_body(error), error.http_status)


def api(handler: Callable[..., func.HttpResponse]) -> Callable[..., func.HttpResponse]:
    """Wrap a handler: the caller's role is checked first, every failure answers in the public
    error shape, and every mutating call is written to the audit trail.

    The handler's output bindings (``func.Out`` arguments after the request) are passed through by
    name: the wrapper keeps the handler's signature (``functools.wraps``), which is what the Python
    worker matches the bindings against.

    The role comes from the one table of routes and roles (``shared.access.ROUTE_ROLES``): 403
    ``UserErrorInsufficientRole`` naming the role missing. ``UserError`` keeps its status; settings
    problems are 500 ``InvalidSettings``; anything else is logged and answered 500 without internals.
    """

    @wraps(handler)
    def wrapper(req: func.HttpRequest, **outputs: func.Out[Any]) -> func.HttpResponse:
        install_record_factory()  # from the first request on, no log record carries a function key
        outcome = _Outcome()
        response = _guarded(handler, req, outputs, outcome)
        if req.method.upper() in access.MUTATING_METHODS:
            _audit(req, outcome, response)
        return response

    return wrapper


class _Outcome:
    """What the wrapper learnt about a call, for its audit record."""

    principal: access.Principal | None = None
    route: str | None = None


def _guarded(
    handler: Callable[..., func.HttpResponse],
    req: func.HttpRequest,
    outputs: dict[str, func.Out[Any]],
    outcome: _Outcome,
) -> func.HttpResponse:
    try:
        row = access.route_of(req.method, req.url)
        outcome.route = row[1] if row else None
        need = access.required(req.method, req.url)
        if need is not access.Open.ANONYMOUS:
            outcome.principal = access.caller(req.headers, load_access_settings())
            access.authorize(outcome.principal, need)
        token = access.acting_as(outcome.principal)
        try:
            return handler(req, **outputs)
        finally:
            access.done(token)
    except UserError as exc:
        return error_response(exc)
    except TransientError as exc:
        # Storage (or another dependency) did not answer: the client should retry, not give up.
        log.warning("%s %s: %s", req.method, redact_keys(req.url), exc.message)
        unavailable = UserError(ErrorCode.SERVICE_UNAVAILABLE, "the vault's storage is unavailable; retry shortly")
        return json_response(error_body(unavailable), 503, {"Retry-After": str(RETRY_AFTER_SECONDS)})
    except SettingsError as exc:
        log.error("request refused: %s", exc)
        return error_response(UserError(ErrorCode.INVALID_SETTINGS, str(exc)))
    except Exception:
        log.exception("%s %s failed", req.method, redact_keys(req.url))
        return error_response(UserError(ErrorCode.INTERNAL, "the request failed inside pgvault"))


def _answer_fields(response: func.HttpResponse) -> tuple[str | None, str | None]:
    """The error code and the approval id in an answer, when it has them."""
    try:
        doc = json.loads(response.get_body() or b"null")
    except (ValueError, UnicodeDecodeError):
        return None, None
    if not isinstance(doc, dict):
        return None, None
    error = doc.get("error")
    code = str(error["code"]) if isinstance(error, dict) and "code" in error else None
    approval = doc.get("approvalId") if isinstance(doc.get("approvalId"), str) else None
    return code, approval


def _audit(req: func.HttpRequest, outcome: _Outcome, response: func.HttpResponse) -> None:
    """Write the call's audit record; a failure to write is logged, the answer stands."""
    from shared.vault import current_vault  # the vault builds on shared/, which never imports functions/

    code, approval_id = _answer_fields(response)
    if outcome.route == "approvals/{id}:approve":
        approval_id = req.route_params.get("id")
    who = outcome.principal
    try:
        vault = current_vault()
        vault.audit().record(
            vault.clock(),
            principal=who.label if who else "unauthenticated",
            principal_id=who.id if who else "-",
            method=req.method.upper(),
            route=outcome.route or redact_keys(req.url.split("?", 1)[0]),
            target=",".join(f"{k}={v}" for k, v in sorted(req.route_params.items())) or None,
            body=body_for_audit(req.get_body() or b""),
            status=response.status_code,
            error_code=code,
            approval_id=approval_id,
        )
    except Exception as exc:
        log.error("audit record of %s %s not written: %s", req.method, outcome.route, type(exc).__name__)


# List pages (Azure list APIs take either name; nextLink uses the first).
CONTINUATION_PARAM = "continuationToken"
CONTINUATION_PARAMS = (CONTINUATION_PARAM, "$skipToken")


def bounded(req: func.HttpRequest, name: str, default: int, high: int) -> int:
    """Query parameter ``name``: a whole number from 1 to ``high`` (``default`` when absent)."""
    return whole_number(req.params.get(name, str(default)), name, 1, high)


def next_link(req: func.HttpRequest, token: str) -> str:
    """This request's URL with the continuation token in place of any earlier one (and no ``code``)."""
    parts = urlsplit(req.url)
    # A function key given as ?code= stays out of the body: send it again (or use x-functions-key).
    params = [(k, v) for k, v in req.params.items() if k not in (*CONTINUATION_PARAMS, "code")]
    return str(
        urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode([*params, (CONTINUATION_PARAM, token)]), ""))
    )
