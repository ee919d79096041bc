package e2e

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/world"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// allStatus reports whether every named connection on p's vault has status.
func allStatus(w *world.World, p *world.Project, names []string, status string) bool {
	for _, n := range names {
		if w.ConnectionStatus(p, n) != status {
			return false
		}
	}
	return true
}

func newAtlasConn(w *world.World, p *world.Project, old []string) string {
	for _, n := range w.AtlasConnections(p) {
		if !slices.Contains(old, n) {
			return n
		}
	}
	return ""
}

// First setup through events: exactly Atlas's connections are approved, a
// foreign pending connection is reported and left alone, and both sinks
// receive the notices.
func TestFirstSetupApprovesOnlyAtlas(t *testing.T) {
	t.Parallel()
	w := newWorld(t, setup{Events: true})
	p := w.Project(0)
	startGuard(t, w, world.GuardOptions{})
	ctx := deadline(t, 45*time.Second)

	names := w.EnablePrivateNetworking(p)
	waitFor(ctx, t, "Atlas's connections approved (event path)", func() bool { return allStatus(w, p, names, vault.StatusApproved) })
	waitFor(ctx, t, "Atlas's endpoints ACTIVE", func() bool { return len(w.AtlasConnections(p, "ACTIVE")) == len(names) })

	foreign := "contractor-pe.0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	if err := w.AddForeignConnection(p, foreign); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WaitNotice(ctx, p, alert.ForeignConnection, alert.Raised, 1); err != nil {
		t.Fatal(err)
	}
	ticks(ctx, t, w, 3)
	if got := w.ConnectionStatus(p, foreign); got != vault.StatusPending {
		t.Errorf("foreign connection is %s, want Pending", got)
	}
	if got := len(w.Approvals()); got != len(names) {
		t.Errorf("%d ARM approvals, want %d", got, len(names))
	}
	for _, c := range w.Approvals() {
		if !slices.Contains(names, c.After.Name) {
			t.Errorf("approved %s, which Atlas did not ask for", c.After.Name)
		}
		if !strings.Contains(c.After.Description, p.ID) {
			t.Errorf("approval description %q does not name the project", c.After.Description)
		}
	}
	if n := w.Notices(p, alert.Approved, ""); len(n) != len(names) {
		for _, x := range n {
			t.Logf("notice %s %s %s %s", x.ID, x.Action, x.Alert.Subject, x.At)
		}
		t.Errorf("%d approved notices at the webhook, want %d", len(n), len(names))
	}
	if _, err := w.Topic().WaitEvents(ctx, len(names)+1); err != nil {
		t.Errorf("Event Grid topic: %v", err)
	}
}

// Someone rejects Atlas's connection: Atlas recreates its endpoint, and the
// guard approves the new connection — once through events with the timer
// off, once through the timer with Event Grid delivery off.
func TestRejectedConnectionRecreatedAndApproved(t *testing.T) {
	t.Parallel()
	w := newWorld(t, setup{Events: true})
	p := w.Project(0)
	startGuard(t, w, world.GuardOptions{})
	ctx := deadline(t, 60*time.Second)
	names := w.EnablePrivateNetworking(p)
	waitFor(ctx, t, "Atlas's endpoints ACTIVE", func() bool { return len(w.AtlasConnections(p, "ACTIVE")) == len(names) })

	for i, path := range []string{"event", "timer"} {
		if path == "timer" {
			w.SetEvents(false)
			w.SetTimer(true)
		}
		before := len(w.Approvals())
		old := w.AtlasConnections(p)
		if err := w.RejectConnection(p, names[i], world.Ada); err != nil {
			t.Fatal(err)
		}
		var fresh string
		waitFor(ctx, t, path+" path: the recreated connection approved", func() bool {
			fresh = newAtlasConn(w, p, old)
			return fresh != "" && w.ConnectionStatus(p, fresh) == vault.StatusApproved
		})
		waitFor(ctx, t, path+" path: the new endpoint ACTIVE", func() bool {
			return slices.Contains(w.AtlasConnections(p, "ACTIVE"), fresh)
		})
		if got := len(w.Approvals()); got != before+1 {
			t.Errorf("%s path: %d new approvals, want 1", path, got-before)
		}
		if got := w.ConnectionStatus(p, names[i]); got != "" {
			t.Errorf("%s path: the rejected connection is %s; Atlas should have removed it", path, got)
		}
	}
	ns, err := w.WaitNotice(ctx, p, alert.ConnectionChanged, alert.Raised, 2)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ns[0].Alert.Actor, world.Ada.UPN) {
		t.Errorf("event path: connection-rejected actor %q, want %s", ns[0].Alert.Actor, world.Ada.UPN)
	}
	if _, err := w.WaitNotice(ctx, p, alert.ConnectionChanged, alert.Resolved, 2); err != nil {
		t.Error(err)
	}
}

// The key is disabled (no Azure event exists for it): the guard raises a
// critical alert before Atlas's validity check shuts the clusters down, and
// everything resolves once the key is enabled again.
func TestKeyDisabledAlertedBeforeValidityCheck(t *testing.T) {
	t.Parallel()
	w := newWorld(t, setup{Events: true, Timer: true})
	p := w.Project(0)
	startGuard(t, w, world.GuardOptions{})
	ctx := deadline(t, 60*time.Second)

	if err := w.WaitValidityCheck(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.SetKeyEnabled(p, false); err != nil {
		t.Fatal(err)
	}
	crit, err := w.WaitNotice(ctx, p, alert.KeyDisabled, alert.Raised, 1)
	if err != nil {
		t.Fatal(err)
	}
	if crit[0].Alert.Severity != alert.Critical {
		t.Errorf("key-disabled severity %s, want critical", crit[0].Alert.Severity)
	}
	waitFor(ctx, t, "clusters paused by Atlas", func() bool { return len(w.Paused(p)) == len(p.Clusters) })
	if !crit[0].At.Before(w.PausedAt(p)) {
		t.Errorf("key-disabled notice at %s, not before the shutdown at %s", crit[0].At, w.PausedAt(p))
	}
	if slices.Contains(w.Paused(p), p.Plain) {
		t.Errorf("the cluster without EAR was paused")
	}
	for _, k := range []alert.Kind{alert.ClustersPaused, alert.ConfigInvalid} {
		if _, err := w.WaitNotice(ctx, p, k, alert.Raised, 1); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.SetKeyEnabled(p, true); err != nil {
		t.Fatal(err)
	}
	for _, k := range []alert.Kind{alert.KeyDisabled, alert.ClustersPaused, alert.ConfigInvalid} {
		if _, err := w.WaitNotice(ctx, p, k, alert.Resolved, 1); err != nil {
			t.Fatal(err)
		}
	}
	if n := w.Notices(p, alert.KeyDisabled, alert.Raised); len(n) != 1 {
		t.Errorf("%d key-disabled raised notices, want 1", len(n))
	}
}

// Key Vault events: near expiry, a new version Atlas does not use, and
// Atlas's access revoked by someone (named in the alert, escalated when
// Atlas then reports the config invalid).
func TestKeyVaultEvents(t *testing.T) {
	t.Parallel()
	w := newWorld(t, setup{Events: true})
	p := w.Project(0)
	startGuard(t, w, world.GuardOptions{})
	ctx := deadline(t, 60*time.Second)
	ticks(ctx, t, w, 1) // the vault index: events find their project

	if err := w.SetKeyExpiry(p, time.Now().Add(10*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WaitNotice(ctx, p, alert.KeyExpiresSoon, alert.Raised, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := w.RotateKey(p); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WaitNotice(ctx, p, alert.KeyRotated, alert.Raised, 1); err != nil {
		t.Fatal(err)
	}
	w.RevokeAccess(p, world.Ada)
	ns, err := w.WaitNotice(ctx, p, alert.AccessChanged, alert.Raised, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(ns[0].Alert.Actor, world.Ada.UPN) {
		t.Errorf("access-changed actor %q, want %s", ns[0].Alert.Actor, world.Ada.UPN)
	}
	w.SetTimer(true)
	if _, err := w.WaitNotice(ctx, p, alert.AccessChanged, alert.Escalated, 1); err != nil {
		t.Fatal(err)
	}
	if err := w.SetKeyExpiry(p, time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WaitNotice(ctx, p, alert.KeyExpired, alert.Raised, 1); err != nil {
		t.Fatal(err)
	}
}

// Observe mode approves nothing and says what it would approve.
func TestObserveModeApprovesNothing(t *testing.T) {
	t.Parallel()
	w := newWorld(t, setup{Events: true})
	p := w.Project(0)
	startGuard(t, w, world.GuardOptions{Mode: "observe"})
	ctx := deadline(t, 45*time.Second)

	names := w.EnablePrivateNetworking(p)
	if _, err := w.WaitNotice(ctx, p, alert.WouldApprove, alert.Raised, len(names)); err != nil {
		t.Fatal(err)
	}
	ticks(ctx, t, w, 3)
	if n := len(w.Approvals()); n != 0 {
		t.Errorf("observe mode made %d approvals", n)
	}
	if !allStatus(w, p, names, vault.StatusPending) {
		t.Errorf("Atlas's connections are no longer all Pending")
	}
	if n := w.ARM().Count("privateEndpointConnections/put"); n != 0 {
		t.Errorf("observe mode sent %d PUTs", n)
	}
}

// Duplicated and reordered events cause exactly one approval and one
// approved notice.
func TestDuplicateAndReorderedEvents(t *testing.T) {
	t.Parallel()
	w := newWorld(t, setup{Options: world.Options{Regions: []string{"US_EAST_2"}}})
	p := w.Project(0)
	g := startGuard(t, w, world.GuardOptions{})
	ctx := deadline(t, 45*time.Second)
	ticks(ctx, t, w, 1)

	name := w.EnablePrivateNetworking(p)[0]
	newer := w.ConnectionEvent(p, name, world.Ada, time.Now())
	older := w.ConnectionEvent(p, name, world.Ada, time.Now().Add(-10*time.Minute))
	var wg sync.WaitGroup
	for _, ev := range []world.Event{newer, newer, older, newer, older} {
		wg.Go(func() {
			if r := w.DeliverTo(ctx, g, ev); r.Status != 200 {
				t.Errorf("event delivery answered %d (%v): %s", r.Status, r.Err, r.Body)
			}
		})
	}
	wg.Wait()
	for _, ev := range []world.Event{older, newer} { // late duplicates
		if r := w.DeliverTo(ctx, g, ev); r.Status != 200 {
			t.Errorf("late duplicate answered %d: %s", r.Status, r.Body)
		}
	}
	ticks(ctx, t, w, 2)
	if got := len(w.Approvals()); got != 1 {
		t.Errorf("%d approvals, want exactly 1", got)
	}
	if _, err := w.WaitNotice(ctx, p, alert.Approved, "", 1); err != nil {
		t.Fatal(err)
	}
	ticks(ctx, t, w, 1)
	if n := w.Notices(p, alert.Approved, ""); len(n) != 1 {
		t.Errorf("%d approved notices, want exactly 1", len(n))
	}
	if n := w.Notices(p, alert.GuardBlind, ""); len(n) != 0 {
		t.Errorf("concurrent duplicate events raised guard-blind: %+v", n[0].Alert)
	}
}

// A forged ARM event naming a foreign connection approves nothing.
func TestForgedEventApprovesNothing(t *testing.T) {
	t.Parallel()
	w := newWorld(t, setup{})
	p := w.Project(0)
	g := startGuard(t, w, world.GuardOptions{})
	ctx := deadline(t, 30*time.Second)
	ticks(ctx, t, w, 1)

	foreign := "atlas-pe-useast2-000000000000000000000000.11111111-2222-4333-8444-555555555555"
	if err := w.ARM().AddConnection(p.Vault, foreign, vault.StatusPending, "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/x/providers/Microsoft.Network/privateEndpoints/x"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if r := w.DeliverTo(ctx, g, w.ForgedConnectionEvent(p, foreign)); r.Status != 200 {
			t.Fatalf("forged event answered %d: %s", r.Status, r.Body)
		}
	}
	if _, err := w.WaitNotice(ctx, p, alert.ForeignConnection, alert.Raised, 1); err != nil {
		t.Fatal(err)
	}
	if got := w.ConnectionStatus(p, foreign); got != vault.StatusPending {
		t.Errorf("forged event: connection is %s, want Pending", got)
	}
	if n := w.ARM().Count("privateEndpointConnections/put"); n != 0 {
		t.Errorf("forged event caused %d PUTs", n)
	}
}
