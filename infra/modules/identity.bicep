// User-assigned managed identity of the guard. One identity does everything:
// host storage, Key Vault references, the approval role on the customer vault,
// Application Insights ingestion, and (as the system topics' identity) Event
// Grid dead-lettering.
//
// API version: Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31
// (learn.microsoft.com/azure/templates/microsoft.managedidentity/2023-01-31/userassignedidentities).

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to the identity.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

@description('Resource id of the identity.')
output id string = identity.id

@description('Object (principal) id, for role assignments.')
output principalId string = identity.properties.principalId

@description('Client id, for AZURE_CLIENT_ID and AzureWebJobsStorage__clientId.')
output clientId string = identity.properties.clientId
