package plan

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

var now = time.Date(2026, time.March, 10, 12, 0, 0, 0, time.UTC)

const day = 24 * time.Hour

const (
	project = "65f0a1b2c3d4e5f601234567"
	connA   = "atlas-pe-eastus-1"
	connB   = "atlas-pe-westeu-2"
	epA     = "65f0a1b2c3d4e5f6000000a1"
	epB     = "65f0a1b2c3d4e5f6000000b2"
)

var (
	vaultA = resource.ID{SubscriptionID: "11111111-1111-1111-1111-111111111111", ResourceGroup: "rg-ear", Name: "kv-atlas-a"}
	vaultB = resource.ID{SubscriptionID: "22222222-2222-2222-2222-222222222222", ResourceGroup: "rg-other", Name: "kv-attacker-b"}
)

func tp(t time.Time) *time.Time { return &t }
func bp(b bool) *bool           { return &b }

func enforce() Policy { return DefaultPolicy(ModeEnforce) }

// healthy is a project whose Atlas endpoint epA (PENDING_ACCEPTANCE) waits for
// connection connA, Pending on vault A; everything else is fine. Private
// networking is not required here, so the coverage rules stay out of the
// approval and key tests (rules_test.go turns it on).
func healthy() Snapshot {
	return Snapshot{
		ProjectID: project,
		Config: &atlas.AzureKeyVault{
			AzureEnvironment: "AZURE", Enabled: true, KeyIdentifier: "https://kv-atlas-a.vault.azure.net/keys/ear-key/v1",
			KeyVaultName: vaultA.Name, ResourceGroupName: vaultA.ResourceGroup,
			SubscriptionID: vaultA.SubscriptionID, Valid: bp(true),
		},
		Vault: vaultA,
		Endpoints: []atlas.PrivateEndpoint{
			{ID: epA, CloudProvider: "AZURE", RegionName: "US_EAST_2", Status: atlas.StatusPendingAcceptance, PrivateEndpointConnectionName: connA},
		},
		Clusters:   []atlas.Cluster{{ID: "c1", Name: "prod", EncryptionAtRestProvider: "AZURE", StateName: "IDLE"}},
		VaultState: &vault.Vault{Found: true, EnablePurgeProtection: true, EnableSoftDelete: true, Tags: map[string]string{"env": "prod"}},
		Connections: []vault.Connection{
			{Name: connA, ID: vaultA.String() + "/privateEndpointConnections/" + connA, Status: vault.StatusPending},
		},
		Key: &vault.Key{Found: true, Name: "ear-key", Version: "v1", Enabled: true, Expires: tp(now.Add(365 * day)), Latest: "v1", LatestEnabled: true},
	}
}

// settled is healthy() after the approval: endpoint ACTIVE, connection
// Approved. Nothing is pending, so time passing raises nothing by itself.
func settled() Snapshot {
	return with(healthy(), setEndpointStatus(atlas.StatusActive), setConn(connA, vault.StatusApproved))
}

func with(s Snapshot, fns ...func(*Snapshot)) Snapshot {
	for _, f := range fns {
		f(&s)
	}
	return s
}

func setConn(name, status string) func(*Snapshot) {
	return func(s *Snapshot) {
		s.Connections = []vault.Connection{{Name: name, ID: vaultA.String() + "/privateEndpointConnections/" + name, Status: status}}
	}
}

func addConn(name, status string) func(*Snapshot) {
	return func(s *Snapshot) {
		s.Connections = append(slices.Clone(s.Connections), vault.Connection{Name: name, Status: status})
	}
}

func setEndpointStatus(status string) func(*Snapshot) {
	return func(s *Snapshot) {
		s.Endpoints = []atlas.PrivateEndpoint{{ID: epA, RegionName: "US_EAST_2", Status: status, PrivateEndpointConnectionName: connA, ErrorMessage: "boom"}}
	}
}

func setKey(f func(k *vault.Key)) func(*Snapshot) {
	return func(s *Snapshot) {
		k := *s.Key
		f(&k)
		s.Key = &k
	}
}

// fail makes src unreadable (its data nil) with an error message.
func fail(src Source, msg string) func(*Snapshot) {
	return func(s *Snapshot) {
		switch src {
		case SourceEncryptionAtRest:
			s.Config = nil
		case SourcePrivateEndpoints:
			s.Endpoints = nil
		case SourceClusters:
			s.Clusters = nil
		case SourceVault:
			s.VaultState = nil
		case SourceConnections:
			s.Connections = nil
		case SourceKey:
			s.Key = nil
		}
		s.Errors = append(slices.Clone(s.Errors), SourceError{Source: src, Message: msg})
	}
}

func hints(hs ...Hint) func(*Snapshot) { return func(s *Snapshot) { s.Hints = hs } }

// tags renders notices as "kind/action" (sorted) for compact assertions.
func tags(ns []alert.Notice) []string {
	out := make([]string, 0, len(ns))
	for _, n := range ns {
		out = append(out, string(n.Alert.Kind)+"/"+string(n.Action))
	}
	sort.Strings(out)
	return out
}

// openKinds renders the open alerts as "kind:subject:severity" (sorted).
func openKinds(m Memory) []string {
	out := make([]string, 0, len(m.Open))
	for _, a := range m.Open {
		out = append(out, fmt.Sprintf("%s:%s:%s", a.Kind, a.Subject, a.Severity))
	}
	sort.Strings(out)
	return out
}

func hasOpen(m Memory, kind alert.Kind, subject string) (alert.Alert, bool) {
	a, ok := m.Open[Fingerprint(kind, project, subject)]
	return a, ok
}

func verdict(r Result, conn, endpoint string) string {
	for _, d := range r.Decisions {
		if d.Connection == conn && (endpoint == "" || d.EndpointID == endpoint) {
			return d.Verdict
		}
	}
	return "<none>"
}

func approvedNames(r Result) []string {
	var out []string
	for _, a := range r.Approvals {
		out = append(out, a.Connection)
	}
	return out
}

// step is one reconcile of a scenario: the snapshot, when, and exactly the
// notices it must produce ("kind/action", sorted).
type step struct {
	at   time.Duration
	snap Snapshot
	want []string
}

// run plans the steps in order, each on the previous step's memory.
func run(t *testing.T, p Policy, steps ...step) []Result {
	t.Helper()
	var out []Result
	mem := Memory{}
	for i, st := range steps {
		r := Plan(st.snap, mem, p, now.Add(st.at))
		if got := tags(r.Notices); !slices.Equal(got, st.want) {
			t.Errorf("step %d (+%s): notices %v, want %v (open %v)", i, st.at, got, st.want, openKinds(r.Memory))
		}
		out, mem = append(out, r), r.Memory
	}
	return out
}

func azure(regions ...string) []atlas.RegionConfig {
	var out []atlas.RegionConfig
	for _, r := range regions {
		p, n, ok := strings.Cut(r, ":")
		if !ok {
			p, n = "AZURE", r
		}
		out = append(out, atlas.RegionConfig{ProviderName: p, RegionName: n})
	}
	return out
}

// covered is settled() requiring private networking, with cluster prod in
// US_EAST_2, where endpoint epA is ACTIVE, and Atlas's own EAR alerts on.
func covered() Snapshot {
	return with(settled(), func(s *Snapshot) {
		s.Config.RequirePrivateNetworking = true
		s.Clusters[0].RegionConfigs = azure("US_EAST_2")
		s.AlertConfigs = []atlas.AlertConfig{{ID: "ac1", EventTypeName: EventConfigNoLongerValid, Enabled: true}, {ID: "ac2", EventTypeName: EventKMSNetworkAccessDenied, Enabled: true}}
	})
}

func addCluster(name, provider string, regions ...string) func(*Snapshot) {
	return func(s *Snapshot) {
		s.Clusters = append(s.Clusters, atlas.Cluster{Name: name, EncryptionAtRestProvider: provider, RegionConfigs: azure(regions...)})
	}
}

func secret(d time.Duration, from string) func(*Snapshot) {
	return func(s *Snapshot) {
		s.AppSecret = &AppSecret{ClientID: "app-1", Expires: now.Add(d), From: from}
	}
}
