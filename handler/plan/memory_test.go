package plan

import (
	"encoding/json"
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/event"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// troubled raises many alert kinds at once.
func troubled() Snapshot {
	return with(healthy(), func(s *Snapshot) {
		s.Config.Valid = bp(false)
		k := *s.Key
		k.Enabled, k.Latest = false, "v2"
		k.Expires = tp(now.Add(3 * day))
		s.Key = &k
		s.Clusters = append(s.Clusters, atlas.Cluster{Name: "paused", EncryptionAtRestProvider: "AZURE", Paused: true})
		s.Endpoints = append(s.Endpoints,
			atlas.PrivateEndpoint{ID: epB, RegionName: "EUROPE_WEST", Status: atlas.StatusFailed, ErrorMessage: "quota", PrivateEndpointConnectionName: connB},
			atlas.PrivateEndpoint{ID: "ep-c", RegionName: "US_WEST", Status: atlas.StatusActive, PrivateEndpointConnectionName: "conn-c"})
		s.Connections = append(s.Connections,
			vault.Connection{Name: "stranger", Status: vault.StatusPending},
			vault.Connection{Name: "conn-c", Status: vault.StatusRejected})
		s.Hints = []Hint{{Kind: event.AccessPolicyChanged, Actor: "ops@contoso.com", EventID: "e1", Time: now}}
	})
}

func TestIdempotent(t *testing.T) {
	for _, mode := range []Mode{ModeEnforce, ModeObserve} {
		t.Run(string(mode), func(t *testing.T) {
			p := DefaultPolicy(mode)
			p.RenotifyAfter = time.Hour
			r1 := Plan(troubled(), Memory{}, p, now)
			if len(r1.Notices) < 8 {
				t.Fatalf("precondition: expected many raised notices, got %v", tags(r1.Notices))
			}
			r2 := Plan(troubled(), r1.Memory, p, now)
			if len(r2.Notices) != 0 {
				t.Errorf("second plan at the same time: %v", tags(r2.Notices))
			}
			if !reflect.DeepEqual(r1.Memory, r2.Memory) {
				t.Errorf("memory changed:\n%+v\n%+v", r1.Memory, r2.Memory)
			}
			if !reflect.DeepEqual(r1.Approvals, r2.Approvals) || !reflect.DeepEqual(r1.Decisions, r2.Decisions) {
				t.Error("approvals or decisions differ")
			}
			// A minute later, still no news (and the memory survives JSON).
			b, err := json.Marshal(r2.Memory)
			if err != nil {
				t.Fatal(err)
			}
			var m Memory
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			r3 := Plan(troubled(), m, p, now.Add(time.Minute))
			if len(r3.Notices) != 0 {
				t.Errorf("a minute later: %v", tags(r3.Notices))
			}
		})
	}
}

func TestFirstSeenKeptLastSeenAdvances(t *testing.T) {
	s := with(healthy(), setKey(func(k *vault.Key) { k.Enabled = false }))
	r1 := Plan(s, Memory{}, enforce(), now)
	r2 := Plan(s, r1.Memory, enforce(), now.Add(5*time.Minute))
	a, _ := hasOpen(r2.Memory, alert.KeyDisabled, "ear-key/v1")
	if !a.FirstSeen.Equal(now) || !a.LastSeen.Equal(now.Add(5*time.Minute)) || !a.LastNotified.Equal(now) {
		t.Errorf("times first=%v last=%v notified=%v", a.FirstSeen, a.LastSeen, a.LastNotified)
	}
}

func TestRenotify(t *testing.T) {
	disabled := with(settled(), setKey(func(k *vault.Key) { k.Enabled = false; k.Expires = tp(now.Add(5 * day)) }))
	p := enforce()
	p.RenotifyAfter = time.Hour
	r1 := Plan(disabled, Memory{}, p, now)

	before := Plan(disabled, r1.Memory, p, now.Add(time.Hour-time.Second))
	if len(before.Notices) != 0 {
		t.Fatalf("before RenotifyAfter: %v", tags(before.Notices))
	}
	at := Plan(disabled, before.Memory, p, now.Add(time.Hour))
	if want := []string{"key-disabled/reminder"}; !slices.Equal(tags(at.Notices), want) {
		t.Fatalf("at RenotifyAfter: %v, want %v (warnings are never reminded)", tags(at.Notices), want)
	}
	if a, _ := hasOpen(at.Memory, alert.KeyDisabled, "ear-key/v1"); !a.LastNotified.Equal(now.Add(time.Hour)) || !a.FirstSeen.Equal(now) {
		t.Errorf("after reminder %+v", a)
	}
	again := Plan(disabled, at.Memory, p, now.Add(90*time.Minute))
	if len(again.Notices) != 0 {
		t.Errorf("reminder interval restarts: %v", tags(again.Notices))
	}

	p.RenotifyAfter = 0
	never := Plan(disabled, r1.Memory, p, now.Add(100*time.Hour))
	if len(never.Notices) != 0 {
		t.Errorf("RenotifyAfter 0 must never remind: %v", tags(never.Notices))
	}
}

func TestEscalationResetsReminderClock(t *testing.T) {
	s1 := with(healthy(), setKey(func(k *vault.Key) { k.Latest = "v2" })) // info
	p := enforce()
	p.RenotifyAfter = time.Hour
	r1 := Plan(s1, Memory{}, p, now)
	s2 := with(s1, setKey(func(k *vault.Key) { k.Enabled = false })) // critical
	r2 := Plan(s2, r1.Memory, p, now.Add(2*time.Hour))
	n := notice(t, r2.Notices, alert.KeyRotated, alert.Escalated)
	if !n.Alert.LastNotified.Equal(now.Add(2*time.Hour)) || containsTag(r2.Notices, "key-rotated/reminder") {
		t.Errorf("escalation %+v / %v", n.Alert, tags(r2.Notices))
	}
	// De-escalation is silent.
	r3 := Plan(s1, r2.Memory, p, now.Add(3*time.Hour))
	if containsTag(r3.Notices, "key-rotated/escalated") || containsTag(r3.Notices, "key-rotated/raised") {
		t.Errorf("notices %v", tags(r3.Notices))
	}
	if a, _ := hasOpen(r3.Memory, alert.KeyRotated, "ear-key/v1"); a.Severity != alert.Info {
		t.Errorf("severity %s", a.Severity)
	}
}

func TestNoticesSortedUniqueDeterministic(t *testing.T) {
	r := Plan(troubled(), Memory{}, enforce(), now)
	if !sort.SliceIsSorted(r.Notices, func(i, j int) bool {
		a, b := r.Notices[i], r.Notices[j]
		if a.Alert.Fingerprint != b.Alert.Fingerprint {
			return a.Alert.Fingerprint < b.Alert.Fingerprint
		}
		return a.Action < b.Action
	}) {
		t.Error("notices not sorted")
	}
	ids := map[string]bool{}
	for _, n := range r.Notices {
		if ids[n.ID] {
			t.Errorf("duplicate notice id %s", n.ID)
		}
		ids[n.ID] = true
		if n.Alert.Fingerprint != Fingerprint(n.Alert.Kind, project, n.Alert.Subject) {
			t.Errorf("fingerprint of %s/%s", n.Alert.Kind, n.Alert.Subject)
		}
		if n.Alert.Vault != vaultA.String() || n.Alert.ProjectID != project || !n.At.Equal(now) {
			t.Errorf("alert %s: vault %q project %q", n.Alert.Kind, n.Alert.Vault, n.Alert.ProjectID)
		}
		if n.Alert.Summary == "" {
			t.Errorf("alert %s has no summary", n.Alert.Kind)
		}
	}
	r2 := Plan(troubled(), Memory{}, enforce(), now)
	if !reflect.DeepEqual(r.Notices, r2.Notices) {
		t.Error("notices not deterministic")
	}
	r3 := Plan(troubled(), Memory{}, enforce(), now.Add(time.Second))
	if r3.Notices[0].ID == r.Notices[0].ID {
		t.Error("notice id does not depend on time")
	}
}

func TestPlanDoesNotModifyPrev(t *testing.T) {
	r1 := Plan(troubled(), Memory{}, enforce(), now)
	snapshot, _ := json.Marshal(r1.Memory)
	_ = Plan(healthy(), r1.Memory, enforce(), now.Add(2*time.Hour))
	after, _ := json.Marshal(r1.Memory)
	if string(snapshot) != string(after) {
		t.Error("Plan modified prev")
	}
}

func TestResolveDropsFromMemory(t *testing.T) {
	r1 := Plan(troubled(), Memory{}, enforce(), now)
	later := now.Add(2 * time.Hour)
	r2 := Plan(healthy(), r1.Memory, enforce(), later)
	for _, n := range r2.Notices {
		if n.Action != alert.Resolved {
			continue
		}
		if n.Alert.ResolvedAt == nil || !n.Alert.ResolvedAt.Equal(later) {
			t.Errorf("%s resolved at %v", n.Alert.Kind, n.Alert.ResolvedAt)
		}
		if _, open := r2.Memory.Open[n.Alert.Fingerprint]; open {
			t.Errorf("%s still open after resolve", n.Alert.Kind)
		}
	}
	// healthy() keeps only its own conditions open: the endpoint epA is
	// pending, so nothing but (maybe) endpoint-stuck can remain.
	for _, a := range r2.Memory.Open {
		if a.Kind != alert.EndpointStuck {
			t.Errorf("still open: %s:%s", a.Kind, a.Subject)
		}
	}
}

func TestFingerprint(t *testing.T) {
	a := Fingerprint(alert.ForeignConnection, project, "conn")
	if a != Fingerprint(alert.ForeignConnection, project, "conn") || len(a) != 32 {
		t.Fatalf("fingerprint %q", a)
	}
	for _, other := range []string{
		Fingerprint(alert.ForeignConnection, project, "Conn"),
		Fingerprint(alert.ForeignConnection, "other", "conn"),
		Fingerprint(alert.WouldApprove, project, "conn"),
		Fingerprint(alert.ForeignConnection, project+"c", "onn"),
	} {
		if other == a {
			t.Errorf("collision with %q", other)
		}
	}
}

func TestPolicyDefaults(t *testing.T) {
	got := Policy{Mode: ModeEnforce}.withDefaults()
	want := Policy{Mode: ModeEnforce, KeyExpiryWarn: 30 * day, StuckAfter: 30 * time.Minute, AccessChangeSettle: 20 * time.Minute, ForeignGrace: 10 * time.Minute}
	if got != want {
		t.Errorf("withDefaults = %+v, want %+v", got, want)
	}
	// A zero policy still warns about a key expiring in 29 days.
	r := Plan(with(healthy(), setKey(func(k *vault.Key) { k.Expires = tp(now.Add(29 * day)) })), Memory{}, Policy{}, now)
	if _, ok := hasOpen(r.Memory, alert.KeyExpiresSoon, "ear-key/v1"); !ok {
		t.Error("zero KeyExpiryWarn must mean the default")
	}
}
