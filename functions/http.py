"""Helpers every HTTP blueprint shares: JSON answers and the mapping of errors to statuses."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

import azure.functions as func
from pydantic import BaseModel

from shared.errors import ErrorCode, SettingsError, TransientError, UserError, error_body
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


def error_response(error: UserError) -> func.HttpResponse:
    """The public error shape with the status of the error's code."""
    return json_response(error_body(error), error.http_status)


def api(handler: Callable[[func.HttpRequest], func.HttpResponse]) -> Callable[[func.HttpRequest], func.HttpResponse]:
    """Wrap a handler so every failure answers in the public error shape.

    ``UserError`` keeps its status; settings problems are 500 ``InvalidSettings``; anything else
    is logged and answered 500 without internals.
    """

    @wraps(handler)
    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        install_record_factory()  # from the first request on, no log record carries a function key
        try:
            return handler(req)
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

    return wrapper
