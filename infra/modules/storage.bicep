// Storage account of the Functions host (AzureWebJobsStorage, identity-based),
// the Flex deployment package, the guard's state and Event Grid dead letters.
// Shared keys are off: every client (host, guard, Event Grid, deployer) uses
// Entra ID.
//
// API versions:
// - Microsoft.Storage/storageAccounts(/blobServices/containers)@2023-05-01
//   (learn.microsoft.com/azure/templates/microsoft.storage/storageaccounts, "2023-05-01").
// - Microsoft.Authorization/roleAssignments@2022-04-01
//   (learn.microsoft.com/azure/templates/microsoft.authorization/roleassignments).
//
// Roles for the guard identity, from "Connecting to host storage with an
// identity" (Azure Functions docs): the host alone needs Storage Blob Data
// Owner (leases of the timer trigger, keys, the Flex package); diagnostic
// events need Storage Table Data Contributor. No queue or blob trigger is used,
// so no queue role is granted.

@description('Name of the storage account (3-24 lower-case letters and digits, globally unique).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to the account.')
param tags object = {}

@description('Principal id of the guard identity.')
param principalId string

@description('Container of the deployment package (Flex: functionAppConfig.deployment; Elastic Premium: WEBSITE_RUN_FROM_PACKAGE).')
param deploymentContainerName string

@description('Container of the guard state (GUARD_STATE_CONTAINER).')
param stateContainerName string

@description('Container for Event Grid dead letters.')
param deadLetterContainerName string

@description('Optional object id of the person or pipeline that uploads the package on Elastic Premium (gets Storage Blob Data Contributor). Empty: none.')
param deployerPrincipalId string = ''

@description('Principal type of deployerPrincipalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param deployerPrincipalType string = 'User'

var roles = {
  blobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  blobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  tableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
}

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource blobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource stateContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: stateContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobs
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource blobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, roles.blobDataOwner)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataOwner)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'atlas-akv-guard: Functions host storage, deployment package, guard state, Event Grid dead letters'
  }
}

resource tableContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(account.id, principalId, roles.tableDataContributor)
  scope: account
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.tableDataContributor)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'atlas-akv-guard: Functions host diagnostic events'
  }
}

resource deployerContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(deploymentContainer.id, deployerPrincipalId, roles.blobDataContributor)
  scope: deploymentContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roles.blobDataContributor)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
    description: 'atlas-akv-guard: upload of the deployment package'
  }
}

@description('Resource id of the account.')
output id string = account.id

@description('Name of the account.')
output name string = account.name

@description('Blob endpoint, with a trailing slash.')
output blobEndpoint string = account.properties.primaryEndpoints.blob

@description('Queue endpoint, with a trailing slash.')
output queueEndpoint string = account.properties.primaryEndpoints.queue

@description('Table endpoint, with a trailing slash.')
output tableEndpoint string = account.properties.primaryEndpoints.table

@description('Name of the deployment container.')
output deploymentContainerName string = deploymentContainer.name

@description('Name of the dead-letter container.')
output deadLetterContainerName string = deadLetterContainer.name

@description('Name of the state container.')
output stateContainerName string = stateContainer.name
