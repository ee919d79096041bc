// Optional Event Grid custom topic that receives the guard's alerts as
// CloudEvents (GUARD_ALERT_TOPIC_ENDPOINT). Local (key) auth is disabled; the
// guard identity publishes with EventGrid Data Sender, so no
// GUARD_ALERT_TOPIC_KEY exists anywhere. Subscribe your own handlers (Logic
// App, Service Bus, ...) to it.
//
// API versions:
// - Microsoft.EventGrid/topics@2022-06-15
//   (learn.microsoft.com/azure/templates/microsoft.eventgrid/2022-06-15/topics).
// - Microsoft.Authorization/roleAssignments@2022-04-01.

@description('Name of the topic.')
param name string

@description('Azure region.')
param location string

@description('Tags of the topic.')
param tags object = {}

@description('Principal id of the guard identity (gets EventGrid Data Sender on the topic).')
param principalId string

var eventGridDataSender = 'd5a91429-5739-47e2-a06b-3470a27159e7'

resource topic 'Microsoft.EventGrid/topics@2022-06-15' = {
  name: name
  location: location
  tags: tags
  properties: {
    inputSchema: 'CloudEventSchemaV1_0'
    disableLocalAuth: true
    publicNetworkAccess: 'Enabled'
  }
}

resource sender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(topic.id, principalId, eventGridDataSender)
  scope: topic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', eventGridDataSender)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'atlas-akv-guard: publish alerts'
  }
}

@description('Endpoint of the topic (GUARD_ALERT_TOPIC_ENDPOINT).')
output endpoint string = topic.properties.endpoint

@description('Resource id of the topic.')
output id string = topic.id
