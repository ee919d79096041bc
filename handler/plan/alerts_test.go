package plan

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/event"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

var active = setEndpointStatus(atlas.StatusActive)

// atlasDown: Atlas unreachable, so its three reads fail with one cause and
// nothing on ARM is read.
var atlasDown = func(s *Snapshot) {
	s.Config, s.Endpoints, s.Clusters, s.Vault, s.VaultState, s.Connections, s.Key = nil, nil, nil, resource.ID{}, nil, nil, nil
	s.Errors = nil
	for _, src := range []Source{SourceEncryptionAtRest, SourcePrivateEndpoints, SourceClusters} {
		s.Errors = append(s.Errors, SourceError{Source: src, Service: "atlas", Cause: "cannot reach cloud.mongodb.com: DNS lookup failed",
			Message: `Get "https://cloud.mongodb.com/api/atlas/v2/groups/x?token=s3cret": dial tcp: lookup cloud.mongodb.com: no such host`})
	}
}

// TestRaiseKeepResolve: each condition raises exactly the alerts listed,
// keeps them silently while it holds, and resolves every one of them once
// the project is settled() again.
func TestRaiseKeepResolve(t *testing.T) {
	obs := DefaultPolicy(ModeObserve)
	tests := []struct {
		name string
		snap Snapshot
		p    *Policy
		want []string // open alerts (kind:subject:severity), exactly
	}{
		{"healthy key", healthy(), nil, nil},
		{"no expiry", with(healthy(), setKey(func(k *vault.Key) { k.Expires = nil })), nil, nil},
		{"expires in 31 days", with(healthy(), setKey(func(k *vault.Key) { k.Expires = tp(now.Add(31 * day)) })), nil, nil},
		{"expires in 29 days", with(healthy(), setKey(func(k *vault.Key) { k.Expires = tp(now.Add(29 * day)) })), nil, []string{"key-expires-soon:ear-key/v1:warning"}},
		{"expires in exactly 30 days", with(healthy(), setKey(func(k *vault.Key) { k.Expires = tp(now.Add(30 * day)) })), nil, []string{"key-expires-soon:ear-key/v1:warning"}},
		{"zero policy means the default warning", with(healthy(), setKey(func(k *vault.Key) { k.Expires = tp(now.Add(29 * day)) })), &Policy{Mode: ModeEnforce}, []string{"key-expires-soon:ear-key/v1:warning"}},
		{"expires now", with(healthy(), setKey(func(k *vault.Key) { k.Expires = tp(now) })), nil, []string{"key-expired:ear-key/v1:critical"}},
		{"expired yesterday", with(healthy(), setKey(func(k *vault.Key) { k.Expires = tp(now.Add(-day)) })), nil, []string{"key-expired:ear-key/v1:critical"}},
		{"not yet valid", with(healthy(), setKey(func(k *vault.Key) { k.NotBefore = tp(now.Add(time.Hour)) })), nil, []string{"key-not-yet-valid:ear-key/v1:critical"}},
		{"valid from now", with(healthy(), setKey(func(k *vault.Key) { k.NotBefore = tp(now) })), nil, nil},
		{"disabled", with(healthy(), setKey(func(k *vault.Key) { k.Enabled = false })), nil, []string{"key-disabled:ear-key/v1:critical"}},
		{"missing", with(healthy(), setKey(func(k *vault.Key) { *k = vault.Key{Found: false} })), nil, []string{"key-missing:ear-key/v1:critical"}},
		{"vault missing suppresses key alerts", with(healthy(), func(s *Snapshot) {
			s.VaultState, s.Key, s.Connections = &vault.Vault{Found: false}, &vault.Key{Found: false}, []vault.Connection{}
		}), nil, []string{"vault-missing::critical"}},
		{"rotated in Azure, not in Atlas", with(healthy(), setKey(func(k *vault.Key) { k.Latest = "v2" })), nil, []string{"key-rotated:ear-key/v1:info"}},
		{"rotated and pinned version disabled", with(healthy(), setKey(func(k *vault.Key) { k.Latest, k.Enabled = "v2", false })), nil,
			[]string{"key-disabled:ear-key/v1:critical", "key-rotated:ear-key/v1:critical"}},
		{"newer version exists but is disabled", with(healthy(), setKey(func(k *vault.Key) { k.Latest, k.LatestEnabled = "v2", false })), nil, nil},
		{"config invalid", with(healthy(), func(s *Snapshot) { s.Config.Valid = bp(false) }), nil, []string{"config-invalid::critical"}},
		{"config validity not reported", with(healthy(), func(s *Snapshot) { s.Config.Valid = nil }), nil, nil},
		{"EAR clusters paused", with(healthy(), func(s *Snapshot) {
			s.Clusters = []atlas.Cluster{{Name: "prod", EncryptionAtRestProvider: "AZURE", Paused: true}, {Name: "scratch", Paused: true}}
		}), nil, []string{"clusters-paused::critical"}},
		{"endpoint failed", with(healthy(), setEndpointStatus(atlas.StatusFailed), setConn(connA, vault.StatusApproved)), nil, []string{"endpoint-failed:" + epA + ":critical"}},
		{"connection rejected", with(healthy(), active, setConn(connA, vault.StatusRejected)), nil, []string{"connection-rejected:" + connA + ":warning"}},
		{"connection disconnected", with(healthy(), active, setConn(connA, vault.StatusDisconnected)), nil, []string{"connection-rejected:" + connA + ":warning"}},
		{"active endpoint's connection absent", with(healthy(), active, func(s *Snapshot) { s.Connections = []vault.Connection{} }), nil, []string{"connection-rejected:" + connA + ":warning"}},
		{"pending recreation", with(healthy(), setEndpointStatus(atlas.StatusPendingRecreation), func(s *Snapshot) { s.Connections = []vault.Connection{} }), nil, []string{"connection-rejected:" + connA + ":warning"}},
		{"pending recreation, connections unreadable", with(healthy(), setEndpointStatus(atlas.StatusPendingRecreation), fail(SourceConnections, "503")), nil,
			[]string{"connection-rejected:" + connA + ":warning", "guard-blind:arm:privateEndpointConnections:critical"}},
		{"requesting endpoint's connection absent is not a rejection", with(healthy(), func(s *Snapshot) { s.Connections = []vault.Connection{} }), nil, nil},
		{"foreign pending connection", with(healthy(), addConn("stranger", vault.StatusPending)), nil, []string{"foreign-connection:stranger:warning"}},
		{"observe mode", healthy(), &obs, []string{"would-approve:" + connA + ":info"}},
		{"hold", with(healthy(), func(s *Snapshot) {
			s.VaultState = &vault.Vault{Found: true, EnablePurgeProtection: true, EnableSoftDelete: true, Tags: map[string]string{"atlas-akv-guard": "hold"}}
		}), nil,
			[]string{"approval-held:" + connA + ":warning"}},
		{"access changed", with(healthy(), hints(Hint{Kind: event.AccessPolicyChanged})), nil, []string{"access-changed::warning"}},
		{"access changed, Atlas says invalid", with(healthy(), hints(Hint{Kind: event.RoleAssignmentDeleted}), func(s *Snapshot) { s.Config.Valid = bp(false) }), nil,
			[]string{"access-changed::critical", "config-invalid::critical"}},
		{"key read denied", with(healthy(), fail(SourceKey, "403")), nil, []string{"guard-blind:arm:key:critical"}},
		{"one alert per failing source, unknown sources too", with(healthy(), fail(SourceClusters, "a"), fail(SourceClusters, "b"), fail("atlas:future", "c")), nil,
			[]string{"guard-blind:atlas:clusters:critical", "guard-blind:atlas:future:critical"}},
		{"one alert per service and cause", with(healthy(), atlasDown), nil,
			[]string{"guard-blind:atlas: cannot reach cloud.mongodb.com: DNS lookup failed:critical"}},
		{"reads below a missing vault are not blamed", with(healthy(), fail(SourceConnections, "404"), fail(SourceKey, "404"), func(s *Snapshot) {
			s.VaultState = &vault.Vault{Found: false}
		}), nil, []string{"vault-missing::critical"}},
		{"snapshot vault is another vault", with(healthy(), func(s *Snapshot) { s.Vault = vaultB }), nil, []string{"guard-blind:arm:vault:critical"}},
		{"config names no vault: no ARM source expected", with(healthy(), func(s *Snapshot) {
			s.Config.KeyVaultName, s.Vault, s.VaultState, s.Connections, s.Key = "", resource.ID{}, nil, nil, nil
		}), nil, nil},
		// The rules that apply when the EAR config requires private networking.
		{"covered", covered(), nil, nil},
		{"second Azure region uncovered", with(covered(), addCluster("eu", "AZURE", "EUROPE_WEST", "US_EAST_2")),
			nil, []string{"region-uncovered:EUROPE_WEST:warning"}},
		{"region being created counts as covered", with(covered(), addCluster("eu", "AZURE", "EUROPE_WEST"), func(s *Snapshot) {
			s.Endpoints = append(s.Endpoints, atlas.PrivateEndpoint{ID: epB, RegionName: "EUROPE_WEST", Status: atlas.StatusInitiating})
		}), nil, nil},
		{"endpoint Atlas recreates still covers its region", with(covered(), func(s *Snapshot) { s.Endpoints[0].Status = atlas.StatusPendingRecreation }),
			nil, []string{"connection-rejected:" + connA + ":warning", "no-private-endpoint::critical"}},
		{"failed endpoint does not cover", with(covered(), func(s *Snapshot) { s.Endpoints[0].Status = atlas.StatusFailed }),
			nil, []string{"endpoint-failed:" + epA + ":critical", "no-private-endpoint::critical"}},
		{"no endpoint at all", with(covered(), func(s *Snapshot) { s.Endpoints = []atlas.PrivateEndpoint{} }),
			nil, []string{"no-private-endpoint::critical"}},
		{"non-EAR clusters need no endpoint", with(covered(), func(s *Snapshot) {
			s.Endpoints, s.Clusters[0].EncryptionAtRestProvider = []atlas.PrivateEndpoint{}, "NONE"
		}), nil, nil},
		{"multi-cloud", with(covered(), addCluster("mc", "AZURE", "US_EAST_2", "AWS:US_EAST_1")),
			nil, []string{"unsupported-cluster:mc:warning"}},
		{"AWS only", with(covered(), addCluster("aws", "AZURE", "AWS:US_EAST_1")),
			nil, []string{"unsupported-cluster:aws:warning"}},
		{"AWS-only EAR clusters and no endpoint: unsupported, and no endpoint in Azure would help", with(covered(), func(s *Snapshot) {
			s.Endpoints, s.Clusters = []atlas.PrivateEndpoint{}, nil
		}, addCluster("aws", "AZURE", "AWS:US_EAST_1")), nil, []string{"unsupported-cluster:aws:warning"}},
		{"AWS without Azure keys is fine", with(covered(), addCluster("aws", "AWS", "AWS:US_EAST_1")), nil, nil},
		{"public networking: coverage rules off", with(covered(), addCluster("mc", "AZURE", "EUROPE_WEST", "AWS:US_EAST_1"), func(s *Snapshot) {
			s.Config.RequirePrivateNetworking = false
		}), nil, nil},
		{"purge protection off", with(covered(), func(s *Snapshot) { s.VaultState.EnablePurgeProtection = false }),
			nil, []string{"vault-purge-unprotected::warning"}},
		{"soft delete off", with(covered(), func(s *Snapshot) { s.VaultState.EnableSoftDelete = false }),
			nil, []string{"vault-purge-unprotected::warning"}},
		{"purge rule ignores a vault EAR does not use", with(covered(), func(s *Snapshot) {
			s.VaultState.EnablePurgeProtection, s.Config.Enabled = false, false
		}), nil, nil},
		{"secret in 31 days", with(covered(), secret(31*day, "setting")), nil, nil},
		{"secret in exactly 30 days", with(covered(), secret(30*day, "setting")), nil, []string{"app-secret-expiring:app-1:warning"}},
		{"secret expires now", with(covered(), secret(0, "setting")), nil, []string{"app-secret-expired:app-1:critical"}},
		{"secret read failed: carried, blind", with(covered(), secret(0, AppSecretFromGraph), func(s *Snapshot) {
			s.Errors = append(s.Errors, SourceError{Source: SourceGraph, Message: "403", Permission: "Application.Read.All"})
		}), nil, []string{"guard-blind:graph:application:critical"}},
		// Atlas's own EAR alert configurations.
		{"Atlas's invalid-config alert disabled", with(covered(), alertCfgs(EventConfigNoLongerValid, false, false)),
			nil, []string{"atlas-ear-alerts-off:" + EventConfigNoLongerValid + ":info"}},
		{"network-denied alert absent", with(covered(), alertCfgs(EventKMSNetworkAccessDenied)),
			nil, []string{"atlas-ear-alerts-off:" + EventKMSNetworkAccessDenied + ":info"}},
		{"one enabled configuration of the type is enough", with(covered(), alertCfgs(EventKMSNetworkAccessDenied, false, true)), nil, nil},
		{"network-denied alert not wanted without private networking", with(covered(), alertCfgs(EventKMSNetworkAccessDenied), func(s *Snapshot) {
			s.Config.RequirePrivateNetworking = false
		}), nil, nil},
		{"invalid-config alert wanted without private networking too", with(covered(), alertCfgs(EventConfigNoLongerValid), func(s *Snapshot) {
			s.Config.RequirePrivateNetworking = false
		}), nil, []string{"atlas-ear-alerts-off:" + EventConfigNoLongerValid + ":info"}},
		{"neither wanted while EAR is off", with(covered(), alertCfgs(EventConfigNoLongerValid), alertCfgs(EventKMSNetworkAccessDenied), func(s *Snapshot) {
			s.Config.Enabled = false
		}), nil, nil},
		{"alert configurations unreadable: blind, nothing else", with(covered(), alertCfgs(EventConfigNoLongerValid), fail(SourceAlertConfigs, "503")),
			nil, []string{"guard-blind:atlas:alertConfigs:critical"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := enforce()
			if tt.p != nil {
				p = *tt.p
			}
			r1 := Plan(tt.snap, Memory{}, p, now)
			if got := openKinds(r1.Memory); !slices.Equal(got, tt.want) {
				t.Fatalf("open = %v, want %v", got, tt.want)
			}
			raised, resolved := make([]string, len(tt.want)), make([]string, len(tt.want))
			for i, w := range tt.want {
				kind := w[:strings.IndexByte(w, ':')]
				raised[i], resolved[i] = kind+"/raised", kind+"/resolved"
			}
			slices.Sort(raised)
			slices.Sort(resolved)
			for _, a := range r1.Memory.Open {
				if len(a.Runbook) == 0 || a.Summary == "" {
					t.Errorf("%s: no runbook or summary", a.Kind)
				}
			}
			run(t, p, step{0, tt.snap, raised}, step{time.Minute, tt.snap, nil})
			// Nothing but guard-blind resolves while every source is unreadable.
			blind := Plan(with(tt.snap, atlasDown, fail(SourceGraph, "down")), r1.Memory, p, now.Add(time.Minute))
			for _, n := range blind.Notices {
				if n.Action == alert.Resolved && n.Alert.Kind != alert.GuardBlind {
					t.Errorf("%s resolved while blind", n.Alert.Kind)
				}
			}
			if !strings.HasPrefix(tt.name, "access changed") { // resolves after AccessChangeSettle instead
				run(t, p, step{0, tt.snap, raised}, step{time.Minute, covered(), resolved})
			}
		})
	}
}

// TestAlertContent: what an alert says (details, actor from events, scrubbed
// text), by fingerprint.
func TestAlertContent(t *testing.T) {
	rejectedBy := func(object string) func(*Snapshot) {
		return hints(Hint{Kind: event.ConnectionChanged, Actor: "eve@contoso.com", Object: object, EventID: "evt-9", Time: now.Add(-30 * time.Second)})
	}
	blindKey := func(s *Snapshot) {
		s.Key = nil
		s.Errors = []SourceError{{Source: SourceKey, Message: "403 Forbidden: Authorization: Bearer eyJhbGciOi.secret.sig; url ...?sig=abc123&x=1", Permission: "Microsoft.KeyVault/vaults/keys/read"}}
	}
	cause := "atlas: cannot reach cloud.mongodb.com: DNS lookup failed"
	tests := []struct {
		name           string
		snap           Snapshot
		kind           alert.Kind
		subject        string
		want           map[string]string // details, plus "actor"
		summary, never string
	}{
		{"key expires soon, with its event", with(healthy(), setKey(func(k *vault.Key) { k.Expires = tp(now.Add(10 * day)) }),
			hints(Hint{Kind: event.KeyNearExpiry, Object: "ear-key", EventID: "evt-1"})),
			alert.KeyExpiresSoon, "ear-key/v1", map[string]string{"expires": "2026-03-20T12:00:00Z", "eventId": "evt-1"}, "10 days", ""},
		{"vault deleted, by whom", with(healthy(), func(s *Snapshot) { s.VaultState, s.Key, s.Connections = &vault.Vault{}, nil, nil },
			hints(Hint{Kind: event.VaultChanged, Actor: "bob@example.com"})), alert.VaultMissing, "", map[string]string{"actor": "bob@example.com"}, "kv-atlas-a", ""},
		{"paused clusters listed", with(healthy(), func(s *Snapshot) {
			s.Clusters = []atlas.Cluster{{Name: "prod", EncryptionAtRestProvider: "AZURE", Paused: true}, {Name: "analytics", EncryptionAtRestProvider: "AZURE", Paused: true},
				{Name: "scratch", EncryptionAtRestProvider: "NONE", Paused: true}, {Name: "reporting", EncryptionAtRestProvider: "AZURE"}}
		}), alert.ClustersPaused, "", map[string]string{"clusters": "analytics,prod", "count": "2"}, "", ""},
		{"endpoint failed with Atlas's message", with(healthy(), setEndpointStatus(atlas.StatusFailed)), alert.EndpointFailed, epA,
			map[string]string{"errorMessage": "boom", "region": "US_EAST_2"}, "boom", ""},
		{"rejected, by whom", with(healthy(), active, setConn(connA, vault.StatusRejected), rejectedBy(connA)), alert.ConnectionChanged, connA,
			map[string]string{"actor": "eve@contoso.com", "eventId": "evt-9", "connectionStatus": "Rejected", "endpointId": epA}, "", ""},
		{"rejected, event names the resource ID", with(healthy(), active, setConn(connA, vault.StatusRejected), rejectedBy(vaultA.String()+"/privateEndpointConnections/"+connA)),
			alert.ConnectionChanged, connA, map[string]string{"actor": "eve@contoso.com"}, "", ""},
		{"rejected, event about another connection", with(healthy(), active, setConn(connA, vault.StatusRejected), rejectedBy(connA+"-other")),
			alert.ConnectionChanged, connA, map[string]string{"actor": "", "connectionStatus": "Rejected"}, "", ""},
		{"active endpoint's connection absent", with(healthy(), active, func(s *Snapshot) { s.Connections = []vault.Connection{} }),
			alert.ConnectionChanged, connA, map[string]string{"connectionStatus": "absent"}, "", ""},
		{"foreign look-alike", with(healthy(), addConn(strings.ToUpper(connA), vault.StatusPending)), alert.ForeignConnection, strings.ToUpper(connA),
			map[string]string{"similarTo": connA, "status": "Pending"}, "", ""},
		{"blind with a permission, scrubbed", with(healthy(), blindKey), alert.GuardBlind, string(SourceKey),
			map[string]string{"permission": "Microsoft.KeyVault/vaults/keys/read"}, "Microsoft.KeyVault/vaults/keys/read", "eyJhbGciOi"},
		{"blind by cause names the reads, not the raw error", with(healthy(), atlasDown), alert.GuardBlind, cause,
			map[string]string{"reads": "atlas:clusters,atlas:encryptionAtRest,atlas:privateEndpoints", "service": "atlas", "error": ""}, "DNS lookup failed", "s3cret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, ok := hasOpen(Plan(tt.snap, Memory{}, enforce(), now).Memory, tt.kind, tt.subject)
			if !ok {
				t.Fatalf("no %s:%s open", tt.kind, tt.subject)
			}
			for k, v := range tt.want {
				if got := map[bool]string{true: a.Actor, false: a.Details[k]}[k == "actor"]; got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			all := a.Summary + " " + strings.Join(slices.Collect(maps.Values(a.Details)), " ")
			if !strings.Contains(a.Summary, tt.summary) || (tt.never != "" && strings.Contains(all, tt.never)) || a.Vault != vaultA.String() && tt.kind != alert.GuardBlind {
				t.Errorf("alert %+v", a)
			}
		})
	}
}

// Alerts whose source is unreadable are carried forward unchanged: neither
// raised nor resolved.
func TestCarryForwardWhileBlind(t *testing.T) {
	troubledMem := Plan(troubled(), Memory{}, enforce(), now).Memory
	for _, tt := range []struct {
		name string
		snap Snapshot
		keep []alert.Kind
	}{
		{"connections unreadable", with(healthy(), fail(SourceConnections, "503")), []alert.Kind{alert.ForeignConnection, alert.ConnectionChanged}},
		{"endpoints unreadable", with(healthy(), fail(SourcePrivateEndpoints, "503"), func(s *Snapshot) { s.Connections = []vault.Connection{} }),
			[]alert.Kind{alert.ForeignConnection, alert.ConnectionChanged, alert.EndpointFailed}},
		{"config unreadable", with(healthy(), fail(SourceEncryptionAtRest, "401")),
			[]alert.Kind{alert.ForeignConnection, alert.ConfigInvalid, alert.AccessChanged, alert.KeyDisabled, alert.KeyRotated}},
		{"snapshot vault is another vault", with(healthy(), func(s *Snapshot) { s.Vault = vaultB }), []alert.Kind{alert.ForeignConnection, alert.KeyDisabled}},
		{"clusters unreadable", with(healthy(), fail(SourceClusters, "429")), []alert.Kind{alert.ClustersPaused}},
		{"key unreadable", with(healthy(), fail(SourceKey, "403")), []alert.Kind{alert.KeyDisabled, alert.KeyExpiresSoon}},
		{"vault missing", with(healthy(), func(s *Snapshot) { s.VaultState, s.Key, s.Connections = &vault.Vault{}, nil, nil }),
			[]alert.Kind{alert.KeyDisabled, alert.KeyExpiresSoon, alert.ForeignConnection}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := Plan(tt.snap, troubledMem, enforce(), now.Add(time.Minute))
			for _, k := range tt.keep {
				n := 0
				for fp, a := range troubledMem.Open {
					if a.Kind == k {
						n++
						if got, ok := r.Memory.Open[fp]; !ok || !got.LastSeen.Equal(a.LastSeen) {
							t.Errorf("%s:%s not carried forward unchanged", k, a.Subject)
						}
					}
				}
				if n == 0 {
					t.Fatalf("precondition: no %s open", k)
				}
			}
			if len(r.Approvals) != 0 && tt.name != "clusters unreadable" && tt.name != "key unreadable" {
				t.Errorf("approved while blind: %+v", r.Approvals)
			}
		})
	}
	// Each blind guard-blind alert is carried while its read is not attempted.
	run(t, enforce(),
		step{0, with(healthy(), func(s *Snapshot) { s.VaultState = nil }), []string{"guard-blind/raised"}},
		step{time.Minute, with(healthy(), func(s *Snapshot) { s.Config, s.VaultState = nil, nil }), []string{"guard-blind/raised"}},
		step{2 * time.Minute, healthy(), []string{"guard-blind/resolved", "guard-blind/resolved"}})
	// Atlas down: one alert; still failing for one read keeps it; a failed
	// write reported as a source resolves once it stops failing.
	run(t, enforce(),
		step{0, with(healthy(), atlasDown), []string{"guard-blind/raised"}},
		step{time.Minute, with(settled(), func(s *Snapshot) {
			s.Config, s.Vault, s.Errors = nil, resource.ID{}, with(healthy(), atlasDown).Errors[:1]
		}), nil},
		step{2 * time.Minute, with(settled(), fail("arm:approve", "409")), []string{"guard-blind/raised", "guard-blind/resolved"}},
		step{3 * time.Minute, with(settled(), fail("arm:approve", "409")), nil},
		step{4 * time.Minute, settled(), []string{"guard-blind/resolved"}})
}

func TestEndpointStuck(t *testing.T) {
	moved := with(healthy(), setEndpointStatus(atlas.StatusInitiating))
	rs := run(t, enforce(),
		step{0, healthy(), nil},
		step{30 * time.Minute, healthy(), nil}, // exactly StuckAfter: not yet
		step{30*time.Minute + time.Second, healthy(), []string{"endpoint-stuck/raised"}},
		step{32 * time.Minute, moved, []string{"endpoint-stuck/resolved"}}, // a status change resets since
		step{62 * time.Minute, moved, nil},
		step{63 * time.Minute, with(healthy(), fail(SourcePrivateEndpoints, "x")), []string{"guard-blind/raised"}},
		step{64 * time.Minute, with(settled(), func(s *Snapshot) { s.Endpoints = []atlas.PrivateEndpoint{} }), []string{"guard-blind/resolved"}},
	)
	if a, _ := hasOpen(rs[2].Memory, alert.EndpointStuck, epA); a.Severity != alert.Warning || a.Details["since"] != "2026-03-10T12:00:00Z" {
		t.Errorf("stuck alert %+v", a)
	}
	if got := rs[3].Memory.Endpoints[epA]; got.Status != atlas.StatusInitiating || !got.Since.Equal(now.Add(32*time.Minute)) {
		t.Errorf("since not reset: %+v", got)
	}
	if got := rs[5].Memory.Endpoints[epA]; !got.Since.Equal(now.Add(32 * time.Minute)) {
		t.Errorf("unreadable endpoints lost the memory: %+v", rs[5].Memory.Endpoints)
	}
	if len(rs[6].Memory.Endpoints) != 0 {
		t.Errorf("gone endpoints remembered: %+v", rs[6].Memory.Endpoints)
	}
}

func TestAccessChanged(t *testing.T) {
	h := hints(Hint{Kind: event.RoleAssignmentDeleted, Actor: "admin@contoso.com", EventID: "evt-ra", Time: now})
	invalid := func(s *Snapshot) { s.Config.Valid = bp(false) }
	rs := run(t, enforce(),
		step{0, with(settled(), h), []string{"access-changed/raised"}},
		step{20*time.Minute - time.Second, settled(), nil}, // open until settle
		step{20 * time.Minute, settled(), []string{"access-changed/resolved"}})
	if a, _ := hasOpen(rs[1].Memory, alert.AccessChanged, ""); a.Actor != "admin@contoso.com" || a.Details["eventKind"] != string(event.RoleAssignmentDeleted) {
		t.Errorf("alert %+v", a)
	}
	run(t, enforce(), // a new hint restarts settle
		step{0, with(settled(), h), []string{"access-changed/raised"}},
		step{15 * time.Minute, with(settled(), h), nil},
		step{25 * time.Minute, settled(), nil})
	run(t, enforce(), // escalates while Atlas says invalid, stays open
		step{0, with(settled(), h), []string{"access-changed/raised"}},
		step{16 * time.Minute, with(settled(), invalid), []string{"access-changed/escalated", "config-invalid/raised"}},
		step{2 * time.Hour, with(settled(), invalid), nil})
	run(t, enforce(), // validity unknown: carried forward
		step{0, with(settled(), h), []string{"access-changed/raised"}},
		step{time.Hour, with(settled(), fail(SourceEncryptionAtRest, "401")), []string{"guard-blind/raised"}})
}

// Open alerts keep their actor and event details when a later reconcile has
// no event; severity changes escalate (up) or stay silent (down); rotating
// keyIdentifier in Atlas resolves the old version's alerts.
func TestAlertLifecycle(t *testing.T) {
	rejected := with(healthy(), active, setConn(connA, vault.StatusRejected))
	rs := run(t, enforce(),
		step{0, with(rejected, hints(Hint{Kind: event.ConnectionChanged, Actor: "eve", Object: connA, EventID: "e1"})), []string{"connection-rejected/raised"}},
		step{time.Minute, rejected, nil})
	if a, _ := hasOpen(rs[1].Memory, alert.ConnectionChanged, connA); a.Actor != "eve" || a.Details["eventId"] != "e1" {
		t.Errorf("actor lost: %+v", a)
	}
	rotated := with(healthy(), setKey(func(k *vault.Key) { k.Latest = "v2" }))
	run(t, enforce(),
		step{0, rotated, []string{"key-rotated/raised"}},
		step{time.Minute, with(rotated, setKey(func(k *vault.Key) { k.Enabled = false })), []string{"key-disabled/raised", "key-rotated/escalated"}},
		step{2 * time.Minute, rotated, []string{"key-disabled/resolved"}}, // de-escalation is silent
		step{3 * time.Minute, with(rotated, setKey(func(k *vault.Key) { k.Enabled = false })), []string{"key-disabled/raised", "key-rotated/escalated"}},
		step{4 * time.Minute, with(healthy(), func(s *Snapshot) {
			s.Config.KeyIdentifier = "https://kv-atlas-a.vault.azure.net/keys/ear-key/v2"
			s.Key = &vault.Key{Found: true, Name: "ear-key", Version: "v2", Enabled: true, Latest: "v2", LatestEnabled: true}
		}), []string{"key-disabled/resolved", "key-rotated/resolved"}})
}

// TestStateUnreadable: raised, with the scrubbed error, in the run that kept
// the project's document aside; resolved by the next run, which read it.
func TestStateUnreadable(t *testing.T) {
	bad := with(settled(), func(s *Snapshot) {
		s.Errors = []SourceError{{Source: SourceState, Message: "invalid character 'x' near token=s3cret"}}
	})
	rs := run(t, enforce(), step{0, bad, []string{"state-unreadable/raised"}}, step{time.Minute, settled(), []string{"state-unreadable/resolved"}})
	if a := rs[0].Notices[0].Alert; a.Severity != alert.Warning || strings.Contains(a.Details["error"], "s3cret") || len(a.Runbook) == 0 {
		t.Errorf("%+v", a)
	}
}
