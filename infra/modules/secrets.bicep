// A small Key Vault for the guard's own secrets (Atlas credentials, the alert
// webhook URL), separate from the customer-key vault that Atlas uses: the guard
// never gets data-plane rights on the customer vault, and nobody who manages
// the guard's secrets gets rights on the customer key. RBAC mode; the guard
// identity is Key Vault Secrets User; app settings reference the secrets with
// @Microsoft.KeyVault(SecretUri=...) resolved with that identity.
//
// Secrets are created only when the caller says so (a value was given), so an
// unused credential pair leaves no empty secret behind. Outputs are secret
// locations (URIs), never values, and depend on no secure parameter.
//
// API versions:
// - Microsoft.KeyVault/vaults(/secrets)@2023-07-01
//   (learn.microsoft.com/azure/templates/microsoft.keyvault/vaults, "2023-07-01").
// - Microsoft.Authorization/roleAssignments@2022-04-01.

@description('Name of the secrets vault (3-24 characters, globally unique). Not a secret.')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region.')
param location string

@description('Tags applied to the vault.')
param tags object = {}

@description('Principal id of the guard identity (gets Key Vault Secrets User).')
param principalId string

@description('Enable purge protection. Recommended; note that a purge-protected vault name stays taken for the retention period after a teardown.')
param enablePurgeProtection bool = true

@description('Create the Atlas client secret (decided by the caller, so that no output here depends on a secure value).')
param createAtlasClientSecret bool

@description('Atlas service account secret (ATLAS_CLIENT_SECRET). Used only when createAtlasClientSecret.')
@secure()
param atlasClientSecret string = ''

@description('Create the Atlas private key secret.')
param createAtlasPrivateKey bool

@description('Create the alert webhook URL secret.')
param createAlertWebhookUrl bool

@description('Atlas API private key (ATLAS_PRIVATE_KEY). Used only when createAtlasPrivateKey.')
@secure()
param atlasPrivateKey string = ''

@description('Alert webhook URL (GUARD_ALERT_WEBHOOK_URL); Teams/Slack webhook URLs are capabilities. Used only when createAlertWebhookUrl.')
@secure()
param alertWebhookUrl string = ''

var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
var clientSecretName = 'atlas-client-secret'
var privateKeyName = 'atlas-private-key'
var webhookUrlName = 'guard-alert-webhook-url'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    enablePurgeProtection: enablePurgeProtection ? true : null
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

resource clientSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (createAtlasClientSecret) {
  parent: vault
  name: clientSecretName
  properties: {
    value: atlasClientSecret
    contentType: 'Atlas service account secret'
  }
}

resource privateKey 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (createAtlasPrivateKey) {
  parent: vault
  name: privateKeyName
  properties: {
    value: atlasPrivateKey
    contentType: 'Atlas API private key'
  }
}

resource webhookUrl 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (createAlertWebhookUrl) {
  parent: vault
  name: webhookUrlName
  properties: {
    value: alertWebhookUrl
    contentType: 'alert webhook URL'
  }
}

resource secretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, principalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'atlas-akv-guard: read its own secrets through Key Vault references'
  }
}

@description('Name of the secrets vault.')
output name string = vault.name

@description('Versionless URI of the Atlas client secret (empty when not created). A location, not the secret.')
output atlasClientSecretUri string = createAtlasClientSecret ? '${vault.properties.vaultUri}secrets/${clientSecretName}' : ''

@description('Versionless URI of the Atlas private key (empty when not created).')
output atlasPrivateKeyUri string = createAtlasPrivateKey ? '${vault.properties.vaultUri}secrets/${privateKeyName}' : ''

@description('Versionless URI of the webhook URL secret (empty when not created).')
output alertWebhookUrlUri string = createAlertWebhookUrl ? '${vault.properties.vaultUri}secrets/${webhookUrlName}' : ''
