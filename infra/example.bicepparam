// Example parameters for infra/main.bicep. Copy it to infra/main.bicepparam
// (git-ignored; `make deploy`, infra/deploy.sh and azd read that file), fill in
// the placeholders and deploy with `make deploy RESOURCE_GROUP=<rg>`. Keep the
// copy in infra/: `using` is resolved relative to this file.
//
// Secrets are read from environment variables at deployment time, never
// written here:
//   export ATLAS_CLIENT_SECRET=...        (service account, preferred)
//   export ATLAS_PRIVATE_KEY=...          (only with an API key)
//   export GUARD_ALERT_WEBHOOK_URL=...    (optional)
// DEPLOY_EVENT_SUBSCRIPTIONS is set by infra/deploy.sh (false in phase 1, true
// in phase 2); leave it alone.
using 'main.bicep'

param namePrefix = 'akvguard'
param hostingPlan = 'FlexConsumption'

param customerKeyVaults = [
  {
    subscriptionId: '00000000-0000-0000-0000-000000000000' // <vault subscription id>
    resourceGroupName: 'rg-atlas-cmk' // <vault resource group>
    name: 'kv-atlas-cmk' // <vault name, as in the Atlas EAR configuration>
  }
]

param atlasProjectIds = '5f1e2d3c4b5a697887766554' // <comma-separated Atlas project ids>
param atlasClientId = 'mdb_sa_id_0123456789abcdef01234567' // <service account client id>
param atlasClientSecret = readEnvironmentVariable('ATLAS_CLIENT_SECRET', '')
param atlasPublicKey = ''
param atlasPrivateKey = readEnvironmentVariable('ATLAS_PRIVATE_KEY', '')

param guardMode = 'observe' // switch to 'enforce' once /api/Status looks right
param guardSchedule = '0 */1 * * * *'

param alertWebhookUrl = readEnvironmentVariable('GUARD_ALERT_WEBHOOK_URL', '')
param alertWebhookFormat = 'auto'

param deployAlertTopic = false
param deployAlertRule = true
param alertEmailAddresses = [
  'cloud-ops@example.com' // <who gets critical alerts>
]

// AzureFunction, or WebHook if phase 2 reports an endpoint validation failure
// (see infra/README.md).
param eventDelivery = 'AzureFunction'

param deployEventSubscriptions = bool(readEnvironmentVariable('DEPLOY_EVENT_SUBSCRIPTIONS', 'false'))
