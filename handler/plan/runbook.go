package plan

import (
	"cmp"
	"fmt"
	"strings"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
)

// atlasAPI is the Atlas Admin API v2 base the runbooks' curl commands use.
const atlasAPI = "https://cloud.mongodb.com/api/atlas/v2/groups/"

// runbook is what to do about a: one to three steps, each with the exact az
// or Atlas Admin API command filled in from project, vault v, Atlas's EAR
// config cfg (nil when unknown) and the alert's subject and details.
// Credentials are left as shell variables ($ATLAS_TOKEN, a new secret read
// from the previous command): a runbook never holds a secret.
func runbook(a alert.Alert, project string, v resource.ID, cfg *atlas.AzureKeyVault) []string {
	var clientID, key, version string
	if cfg != nil {
		clientID = cfg.ClientID
		_, key, version, _ = resource.ParseKeyIdentifier(cfg.KeyIdentifier)
	}
	vaultArgs := fmt.Sprintf("--subscription %s --resource-group %s --name %s", v.SubscriptionID, v.ResourceGroup, v.Name)
	keyArgs := fmt.Sprintf("--subscription %s --vault-name %s --name %s", v.SubscriptionID, v.Name, key)
	atlasCall := func(method, path, body string) string {
		c := fmt.Sprintf(`curl -X %s -H "Authorization: Bearer $ATLAS_TOKEN" -H 'Accept: application/vnd.atlas.2023-01-01+json'`, method)
		if body != "" {
			c += ` -H 'Content-Type: application/vnd.atlas.2023-01-01+json' -d '` + body + `'`
		}
		return c + " " + atlasAPI + project + path
	}
	rotate := atlasCall("PATCH", "/encryptionAtRest", fmt.Sprintf(`{"azureKeyVault":{"keyIdentifier":"https://%s.vault.azure.net/keys/%s/<new version>"}}`, v.Name, key))
	region := cmp.Or(a.Details["region"], strings.Split(a.Details["regions"]+",", ",")[0])
	createEndpoint := atlasCall("POST", "/encryptionAtRest/AZURE/privateEndpoints", `{"regionName":"`+region+`"}`)
	conn := v.String() + "/privateEndpointConnections/" + a.Subject
	listConns := "az network private-endpoint-connection list --id " + v.String() + " --query \"[].{name:name,status:properties.privateLinkServiceConnectionState.status}\""
	activity := "az monitor activity-log list --resource-id " + v.String() + " --offset 1d --query \"[].{op:operationName.value,who:caller,at:eventTimestamp}\""
	checkEAR := atlasCall("GET", "/encryptionAtRest", "")
	switch a.Kind {
	case alert.KeyDisabled:
		return []string{"Re-enable the key version Atlas uses: az keyvault key set-attributes --enabled true " + keyArgs + " --version " + version,
			"Check that Atlas reports the config valid again: " + checkEAR}
	case alert.KeyExpired, alert.KeyExpiresSoon:
		return []string{"Create a new key version: az keyvault key rotate " + keyArgs,
			"Point Atlas at it (the version from the previous output): " + rotate}
	case alert.KeyNotYetValid:
		return []string{"Make the key version valid now: az keyvault key set-attributes --not-before $(date -u +%Y-%m-%dT%H:%M:%SZ) " + keyArgs + " --version " + version}
	case alert.KeyMissing:
		return []string{"Recover the key if it was deleted: az keyvault key recover " + keyArgs,
			"Otherwise point Atlas at an existing key version: " + rotate}
	case alert.KeyRotated:
		return []string{"Point Atlas at the newer version " + a.Details["latest"] + ": " + strings.Replace(rotate, "<new version>", a.Details["latest"], 1)}
	case alert.VaultMissing:
		return []string{"Recover the vault if it was deleted: az keyvault recover --subscription " + v.SubscriptionID + " --name " + v.Name,
			"Find who deleted it: " + activity}
	case alert.ConfigInvalid, alert.ClustersPaused:
		return []string{"Fix the key alert raised with this one (disabled, expired, missing key, app secret or access), then check: " + checkEAR,
			"Check the key version Atlas uses: az keyvault key show " + keyArgs + " --version " + version}
	case alert.EndpointFailed:
		return []string{"Delete the failed endpoint: " + atlasCall("DELETE", "/encryptionAtRest/AZURE/privateEndpoints/"+a.Subject, ""),
			"Create it again: " + createEndpoint}
	case alert.EndpointStuck, alert.ConnectionChanged:
		return []string{"See the vault's connections (the guard approves Atlas's new one while the vault has no hold tag): " + listConns,
			"Find who changed them: " + activity}
	case alert.AccessChanged:
		return []string{"Check the role assignments on the vault: az role assignment list --include-inherited --scope " + v.String(),
			"Find who changed them: " + activity}
	case alert.ForeignConnection:
		return []string{"Find who created it: " + activity,
			"If nobody expected it, reject it (the guard never does): az network private-endpoint-connection reject --id " + conn}
	case alert.Approved:
		return []string{"Nothing to do; to verify: az network private-endpoint-connection show --id " + conn}
	case alert.WouldApprove:
		return []string{"Approve it yourself: az network private-endpoint-connection approve --id " + conn + " --description 'requested by Atlas project " + project + "'",
			"Or let the guard approve: set GUARD_MODE=enforce"}
	case alert.ApprovalHeld:
		return []string{"Remove the hold tag to let the guard approve: az tag update --operation Delete --tags atlas-akv-guard=hold --resource-id " + v.String()}
	case alert.GuardBlind:
		steps := []string{"Grant what the guard lacks: " + a.Details["permission"]}
		if a.Details["permission"] == "" {
			steps[0] = "Fix what the guard cannot read: " + cmp.Or(a.Details["error"], a.Subject)
		}
		return append(steps, "Confirm with one observe-only reconcile: handler check")
	case alert.RegionUncovered:
		return []string{"Create an endpoint in " + region + " (the guard approves its connection): " + createEndpoint}
	case alert.NoPrivateEndpoint:
		return []string{"Create an endpoint in each Azure region of the clusters (" + a.Details["regions"] + "), e.g.: " + createEndpoint}
	case alert.UnsupportedCluster:
		return []string{"Move cluster " + a.Subject + " to Azure regions only: " + atlasCall("GET", "/clusters/"+a.Subject, "") + " then PATCH its replicationSpecs",
			"Or stop requiring private networking: " + atlasCall("PATCH", "/encryptionAtRest", `{"azureKeyVault":{"requirePrivateNetworking":false}}`)}
	case alert.PurgeUnprotected:
		return []string{"Turn on purge protection (it cannot be turned off again): az keyvault update --enable-purge-protection true --enable-soft-delete true " + vaultArgs}
	case alert.AppSecretExpiring, alert.AppSecretExpired:
		return []string{"Add a new secret: SECRET=$(az ad app credential reset --append --years 2 --query password -o tsv --id " + clientID + ")",
			`Give it to Atlas: ` + atlasCall("PATCH", "/encryptionAtRest", `{"azureKeyVault":{"clientID":"`+clientID+`","secret":"'"$SECRET"'"}}`),
			"After Atlas reports the config valid, delete the old secret: az ad app credential delete --id " + clientID + " --key-id <old keyId>"}
	case alert.AtlasAlertsOff:
		post := atlasCall("POST", "/alertConfigs", `{"eventTypeName":"`+a.Subject+`","enabled":true,`+
			`"notifications":[{"typeName":"GROUP","roles":["GROUP_OWNER"],"emailEnabled":true,"smsEnabled":false,"intervalMin":60,"delayMin":0}]}`)
		if id, _, _ := strings.Cut(a.Details["disabled"], ","); id != "" {
			return []string{"Enable the disabled configuration: " + atlasCall("PATCH", "/alertConfigs/"+id, `{"enabled":true}`),
				"Or create one that emails the Project Owners: " + post}
		}
		return []string{"Create Atlas's alert configuration, emailing the Project Owners: " + post}
	case alert.StateUnreadable:
		return []string{"Nothing to restore: the guard rebuilt its memory from Atlas and Azure. Inspect the unreadable copy: " +
			"az storage blob list --auth-mode login --account-name <state storage account> --container-name atlas-akv-guard --prefix quarantine/projects/" + project + "/ -o table",
			"Check the project once more: handler check"}
	}
	return []string{"See the alert's summary; check the project with: handler check"}
}
