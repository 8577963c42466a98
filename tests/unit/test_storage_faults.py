"""The one rule for Azure SDK failures (shared/storage/faults.py), status by status."""

from __future__ import annotations

import pytest
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.errors import ErrorCode, TransientError
from shared.storage.faults import Fault, StorageAccessDenied, StorageRequestRefused, classify, storage_error


def _answer(status: int, code: str = "", cls: type[HttpResponseError] = HttpResponseError) -> HttpResponseError:
    # An answer as the SDK raises it, without a server: the status and error code are what it reads.
    exc = cls(message=f"status {status}")
    exc.status_code = status
    exc.error_code = code
    return exc


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (ServiceRequestError("connection refused"), Fault.UNREACHABLE),
        (ServiceResponseError("connection reset"), Fault.UNREACHABLE),
        (AzureError("transport failed"), Fault.UNREACHABLE),
        (_answer(500), Fault.BUSY),
        (_answer(503, "ServerBusy"), Fault.BUSY),
        (_answer(408), Fault.BUSY),
        (_answer(429), Fault.BUSY),
        (_answer(409, "TableBeingDeleted"), Fault.BUSY),
        (_answer(409, "LeaseIdMissing", ResourceExistsError), Fault.BUSY),
        (_answer(412, "ConditionNotMet", ResourceModifiedError), Fault.BUSY),
        (_answer(400, "Md5Mismatch"), Fault.BUSY),
        (_answer(401), Fault.DENIED),
        (_answer(403, "AuthorizationPermissionMismatch"), Fault.DENIED),
        (_answer(403, "AuthorizationFailure"), Fault.DENIED),
        (ClientAuthenticationError("no token"), Fault.DENIED),
        (_answer(404, "BlobNotFound", ResourceNotFoundError), Fault.MISSING),
        (_answer(404), Fault.MISSING),
        (_answer(400, "InvalidInput"), Fault.REFUSED),
        (_answer(413, "RequestBodyTooLarge"), Fault.REFUSED),
        (_answer(409, "BlobArchived"), Fault.REFUSED),
    ],
)
def test_each_answer_has_one_kind(exc: AzureError, kind: Fault) -> None:
    assert classify(exc) is kind


def test_the_error_raised_follows_the_kind_whatever_the_service() -> None:
    for service in ("blob storage", "table storage", "queue storage"):
        denied = storage_error(_answer(403, "AuthorizationFailure"), service, "reading x")
        assert isinstance(denied, StorageAccessDenied) and denied.code is ErrorCode.STORAGE_ACCESS_DENIED
        assert service in denied.message and "403" in denied.message
        busy = storage_error(_answer(503), service, "reading x")
        assert type(busy) is TransientError
        refused = storage_error(_answer(400, "InvalidInput"), service, "reading x")
        assert isinstance(refused, StorageRequestRefused) and refused.code is ErrorCode.INTERNAL
        assert "InvalidInput" in refused.message
