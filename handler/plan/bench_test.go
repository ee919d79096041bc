package plan

import (
	"fmt"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// benchSnapshot: 10 Atlas endpoints in mixed states, their 10 connections plus
// 3 foreign pending ones, and 50 clusters (a few paused).
func benchSnapshot() Snapshot {
	s := healthy()
	statuses := []string{atlas.StatusActive, atlas.StatusPendingAcceptance, atlas.StatusInitiating, atlas.StatusActive, atlas.StatusFailed}
	s.Endpoints = s.Endpoints[:0]
	s.Connections = s.Connections[:0]
	for i := range 10 {
		name := fmt.Sprintf("atlas-pe-%02d", i)
		st := statuses[i%len(statuses)]
		s.Endpoints = append(s.Endpoints, atlas.PrivateEndpoint{ID: fmt.Sprintf("ep-%02d", i), RegionName: "US_EAST_2", Status: st, PrivateEndpointConnectionName: name})
		cs := vault.StatusApproved
		if st == atlas.StatusPendingAcceptance || st == atlas.StatusInitiating {
			cs = vault.StatusPending
		}
		s.Connections = append(s.Connections, vault.Connection{Name: name, Status: cs})
	}
	for i := range 3 {
		s.Connections = append(s.Connections, vault.Connection{Name: fmt.Sprintf("foreign-%d", i), Status: vault.StatusPending})
	}
	s.Clusters = nil
	for i := range 50 {
		s.Clusters = append(s.Clusters, atlas.Cluster{ID: fmt.Sprint(i), Name: fmt.Sprintf("cluster-%02d", i), EncryptionAtRestProvider: "AZURE", Paused: i%17 == 0, RegionConfigs: []atlas.RegionConfig{{ProviderName: "AZURE", RegionName: "US_EAST_2"}}})
	}
	return s
}

func BenchmarkPlan(b *testing.B) {
	s := benchSnapshot()
	p := enforce()
	p.RenotifyAfter = time.Hour
	mem := Plan(s, Memory{}, p, now).Memory // steady state: alerts already open
	b.ReportAllocs()
	for b.Loop() {
		_ = Plan(s, mem, p, now.Add(time.Minute))
	}
}

func TestBenchSnapshotShape(t *testing.T) {
	r := Plan(benchSnapshot(), Memory{}, enforce(), now)
	if len(r.Approvals) != 4 { // ep-01, ep-02, ep-06, ep-07
		t.Errorf("approvals %v", approvedNames(r))
	}
	if len(r.Decisions) != 13 {
		t.Errorf("decisions %d", len(r.Decisions))
	}
}
