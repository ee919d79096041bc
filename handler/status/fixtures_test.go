package status

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/reconcile"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// Project ids of the fixtures, one per state.
const (
	pHealthy  = "64a0c0ffee00000000000001"
	pWarning  = "64a0c0ffee00000000000002"
	pCritical = "64a0c0ffee00000000000003"
	pUnknown  = "64a0c0ffee00000000000004"
)

// Secrets planted in the fixtures; none may reach the page.
const (
	secretToken   = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2Vu.sig"
	secretWebhook = "https://hooks.example.test/services/T000/B000/XXXXsecretXXXX"
	hostile       = `<script>alert("pwned")</script><img src=x onerror=alert(1)>`
)

var fixtureNow = time.Date(2026, 3, 2, 10, 30, 0, 0, time.UTC)

func ptr[T any](v T) *T { return &v }

func vaultOf(name string) resource.ID {
	return resource.ID{SubscriptionID: "00000000-1111-2222-3333-444444444444", ResourceGroup: "rg-atlas-ear", Name: name}
}

func snapshot(project string, v resource.ID, key vault.Key, eps []atlas.PrivateEndpoint, conns []vault.Connection, clusters []atlas.Cluster) plan.Snapshot {
	valid := true
	return plan.Snapshot{
		ProjectID: project,
		Config: &atlas.AzureKeyVault{
			AzureEnvironment: "AZURE", Enabled: true, KeyVaultName: v.Name, ResourceGroupName: v.ResourceGroup,
			SubscriptionID: v.SubscriptionID, RequirePrivateNetworking: true, Valid: &valid,
			KeyIdentifier: "https://" + v.Name + ".vault.azure.net/keys/" + key.Name + "/" + key.Version,
		},
		Vault: v, Endpoints: eps, Clusters: clusters,
		VaultState:  &vault.Vault{Found: true, EnablePurgeProtection: true, EnableSoftDelete: true},
		Connections: conns, Key: &key,
	}
}

// docFor runs the real plan on s (observe mode) and stores the document the
// reconciler would write.
func docFor(t testing.TB, s plan.Snapshot, at time.Time) reconcile.Doc {
	t.Helper()
	res := plan.Plan(s, plan.Memory{}, plan.DefaultPolicy(plan.ModeObserve), at)
	sum := &reconcile.Summary{
		At: at, Mode: plan.ModeObserve, DurationMS: 180, AtlasCalls: 3, ARMCalls: 4,
		Vault: s.Vault.String(), Key: s.Key, Endpoints: s.Endpoints, Connections: s.Connections,
		Clusters: s.Clusters, Decisions: res.Decisions, Errors: s.Errors,
	}
	if s.Config != nil {
		sum.KeyIdentifier, sum.Valid, sum.RequirePrivateNetworking = s.Config.KeyIdentifier, s.Config.Valid, s.Config.RequirePrivateNetworking
	}
	if s.VaultState != nil {
		sum.VaultFound, sum.Hold = ptr(s.VaultState.Found), s.VaultState.Hold()
	}
	return reconcile.Doc{ProjectID: s.ProjectID, Vault: s.Vault.String(), Memory: res.Memory, Summary: sum, Updated: at}
}

func put(t testing.TB, st state.Store, d reconcile.Doc) {
	t.Helper()
	data, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(t.Context(), reconcile.ProjectKey(d.ProjectID), data, "", nil); err != nil {
		t.Fatal(err)
	}
}

// fixtureStore holds a healthy, a warning and a critical project (pUnknown
// has no document); the critical one carries planted markup and secrets.
func fixtureStore(t testing.TB) *state.Memory { return fixtures(t, true) }

// fixtures builds the store; without planted the critical project is what a
// person would really see (the README's picture).
func fixtures(t testing.TB, planted bool) *state.Memory {
	t.Helper()
	st := state.NewMemory()
	at := fixtureNow.Add(-2 * time.Minute)

	// Healthy: one endpoint active and approved, one asking (observe mode
	// would approve it: info only).
	hv := vaultOf("kv-atlas-prod")
	put(t, st, docFor(t, snapshot(pHealthy, hv,
		vault.Key{Found: true, Name: "atlas-ear", Version: "0a1b2c3d4e5f", Enabled: true, Expires: ptr(fixtureNow.Add(200 * 24 * time.Hour)), Latest: "0a1b2c3d4e5f", LatestEnabled: true},
		[]atlas.PrivateEndpoint{
			{ID: "65e000000000000000000a01", RegionName: "EUROPE_WEST", Status: atlas.StatusActive, PrivateEndpointConnectionName: "atlas-pe-westeurope-1a2b"},
			{ID: "65e000000000000000000a02", RegionName: "US_EAST_2", Status: atlas.StatusPendingAcceptance, PrivateEndpointConnectionName: "atlas-pe-eastus2-3c4d"},
		},
		[]vault.Connection{
			{Name: "atlas-pe-westeurope-1a2b", Status: vault.StatusApproved, ProvisioningState: "Succeeded"},
			{Name: "atlas-pe-eastus2-3c4d", Status: vault.StatusPending, ProvisioningState: "Succeeded"},
		},
		[]atlas.Cluster{{Name: "orders", EncryptionAtRestProvider: "AZURE", StateName: "IDLE"}, {Name: "analytics", EncryptionAtRestProvider: "AZURE", StateName: "IDLE"}},
	), at))

	// Warning: the key expires in 10 days and a stranger's connection waits.
	wv := vaultOf("kv-atlas-staging")
	put(t, st, docFor(t, snapshot(pWarning, wv,
		vault.Key{Found: true, Name: "atlas-ear", Version: "9f8e7d6c", Enabled: true, Expires: ptr(fixtureNow.Add(10*24*time.Hour + time.Hour)), Latest: "9f8e7d6c", LatestEnabled: true},
		[]atlas.PrivateEndpoint{{ID: "65e000000000000000000b01", RegionName: "EUROPE_WEST", Status: atlas.StatusActive, PrivateEndpointConnectionName: "atlas-pe-westeurope-5e6f"}},
		[]vault.Connection{
			{Name: "atlas-pe-westeurope-5e6f", Status: vault.StatusApproved},
			{Name: "somebody-elses-endpoint", Status: vault.StatusPending, PrivateEndpointID: "/subscriptions/9999/resourceGroups/x/providers/Microsoft.Network/privateEndpoints/pe-x"},
		},
		[]atlas.Cluster{{Name: "staging", EncryptionAtRestProvider: "AZURE", StateName: "IDLE"}},
	), at))

	// Critical: the key is disabled, the EAR cluster paused, the
	// connections unreadable (403), and someone planted markup in an alert.
	cv := vaultOf("kv-atlas-payments")
	cs := snapshot(pCritical, cv,
		vault.Key{Found: true, Name: "atlas-ear", Version: "77aa88bb", Enabled: false, Latest: "99cc00dd", LatestEnabled: true},
		[]atlas.PrivateEndpoint{{ID: "65e000000000000000000c01", RegionName: "EUROPE_NORTH", Status: atlas.StatusPendingRecreation, PrivateEndpointConnectionName: "atlas-pe-northeurope-7a8b"}},
		nil,
		[]atlas.Cluster{{Name: "payments", EncryptionAtRestProvider: "AZURE", Paused: true, StateName: "IDLE"}, {Name: "scratch", EncryptionAtRestProvider: "NONE", StateName: "IDLE"}},
	)
	cs.Errors = []plan.SourceError{{
		Source:     plan.SourceConnections,
		Message:    "list connections: forbidden (ARM AuthorizationFailed)",
		Permission: vault.ActionConnectionsRead,
	}}
	if !planted {
		put(t, st, docFor(t, cs, at))
		return st
	}
	cs.Errors[0].Message += " Authorization: Bearer " + secretToken + " at https://example.blob.core.windows.net/x?sv=2024&sig=" + secretToken
	cd := docFor(t, cs, at)
	cd.Memory.Open["hostile"] = alert.Alert{
		Fingerprint: "hostile", Kind: alert.ConnectionChanged, Severity: alert.Warning, ProjectID: pCritical,
		Subject: "atlas-pe-northeurope-7a8b", Summary: "Connection rejected by " + hostile,
		Actor: "mallory@example.test" + hostile, FirstSeen: at.Add(-time.Hour), LastSeen: at,
	}
	cd.Pending = []reconcile.Delivery{{Sink: "webhook", Attempts: 3, LastError: "POST " + secretWebhook + ": 500", ClaimedBy: "host-1"}}
	put(t, st, cd)
	return st
}
