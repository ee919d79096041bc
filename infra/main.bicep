// atlas-akv-guard: approves on the customer's Key Vault exactly the private
// endpoint connections MongoDB Atlas asked for, and alerts on key/endpoint
// problems. Deployed into the guard's resource group; the per-vault part
// (custom role, Event Grid system topics) is deployed at each vault's resource
// group, which may be in another subscription.
//
// Two phases (see infra/README.md): an event subscription is validated
// against the deployed function, so phase 1
// (deployEventSubscriptions=false) creates everything else, the code is
// published, and phase 2 (deployEventSubscriptions=true) adds the
// subscriptions. `make deploy` (infra/deploy.sh) runs all three steps.
//
// Secrets (Atlas secret/private key, alert webhook URL) enter only as
// @secure() parameters, are stored in a dedicated secrets vault, and reach the
// app as Key Vault references; no output depends on them.
//
// The drift test handler/infracheck keeps this template in line with the code
// (settings, role actions, event filters, function names, API versions).

targetScope = 'resourceGroup'

@description('A customer-managed-key vault that Atlas uses and the guard watches.')
type customerKeyVault = {
  @description('Subscription id of the vault.')
  subscriptionId: string

  @description('Resource group of the vault.')
  resourceGroupName: string

  @description('Name of the vault.')
  name: string

  @description('Create the Event Grid system topic on the vault (default true). False: the vault already has one; name it in vaultTopicName.')
  createVaultTopic: bool?

  @description('Name of the vault system topic (default: <vault>-atlas-akv-guard).')
  vaultTopicName: string?

  @description('Create the Event Grid system topic on the vault\'s resource group (default true). False when the resource group already has one (name it in resourceGroupTopicName) or an earlier entry of this list is in the same resource group.')
  createResourceGroupTopic: bool?

  @description('Name of the resource group system topic (default: <resource group, with _ . ( ) as hyphens>-atlas-akv-guard).')
  resourceGroupTopicName: string?
}

@description('Azure region of the guard\'s resources.')
param location string = resourceGroup().location

@description('Short prefix of resource names (lower-case letters, digits, hyphens).')
@minLength(3)
@maxLength(12)
param namePrefix string = 'akvguard'

@description('Tags applied to every resource.')
param tags object = {}

@description('FlexConsumption (recommended) or ElasticPremium (regions without Flex; see infra/README.md for the trade-off).')
@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string = 'FlexConsumption'

@description('Flex: maximum instance count.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Flex: instance memory in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 512

@description('The customer-key vaults the guard watches (one per Atlas project EAR configuration; projects may share a vault). Not secrets.')
@minLength(1)
param customerKeyVaults customerKeyVault[]

@description('Assignable scope of the custom approver role: the vault\'s resource group (documented, default) or the vault itself.')
@allowed([
  'resourceGroup'
  'vault'
])
param roleAssignableScope string = 'resourceGroup'

@description('Phase 2 switch: create the Event Grid subscriptions to KeyVaultEvents and PrivateLinkEvents (only after the function code is published).')
param deployEventSubscriptions bool = false

@description('Event Grid endpoint type: AzureFunction (default) or WebHook, the Functions host\'s Event Grid webhook (switch to it if phase 2 reports an endpoint validation failure; see infra/README.md).')
@allowed([
  'AzureFunction'
  'WebHook'
])
param eventDelivery string = 'AzureFunction'

@description('Event Grid delivery attempts before an event is dead-lettered.')
@minValue(1)
@maxValue(30)
param eventMaxDeliveryAttempts int = 10

@description('Event Grid event time to live in minutes.')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 60

@description('ATLAS_PROJECT_IDS: comma-separated Atlas project (group) ids.')
@minLength(24)
param atlasProjectIds string

@description('ATLAS_BASE_URL.')
param atlasBaseUrl string = 'https://cloud.mongodb.com'

@description('ATLAS_CLIENT_ID: Atlas service account client id (preferred). Empty when an API key is used.')
param atlasClientId string = ''

@description('ATLAS_CLIENT_SECRET: Atlas service account secret; stored in the secrets vault.')
@secure()
param atlasClientSecret string = ''

@description('ATLAS_PUBLIC_KEY: public half of an Atlas API key (an identifier, not a secret). Empty when a service account is used.')
param atlasPublicKey string = ''

@description('ATLAS_PRIVATE_KEY: private half of the Atlas API key; stored in the secrets vault.')
@secure()
param atlasPrivateKey string = ''

@description('GUARD_MODE: observe (report only) or enforce (approve). Start with observe, check /api/Status, then switch.')
@allowed([
  'enforce'
  'observe'
])
param guardMode string = 'observe'

@description('GUARD_SCHEDULE: NCRONTAB of the Reconcile timer.')
param guardSchedule string = '0 */1 * * * *'

@description('GUARD_KEY_EXPIRY_WARN_DAYS.')
@minValue(0)
@maxValue(3650)
param keyExpiryWarnDays int = 30

@description('GUARD_STUCK_AFTER (Go duration).')
param stuckAfter string = '30m'

@description('GUARD_AZURE_APP_SECRET_EXPIRY: when the secret of the Azure application Atlas uses expires (YYYY-MM-DD, or clientID=YYYY-MM-DD[,...]).')
param appSecretExpiry string = ''

@description('GUARD_AZURE_APP_SECRET_FROM_GRAPH: read that expiry from Microsoft Graph (an admin grants Application.Read.All: infra/README.md).')
param appSecretFromGraph bool = false

@description('GUARD_RENOTIFY_AFTER (Go duration, 0 = never).')
param renotifyAfter string = '1h'

@description('GUARD_RECONCILE_TIMEOUT (Go duration; below functionTimeout 00:05:00 of host.json).')
param reconcileTimeout string = '4m'

@description('GUARD_CONCURRENCY.')
@minValue(1)
@maxValue(256)
param concurrency int = 8

@description('GUARD_LOG_LEVEL.')
@allowed([
  'debug'
  'info'
  'warn'
  'error'
])
param logLevel string = 'info'

@description('GUARD_ALERT_WEBHOOK_URL: alert webhook (Teams/Slack URLs are capabilities); stored in the secrets vault. Empty: none.')
@secure()
param alertWebhookUrl string = ''

@description('GUARD_ALERT_WEBHOOK_FORMAT.')
@allowed([
  'auto'
  'generic'
  'teams'
  'slack'
])
param alertWebhookFormat string = 'auto'

@description('GUARD_STATE_CONTAINER: blob container of the guard state.')
@minLength(3)
@maxLength(63)
param stateContainerName string = 'atlas-akv-guard'

@description('GUARD_ARM_ENDPOINT override (sovereign clouds). Empty: derived from Atlas azureEnvironment.')
param armEndpoint string = ''

@description('Create an Event Grid custom topic for alerts (sets GUARD_ALERT_TOPIC_ENDPOINT; Entra auth, no key).')
param deployAlertTopic bool = false

@description('Create an Azure Monitor alert rule + action group that e-mails on critical guard alerts.')
param deployAlertRule bool = false

@description('E-mail addresses of the alert rule\'s action group (required when deployAlertRule).')
param alertEmailAddresses array = []

@description('Name of the guard\'s secrets vault (globally unique, 3-24 characters). Empty: generated. Not a secret.')
@maxLength(24)
param secretsVaultName string = ''

@description('Purge protection on the secrets vault (recommended; the name stays reserved for 90 days after a teardown).')
param secretsVaultPurgeProtection bool = true

@description('Optional object id of whoever uploads the package on ElasticPremium (gets Storage Blob Data Contributor on the package container).')
param deployerPrincipalId string = ''

var suffix = uniqueString(resourceGroup().id, namePrefix)
var compactPrefix = toLower(replace(namePrefix, '-', ''))
var baseName = '${namePrefix}-${suffix}'
var storageName = take('st${compactPrefix}${suffix}', 24)
var vaultName = empty(secretsVaultName) ? take('kv${compactPrefix}${suffix}', 24) : secretsVaultName
var deploymentContainerName = 'app-package'
var deadLetterContainerName = 'eventgrid-deadletter'
var guardTags = union(tags, {
  application: 'atlas-akv-guard'
})

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    name: 'id-${baseName}'
    location: location
    tags: guardTags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: storageName
    location: location
    tags: guardTags
    principalId: identity.outputs.principalId
    deploymentContainerName: deploymentContainerName
    stateContainerName: stateContainerName
    deadLetterContainerName: deadLetterContainerName
    deployerPrincipalId: deployerPrincipalId
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    name: baseName
    location: location
    tags: guardTags
    principalId: identity.outputs.principalId
  }
}

module secrets 'modules/secrets.bicep' = {
  name: 'secrets'
  params: {
    name: vaultName
    location: location
    tags: guardTags
    principalId: identity.outputs.principalId
    enablePurgeProtection: secretsVaultPurgeProtection
    createAtlasClientSecret: !empty(atlasClientSecret)
    atlasClientSecret: atlasClientSecret
    createAtlasPrivateKey: !empty(atlasPrivateKey)
    atlasPrivateKey: atlasPrivateKey
    createAlertWebhookUrl: !empty(alertWebhookUrl)
    alertWebhookUrl: alertWebhookUrl
  }
}

module alertTopic 'modules/alert-topic.bicep' = if (deployAlertTopic) {
  name: 'alert-topic'
  params: {
    name: 'evgt-${baseName}'
    location: location
    tags: guardTags
    principalId: identity.outputs.principalId
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    name: 'func-${baseName}'
    planName: 'plan-${baseName}'
    location: location
    tags: guardTags
    hostingPlan: hostingPlan
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    blobEndpoint: storage.outputs.blobEndpoint
    queueEndpoint: storage.outputs.queueEndpoint
    tableEndpoint: storage.outputs.tableEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    appInsightsConnectionString: monitoring.outputs.connectionString
    atlasProjectIds: atlasProjectIds
    atlasBaseUrl: atlasBaseUrl
    atlasClientId: atlasClientId
    atlasClientSecretUri: secrets.outputs.atlasClientSecretUri
    atlasPublicKey: atlasPublicKey
    atlasPrivateKeyUri: secrets.outputs.atlasPrivateKeyUri
    guardMode: guardMode
    guardSchedule: guardSchedule
    keyExpiryWarnDays: keyExpiryWarnDays
    stuckAfter: stuckAfter
    appSecretExpiry: appSecretExpiry
    appSecretFromGraph: appSecretFromGraph
    renotifyAfter: renotifyAfter
    reconcileTimeout: reconcileTimeout
    concurrency: concurrency
    logLevel: logLevel
    alertWebhookUrlUri: secrets.outputs.alertWebhookUrlUri
    alertWebhookFormat: alertWebhookFormat
    alertTopicEndpoint: deployAlertTopic ? alertTopic.outputs.endpoint : ''
    stateContainerName: storage.outputs.stateContainerName
    armEndpoint: armEndpoint
  }
}

module vaultGuard 'modules/vault-guard.bicep' = [
  for v in customerKeyVaults: {
    name: take('vault-guard-${v.name}', 64)
    scope: resourceGroup(v.subscriptionId, v.resourceGroupName)
    params: {
      keyVaultName: v.name
      principalId: identity.outputs.principalId
      identityId: identity.outputs.id
      functionAppId: functionApp.outputs.id
      functionAppHostName: functionApp.outputs.defaultHostName
      eventDelivery: eventDelivery
      deadLetterStorageAccountId: storage.outputs.id
      deadLetterContainerName: storage.outputs.deadLetterContainerName
      deployEventSubscriptions: deployEventSubscriptions
      createVaultTopic: v.?createVaultTopic ?? true
      vaultTopicName: v.?vaultTopicName ?? '${v.name}-atlas-akv-guard'
      createResourceGroupTopic: v.?createResourceGroupTopic ?? true
      resourceGroupTopicName: v.?resourceGroupTopicName ?? '${replace(replace(replace(replace(v.resourceGroupName, '_', '-'), '.', '-'), '(', '-'), ')', '-')}-atlas-akv-guard'
      roleAssignableScope: roleAssignableScope
      maxDeliveryAttempts: eventMaxDeliveryAttempts
      eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
      tags: guardTags
    }
  }
]

module alertRule 'modules/alert-rule.bicep' = if (deployAlertRule) {
  name: 'alert-rule'
  params: {
    name: baseName
    location: location
    tags: guardTags
    appInsightsId: monitoring.outputs.appInsightsId
    emailAddresses: alertEmailAddresses
  }
}

@description('Name of the function app.')
output functionAppName string = functionApp.outputs.name

@description('Hosting plan of the function app (FlexConsumption or ElasticPremium); infra/deploy.sh picks the publish method from it.')
output hostingPlan string = hostingPlan

@description('Object (principal) id of the guard identity.')
output identityPrincipalId string = identity.outputs.principalId

@description('Client id of the guard identity (AZURE_CLIENT_ID).')
output identityClientId string = identity.outputs.clientId

@description('Name of the storage account (host storage, package, state, dead letters).')
output storageAccountName string = storage.outputs.name

@description('Container of the deployment package.')
output deploymentContainerName string = storage.outputs.deploymentContainerName

@description('Name of the guard\'s secrets vault.')
output secretsVaultName string = secrets.outputs.name

@description('Status endpoint (authLevel function: add ?code=<function key>, see infra/README.md).')
output statusUrl string = 'https://${functionApp.outputs.defaultHostName}/api/Status'

@description('Event Grid alert topic endpoint (empty when not deployed).')
output alertTopicEndpoint string = deployAlertTopic ? alertTopic.outputs.endpoint : ''
