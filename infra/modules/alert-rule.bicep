// Optional Azure Monitor log alert on the guard's critical alerts. The handler
// writes one JSON record per alert on stdout (log/slog JSON: level, msg, and
// the fields kind, severity, fingerprint, project, action); critical alerts are
// logged at level ERROR. The Functions host forwards stdout to Application
// Insights traces, where this rule finds them and emails the action group.
// This path works even when every guard-side sink (webhook, topic) is down or
// unconfigured: it only needs the host's telemetry.
//
// API versions:
// - Microsoft.Insights/actionGroups@2022-04-01
//   (learn.microsoft.com/azure/templates/microsoft.insights/2022-04-01/actiongroups).
// - Microsoft.Insights/scheduledQueryRules@2021-08-01
//   (learn.microsoft.com/azure/templates/microsoft.insights/2021-08-01/scheduledqueryrules).

@description('Name prefix of the action group and the rule.')
param name string

@description('Azure region of the rule (the action group is global).')
param location string

@description('Tags of both resources.')
param tags object = {}

@description('Resource id of the Application Insights component.')
param appInsightsId string

@description('E-mail addresses that receive critical guard alerts.')
@minLength(1)
param emailAddresses array

@description('How often the rule runs (ISO 8601 duration).')
param evaluationFrequency string = 'PT5M'

// Records are JSON lines; the host may prefix them, so the object is extracted
// before parsing. Only records that carry an alert (kind + fingerprint) at
// critical severity count. One alert per fingerprint and window.
var query = '''
traces
| where message has "fingerprint" and message has "critical"
| extend record = parse_json(extract(@"(\{.*\})", 1, message))
| where tostring(record.severity) == "critical" and isnotempty(tostring(record.fingerprint))
| summarize arg_max(timestamp, *) by fingerprint = tostring(record.fingerprint)
| project timestamp, fingerprint, kind = tostring(record.kind), project = tostring(record.project), action = tostring(record.action), message
'''

resource actionGroup 'Microsoft.Insights/actionGroups@2022-04-01' = {
  name: 'ag-${name}'
  location: 'global'
  tags: tags
  properties: {
    groupShortName: 'akvguard'
    enabled: true
    emailReceivers: [
      for (address, i) in emailAddresses: {
        name: 'email-${i}'
        emailAddress: address
        useCommonAlertSchema: true
      }
    ]
  }
}

resource rule 'Microsoft.Insights/scheduledQueryRules@2021-08-01' = {
  name: 'alert-${name}-critical'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'atlas-akv-guard: critical alert'
    description: 'The guard raised a critical alert (key disabled/expired/missing, Atlas config invalid, clusters paused, endpoint failed, or the guard is blind). Atlas may pause the clusters at its next key check.'
    severity: 1
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: evaluationFrequency
    windowSize: evaluationFrequency
    criteria: {
      allOf: [
        {
          query: query
          timeAggregation: 'Count'
          operator: 'GreaterThan'
          threshold: 0
          dimensions: [
            {
              name: 'fingerprint'
              operator: 'Include'
              values: [
                '*'
              ]
            }
          ]
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: {
      actionGroups: [
        actionGroup.id
      ]
    }
  }
}

@description('Resource id of the alert rule.')
output ruleId string = rule.id
