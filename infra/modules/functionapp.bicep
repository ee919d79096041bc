// The guard's Function App: a Go custom handler (runtime "custom") on Linux.
//
// - FlexConsumption (default): serverfarm FC1/FlexConsumption; the site's
//   functionAppConfig names the runtime {name: 'custom', version: '1.0'}, the
//   deployment container (identity-authenticated) and scale settings. Flex
//   rejects the settings FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION
//   and WEBSITE_RUN_FROM_PACKAGE, so they are set only on Elastic Premium.
//   Allowed values from the Flex stack data (Az.Functions FunctionsStackFlexData
//   custom.json, FC1): runtime custom/1.0, instanceMemoryMB 512|2048|4096,
//   maximumInstanceCount 40..1000.
// - ElasticPremium (where Flex is not available): serverfarm EP1, Linux,
//   FUNCTIONS_WORKER_RUNTIME=custom, linuxFxVersion '' (the "custom" Linux stack
//   of Microsoft.Web/functionAppStacks sets linuxFxVersion to ''). Trade-off: EP
//   normally keeps its content on an Azure Files share reached with a storage
//   *connection string* (WEBSITE_CONTENTAZUREFILECONNECTIONSTRING), which needs
//   shared-key access. This template keeps shared keys off and runs EP without
//   Azure Files: the package is a blob (WEBSITE_RUN_FROM_PACKAGE=<blob URL>)
//   read with the user-assigned identity
//   (WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID). Deploying means uploading
//   the zip to that blob and restarting the app; portal editing and
//   `func azure functionapp publish` do not work in that mode.
//
// siteConfig: Flex Consumption rejects many siteConfig properties with ARM
// error 51021 ("The following site configuration property
// (Site.SiteConfig.FtpsState, ...) for Flex Consumption sites is invalid";
// enforcement varies by region). On Flex the site carries only what
// Microsoft's Flex samples set (minTlsVersion, appSettings); ftpsState,
// http20Enabled and linuxFxVersion go to Elastic Premium only. FTP and basic
// publishing credentials are turned off for both plans with
// basicPublishingCredentialsPolicies (ftp, scm); deployments use Entra auth.
//
// App settings: every setting of handler/config.Settings() that the handler
// reads (the drift test handler/infracheck checks this block), identity-based
// host storage, Entra-authenticated Application Insights, and secrets as Key
// Vault references resolved with the user-assigned identity.
//
// API versions: Microsoft.Web/serverfarms@2024-04-01 and
// Microsoft.Web/sites@2024-04-01 (the version of the Azure-Samples
// azure-functions-flex-consumption-samples templates; functionAppConfig is part
// of it); Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01
// (names ftp and scm).

@description('Name of the function app (globally unique host name).')
param name string

@description('Name of the hosting plan.')
param planName string

@description('Azure region.')
param location string

@description('Tags applied to the plan and the app.')
param tags object = {}

@description('FlexConsumption (recommended) or ElasticPremium (where Flex is not available).')
@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string = 'FlexConsumption'

@description('Flex: maximum number of instances.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Flex: memory of each instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 512

@description('Elastic Premium: maximum number of elastic workers.')
@minValue(1)
@maxValue(20)
param maximumElasticWorkerCount int = 3

@description('Resource id of the user-assigned identity.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

@description('Name of the storage account of the host.')
param storageAccountName string

@description('Blob endpoint of the storage account (trailing slash).')
param blobEndpoint string

@description('Queue endpoint of the storage account (trailing slash).')
param queueEndpoint string

@description('Table endpoint of the storage account (trailing slash).')
param tableEndpoint string

@description('Container of the deployment package.')
param deploymentContainerName string

@description('Application Insights connection string (locates the endpoint; ingestion is Entra-authenticated).')
param appInsightsConnectionString string

@description('ATLAS_PROJECT_IDS: comma-separated Atlas project ids.')
param atlasProjectIds string

@description('ATLAS_BASE_URL.')
param atlasBaseUrl string

@description('ATLAS_CLIENT_ID (service account). Empty: not set.')
param atlasClientId string

@description('Key Vault URI of ATLAS_CLIENT_SECRET (a location, not the secret). Empty: not set.')
param atlasClientSecretUri string

@description('ATLAS_PUBLIC_KEY (API key, public half: an identifier, not a secret). Empty: not set.')
param atlasPublicKey string

@description('Key Vault URI of ATLAS_PRIVATE_KEY (a location, not the secret). Empty: not set.')
param atlasPrivateKeyUri string

@description('GUARD_MODE.')
@allowed([
  'enforce'
  'observe'
])
param guardMode string

@description('GUARD_SCHEDULE: NCRONTAB of the Reconcile timer; the host resolves %GUARD_SCHEDULE% itself, so it is always set.')
param guardSchedule string

@description('GUARD_KEY_EXPIRY_WARN_DAYS.')
param keyExpiryWarnDays int

@description('GUARD_STUCK_AFTER (Go duration).')
param stuckAfter string

@description('GUARD_AZURE_APP_SECRET_EXPIRY: YYYY-MM-DD, or clientID=YYYY-MM-DD[,...]; empty = unknown.')
param appSecretExpiry string

@description('GUARD_AZURE_APP_SECRET_FROM_GRAPH: read the Atlas application\'s secret expiry from Microsoft Graph (grant Application.Read.All first: infra/README.md).')
param appSecretFromGraph bool

@description('GUARD_RENOTIFY_AFTER (Go duration, 0 = never).')
param renotifyAfter string

@description('GUARD_RECONCILE_TIMEOUT (Go duration, below functionTimeout of host.json).')
param reconcileTimeout string

@description('GUARD_CONCURRENCY.')
param concurrency int

@description('GUARD_LOG_LEVEL.')
param logLevel string

@description('Key Vault URI of GUARD_ALERT_WEBHOOK_URL (a location, not the URL). Empty: not set.')
param alertWebhookUrlUri string

@description('GUARD_ALERT_WEBHOOK_FORMAT.')
param alertWebhookFormat string

@description('GUARD_ALERT_TOPIC_ENDPOINT (Event Grid custom topic, Entra auth). Empty: not set.')
param alertTopicEndpoint string

@description('GUARD_STATE_CONTAINER.')
param stateContainerName string

@description('GUARD_ARM_ENDPOINT override. Empty: not set (derived from Atlas azureEnvironment).')
param armEndpoint string

var isFlex = hostingPlan == 'FlexConsumption'
var packageContainerUrl = '${blobEndpoint}${deploymentContainerName}'

// Plan-specific settings. Flex refuses these names; Elastic Premium needs them.
var elasticPremiumSettings = isFlex ? {} : {
  FUNCTIONS_WORKER_RUNTIME: 'custom'
  FUNCTIONS_EXTENSION_VERSION: '~4'
  WEBSITE_RUN_FROM_PACKAGE: '${packageContainerUrl}/app.zip'
  WEBSITE_RUN_FROM_PACKAGE_BLOB_MI_RESOURCE_ID: identityId
}

// Every app setting is a key of one of the *Settings objects below (the drift
// test reads their keys); optional settings are present only when given.
var baseSettings = {
  AzureWebJobsStorage__blobServiceUri: blobEndpoint
  AzureWebJobsStorage__queueServiceUri: queueEndpoint
  AzureWebJobsStorage__tableServiceUri: tableEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  AZURE_CLIENT_ID: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  ATLAS_PROJECT_IDS: atlasProjectIds
  ATLAS_BASE_URL: atlasBaseUrl
  GUARD_MODE: guardMode
  GUARD_SCHEDULE: guardSchedule
  GUARD_KEY_EXPIRY_WARN_DAYS: string(keyExpiryWarnDays)
  GUARD_STUCK_AFTER: stuckAfter
  GUARD_AZURE_APP_SECRET_EXPIRY: appSecretExpiry
  GUARD_AZURE_APP_SECRET_FROM_GRAPH: string(appSecretFromGraph)
  GUARD_RENOTIFY_AFTER: renotifyAfter
  GUARD_RECONCILE_TIMEOUT: reconcileTimeout
  GUARD_CONCURRENCY: string(concurrency)
  GUARD_LOG_LEVEL: logLevel
  GUARD_ALERT_WEBHOOK_FORMAT: alertWebhookFormat
  GUARD_STATE_CONTAINER: stateContainerName
}

var serviceAccountSettings = empty(atlasClientId) ? {} : {
  ATLAS_CLIENT_ID: atlasClientId
  ATLAS_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${atlasClientSecretUri})'
}

var apiKeySettings = empty(atlasPublicKey) ? {} : {
  ATLAS_PUBLIC_KEY: atlasPublicKey
  ATLAS_PRIVATE_KEY: '@Microsoft.KeyVault(SecretUri=${atlasPrivateKeyUri})'
}

var webhookSettings = empty(alertWebhookUrlUri) ? {} : {
  GUARD_ALERT_WEBHOOK_URL: '@Microsoft.KeyVault(SecretUri=${alertWebhookUrlUri})'
}

var topicSettings = empty(alertTopicEndpoint) ? {} : {
  GUARD_ALERT_TOPIC_ENDPOINT: alertTopicEndpoint
}

var armSettings = empty(armEndpoint) ? {} : {
  GUARD_ARM_ENDPOINT: armEndpoint
}

var appSettings = union(baseSettings, serviceAccountSettings, apiKeySettings, webhookSettings, topicSettings, armSettings, elasticPremiumSettings)

var appSettingList = [
  for setting in items(appSettings): {
    name: setting.key
    value: setting.value
  }
]

// Every key here must be accepted by Flex (the drift test holds the list).
var flexSiteConfig = {
  minTlsVersion: '1.2'
  appSettings: appSettingList
}

// Elastic Premium only: Flex rejects these keys (ARM error 51021).
var elasticPremiumSiteConfig = {
  ftpsState: 'Disabled'
  http20Enabled: true
  linuxFxVersion: ''
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: isFlex ? 'functionapp' : 'elastic'
  sku: isFlex ? {
    name: 'FC1'
    tier: 'FlexConsumption'
  } : {
    name: 'EP1'
    tier: 'ElasticPremium'
  }
  properties: {
    reserved: true
    maximumElasticWorkerCount: isFlex ? null : maximumElasticWorkerCount
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    clientCertEnabled: false
    keyVaultReferenceIdentity: identityId
    siteConfig: isFlex ? flexSiteConfig : union(flexSiteConfig, elasticPremiumSiteConfig)
    functionAppConfig: isFlex ? {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: packageContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
    } : null
  }
}

// No FTP, no basic-auth publishing (Kudu/WebDeploy) on either plan.
resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

@description('Resource id of the function app; event subscriptions target <id>/functions/<Name>.')
output id string = site.id

@description('Name of the function app.')
output name string = site.name

@description('Default host name of the function app.')
output defaultHostName string = site.properties.defaultHostName

@description('Storage account that holds the package (for the Elastic Premium upload).')
output packageStorageAccountName string = storageAccountName
