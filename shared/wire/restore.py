"""Restore requests as Azure shapes them (Microsoft.DataProtection, API 2025-01-01), with pgvault's additions.

The restore target is a union discriminated by Azure's ``objectType`` (RestoreTargetInfo: a new
database; RestoreFilesTargetInfo: files in a blob container); the credentials are Azure's
SecretStoreBasedAuthCredentials, whose ``value`` is refused: a secret never travels in a request.
Fields Azure documents that change nothing here (the ARM id and location of the datasource, the
restore region) are accepted and recorded nowhere. ``shared.restore.request`` checks the values.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from shared.policy.model import DataStore
from shared.wire.common import Bool, Request

RESTORE_REQUEST = "AzureBackupRecoveryPointBasedRestoreRequest"
REHYDRATION_REQUEST = "AzureBackupRestoreWithRehydrationRequest"
DATABASE_TARGET = "RestoreTargetInfo"
FILES_TARGET = "RestoreFilesTargetInfo"
SECRET_CREDENTIALS = "SecretStoreBasedAuthCredentials"  # noqa: S105 - an Azure type name


class SecretStoreResource(Request):
    """Where the secret is (Azure's ``value`` field is refused: a secret never travels in a request)."""

    uri: str = Field(min_length=1)
    secretStoreType: Literal["AzureKeyVault"] = "AzureKeyVault"


class SecretStoreBasedAuthCredentials(Request):
    """The target's credentials: a Key Vault secret (or env: reference) with a connection string."""

    objectType: Literal["SecretStoreBasedAuthCredentials"] = "SecretStoreBasedAuthCredentials"
    secretStoreResource: SecretStoreResource


class Datasource(Request):
    """Azure's Datasource; pgvault reads only ``resourceName`` (the new database's name)."""

    resourceName: str | None = Field(None, min_length=1, description="the new database's name")
    objectType: str | None = None
    resourceID: str | None = None
    resourceType: str | None = None
    resourceLocation: str | None = None
    datasourceType: str | None = None
    resourceUri: str | None = None
    resourceProperties: dict[str, Any] | None = None


class RestoreTargetInfo(Request):
    """Restore as a new database on the server named in the target secret's connection string."""

    objectType: Literal["RestoreTargetInfo"]
    recoveryOption: Literal["FailIfExists"] = "FailIfExists"
    restoreLocation: str | None = None
    datasourceInfo: Datasource
    datasourceSetInfo: Datasource | None = None
    datasourceAuthCredentials: SecretStoreBasedAuthCredentials


class TargetDetails(Request):
    """The container and the names of the files."""

    url: str = Field(
        min_length=1,
        description="the blob container's URL, https://<account>.blob.core.windows.net/<container>, of an account "
        "listed in PGVAULT_EXPORT_ACCOUNTS; never one of the vault's own containers (else 400 InvalidRequest naming "
        "this field)",
    )
    filePrefix: str = Field(min_length=1)
    restoreTargetLocationType: Literal["AzureBlobs"] = "AzureBlobs"
    connectionStringSecretUri: str | None = Field(
        None, description="pgvault: a secret with the connection string of the URL's account"
    )
    targetResourceArmId: str | None = None


class RestoreFilesTargetInfo(Request):
    """Restore as files (<prefix>.dump and <prefix>.manifest.json) into a blob container."""

    objectType: Literal["RestoreFilesTargetInfo"]
    recoveryOption: Literal["FailIfExists"] = "FailIfExists"
    restoreLocation: str | None = None
    targetDetails: TargetDetails


RestoreTarget = Annotated[RestoreTargetInfo | RestoreFilesTargetInfo, Field(discriminator="objectType")]


class RestoreOptions(Request):
    """pgvault extensions (not in Azure's request). Schemas and tables are checked against the recovery point's
    manifest: a name the backup does not hold is 400 naming restoreOptions.tables[i] (or schemas[i]); for a point
    without a manifest, the job ends CompletedWithWarnings naming what was missing, or Failed (the database dropped)
    when nothing asked for was there."""

    noOwner: Bool = True
    noAcl: Bool = True
    schemas: list[str] | None = None
    tables: list[str] | None = Field(
        None, description="schema.table, or a table name the backup has in one schema only"
    )
    fileFormat: Literal["dump", "zstd"] = "dump"
    roles: Literal["CreateMissing", "MapToTargetUser"] = Field(
        "MapToTargetUser",
        description="MapToTargetUser: the target user owns what is restored (noOwner). CreateMissing: the cluster "
        "roles stored with the point (owners, grantees, their groups) that the target server lacks are created first, "
        "without what the target user may not give (SUPERUSER, REPLICATION, BYPASSRLS unless a superuser; CREATEDB, "
        "CREATEROLE unless it has them), and owners and grants are kept (noOwner and noAcl false unless given). The "
        "job's details.roles says what was done. A restore as files writes the roles as <prefix>.roles.sql either way.",
    )


class RestoreRequest(Request):
    """Azure's AzureBackupRecoveryPointBasedRestoreRequest (or ...WithRehydrationRequest for an ArchiveStore
    point, with rehydrationPriority and rehydrationRetentionDuration)."""

    objectType: Literal["AzureBackupRecoveryPointBasedRestoreRequest", "AzureBackupRestoreWithRehydrationRequest"] = (
        "AzureBackupRecoveryPointBasedRestoreRequest"
    )
    recoveryPointId: str = Field(min_length=1)
    sourceDataStoreType: DataStore = DataStore.VAULT_STORE
    sourceResourceId: str | None = None
    restoreTargetInfo: RestoreTarget
    rehydrationPriority: Literal["Standard", "High"] | None = None
    rehydrationRetentionDuration: str | None = Field(None, description="ISO 8601, P10D..P30D (P15D)")
    restoreOptions: RestoreOptions | None = None


class VerifyRestoreRequest(Request):
    """Restore a point into a scratch database on the target secret's server, compare every table with the
    manifest taken at backup time, drop the scratch database."""

    recoveryPointId: str = Field(min_length=1)
    datasourceAuthCredentials: SecretStoreBasedAuthCredentials | None = None
    secretUri: str | None = Field(None, description="instead of datasourceAuthCredentials")
    sourceDataStoreType: DataStore = DataStore.VAULT_STORE
    restoreOptions: RestoreOptions | None = None
