"""The one rule for what an Azure SDK failure means: transient, refused, or the caller's case.

Every adapter (tables, blobs, block streams, queues, Key Vault, restore targets) sorts an
``AzureError`` with ``classify`` and builds its error with ``storage_error`` (or its own message
for the kinds it words itself), so the same answer from any service is treated alike:

| what came back                                        | kind        | raised                        |
|-------------------------------------------------------|-------------|-------------------------------|
| no answer (connection, timeout, broken response)      | UNREACHABLE | ``TransientError``            |
| 5xx, 408, 429                                         | BUSY        | ``TransientError``            |
| 409 (other than "exists"), 412 (other than ours)      | BUSY        | ``TransientError``            |
| 409 ``BlobArchived`` (reading an archived blob)         | REFUSED     | ``StorageRequestRefused``     |
| 401, 403, an authentication failure                   | DENIED      | ``StorageAccessDenied``       |
| 404                                                   | MISSING     | (the caller decides)          |
| 400 ``Md5Mismatch``, ``Crc64Mismatch`` (bytes damaged)  | BUSY        | ``TransientError``            |
| 400 and any other 4xx                                 | REFUSED     | ``StorageRequestRefused``     |

Why 403 is not transient (before, blobs retried it and tables did not): it means the app's
identity lacks a role assignment or the account's firewall shuts it out; queue retries come
back within minutes and meet the same answer, then the job is abandoned with no hint. Failing
at once with the role to grant says what to do. A 409 on its own is busy, not refused: Azure
answers 409 for a container or table being deleted and for a lease held by another writer,
which pass. The callers keep catching ``ResourceExistsError``, ``ResourceModifiedError`` and
``ResourceNotFoundError`` where those are answers (an insert that lost, an ETag that moved).
"""

from __future__ import annotations

from enum import Enum, StrEnum

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)

from shared.errors import ErrorCode, PgVaultError, TransientError, UserError


class Fault(StrEnum):
    """What kind of failure an ``AzureError`` is."""

    UNREACHABLE = "unreachable"
    BUSY = "busy"
    DENIED = "denied"
    MISSING = "missing"
    REFUSED = "refused"

    @property
    def transient(self) -> bool:
        """Whether trying again later may succeed."""
        return self in (Fault.UNREACHABLE, Fault.BUSY)


class StorageAccessDenied(UserError):
    """The vault's identity may not use its storage (401/403): a role or a firewall rule is missing."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.STORAGE_ACCESS_DENIED, message)


class StorageRequestRefused(UserError):
    """Storage refused a request as malformed (400 and other 4xx): retrying sends the same request."""

    def __init__(self, message: str) -> None:
        super().__init__(ErrorCode.INTERNAL, message)


def status_of(exc: AzureError) -> int | None:
    """The HTTP status of the answer, when there was one."""
    status = getattr(exc, "status_code", None)
    return status if isinstance(status, int) else None


def error_code_of(exc: AzureError) -> str:
    """The service's error code (``x-ms-error-code``), or ``""``."""
    code = getattr(exc, "error_code", None) or ""
    return str(code.value if isinstance(code, Enum) else code)


def classify(exc: AzureError) -> Fault:
    """The kind of ``exc`` (see the table above)."""
    if isinstance(exc, ClientAuthenticationError):
        return Fault.DENIED
    if isinstance(exc, ResourceNotFoundError):
        return Fault.MISSING
    if isinstance(exc, ServiceRequestError | ServiceResponseError) or not isinstance(exc, HttpResponseError):
        return Fault.UNREACHABLE  # no answer: connection, timeout, a transport-level failure
    code = error_code_of(exc)
    if code in _NOT_PASSING:
        return Fault.REFUSED
    if code in _PASSING:
        return Fault.BUSY
    return _BY_STATUS.get(status_of(exc) or 0, Fault.REFUSED)


# Error codes whose status says "busy" but which do not pass by waiting: an archived blob stays
# unreadable until someone rehydrates it (409 BlobArchived).
_NOT_PASSING = frozenset({"BlobArchived"})
# Error codes whose status says "refused" but which pass on a retry: the bytes were damaged on the
# way (400 Md5Mismatch / Crc64Mismatch: the service checked the checksum sent with a block).
_PASSING = frozenset({"Md5Mismatch", "Crc64Mismatch"})
# Statuses with their own kind; 0 (no status), 5xx and the rest of 4xx are handled below them.
_BY_STATUS: dict[int, Fault] = {
    0: Fault.BUSY,
    401: Fault.DENIED,
    403: Fault.DENIED,
    404: Fault.MISSING,
    408: Fault.BUSY,
    409: Fault.BUSY,
    412: Fault.BUSY,
    429: Fault.BUSY,
    **{status: Fault.BUSY for status in range(500, 600)},
}


def storage_error(exc: AzureError, service: str, what: str) -> PgVaultError:
    """The error to raise for ``exc``, which ``service`` ("blob storage", ...) raised during ``what``.

    A 404 the caller did not expect is ``StorageRequestRefused``: the thing it acts on is gone,
    and retrying will not bring it back.
    """
    status, code = status_of(exc), error_code_of(exc)
    answered = f"answered {status}" if status is not None else f"failed ({type(exc).__name__})"
    answered += f" {code}" if code else ""
    message = f"{service} {answered} during {what}"
    kind = classify(exc)
    if kind.transient:
        return TransientError(message)
    if kind is Fault.DENIED:
        return StorageAccessDenied(message + ": the app's identity may not do this")
    return StorageRequestRefused(message)
