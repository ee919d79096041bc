package plan

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/event"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// troubled raises many alert kinds at once.
func troubled() Snapshot {
	return with(healthy(), addConn("stranger", vault.StatusPending), addConn("conn-c", vault.StatusRejected), func(s *Snapshot) {
		s.Config.Valid = bp(false)
		s.Key = &vault.Key{Found: true, Name: "ear-key", Version: "v1", Latest: "v2", LatestEnabled: true, Expires: tp(now.Add(3 * day))}
		s.Clusters = append(s.Clusters, atlas.Cluster{Name: "paused", EncryptionAtRestProvider: "AZURE", Paused: true})
		s.Endpoints = append(s.Endpoints,
			atlas.PrivateEndpoint{ID: epB, RegionName: "EUROPE_WEST", Status: atlas.StatusFailed, ErrorMessage: "quota", PrivateEndpointConnectionName: connB},
			atlas.PrivateEndpoint{ID: "ep-c", RegionName: "US_WEST", Status: atlas.StatusActive, PrivateEndpointConnectionName: "conn-c"})
		s.Hints = []Hint{{Kind: event.AccessPolicyChanged, Actor: "ops@contoso.com", EventID: "e1", Time: now}}
	})
}

// Running the plan twice does nothing the second time, also a minute later
// and after the memory went through JSON; Plan never modifies prev.
func TestIdempotent(t *testing.T) {
	for _, mode := range []Mode{ModeEnforce, ModeObserve} {
		t.Run(string(mode), func(t *testing.T) {
			p := DefaultPolicy(mode)
			p.RenotifyAfter = time.Hour
			r1 := Plan(troubled(), Memory{}, p, now)
			if len(r1.Notices) < 8 {
				t.Fatalf("precondition: expected many raised notices, got %v", tags(r1.Notices))
			}
			// Notices are sorted, unique, complete and deterministic.
			if !slices.IsSortedFunc(r1.Notices, func(a, b alert.Notice) int {
				return strings.Compare(a.Alert.Fingerprint+string(a.Action), b.Alert.Fingerprint+string(b.Action))
			}) || !reflect.DeepEqual(r1, Plan(troubled(), Memory{}, p, now)) {
				t.Error("notices not sorted or not deterministic")
			}
			ids := map[string]bool{}
			for _, n := range r1.Notices {
				if ids[n.ID] || n.Alert.Fingerprint != Fingerprint(n.Alert.Kind, project, n.Alert.Subject) || n.Alert.Summary == "" ||
					n.Alert.Vault != vaultA.String() || n.Alert.ProjectID != project || !n.At.Equal(now) {
					t.Errorf("notice %+v", n)
				}
				ids[n.ID] = true
			}
			before, _ := json.Marshal(r1.Memory)
			r2 := Plan(troubled(), r1.Memory, p, now)
			if len(r2.Notices) != 0 || !reflect.DeepEqual(r1.Memory, r2.Memory) ||
				!reflect.DeepEqual(r1.Approvals, r2.Approvals) || !reflect.DeepEqual(r1.Decisions, r2.Decisions) {
				t.Errorf("second plan at the same time differs: %v", tags(r2.Notices))
			}
			var m Memory
			if err := json.Unmarshal(before, &m); err != nil {
				t.Fatal(err)
			}
			if r3 := Plan(troubled(), m, p, now.Add(time.Minute)); len(r3.Notices) != 0 {
				t.Errorf("a minute later: %v", tags(r3.Notices))
			}
			// Resolving drops from memory; nothing stays open; prev is untouched.
			r4 := Plan(covered(), r1.Memory, p, now.Add(2*time.Hour))
			for _, n := range r4.Notices {
				if n.Action != alert.Resolved || n.Alert.ResolvedAt == nil || !n.Alert.ResolvedAt.Equal(now.Add(2*time.Hour)) || n.ID == r1.Notices[0].ID {
					t.Errorf("notice %s/%s resolved at %v", n.Alert.Kind, n.Action, n.Alert.ResolvedAt)
				}
			}
			if after, _ := json.Marshal(r1.Memory); len(r4.Memory.Open) != 0 || string(after) != string(before) {
				t.Errorf("still open: %v, or Plan modified prev", openKinds(r4.Memory))
			}
		})
	}
}

func TestRenotifyAndTimes(t *testing.T) {
	disabled := with(settled(), setKey(func(k *vault.Key) { k.Enabled = false; k.Expires = tp(now.Add(5 * day)) }))
	p := enforce()
	p.RenotifyAfter = time.Hour
	rs := run(t, p,
		step{0, disabled, []string{"key-disabled/raised", "key-expires-soon/raised"}},
		step{time.Hour - time.Second, disabled, nil},
		step{time.Hour, disabled, []string{"key-disabled/reminder"}}, // warnings are never reminded
		step{90 * time.Minute, disabled, nil})                        // the interval restarts
	if a, _ := hasOpen(rs[2].Memory, alert.KeyDisabled, "ear-key/v1"); !a.FirstSeen.Equal(now) || !a.LastSeen.Equal(now.Add(time.Hour)) || !a.LastNotified.Equal(now.Add(time.Hour)) {
		t.Errorf("times first=%v last=%v notified=%v", a.FirstSeen, a.LastSeen, a.LastNotified)
	}
	p.RenotifyAfter = 0
	run(t, p, step{0, disabled, []string{"key-disabled/raised", "key-expires-soon/raised"}}, step{100 * time.Hour, disabled, nil})
	// An escalation re-notifies and restarts the reminder clock.
	p.RenotifyAfter = time.Hour
	rotated := with(settled(), setKey(func(k *vault.Key) { k.Latest = "v2" }))
	rs = run(t, p, step{0, rotated, []string{"key-rotated/raised"}},
		step{2 * time.Hour, with(rotated, setKey(func(k *vault.Key) { k.Enabled = false })), []string{"key-disabled/raised", "key-rotated/escalated"}})
	if a, _ := hasOpen(rs[1].Memory, alert.KeyRotated, "ear-key/v1"); !a.LastNotified.Equal(now.Add(2 * time.Hour)) {
		t.Errorf("escalation %+v", a)
	}
}

func TestFingerprint(t *testing.T) {
	a := Fingerprint(alert.ForeignConnection, project, "conn")
	if a != Fingerprint(alert.ForeignConnection, project, "conn") || len(a) != 32 {
		t.Fatalf("fingerprint %q", a)
	}
	for _, other := range []string{Fingerprint(alert.ForeignConnection, project, "Conn"), Fingerprint(alert.ForeignConnection, "other", "conn"),
		Fingerprint(alert.WouldApprove, project, "conn"), Fingerprint(alert.ForeignConnection, project+"c", "onn")} {
		if other == a {
			t.Errorf("collision with %q", other)
		}
	}
}

func TestPolicyDefaults(t *testing.T) {
	got := Policy{Mode: ModeEnforce, RenotifyAfter: -time.Hour, StuckAfter: -time.Minute}.withDefaults()
	want := Policy{Mode: ModeEnforce, KeyExpiryWarn: 30 * day, StuckAfter: 30 * time.Minute, AccessChangeSettle: 20 * time.Minute, ForeignGrace: 10 * time.Minute}
	if got != want {
		t.Errorf("withDefaults = %+v, want %+v", got, want)
	}
}
