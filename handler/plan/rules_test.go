package plan

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
)

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
// US_EAST_2, where endpoint epA is ACTIVE.
func covered() Snapshot {
	return with(settled(), func(s *Snapshot) {
		s.Config.RequirePrivateNetworking = true
		s.Clusters[0].RegionConfigs = azure("US_EAST_2")
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

func TestNewRules(t *testing.T) {
	tests := []struct {
		name string
		snap Snapshot
		want []string // open alerts (kind:subject:severity), exactly
	}{
		{"covered", covered(), nil},
		{"second Azure region uncovered", with(covered(), addCluster("eu", "AZURE", "EUROPE_WEST", "US_EAST_2")),
			[]string{"region-uncovered:EUROPE_WEST:warning"}},
		{"region being created counts as covered", with(covered(), addCluster("eu", "AZURE", "EUROPE_WEST"), func(s *Snapshot) {
			s.Endpoints = append(s.Endpoints, atlas.PrivateEndpoint{ID: epB, RegionName: "EUROPE_WEST", Status: atlas.StatusInitiating})
		}), nil},
		{"endpoint Atlas recreates still covers its region", with(covered(), func(s *Snapshot) { s.Endpoints[0].Status = atlas.StatusPendingRecreation }),
			[]string{"connection-rejected:" + connA + ":warning", "no-private-endpoint::critical"}},
		{"failed endpoint does not cover", with(covered(), func(s *Snapshot) { s.Endpoints[0].Status = atlas.StatusFailed }),
			[]string{"endpoint-failed:" + epA + ":critical", "no-private-endpoint::critical"}},
		{"no endpoint at all", with(covered(), func(s *Snapshot) { s.Endpoints = []atlas.PrivateEndpoint{} }),
			[]string{"no-private-endpoint::critical"}},
		{"non-EAR clusters need no endpoint", with(covered(), func(s *Snapshot) {
			s.Endpoints, s.Clusters[0].EncryptionAtRestProvider = []atlas.PrivateEndpoint{}, "NONE"
		}), nil},
		{"multi-cloud", with(covered(), addCluster("mc", "AZURE", "US_EAST_2", "AWS:US_EAST_1")),
			[]string{"unsupported-cluster:mc:warning"}},
		{"AWS only", with(covered(), addCluster("aws", "AZURE", "AWS:US_EAST_1")),
			[]string{"unsupported-cluster:aws:warning"}},
		{"AWS without Azure keys is fine", with(covered(), addCluster("aws", "AWS", "AWS:US_EAST_1")), nil},
		{"public networking: coverage rules off", with(covered(), addCluster("mc", "AZURE", "EUROPE_WEST", "AWS:US_EAST_1"), func(s *Snapshot) {
			s.Config.RequirePrivateNetworking = false
		}), nil},
		{"purge protection off", with(covered(), func(s *Snapshot) { s.VaultState.EnablePurgeProtection = false }),
			[]string{"vault-purge-unprotected::warning"}},
		{"soft delete off", with(covered(), func(s *Snapshot) { s.VaultState.EnableSoftDelete = false }),
			[]string{"vault-purge-unprotected::warning"}},
		{"purge rule ignores a vault EAR does not use", with(covered(), func(s *Snapshot) {
			s.VaultState.EnablePurgeProtection, s.Config.Enabled = false, false
		}), nil},
		{"secret in 31 days", with(covered(), secret(31*day, "setting")), nil},
		{"secret in exactly 30 days", with(covered(), secret(30*day, "setting")), []string{"app-secret-expiring:app-1:warning"}},
		{"secret expires now", with(covered(), secret(0, "setting")), []string{"app-secret-expired:app-1:critical"}},
		{"secret read failed: carried, blind", with(covered(), secret(0, AppSecretFromGraph), func(s *Snapshot) {
			s.Errors = append(s.Errors, SourceError{Source: SourceGraph, Message: "403", Permission: "Application.Read.All"})
		}), []string{"guard-blind:graph:application:critical"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Plan(tt.snap, Memory{}, enforce(), now)
			if got := openKinds(r.Memory); !slices.Equal(got, tt.want) {
				t.Errorf("open = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestNewRulesLifecycle(t *testing.T) {
	for _, tt := range []struct {
		kind  alert.Kind
		raise func(*Snapshot)
	}{
		{alert.RegionUncovered, addCluster("eu", "AZURE", "EUROPE_WEST")},
		{alert.UnsupportedCluster, addCluster("mc", "AZURE", "US_EAST_2", "GCP:CENTRAL_US")},
		{alert.NoPrivateEndpoint, func(s *Snapshot) { s.Endpoints[0].Status = atlas.StatusDeleting }},
		{alert.PurgeUnprotected, func(s *Snapshot) { s.VaultState.EnablePurgeProtection = false }},
		{alert.AppSecretExpiring, secret(day, AppSecretFromGraph)},
	} {
		t.Run(string(tt.kind), func(t *testing.T) {
			r1 := Plan(with(covered(), tt.raise), Memory{}, enforce(), now)
			if a, ok := hasOpen(r1.Memory, tt.kind, r1.Notices[0].Alert.Subject); !ok || len(a.Runbook) == 0 || a.Summary == "" ||
				!slices.Equal(tags(r1.Notices), []string{string(tt.kind) + "/raised"}) {
				t.Fatalf("raised %v: %+v", tags(r1.Notices), a)
			}
			if r2 := Plan(with(covered(), tt.raise), r1.Memory, enforce(), now.Add(time.Minute)); len(r2.Notices) != 0 {
				t.Errorf("kept: notices %v, want none", tags(r2.Notices))
			}
			unread := with(covered(), tt.raise, func(s *Snapshot) {
				s.Clusters, s.Endpoints, s.VaultState, s.Errors = nil, nil, nil, []SourceError{{Source: SourceGraph, Message: "down"}}
			})
			if r := Plan(unread, r1.Memory, enforce(), now.Add(time.Minute)); slices.Contains(tags(r.Notices), string(tt.kind)+"/resolved") {
				t.Errorf("resolved while its source was unreadable")
			}
			r3 := Plan(covered(), r1.Memory, enforce(), now.Add(2*time.Minute))
			if !slices.Equal(tags(r3.Notices), []string{string(tt.kind) + "/resolved"}) {
				t.Errorf("resolve: %v", tags(r3.Notices))
			}
		})
	}
}
