package e2e

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/armsim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/world"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// First setup through events: exactly Atlas's connections are approved, a
// foreign pending connection is reported and left alone (also when forged
// events name it), and both sinks receive the notices.
func TestFirstSetupApprovesOnlyAtlas(t *testing.T) {
	w, p, g, ctx := begin(t, setup{Events: true}, world.GuardOptions{}, 45*time.Second)

	names := w.EnablePrivateNetworking(p)
	waitFor(ctx, t, "Atlas's connections approved (event path)", func() bool { return allStatus(w, p, names, vault.StatusApproved) })
	waitFor(ctx, t, "Atlas's endpoints ACTIVE", func() bool { return len(w.AtlasConnections(p, "ACTIVE")) == len(names) })

	foreign := "contractor-pe.0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
	must(t, w.AddForeignConnection(p, foreign))
	notices(ctx, t, w, p, alert.ForeignConnection, alert.Raised, 1)
	for range 3 {
		if r := w.DeliverTo(ctx, g, w.ForgedConnectionEvent(p, foreign)); r.Status != 200 {
			t.Fatalf("forged event answered %d: %s", r.Status, r.Body)
		}
	}
	ticks(ctx, t, w, 3)
	if got := w.ConnectionStatus(p, foreign); got != vault.StatusPending {
		t.Errorf("foreign connection is %s, want Pending", got)
	}
	if got, puts := len(w.Approvals()), w.ARM().Count(armsim.RouteConnectionPut); got != len(names) || puts != len(names) {
		t.Errorf("%d ARM approvals and %d PUTs, want %d", got, puts, len(names))
	}
	for _, c := range w.Approvals() {
		if !slices.Contains(names, c.After.Name) || !strings.Contains(c.After.Description, p.ID) {
			t.Errorf("approved %s (%q): not Atlas's, or the description does not name the project", c.After.Name, c.After.Description)
		}
	}
	if n := w.Notices(p, alert.Approved, ""); len(n) != len(names) {
		t.Errorf("%d approved notices at the webhook, want %d", len(n), len(names))
	}
	if n := w.Notices(p, alert.ForeignConnection, alert.Raised); len(n) != 1 {
		t.Errorf("%d foreign-connection notices, want 1", len(n))
	}
	if _, err := w.Topic().WaitEvents(ctx, len(names)+1); err != nil {
		t.Errorf("Event Grid topic: %v", err)
	}
}

// Two handler processes share one state store, against an ARM that checks
// neither If-Match nor the body etag. Timer ticks and duplicated, reordered
// connection events reach both at once; later a foreign connection appears
// with Event Grid and the timer on: one PUT and one approved notice per
// connection, and no notice twice.
func TestTwoHandlersExactlyOnce(t *testing.T) {
	t.Parallel()
	w := newWorld(t, setup{Options: world.Options{Regions: []string{"US_EAST_2"}}})
	w.ARM().SetEtagChecks(false, false)
	w.ARM().Inject(armsim.Fault{Match: armsim.RouteConnectionPut, Latency: 100 * time.Millisecond}) // ARM writes are slow
	p := w.Project(0)
	guards := []*world.Guard{startGuard(t, w, world.GuardOptions{Name: "guard-a"}), startGuard(t, w, world.GuardOptions{Name: "guard-b"})}
	ctx := deadline(t, 90*time.Second)

	name := w.EnablePrivateNetworking(p)[0]
	waitFor(ctx, t, "Atlas's connection pending on the vault", func() bool { return w.ConnectionStatus(p, name) == vault.StatusPending })
	newer := w.ConnectionEvent(p, name, world.Ada, time.Now())
	older := w.ConnectionEvent(p, name, world.Ada, time.Now().Add(-10*time.Minute))
	var wg sync.WaitGroup
	for i, ev := range []world.Event{newer, newer, older, newer, older, newer, older, newer} {
		g := guards[i%2]
		wg.Go(func() {
			var r world.Result
			if i%3 == 0 {
				r = w.TickGuard(ctx, g)
			} else {
				r = w.DeliverTo(ctx, g, ev)
			}
			if r.Status != 200 {
				t.Errorf("invocation %d on %s answered %d (%v): %s", i, g.Name(), r.Status, r.Err, r.Body)
			}
		})
	}
	wg.Wait()
	notices(ctx, t, w, p, alert.Approved, "", 1)
	for _, ev := range []world.Event{older, newer} { // late duplicates
		if r := w.DeliverTo(ctx, guards[0], ev); r.Status != 200 {
			t.Errorf("late duplicate answered %d: %s", r.Status, r.Body)
		}
	}

	w.SetEvents(true)
	w.SetTimer(true)
	must(t, w.AddForeignConnection(p, "shadow-pe.00000000-1111-4222-8333-444444444444"))
	notices(ctx, t, w, p, alert.ForeignConnection, alert.Raised, 1)
	ticks(ctx, t, w, 3)
	if n, puts := len(w.Approvals()), w.ARM().Count(armsim.RouteConnectionPut); n != 1 || puts != 1 {
		t.Errorf("%d approvals and %d PUTs, want exactly 1", n, puts)
	}
	for k, want := range map[alert.Kind]int{alert.Approved: 1, alert.ForeignConnection: 1, alert.GuardBlind: 0} {
		if n := w.Notices(p, k, ""); len(n) != want {
			t.Errorf("%d %s notices at the webhook, want %d", len(n), k, want)
		}
	}
	uniqueIDs(t, w)
}

// Someone rejects Atlas's connection: Atlas recreates its endpoint, and the
// guard approves the new connection — once through events with the timer
// off, once through the timer with Event Grid delivery off.
func TestRejectedConnectionRecreatedAndApproved(t *testing.T) {
	w, p, _, ctx := begin(t, setup{Events: true}, world.GuardOptions{}, 60*time.Second)
	names := w.EnablePrivateNetworking(p)
	waitFor(ctx, t, "Atlas's endpoints ACTIVE", func() bool { return len(w.AtlasConnections(p, "ACTIVE")) == len(names) })

	for i, path := range []string{"event", "timer"} {
		if path == "timer" {
			w.SetEvents(false)
			w.SetTimer(true)
		}
		before := len(w.Approvals())
		old := w.AtlasConnections(p)
		must(t, w.RejectConnection(p, names[i], world.Ada))
		var fresh string
		waitFor(ctx, t, path+" path: the recreated connection approved and ACTIVE", func() bool {
			fresh = ""
			for _, n := range w.AtlasConnections(p) {
				if !slices.Contains(old, n) {
					fresh = n
				}
			}
			return fresh != "" && w.ConnectionStatus(p, fresh) == vault.StatusApproved && slices.Contains(w.AtlasConnections(p, "ACTIVE"), fresh)
		})
		if got := len(w.Approvals()); got != before+1 {
			t.Errorf("%s path: %d new approvals, want 1", path, got-before)
		}
		if got := w.ConnectionStatus(p, names[i]); got != "" {
			t.Errorf("%s path: the rejected connection is %s; Atlas should have removed it", path, got)
		}
	}
	ns := notices(ctx, t, w, p, alert.ConnectionChanged, alert.Raised, 2)
	if !strings.Contains(ns[0].Alert.Actor, world.Ada.UPN) {
		t.Errorf("event path: connection-rejected actor %q, want %s", ns[0].Alert.Actor, world.Ada.UPN)
	}
	notices(ctx, t, w, p, alert.ConnectionChanged, alert.Resolved, 2)
}

// The key is disabled (no Azure event exists for it): the guard raises a
// critical alert before Atlas's validity check shuts the clusters down, and
// everything resolves once the key is enabled again.
func TestKeyDisabledAlertedBeforeValidityCheck(t *testing.T) {
	w, p, _, ctx := begin(t, setup{Events: true, Timer: true}, world.GuardOptions{}, 60*time.Second)

	must(t, w.WaitValidityCheck(ctx))
	must(t, w.SetKeyEnabled(p, false))
	crit := notices(ctx, t, w, p, alert.KeyDisabled, alert.Raised, 1)
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
		notices(ctx, t, w, p, k, alert.Raised, 1)
	}
	must(t, w.SetKeyEnabled(p, true))
	for _, k := range []alert.Kind{alert.KeyDisabled, alert.ClustersPaused, alert.ConfigInvalid} {
		notices(ctx, t, w, p, k, alert.Resolved, 1)
	}
	if n := w.Notices(p, alert.KeyDisabled, alert.Raised); len(n) != 1 {
		t.Errorf("%d key-disabled raised notices, want 1", len(n))
	}
}

// Key Vault events: near expiry, a new version Atlas does not use, and
// Atlas's access revoked by someone (named in the alert, escalated when
// Atlas then reports the config invalid).
func TestKeyVaultEvents(t *testing.T) {
	w, p, _, ctx := begin(t, setup{Events: true}, world.GuardOptions{}, 60*time.Second)
	ticks(ctx, t, w, 1) // the vault index: events find their project

	must(t, w.SetKeyExpiry(p, time.Now().Add(10*24*time.Hour)))
	notices(ctx, t, w, p, alert.KeyExpiresSoon, alert.Raised, 1)
	_, err := w.RotateKey(p)
	must(t, err)
	notices(ctx, t, w, p, alert.KeyRotated, alert.Raised, 1)
	w.RevokeAccess(p, world.Ada)
	if ns := notices(ctx, t, w, p, alert.AccessChanged, alert.Raised, 1); !strings.Contains(ns[0].Alert.Actor, world.Ada.UPN) {
		t.Errorf("access-changed actor %q, want %s", ns[0].Alert.Actor, world.Ada.UPN)
	}
	w.SetTimer(true)
	notices(ctx, t, w, p, alert.AccessChanged, alert.Escalated, 1)
	must(t, w.SetKeyExpiry(p, time.Now().Add(-time.Minute)))
	notices(ctx, t, w, p, alert.KeyExpired, alert.Raised, 1)
}

// Observe mode approves nothing and says what it would approve.
func TestObserveModeApprovesNothing(t *testing.T) {
	w, p, _, ctx := begin(t, setup{Events: true}, world.GuardOptions{Mode: "observe"}, 45*time.Second)

	names := w.EnablePrivateNetworking(p)
	notices(ctx, t, w, p, alert.WouldApprove, alert.Raised, len(names))
	ticks(ctx, t, w, 3)
	if n, puts := len(w.Approvals()), w.ARM().Count(armsim.RouteConnectionPut); n != 0 || puts != 0 || !allStatus(w, p, names, vault.StatusPending) {
		t.Errorf("observe mode made %d approvals with %d PUTs", n, puts)
	}
}
