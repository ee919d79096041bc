package plan

import (
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

const day = 24 * time.Hour

func setKey(f func(k *vault.Key)) func(*Snapshot) {
	return func(s *Snapshot) {
		k := *s.Key
		f(&k)
		s.Key = &k
	}
}

func TestKeyAlerts(t *testing.T) {
	tests := []struct {
		name string
		snap Snapshot
		want []string // open alerts (kind:subject:severity), exactly
	}{
		{"healthy key", healthy(), nil},
		{"no expiry", with(healthy(), setKey(func(k *vault.Key) { k.Expires = nil })), nil},
		{"expires in 31 days", with(healthy(), setKey(func(k *vault.Key) { k.Expires = tp(now.Add(31 * day)) })), nil},
		{"expires in 29 days", with(healthy(), setKey(func(k *vault.Key) { k.Expires = tp(now.Add(29 * day)) })),
			[]string{"key-expires-soon:ear-key/v1:warning"}},
		{"expires in exactly 30 days", with(healthy(), setKey(func(k *vault.Key) { k.Expires = tp(now.Add(30 * day)) })),
			[]string{"key-expires-soon:ear-key/v1:warning"}},
		{"expires now", with(healthy(), setKey(func(k *vault.Key) { k.Expires = tp(now) })),
			[]string{"key-expired:ear-key/v1:critical"}},
		{"expired yesterday", with(healthy(), setKey(func(k *vault.Key) { k.Expires = tp(now.Add(-day)) })),
			[]string{"key-expired:ear-key/v1:critical"}},
		{"not yet valid", with(healthy(), setKey(func(k *vault.Key) { k.NotBefore = tp(now.Add(time.Minute)) })),
			[]string{"key-not-yet-valid:ear-key/v1:critical"}},
		{"valid from now", with(healthy(), setKey(func(k *vault.Key) { k.NotBefore = tp(now) })), nil},
		{"disabled", with(healthy(), setKey(func(k *vault.Key) { k.Enabled = false })),
			[]string{"key-disabled:ear-key/v1:critical"}},
		{"missing", with(healthy(), setKey(func(k *vault.Key) { *k = vault.Key{Found: false} })),
			[]string{"key-missing:ear-key/v1:critical"}},
		{"vault missing suppresses key alerts", with(healthy(), func(s *Snapshot) {
			s.VaultState = &vault.Vault{Found: false}
			s.Key = &vault.Key{Found: false}
			s.Connections = []vault.Connection{}
		}), []string{"vault-missing::critical"}},
		{"rotated in Azure, not in Atlas", with(healthy(), setKey(func(k *vault.Key) { k.Latest = "v2" })),
			[]string{"key-rotated:ear-key/v1:info"}},
		{"rotated and pinned version disabled", with(healthy(), setKey(func(k *vault.Key) { k.Latest, k.Enabled = "v2", false })),
			[]string{"key-disabled:ear-key/v1:critical", "key-rotated:ear-key/v1:critical"}},
		{"newer version exists but is disabled", with(healthy(), setKey(func(k *vault.Key) { k.Latest, k.LatestEnabled = "v2", false })), nil},
		{"config invalid", with(healthy(), func(s *Snapshot) { s.Config.Valid = bp(false) }),
			[]string{"config-invalid::critical"}},
		{"config validity not reported", with(healthy(), func(s *Snapshot) { s.Config.Valid = nil }), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Plan(tt.snap, Memory{}, enforce(), now)
			got := slices.DeleteFunc(openKinds(r.Memory), func(s string) bool {
				return strings.HasPrefix(s, "endpoint-") // healthy()'s endpoint is irrelevant here
			})
			if !slices.Equal(got, tt.want) {
				t.Errorf("open = %v, want %v", got, tt.want)
			}
			if len(r.Notices) != len(r.Memory.Open) {
				t.Errorf("want one raised notice per open alert: %v", tags(r.Notices))
			}
		})
	}
}

func TestKeyAlertDetailsAndHints(t *testing.T) {
	s := with(healthy(), setKey(func(k *vault.Key) { k.Expires = tp(now.Add(10 * day)) }), func(s *Snapshot) {
		s.Hints = []Hint{{Kind: event.KeyNearExpiry, Object: "ear-key", EventID: "evt-1", Time: now.Add(-time.Minute)}}
	})
	r := Plan(s, Memory{}, enforce(), now)
	a, ok := hasOpen(r.Memory, alert.KeyExpiresSoon, "ear-key/v1")
	if !ok {
		t.Fatalf("open %v", openKinds(r.Memory))
	}
	if a.Details["expires"] != "2026-03-20T12:00:00Z" || a.Details["eventId"] != "evt-1" || a.Vault != vaultA.String() {
		t.Errorf("details %+v", a)
	}
	if !strings.Contains(a.Summary, "10 days") {
		t.Errorf("summary %q", a.Summary)
	}
}

func TestKeyRotatedEscalatesWhenPinnedDisabled(t *testing.T) {
	s1 := with(healthy(), setKey(func(k *vault.Key) { k.Latest = "v2" }))
	r1 := Plan(s1, Memory{}, enforce(), now)
	if !slices.Equal(tags(r1.Notices), []string{"key-rotated/raised"}) {
		t.Fatalf("first: %v", tags(r1.Notices))
	}
	s2 := with(s1, setKey(func(k *vault.Key) { k.Enabled = false }))
	r2 := Plan(s2, r1.Memory, enforce(), now.Add(time.Minute))
	if want := []string{"key-disabled/raised", "key-rotated/escalated"}; !slices.Equal(tags(r2.Notices), want) {
		t.Fatalf("second: %v, want %v", tags(r2.Notices), want)
	}
	// Atlas rotates keyIdentifier to v2: the v1 alerts resolve.
	s3 := with(healthy(), func(s *Snapshot) {
		s.Config.KeyIdentifier = "https://kv-atlas-a.vault.azure.net/keys/ear-key/v2"
		s.Key = &vault.Key{Found: true, Name: "ear-key", Version: "v2", Enabled: true, Latest: "v2", LatestEnabled: true}
	})
	r3 := Plan(s3, r2.Memory, enforce(), now.Add(2*time.Minute))
	if want := []string{"key-disabled/resolved", "key-rotated/resolved"}; !slices.Equal(tags(r3.Notices), want) {
		t.Fatalf("third: %v, want %v", tags(r3.Notices), want)
	}
}

func TestVaultMissingCarriesKeyAlertsForward(t *testing.T) {
	r1 := Plan(with(healthy(), setKey(func(k *vault.Key) { k.Expires = tp(now.Add(5 * day)) })), Memory{}, enforce(), now)
	if _, ok := hasOpen(r1.Memory, alert.KeyExpiresSoon, "ear-key/v1"); !ok {
		t.Fatal("precondition: key-expires-soon open")
	}
	gone := with(healthy(), func(s *Snapshot) {
		s.VaultState = &vault.Vault{Found: false}
		s.Key, s.Connections = nil, nil
		s.Hints = []Hint{{Kind: event.VaultChanged, Actor: "bob@example.com", Operation: "Microsoft.KeyVault/vaults/delete"}}
	})
	r2 := Plan(gone, r1.Memory, enforce(), now.Add(time.Minute))
	if want := []string{"vault-missing/raised"}; !slices.Equal(tags(r2.Notices), want) {
		t.Fatalf("notices %v, want %v", tags(r2.Notices), want)
	}
	if _, ok := hasOpen(r2.Memory, alert.KeyExpiresSoon, "ear-key/v1"); !ok {
		t.Error("key-expires-soon must be carried forward while the vault is missing")
	}
	if a, _ := hasOpen(r2.Memory, alert.VaultMissing, ""); a.Actor != "bob@example.com" {
		t.Errorf("vault-missing actor %q", a.Actor)
	}
}

func TestClustersPausedThenResumed(t *testing.T) {
	paused := with(healthy(), func(s *Snapshot) {
		s.Clusters = []atlas.Cluster{
			{Name: "prod", EncryptionAtRestProvider: "AZURE", Paused: true},
			{Name: "analytics", EncryptionAtRestProvider: "AZURE", Paused: true},
			{Name: "scratch", EncryptionAtRestProvider: "NONE", Paused: true}, // not EAR: not listed
			{Name: "reporting", EncryptionAtRestProvider: "AZURE"},
		}
	})
	r1 := Plan(paused, Memory{}, enforce(), now)
	n := notice(t, r1.Notices, alert.ClustersPaused, alert.Raised)
	if n.Alert.Severity != alert.Critical || n.Alert.Details["clusters"] != "analytics,prod" || n.Alert.Details["count"] != "2" {
		t.Errorf("alert %+v", n.Alert)
	}
	resumed := healthy()
	r2 := Plan(resumed, r1.Memory, enforce(), now.Add(10*time.Minute))
	res := notice(t, r2.Notices, alert.ClustersPaused, alert.Resolved)
	if res.Alert.ResolvedAt == nil || !res.Alert.ResolvedAt.Equal(now.Add(10*time.Minute)) || !res.Alert.FirstSeen.Equal(now) {
		t.Errorf("resolved alert %+v", res.Alert)
	}
	if _, ok := hasOpen(r2.Memory, alert.ClustersPaused, ""); ok {
		t.Error("resolved alert still open")
	}
}

func TestClustersUnreadableCarriesForward(t *testing.T) {
	paused := with(healthy(), func(s *Snapshot) { s.Clusters[0].Paused = true })
	r1 := Plan(paused, Memory{}, enforce(), now)
	blind := with(healthy(), func(s *Snapshot) {
		s.Clusters = nil
		s.Errors = []SourceError{{Source: SourceClusters, Message: "429"}}
	})
	r2 := Plan(blind, r1.Memory, enforce(), now.Add(time.Minute))
	if want := []string{"guard-blind/raised"}; !slices.Equal(tags(r2.Notices), want) {
		t.Fatalf("notices %v", tags(r2.Notices))
	}
	if got, want := r2.Memory.Open[Fingerprint(alert.ClustersPaused, project, "")], r1.Memory.Open[Fingerprint(alert.ClustersPaused, project, "")]; got.LastSeen != want.LastSeen {
		t.Errorf("carried-forward alert changed: %+v", got)
	}
}

func TestEndpointFailed(t *testing.T) {
	s := with(healthy(), func(s *Snapshot) {
		s.Endpoints = []atlas.PrivateEndpoint{{ID: epB, RegionName: "EUROPE_WEST", Status: atlas.StatusFailed, ErrorMessage: "subnet full", PrivateEndpointConnectionName: connB}}
	})
	r := Plan(s, Memory{}, enforce(), now)
	a, ok := hasOpen(r.Memory, alert.EndpointFailed, epB)
	if !ok || a.Severity != alert.Critical || a.Details["errorMessage"] != "subnet full" || !strings.Contains(a.Summary, "subnet full") {
		t.Fatalf("endpoint-failed = %+v (open %v)", a, openKinds(r.Memory))
	}
	r2 := Plan(healthy(), r.Memory, enforce(), now.Add(time.Minute))
	notice(t, r2.Notices, alert.EndpointFailed, alert.Resolved)
}

func TestEndpointStuck(t *testing.T) {
	p := enforce() // StuckAfter 30m
	first := Plan(healthy(), Memory{}, p, now)
	if got := first.Memory.Endpoints[epA]; got.Status != atlas.StatusPendingAcceptance || !got.Since.Equal(now) {
		t.Fatalf("endpoint memory %+v", got)
	}
	for _, tt := range []struct {
		after time.Duration
		stuck bool
	}{
		{30*time.Minute - time.Second, false},
		{30 * time.Minute, false},
		{30*time.Minute + time.Second, true},
	} {
		t.Run(tt.after.String(), func(t *testing.T) {
			r := Plan(healthy(), first.Memory, p, now.Add(tt.after))
			_, ok := hasOpen(r.Memory, alert.EndpointStuck, epA)
			if ok != tt.stuck {
				t.Fatalf("stuck = %v, want %v", ok, tt.stuck)
			}
			if tt.stuck {
				n := notice(t, r.Notices, alert.EndpointStuck, alert.Raised)
				if n.Alert.Severity != alert.Warning || n.Alert.Details["since"] != "2026-03-10T12:00:00Z" {
					t.Errorf("alert %+v", n.Alert)
				}
			}
		})
	}

	t.Run("status change resets since", func(t *testing.T) {
		stuck := Plan(healthy(), first.Memory, p, now.Add(31*time.Minute))
		if _, ok := hasOpen(stuck.Memory, alert.EndpointStuck, epA); !ok {
			t.Fatal("precondition: stuck")
		}
		moved := with(healthy(), setEndpointStatus(atlas.StatusInitiating))
		r := Plan(moved, stuck.Memory, p, now.Add(32*time.Minute))
		if got := r.Memory.Endpoints[epA]; got.Status != atlas.StatusInitiating || !got.Since.Equal(now.Add(32*time.Minute)) {
			t.Errorf("since not reset: %+v", got)
		}
		notice(t, r.Notices, alert.EndpointStuck, alert.Resolved)
		r2 := Plan(moved, r.Memory, p, now.Add(62*time.Minute))
		if _, ok := hasOpen(r2.Memory, alert.EndpointStuck, epA); ok {
			t.Error("stuck after exactly StuckAfter in the new status")
		}
	})

	t.Run("unreadable endpoints keep memory", func(t *testing.T) {
		blind := with(healthy(), func(s *Snapshot) { s.Endpoints = nil })
		r := Plan(blind, first.Memory, p, now.Add(time.Hour))
		if got := r.Memory.Endpoints[epA]; !got.Since.Equal(now) {
			t.Errorf("memory %+v", r.Memory.Endpoints)
		}
	})

	t.Run("gone endpoints are forgotten", func(t *testing.T) {
		s := with(healthy(), func(s *Snapshot) { s.Endpoints = []atlas.PrivateEndpoint{} })
		r := Plan(s, first.Memory, p, now.Add(time.Hour))
		if len(r.Memory.Endpoints) != 0 {
			t.Errorf("memory %+v", r.Memory.Endpoints)
		}
	})
}

func TestConnectionRejected(t *testing.T) {
	active := func(s *Snapshot) {
		s.Endpoints = []atlas.PrivateEndpoint{{ID: epA, RegionName: "US_EAST_2", Status: atlas.StatusActive, PrivateEndpointConnectionName: connA}}
	}
	hint := Hint{Kind: event.ConnectionChanged, Actor: "eve@contoso.com", Object: connA, EventID: "evt-9",
		Operation: "Microsoft.KeyVault/vaults/privateEndpointConnections/write", Time: now.Add(-30 * time.Second)}
	tests := []struct {
		name      string
		snap      Snapshot
		open      bool
		actor     string
		connState string
	}{
		{"active and approved", with(healthy(), active, setConn(connA, vault.StatusApproved)), false, "", ""},
		{"rejected, with who did it", with(healthy(), active, setConn(connA, vault.StatusRejected), func(s *Snapshot) { s.Hints = []Hint{hint} }), true, "eve@contoso.com", "Rejected"},
		{"hint by resource ID", with(healthy(), active, setConn(connA, vault.StatusRejected), func(s *Snapshot) {
			h := hint
			h.Object = vaultA.String() + "/privateEndpointConnections/" + connA
			s.Hints = []Hint{h}
		}), true, "eve@contoso.com", "Rejected"},
		{"hint for another connection", with(healthy(), active, setConn(connA, vault.StatusRejected), func(s *Snapshot) {
			h := hint
			h.Object = connA + "-other"
			s.Hints = []Hint{h}
		}), true, "", "Rejected"},
		{"disconnected", with(healthy(), active, setConn(connA, vault.StatusDisconnected)), true, "", "Disconnected"},
		{"active endpoint's connection absent", with(healthy(), active, func(s *Snapshot) { s.Connections = []vault.Connection{} }), true, "", "absent"},
		{"pending recreation", with(healthy(), setEndpointStatus(atlas.StatusPendingRecreation), func(s *Snapshot) { s.Connections = []vault.Connection{} }), true, "", ""},
		{"pending recreation with connections unreadable", with(healthy(), setEndpointStatus(atlas.StatusPendingRecreation), func(s *Snapshot) { s.Connections = nil }), true, "", ""},
		{"requesting endpoint's connection absent is not a rejection", with(healthy(), func(s *Snapshot) { s.Connections = []vault.Connection{} }), false, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Plan(tt.snap, Memory{}, enforce(), now)
			a, ok := hasOpen(r.Memory, alert.ConnectionChanged, connA)
			if ok != tt.open {
				t.Fatalf("open = %v, want %v (%v)", ok, tt.open, openKinds(r.Memory))
			}
			if !ok {
				return
			}
			if a.Severity != alert.Warning || a.Actor != tt.actor || a.Details["connectionStatus"] != tt.connState || a.Details["endpointId"] != epA {
				t.Errorf("alert %+v", a)
			}
			if tt.actor != "" && a.Details["eventId"] != "evt-9" {
				t.Errorf("event details %+v", a.Details)
			}
		})
	}
}

func TestConnectionRejectedKeepsActorAndResolves(t *testing.T) {
	active := func(s *Snapshot) {
		s.Endpoints = []atlas.PrivateEndpoint{{ID: epA, RegionName: "US_EAST_2", Status: atlas.StatusActive, PrivateEndpointConnectionName: connA}}
	}
	rejected := with(healthy(), active, setConn(connA, vault.StatusRejected))
	r1 := Plan(with(rejected, func(s *Snapshot) {
		s.Hints = []Hint{{Kind: event.ConnectionChanged, Actor: "eve", Object: connA, EventID: "e1"}}
	}), Memory{}, enforce(), now)
	r2 := Plan(rejected, r1.Memory, enforce(), now.Add(time.Minute)) // no hint this time
	if len(r2.Notices) != 0 {
		t.Fatalf("notices %v", tags(r2.Notices))
	}
	if a, _ := hasOpen(r2.Memory, alert.ConnectionChanged, connA); a.Actor != "eve" || a.Details["eventId"] != "e1" {
		t.Errorf("actor lost: %+v", a)
	}
	// Connections unreadable: neither raised nor resolved.
	r3 := Plan(with(healthy(), active, func(s *Snapshot) { s.Connections = nil }), r2.Memory, enforce(), now.Add(2*time.Minute))
	if containsTag(r3.Notices, "connection-rejected/resolved") {
		t.Fatal("resolved while blind")
	}
	r4 := Plan(with(healthy(), active, setConn(connA, vault.StatusApproved)), r3.Memory, enforce(), now.Add(3*time.Minute))
	notice(t, r4.Notices, alert.ConnectionChanged, alert.Resolved)
}

func TestAccessChanged(t *testing.T) {
	p := enforce() // settle 20m
	hint := Hint{Kind: event.RoleAssignmentDeleted, Actor: "admin@contoso.com", Object: "/subscriptions/s/providers/Microsoft.Authorization/roleAssignments/r1", EventID: "evt-ra", Time: now}
	withHint := with(healthy(), func(s *Snapshot) { s.Hints = []Hint{hint} })
	r1 := Plan(withHint, Memory{}, p, now)
	n := notice(t, r1.Notices, alert.AccessChanged, alert.Raised)
	if n.Alert.Severity != alert.Warning || n.Alert.Actor != "admin@contoso.com" || n.Alert.Details["eventKind"] != string(event.RoleAssignmentDeleted) {
		t.Fatalf("raised %+v", n.Alert)
	}

	t.Run("stays open before settle", func(t *testing.T) {
		r := Plan(healthy(), r1.Memory, p, now.Add(20*time.Minute-time.Second))
		if len(r.Notices) != 0 {
			t.Fatalf("notices %v", tags(r.Notices))
		}
		if a, ok := hasOpen(r.Memory, alert.AccessChanged, ""); !ok || a.Actor != "admin@contoso.com" {
			t.Fatalf("open %v", openKinds(r.Memory))
		}
	})
	t.Run("resolves at settle while valid", func(t *testing.T) {
		r := Plan(healthy(), r1.Memory, p, now.Add(20*time.Minute))
		notice(t, r.Notices, alert.AccessChanged, alert.Resolved)
	})
	t.Run("a new hint restarts settle", func(t *testing.T) {
		r2 := Plan(withHint, r1.Memory, p, now.Add(15*time.Minute))
		if len(r2.Notices) != 0 {
			t.Fatalf("notices %v", tags(r2.Notices))
		}
		r3 := Plan(healthy(), r2.Memory, p, now.Add(25*time.Minute))
		if _, ok := hasOpen(r3.Memory, alert.AccessChanged, ""); !ok {
			t.Fatal("resolved before settle after the last hint")
		}
	})
	t.Run("escalates when Atlas says invalid", func(t *testing.T) {
		invalid := with(healthy(), func(s *Snapshot) { s.Config.Valid = bp(false) })
		r := Plan(invalid, r1.Memory, p, now.Add(16*time.Minute))
		e := notice(t, r.Notices, alert.AccessChanged, alert.Escalated)
		if e.Alert.Severity != alert.Critical || !e.Alert.FirstSeen.Equal(now) {
			t.Errorf("escalated %+v", e.Alert)
		}
		// Still invalid long after settle: stays open.
		r2 := Plan(invalid, r.Memory, p, now.Add(2*time.Hour))
		if _, ok := hasOpen(r2.Memory, alert.AccessChanged, ""); !ok {
			t.Error("resolved while Atlas says invalid")
		}
	})
	t.Run("config unreadable: carried forward", func(t *testing.T) {
		blind := with(healthy(), func(s *Snapshot) { s.Config = nil; s.Vault = resource.ID{} })
		r := Plan(blind, r1.Memory, p, now.Add(time.Hour))
		if _, ok := hasOpen(r.Memory, alert.AccessChanged, ""); !ok || containsTag(r.Notices, "access-changed/resolved") {
			t.Errorf("not carried forward: %v", tags(r.Notices))
		}
	})
	t.Run("raised critical when Atlas already says invalid", func(t *testing.T) {
		r := Plan(with(withHint, func(s *Snapshot) { s.Config.Valid = bp(false) }), Memory{}, p, now)
		if n := notice(t, r.Notices, alert.AccessChanged, alert.Raised); n.Alert.Severity != alert.Critical {
			t.Errorf("severity %s", n.Alert.Severity)
		}
	})
}

func TestGuardBlind(t *testing.T) {
	s := with(healthy(), func(s *Snapshot) {
		s.Key = nil
		s.Errors = []SourceError{{Source: SourceKey, Message: "403 Forbidden: Authorization: Bearer eyJhbGciOi.secret.sig; url ...?sig=abc123&x=1", Permission: "Microsoft.KeyVault/vaults/keys/read"}}
	})
	r1 := Plan(s, Memory{}, enforce(), now)
	a, ok := hasOpen(r1.Memory, alert.GuardBlind, string(SourceKey))
	if !ok || a.Severity != alert.Critical || a.Details["permission"] != "Microsoft.KeyVault/vaults/keys/read" {
		t.Fatalf("guard-blind %+v (open %v)", a, openKinds(r1.Memory))
	}
	if strings.Contains(a.Details["error"], "eyJhbGciOi") || strings.Contains(a.Details["error"], "abc123") {
		t.Errorf("secret leaked: %q", a.Details["error"])
	}
	if !strings.Contains(a.Summary, "Microsoft.KeyVault/vaults/keys/read") {
		t.Errorf("summary %q", a.Summary)
	}
	r2 := Plan(healthy(), r1.Memory, enforce(), now.Add(time.Minute))
	notice(t, r2.Notices, alert.GuardBlind, alert.Resolved)

	t.Run("one per source, unknown sources too", func(t *testing.T) {
		s := with(healthy(), func(s *Snapshot) {
			s.Clusters = nil
			s.Errors = []SourceError{{Source: SourceClusters, Message: "a"}, {Source: SourceClusters, Message: "b"}, {Source: "atlas:future", Message: "c"}}
		})
		r := Plan(s, Memory{}, enforce(), now)
		want := []string{"guard-blind:atlas:clusters:critical", "guard-blind:atlas:future:critical"}
		if got := openKinds(r.Memory); !slices.Equal(got, want) {
			t.Errorf("open %v, want %v", got, want)
		}
		if a, _ := hasOpen(r.Memory, alert.GuardBlind, string(SourceClusters)); a.Details["error"] != "a; b" {
			t.Errorf("error %q", a.Details["error"])
		}
	})
	t.Run("other sources resolve once they stop failing", func(t *testing.T) {
		failing := with(settled(), func(s *Snapshot) {
			s.Errors = []SourceError{{Source: "arm:approve", Message: "approve x: 409 Conflict"}}
		})
		r1 := Plan(failing, Memory{}, enforce(), now)
		if _, ok := hasOpen(r1.Memory, alert.GuardBlind, "arm:approve"); !ok {
			t.Fatal("precondition: open")
		}
		r2 := Plan(failing, r1.Memory, enforce(), now.Add(time.Minute))
		if len(r2.Notices) != 0 {
			t.Fatalf("still failing: %v", tags(r2.Notices))
		}
		r3 := Plan(settled(), r2.Memory, enforce(), now.Add(2*time.Minute))
		if want := []string{"guard-blind/resolved"}; !slices.Equal(tags(r3.Notices), want) {
			t.Errorf("notices %v, want %v", tags(r3.Notices), want)
		}
	})
	t.Run("reads below a missing vault are not blamed", func(t *testing.T) {
		s := with(healthy(), func(s *Snapshot) {
			s.VaultState, s.Connections, s.Key = &vault.Vault{Found: false}, nil, nil
			s.Errors = []SourceError{{Source: SourceConnections, Message: "404 ResourceNotFound"}, {Source: SourceKey, Message: "404 VaultNotFound"}}
		})
		r := Plan(s, Memory{}, enforce(), now)
		if want := []string{"vault-missing::critical"}; !slices.Equal(openKinds(r.Memory), want) {
			t.Errorf("open %v, want %v", openKinds(r.Memory), want)
		}
	})
	t.Run("config unreadable does not also blame ARM sources", func(t *testing.T) {
		s := with(healthy(), func(s *Snapshot) {
			s.Config, s.Vault, s.VaultState, s.Connections, s.Key = nil, resource.ID{}, nil, nil, nil
			s.Errors = []SourceError{{Source: SourceEncryptionAtRest, Message: "401"}}
		})
		r := Plan(s, Memory{}, enforce(), now)
		if want := []string{"guard-blind:atlas:encryptionAtRest:critical"}; !slices.Equal(openKinds(r.Memory), want) {
			t.Errorf("open %v", openKinds(r.Memory))
		}
	})
	t.Run("blind alert of an unread ARM source is carried forward", func(t *testing.T) {
		blindVault := with(healthy(), func(s *Snapshot) { s.VaultState = nil })
		r1 := Plan(blindVault, Memory{}, enforce(), now)
		if _, ok := hasOpen(r1.Memory, alert.GuardBlind, string(SourceVault)); !ok {
			t.Fatal("precondition")
		}
		cfgBlind := with(healthy(), func(s *Snapshot) { s.Config, s.VaultState = nil, nil })
		r2 := Plan(cfgBlind, r1.Memory, enforce(), now.Add(time.Minute))
		if _, ok := hasOpen(r2.Memory, alert.GuardBlind, string(SourceVault)); !ok {
			t.Error("arm:vault blind alert resolved without arm:vault being read")
		}
	})
}

func TestCarryForwardWhileBlind(t *testing.T) {
	foreign := with(healthy(), func(s *Snapshot) {
		s.Connections = append(s.Connections, vault.Connection{Name: "stranger", Status: vault.StatusPending})
	})
	r1 := Plan(foreign, Memory{}, enforce(), now)
	fp := Fingerprint(alert.ForeignConnection, project, "stranger")
	if _, ok := r1.Memory.Open[fp]; !ok {
		t.Fatal("precondition: foreign open")
	}
	for _, tt := range []struct {
		name string
		snap Snapshot
	}{
		{"connections unreadable", with(healthy(), func(s *Snapshot) {
			s.Connections = nil
			s.Errors = []SourceError{{Source: SourceConnections, Message: "503"}}
		})},
		{"endpoints unreadable", with(healthy(), func(s *Snapshot) {
			s.Connections = []vault.Connection{} // stranger gone, but we can't judge without endpoints
			s.Endpoints = nil
		})},
		{"config unreadable", with(healthy(), func(s *Snapshot) { s.Config = nil })},
		{"snapshot vault mismatch", with(healthy(), func(s *Snapshot) { s.Vault = vaultB })},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := Plan(tt.snap, r1.Memory, enforce(), now.Add(time.Minute))
			got, ok := r.Memory.Open[fp]
			if !ok || containsTag(r.Notices, "foreign-connection/resolved") {
				t.Fatalf("foreign alert not carried forward: %v", tags(r.Notices))
			}
			if got.LastSeen != r1.Memory.Open[fp].LastSeen {
				t.Error("carried-forward alert was modified")
			}
			if !containsTag(r.Notices, "guard-blind/raised") {
				t.Errorf("no guard-blind: %v", tags(r.Notices))
			}
			if len(r.Approvals) != 0 {
				t.Errorf("approved while blind: %+v", r.Approvals)
			}
		})
	}
	t.Run("resolves once readable and gone", func(t *testing.T) {
		r := Plan(healthy(), r1.Memory, enforce(), now.Add(time.Minute))
		notice(t, r.Notices, alert.ForeignConnection, alert.Resolved)
	})
	t.Run("resolves once no longer pending", func(t *testing.T) {
		s := with(healthy(), func(s *Snapshot) {
			s.Connections = append(s.Connections, vault.Connection{Name: "stranger", Status: vault.StatusRejected})
		})
		r := Plan(s, r1.Memory, enforce(), now.Add(time.Minute))
		notice(t, r.Notices, alert.ForeignConnection, alert.Resolved)
	})
}

func TestWouldApproveAndHeldResolve(t *testing.T) {
	obs := DefaultPolicy(ModeObserve)
	r1 := Plan(healthy(), Memory{}, obs, now)
	if len(r1.Approvals) != 0 {
		t.Fatal("observe mode approved")
	}
	a, ok := hasOpen(r1.Memory, alert.WouldApprove, connA)
	if !ok || a.Severity != alert.Info || a.Details["endpointId"] != epA {
		t.Fatalf("would-approve %+v", a)
	}
	// Still pending: stays open silently.
	r2 := Plan(healthy(), r1.Memory, obs, now.Add(time.Minute))
	if len(r2.Notices) != 0 {
		t.Fatalf("notices %v", tags(r2.Notices))
	}
	// Someone approved it by hand: resolves.
	r3 := Plan(with(healthy(), setConn(connA, vault.StatusApproved)), r2.Memory, obs, now.Add(2*time.Minute))
	notice(t, r3.Notices, alert.WouldApprove, alert.Resolved)

	// Hold, then the hold is lifted: held resolves and the connection is approved.
	held := with(healthy(), func(s *Snapshot) {
		s.VaultState = &vault.Vault{Found: true, Tags: map[string]string{"atlas-akv-guard": "hold"}}
	})
	h1 := Plan(held, Memory{}, enforce(), now)
	if len(h1.Approvals) != 0 {
		t.Fatal("approved under hold")
	}
	h2 := Plan(healthy(), h1.Memory, enforce(), now.Add(time.Minute))
	notice(t, h2.Notices, alert.ApprovalHeld, alert.Resolved)
	if !slices.Equal(approvedNames(h2), []string{connA}) {
		t.Errorf("approved %v", approvedNames(h2))
	}
}

func TestNoVaultResolvesVaultAlerts(t *testing.T) {
	r1 := Plan(with(healthy(), setKey(func(k *vault.Key) { k.Enabled = false })), Memory{}, enforce(), now)
	noVault := with(healthy(), func(s *Snapshot) {
		s.Config.KeyVaultName, s.Vault, s.VaultState, s.Connections, s.Key = "", resource.ID{}, nil, nil, nil
	})
	r2 := Plan(noVault, r1.Memory, enforce(), now.Add(time.Minute))
	notice(t, r2.Notices, alert.KeyDisabled, alert.Resolved)
	if containsTag(r2.Notices, "guard-blind/raised") {
		t.Errorf("ARM sources are not expected without a vault: %v", tags(r2.Notices))
	}
}

// One cause, one alert: Atlas unreachable blinds three reads, one critical
// alert lists them, without the raw error; it resolves once all are read.
func TestGuardBlindGroupsByCause(t *testing.T) {
	const cause = "cannot reach cloud.mongodb.com: DNS lookup failed"
	down := with(healthy(), func(s *Snapshot) {
		s.Config, s.Endpoints, s.Clusters, s.Vault, s.VaultState, s.Connections, s.Key = nil, nil, nil, resource.ID{}, nil, nil, nil
		for _, src := range []Source{SourceEncryptionAtRest, SourcePrivateEndpoints, SourceClusters} {
			s.Errors = append(s.Errors, SourceError{Source: src, Service: "atlas", Cause: cause,
				Message: "Get \"https://cloud.mongodb.com/api/atlas/v2/groups/x?token=s3cret\": dial tcp: lookup cloud.mongodb.com: no such host"})
		}
	})
	r1 := Plan(down, Memory{}, enforce(), now)
	if want := []string{"guard-blind:atlas: " + cause + ":critical"}; !slices.Equal(openKinds(r1.Memory), want) {
		t.Fatalf("open %v, want %v", openKinds(r1.Memory), want)
	}
	a, _ := hasOpen(r1.Memory, alert.GuardBlind, "atlas: "+cause)
	if a.Details["reads"] != "atlas:clusters,atlas:encryptionAtRest,atlas:privateEndpoints" || a.Details["error"] != "" ||
		strings.Contains(a.Summary, "s3cret") || !strings.Contains(a.Summary, cause) {
		t.Errorf("alert %+v", a)
	}
	// Only the config still fails this way: same alert, silently.
	partly := with(healthy(), func(s *Snapshot) { s.Config, s.Vault, s.Errors = nil, resource.ID{}, down.Errors[:1] })
	r2 := Plan(partly, r1.Memory, enforce(), now.Add(time.Minute))
	if len(r2.Notices) != 0 {
		t.Fatalf("notices %v", tags(r2.Notices))
	}
	r3 := Plan(healthy(), r2.Memory, enforce(), now.Add(2*time.Minute))
	if want := []string{"guard-blind/resolved"}; !slices.Equal(tags(r3.Notices), want) {
		t.Errorf("notices %v, want %v", tags(r3.Notices), want)
	}
}
