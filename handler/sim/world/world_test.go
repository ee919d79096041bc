package world

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/event"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

func newTestWorld(t *testing.T) *World {
	t.Helper()
	w, err := New(Options{Minute: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.Close()
		if t.Failed() {
			var b strings.Builder
			w.WriteTimeline(&b)
			t.Logf("timeline:\n%s", b.String())
		}
	})
	w.SetTimer(false)
	return w
}

// The events the world publishes are what the handler's own decoder and
// classifier expect from Azure, delivered in the host's envelope.
func TestEventsDecodeAndClassify(t *testing.T) {
	v := resource.ID{SubscriptionID: "8f3c2a1e-4b7d-4e9a-9c1f-2d6b5a7e0c34", ResourceGroup: "rg", Name: "kv-one"}
	conn := "atlas-pe-useast2-0123456789abcdef01234567.3b4f1c2a-9d7e-4a6b-8c5d-1e2f3a4b5c6d"
	exp := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	cases := []struct {
		name   string
		ev     Event
		kind   event.Kind
		object string
		actor  string
	}{
		{"user rejects", armEvent(v, "privateEndpointConnections", conn, opConnWrite, typeWrite, userActor(Ada), time.Now()), event.ConnectionChanged, conn, Ada.UPN},
		{"user deletes", armEvent(v, "privateEndpointConnections", conn, opConnDelete, typeDelete, userActor(Ada), time.Now()), event.ConnectionChanged, conn, Ada.UPN},
		{"atlas proxy", armEvent(v, "privateEndpointConnectionProxies", conn, opProxyWrite, typeWrite, atlasActor(), time.Now()), event.ConnectionChanged, conn, "0f9d3b7a-1e5c-4a2b-8d6f-9c3e1a7b5d24"},
		{"guard approves", armEvent(v, "privateEndpointConnections", conn, opConnWrite, typeWrite, managedIdentityActor("6d2f8b1e-3c9a-4e7d-a5b0-1f4c7e9d2a68", "a8e3c5f1-0b2d-4c6e-9f7a-3d5b1e8c0f42", v), time.Now()), event.ConnectionChanged, conn, "6d2f8b1e-3c9a-4e7d-a5b0-1f4c7e9d2a68"},
		{"role assignment", roleAssignmentDeleted(v, userActor(Ada)), event.RoleAssignmentDeleted, "", Ada.UPN},
		{"near expiry", keyVaultEvent(v, typeKeyNearExpiry, "k", "abc", exp), event.KeyNearExpiry, "k", ""},
		{"expired", keyVaultEvent(v, typeKeyExpired, "k", "abc", exp), event.KeyExpired, "k", ""},
		{"new version", keyVaultEvent(v, typeKeyNewVersion, "k", "abd", exp), event.KeyNewVersion, "k", ""},
		{"access policy", keyVaultEvent(v, typeAccessPolicyChanged, v.Name, "", time.Time{}), event.AccessPolicyChanged, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inv, err := event.DecodeInvocation(hostBody(c.ev))
			if err != nil {
				t.Fatal(err)
			}
			evs, err := event.Decode(inv.Data["event"])
			if err != nil || len(evs) != 1 {
				t.Fatalf("decode: %v (%d events)", err, len(evs))
			}
			tr, err := event.Classify(evs[0])
			if err != nil {
				t.Fatal(err)
			}
			if tr.Kind != c.kind || tr.Object != c.object || !strings.Contains(tr.Actor, c.actor) {
				t.Errorf("got kind %s object %q actor %q; want %s %q %q", tr.Kind, tr.Object, tr.Actor, c.kind, c.object, c.actor)
			}
			if c.kind != event.RoleAssignmentDeleted && !tr.Vault.Equal(v) {
				t.Errorf("vault %s, want %s", tr.Vault, v)
			}
			if !tr.Covers(v) {
				t.Errorf("trigger does not cover %s", v)
			}
			if c.kind == event.KeyNearExpiry && (tr.Expires == nil || !tr.Expires.Equal(exp)) {
				t.Errorf("expires %s, want %s", tr.Expires, exp)
			}
		})
	}
}

// Atlas's endpoint lifecycle: approved → ACTIVE; rejected →
// PENDING_RECREATION → replaced by a new endpoint with a new Pending
// connection, the old connection gone.
func TestAtlasEndpointLifecycle(t *testing.T) {
	w := newTestWorld(t)
	w.SetEvents(false)
	p := w.Project(0)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	names := w.EnablePrivateNetworking(p)
	if len(names) != 2 || w.ConnectionStatus(p, names[0]) != vault.StatusPending {
		t.Fatalf("setup: %v, %s", names, w.ConnectionStatus(p, names[0]))
	}
	if err := w.WaitFor(ctx, "PENDING_ACCEPTANCE", func() bool {
		return len(w.AtlasConnections(p, atlassim.StatusPendingAcceptance)) == 2
	}); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := w.arm.SetConnectionStatus(p.Vault, n, vault.StatusApproved, "test"); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.WaitFor(ctx, "ACTIVE", func() bool { return len(w.AtlasConnections(p, atlassim.StatusActive)) == 2 }); err != nil {
		t.Fatal(err)
	}
	if err := w.RejectConnection(p, names[0], Ada); err != nil {
		t.Fatal(err)
	}
	if err := w.WaitFor(ctx, "PENDING_RECREATION", func() bool {
		for _, e := range w.atlas.Endpoints(p.ID) {
			if e.Status == atlassim.StatusPendingRecreation && strings.Contains(e.ErrorMessage, "rejected") {
				return true
			}
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	var fresh string
	if err := w.WaitFor(ctx, "a new endpoint", func() bool {
		for _, n := range w.AtlasConnections(p, atlassim.StatusInitiating, atlassim.StatusPendingAcceptance) {
			fresh = n
			return true
		}
		return false
	}); err != nil {
		t.Fatal(err)
	}
	if fresh == names[0] || w.ConnectionStatus(p, fresh) != vault.StatusPending {
		t.Errorf("new connection %s is %s", fresh, w.ConnectionStatus(p, fresh))
	}
	if w.ConnectionStatus(p, names[0]) != "" {
		t.Errorf("the rejected connection is still on the vault")
	}
	if len(w.Approvals()) != 0 {
		t.Errorf("mutators were reported as API writes")
	}
}

// Atlas's validity check pauses the EAR clusters while the key is disabled
// and resumes them once it is enabled.
func TestValidityCheck(t *testing.T) {
	w := newTestWorld(t)
	p := w.Project(0)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := w.SetKeyEnabled(p, false); err != nil {
		t.Fatal(err)
	}
	if err := w.WaitValidityCheck(ctx); err != nil {
		t.Fatal(err)
	}
	if w.Valid(p) || len(w.Paused(p)) != len(p.Clusters) {
		t.Fatalf("after the check: valid %v, paused %v", w.Valid(p), w.Paused(p))
	}
	if akv, _ := w.atlas.Project(p.ID); akv.Valid == nil || *akv.Valid {
		t.Errorf("Atlas's API still says valid")
	}
	if err := w.SetKeyEnabled(p, true); err != nil {
		t.Fatal(err)
	}
	if err := w.WaitValidityCheck(ctx); err != nil {
		t.Fatal(err)
	}
	if !w.Valid(p) || len(w.Paused(p)) != 0 {
		t.Errorf("after the fix: valid %v, paused %v", w.Valid(p), w.Paused(p))
	}
}

// StartGuard refuses to run without storage, and the guard environment
// names only the world's endpoints.
func TestGuardEnv(t *testing.T) {
	w := newTestWorld(t)
	if _, err := w.StartGuard(t.Context(), GuardOptions{Binary: "/nonexistent"}); err == nil {
		t.Error("StartGuard without storage succeeded")
	}
	env := w.Env(1234, "")
	for _, k := range []string{"ATLAS_BASE_URL", "GUARD_ARM_ENDPOINT", "GUARD_ALERT_TOPIC_ENDPOINT"} {
		if !strings.HasPrefix(env[k], "https://127.0.0.1:") {
			t.Errorf("%s = %q, want a loopback https URL", k, env[k])
		}
	}
	if env["GUARD_MODE"] != "enforce" || env["FUNCTIONS_CUSTOMHANDLER_PORT"] != "1234" || env["IDENTITY_HEADER"] == "" {
		t.Errorf("env: %v", env)
	}
}
