package plan

import (
	"strings"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
)

// TestRunbookEveryKind: every kind has one to three steps, and the commands
// carry the snapshot's identifiers (never a placeholder for one it knows).
func TestRunbookEveryKind(t *testing.T) {
	s := with(healthy(), func(s *Snapshot) { s.Config.ClientID = "0b1c2d3e-app" })
	sub, rg, kv, proj := vaultA.SubscriptionID, vaultA.ResourceGroup, vaultA.Name, project
	key := []string{sub, kv, "ear-key", "v1"}
	conn := []string{vaultA.String() + "/privateEndpointConnections/" + connA}
	want := map[alert.Kind][]string{
		alert.KeyDisabled:        append(key, proj),
		alert.KeyExpired:         append(key[:3:3], proj),
		alert.KeyExpiresSoon:     append(key[:3:3], proj),
		alert.KeyNotYetValid:     key,
		alert.KeyMissing:         append(key[:3:3], proj),
		alert.KeyRotated:         {proj, kv, "ear-key/v2"},
		alert.VaultMissing:       {sub, kv},
		alert.ConfigInvalid:      append(key, proj),
		alert.ClustersPaused:     append(key, proj),
		alert.EndpointFailed:     {proj, epA, "US_EAST_2"},
		alert.EndpointStuck:      {vaultA.String()},
		alert.ConnectionChanged:  {vaultA.String()},
		alert.AccessChanged:      {vaultA.String()},
		alert.ForeignConnection:  conn,
		alert.Approved:           conn,
		alert.WouldApprove:       append(conn, proj),
		alert.ApprovalHeld:       {vaultA.String()},
		alert.GuardBlind:         {"Microsoft.KeyVault/vaults/read"},
		alert.RegionUncovered:    {proj, `"regionName":"US_EAST_2"`},
		alert.NoPrivateEndpoint:  {proj, `"regionName":"US_EAST_2"`},
		alert.UnsupportedCluster: {proj, "/clusters/prod"},
		alert.PurgeUnprotected:   {sub, rg, kv, "--enable-purge-protection true"},
		alert.AppSecretExpiring:  {proj, "0b1c2d3e-app", "az ad app credential reset"},
		alert.AppSecretExpired:   {proj, "0b1c2d3e-app"},
		alert.StateUnreadable:    {"quarantine/projects/" + proj + "/"},
		alert.AtlasAlertsOff:     {"-X POST", proj + "/alertConfigs", `"eventTypeName":"` + EventKMSNetworkAccessDenied + `","enabled":true`, `"roles":["GROUP_OWNER"]`},
	}
	subject := map[alert.Kind]string{
		alert.EndpointFailed: epA, alert.RegionUncovered: "US_EAST_2", alert.UnsupportedCluster: "prod",
		alert.ForeignConnection: connA, alert.Approved: connA, alert.WouldApprove: connA, alert.AtlasAlertsOff: EventKMSNetworkAccessDenied,
	}
	details := map[string]string{"region": "US_EAST_2", "regions": "US_EAST_2,EUROPE_WEST", "latest": "v2", "permission": "Microsoft.KeyVault/vaults/read"}
	for kind := range alert.Catalog {
		steps := runbook(alert.Alert{Kind: kind, Subject: subject[kind], Details: details}, s.ProjectID, s.Vault, s.Config)
		all := strings.Join(steps, "\n")
		if len(steps) < 1 || len(steps) > 3 {
			t.Errorf("%s: %d steps, want 1–3", kind, len(steps))
		}
		if want[kind] == nil {
			t.Errorf("%s: no expectation in this table", kind)
		}
		for _, w := range want[kind] {
			if !strings.Contains(all, w) {
				t.Errorf("%s: runbook lacks %q:\n%s", kind, w, all)
			}
		}
		if strings.Contains(all, "--name  ") || strings.Contains(all, "groups//") || strings.Contains(all, ": \n") || strings.HasSuffix(all, ": ") {
			t.Errorf("%s: an identifier is empty:\n%s", kind, all)
		}
	}
	// A guard-blind alert grouped by cause names the cause.
	blind := Plan(with(healthy(), atlasDown), Memory{}, enforce(), now).Notices[0].Alert
	if steps := strings.Join(blind.Runbook, "\n"); !strings.Contains(steps, "DNS lookup failed") {
		t.Errorf("grouped guard-blind runbook:\n%s", steps)
	}
}
