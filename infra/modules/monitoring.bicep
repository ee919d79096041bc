// Log Analytics workspace + workspace-based Application Insights with local
// (instrumentation-key) authentication disabled: only Entra-authenticated
// telemetry is accepted. The guard identity gets Monitoring Metrics Publisher,
// which (despite its name) allows publishing all telemetry; the app setting
// APPLICATIONINSIGHTS_AUTHENTICATION_STRING tells the host to use it.
//
// API versions:
// - Microsoft.OperationalInsights/workspaces@2023-09-01 (REST API version used
//   by azure-native operationalinsights.Workspace; 2022-10-01 also exists).
// - Microsoft.Insights/components@2020-02-02
//   (learn.microsoft.com/azure/templates/microsoft.insights/components; the Flex
//   Consumption samples use it).
// - Microsoft.Authorization/roleAssignments@2022-04-01.

@description('Name prefix of the workspace and the component.')
param name string

@description('Azure region.')
param location string

@description('Tags applied to both resources.')
param tags object = {}

@description('Principal id of the guard identity (gets Monitoring Metrics Publisher on the component).')
param principalId string

@description('Log retention in days.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${name}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${name}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'other'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
    IngestionMode: 'LogAnalytics'
  }
}

resource publisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, principalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'atlas-akv-guard: Entra-authenticated telemetry ingestion'
  }
}

@description('Resource id of the Application Insights component.')
output appInsightsId string = appInsights.id

@description('Name of the Application Insights component.')
output appInsightsName string = appInsights.name

@description('Connection string of the component. With DisableLocalAuth it only locates the ingestion endpoint; it does not authorize anything.')
output connectionString string = appInsights.properties.ConnectionString

@description('Resource id of the Log Analytics workspace.')
output workspaceId string = workspace.id
