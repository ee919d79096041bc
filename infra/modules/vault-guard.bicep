// Everything the guard needs on ONE customer-key vault, deployed at the vault's
// resource group (which may be in another subscription than the guard):
//
// 1. a least-privilege custom role with exactly the ARM actions the guard's
//    Azure client performs (handler/vault.RoleActions(); the drift test
//    compares) and its assignment to the guard identity at the vault scope;
// 2. an Event Grid system topic on the vault (Microsoft.KeyVault.vaults) with a
//    subscription to the function KeyVaultEvents;
// 3. an Event Grid system topic on the vault's resource group
//    (Microsoft.Resources.ResourceGroups, location 'global') with a
//    subscription to the function PrivateLinkEvents, filtered to the ARM
//    operations the guard classifies (handler/event.ARMOperations()) on the
//    vault and on role assignments of the resource group.
//
// Events are hints (the Reconcile timer is the backstop), so filters may be
// tight: a dropped event costs at most one timer period. The filters hold
// exactly what handler/event classifies (KeyVaultEventTypes, ARMEventTypes,
// ARMOperations); ResourceActionSuccess is left out because no action event is
// classified (the approval itself arrives as privateEndpointConnections/write).
//
// Filter trade-off (resource group topic): data.resourceUri must begin with
// the vault id (the vault, its connections, role assignments AT or BELOW the
// vault) or with the resource group's roleAssignments path (role assignments
// on the resource group). Role assignments deleted at the subscription or
// management group scope never reach a resource group topic; catching them
// needs a subscription system topic (Microsoft.Resources.Subscriptions),
// which would deliver every write in the subscription to this filter. Not
// deployed; the timer and Atlas's "valid" flag catch the effect.
//
// Only one system topic may exist per source. If the vault or its resource
// group already has one, set createVaultTopic/createResourceGroupTopic to
// false and name the existing topic: the subscription is added to it (the
// existing topic must then carry the guard identity for dead-lettering).
//
// Custom role scope: Azure documents assignable scopes at management group,
// subscription and resource group level and discourages resource-level ones,
// so the default assignable scope is the vault's resource group; the role is
// assigned only at the vault. roleAssignableScope = 'vault' narrows the
// definition itself to the vault.
//
// Event subscriptions are validated against the deployed function, so they
// are created only when deployEventSubscriptions is true (phase 2, after the
// code is published). eventDelivery picks the endpoint: AzureFunction (the
// function's resource id) or WebHook, the Functions host's Event Grid webhook
// https://<host>/runtime/webhooks/eventgrid?functionName=<Name>&code=<key>,
// with the host's eventgrid_extension system key read by listKeys on
// <app>/host/default. Whether AzureFunction validates against a Flex
// Consumption custom-handler app is not documented; WebHook is the fallback
// when phase 2 reports an endpoint validation failure.
//
// API versions:
// - Microsoft.Authorization/roleDefinitions@2022-04-01
//   (learn.microsoft.com/azure/templates/microsoft.authorization/roledefinitions).
// - Microsoft.Authorization/roleAssignments@2022-04-01.
// - Microsoft.EventGrid/systemTopics(/eventSubscriptions)@2022-06-15
//   (learn.microsoft.com/azure/templates/microsoft.eventgrid/2022-06-15/systemtopics;
//   identity with userAssignedIdentities, deadLetterWithResourceIdentity).
// - Microsoft.KeyVault/vaults@2023-07-01 (existing).
// - listKeys on Microsoft.Web/sites/host (<app>/host/default) with 2024-04-01
//   (Microsoft.Web's version here; returns masterKey, functionKeys, systemKeys).

@description('Name of the customer-key vault (in this resource group). Not a secret.')
param keyVaultName string

@description('Principal id of the guard identity.')
param principalId string

@description('Resource id of the guard identity (system topic identity for dead-lettering).')
param identityId string

@description('Resource id of the function app.')
param functionAppId string

@description('Default host name of the function app (WebHook delivery).')
param functionAppHostName string

@description('Event delivery: AzureFunction (the function resource) or WebHook (the host\'s Event Grid webhook with its eventgrid_extension system key).')
@allowed([
  'AzureFunction'
  'WebHook'
])
param eventDelivery string = 'AzureFunction'

@description('Resource id of the storage account with the dead-letter container.')
param deadLetterStorageAccountId string

@description('Name of the dead-letter container.')
param deadLetterContainerName string

@description('Create the event subscriptions (phase 2, after the function code is published).')
param deployEventSubscriptions bool

@description('Create the vault system topic (false: reuse vaultTopicName).')
param createVaultTopic bool = true

@description('Name of the vault system topic (new or existing).')
param vaultTopicName string

@description('Create the resource group system topic (false: reuse resourceGroupTopicName).')
param createResourceGroupTopic bool = true

@description('Name of the resource group system topic (new or existing).')
param resourceGroupTopicName string

@description('Assignable scope of the custom role definition.')
@allowed([
  'resourceGroup'
  'vault'
])
param roleAssignableScope string = 'resourceGroup'

@description('Event Grid delivery attempts before dead-lettering.')
@minValue(1)
@maxValue(30)
param maxDeliveryAttempts int = 10

@description('Event time to live in minutes.')
@minValue(1)
@maxValue(1440)
param eventTimeToLiveInMinutes int = 60

@description('Tags of the system topics.')
param tags object = {}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource approverRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(vault.id, 'atlas-akv-guard-approver')
  properties: {
    roleName: 'atlas-akv-guard approver ${keyVaultName} ${uniqueString(vault.id)}'
    description: 'atlas-akv-guard: read the vault and the key version Atlas uses, approve the private endpoint connections Atlas asked for. Nothing else.'
    type: 'CustomRole'
    assignableScopes: [
      roleAssignableScope == 'vault' ? vault.id : resourceGroup().id
    ]
    permissions: [
      {
        actions: [
          'Microsoft.KeyVault/vaults/read'
          'Microsoft.KeyVault/vaults/privateEndpointConnections/read'
          'Microsoft.KeyVault/vaults/privateEndpointConnections/write'
          'Microsoft.KeyVault/vaults/PrivateEndpointConnectionsApproval/action'
          'Microsoft.KeyVault/vaults/keys/read'
          'Microsoft.KeyVault/vaults/keys/versions/read'
        ]
        notActions: []
        dataActions: []
        notDataActions: []
      }
    ]
  }
}

resource approverAssignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, approverRole.id)
  scope: vault
  properties: {
    // Role definitions live at the subscription: a resource-group-scoped id
    // would not be accepted here.
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', approverRole.name)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'atlas-akv-guard: approve Atlas private endpoint connections on this vault'
  }
}

var topicIdentity = {
  type: 'UserAssigned'
  userAssignedIdentities: {
    '${identityId}': {}
  }
}

var deadLetter = {
  identity: {
    type: 'UserAssigned'
    userAssignedIdentity: identityId
  }
  deadLetterDestination: {
    endpointType: 'StorageBlob'
    properties: {
      resourceId: deadLetterStorageAccountId
      blobContainerName: deadLetterContainerName
    }
  }
}

// Read only for WebHook delivery, in phase 2 (the app must be running).
var eventGridKey = eventDelivery == 'WebHook' ? listKeys('${functionAppId}/host/default', '2024-04-01').systemKeys.eventgrid_extension : ''
var webhookUrl = 'https://${functionAppHostName}/runtime/webhooks/eventgrid?functionName='

var batching = {
  maxEventsPerBatch: 1
  preferredBatchSizeInKilobytes: 64
}

var retry = {
  maxDeliveryAttempts: maxDeliveryAttempts
  eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
}

resource newVaultTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (createVaultTopic) {
  name: vaultTopicName
  location: vault.location
  tags: tags
  identity: topicIdentity
  properties: {
    source: vault.id
    topicType: 'Microsoft.KeyVault.vaults'
  }
}

resource vaultTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: vaultTopicName
}

resource keyVaultEvents 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (deployEventSubscriptions) {
  parent: vaultTopic
  name: 'atlas-akv-guard-keyvault'
  dependsOn: [
    newVaultTopic
  ]
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: eventDelivery == 'WebHook' ? {
      endpointType: 'WebHook'
      properties: union(batching, {
        endpointUrl: '${webhookUrl}KeyVaultEvents&code=${eventGridKey}'
      })
    } : {
      endpointType: 'AzureFunction'
      properties: union(batching, {
        resourceId: '${functionAppId}/functions/KeyVaultEvents'
      })
    }
    filter: {
      includedEventTypes: [
        'Microsoft.KeyVault.KeyNewVersionCreated'
        'Microsoft.KeyVault.KeyNearExpiry'
        'Microsoft.KeyVault.KeyExpired'
        'Microsoft.KeyVault.VaultAccessPolicyChanged'
      ]
    }
    retryPolicy: retry
    deadLetterWithResourceIdentity: deadLetter
  }
}

resource newResourceGroupTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = if (createResourceGroupTopic) {
  name: resourceGroupTopicName
  location: 'global'
  tags: tags
  identity: topicIdentity
  properties: {
    source: resourceGroup().id
    topicType: 'Microsoft.Resources.ResourceGroups'
  }
}

resource resourceGroupTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' existing = {
  name: resourceGroupTopicName
}

resource privateLinkEvents 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (deployEventSubscriptions) {
  parent: resourceGroupTopic
  name: 'atlas-akv-guard-${keyVaultName}'
  dependsOn: [
    newResourceGroupTopic
  ]
  properties: {
    eventDeliverySchema: 'EventGridSchema'
    destination: eventDelivery == 'WebHook' ? {
      endpointType: 'WebHook'
      properties: union(batching, {
        endpointUrl: '${webhookUrl}PrivateLinkEvents&code=${eventGridKey}'
      })
    } : {
      endpointType: 'AzureFunction'
      properties: union(batching, {
        resourceId: '${functionAppId}/functions/PrivateLinkEvents'
      })
    }
    filter: {
      includedEventTypes: [
        'Microsoft.Resources.ResourceWriteSuccess'
        'Microsoft.Resources.ResourceDeleteSuccess'
      ]
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.operationName'
          values: [
            'Microsoft.KeyVault/vaults/write'
            'Microsoft.KeyVault/vaults/delete'
            'Microsoft.KeyVault/vaults/privateEndpointConnections/write'
            'Microsoft.KeyVault/vaults/privateEndpointConnections/delete'
            'Microsoft.KeyVault/vaults/privateEndpointConnectionProxies/write'
            'Microsoft.KeyVault/vaults/privateEndpointConnectionProxies/delete'
            'Microsoft.Authorization/roleAssignments/delete'
          ]
        }
        {
          operatorType: 'StringBeginsWith'
          key: 'data.resourceUri'
          values: [
            vault.id
            '${resourceGroup().id}/providers/Microsoft.Authorization/roleAssignments/'
          ]
        }
      ]
    }
    retryPolicy: retry
    deadLetterWithResourceIdentity: deadLetter
  }
}

@description('Resource id of the vault.')
output vaultId string = vault.id

@description('Resource id of the custom role definition.')
output roleDefinitionId string = subscriptionResourceId('Microsoft.Authorization/roleDefinitions', approverRole.name)
