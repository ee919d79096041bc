package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/internal/azurite"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/reconcile"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/armsim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/world"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// blindSources returns the sources of the guard-blind notices with action.
func blindSources(w *world.World, p *world.Project, action alert.Action) []string {
	var out []string
	for _, n := range w.Notices(p, alert.GuardBlind, action) {
		out = append(out, n.Alert.Subject)
	}
	return out
}

// uniqueIDs fails the test when the webhook received a notice twice.
func uniqueIDs(t *testing.T, w *world.World) {
	t.Helper()
	seen := map[string]bool{}
	for _, n := range w.Webhook().Notices() {
		if seen[n.ID] {
			t.Errorf("notice %s (%s %s) delivered twice", n.ID, n.Alert.Kind, n.Action)
		}
		seen[n.ID] = true
	}
}

// A storm of Atlas 429s: the guard says it is blind, keeps going, and
// approves and resolves once the storm is over.
func TestAtlasRateLimitStorm(t *testing.T) {
	t.Parallel()
	w := newWorld(t, setup{})
	p := w.Project(0)
	startGuard(t, w, world.GuardOptions{})
	ctx := deadline(t, 60*time.Second)

	w.Atlas().Inject(atlassim.Fault{Match: "/api/atlas/v2/", Status: http.StatusTooManyRequests, RetryAfter: 100 * time.Millisecond})
	names := w.EnablePrivateNetworking(p)
	res, err := w.Tick(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Status != http.StatusInternalServerError {
		t.Errorf("timer during the storm answered %d, want 500 (nothing could be read)", res[0].Status)
	}
	if _, err := w.WaitNotice(ctx, p, alert.GuardBlind, alert.Raised, 1); err != nil {
		t.Fatal(err)
	}
	if n := len(w.Approvals()); n != 0 {
		t.Fatalf("%d approvals while Atlas could not be read", n)
	}
	w.Atlas().ClearFaults()
	tickUntil(ctx, t, w, "approvals after the storm", func() bool { return allStatus(w, p, names, vault.StatusApproved) })
	if _, err := w.WaitNotice(ctx, p, alert.Approved, "", len(names)); err != nil {
		t.Fatal(err)
	}
	raised := blindSources(w, p, alert.Raised)
	tickUntil(ctx, t, w, "guard-blind resolved", func() bool { return len(blindSources(w, p, alert.Resolved)) >= len(raised) })
	for _, src := range raised {
		if !strings.HasPrefix(src, "atlas:") {
			t.Errorf("guard blind on %s during an Atlas storm", src)
		}
	}
	uniqueIDs(t, w)
}

// ARM answers 503 for a while: guard blind on the ARM reads; a key disabled
// meanwhile is alerted once ARM is back.
func TestARMServerErrors(t *testing.T) {
	t.Parallel()
	w := newWorld(t, setup{})
	p := w.Project(0)
	startGuard(t, w, world.GuardOptions{})
	ctx := deadline(t, 60*time.Second)
	ticks(ctx, t, w, 1)

	w.ARM().Inject(armsim.Fault{Status: http.StatusServiceUnavailable, RetryAfter: 50 * time.Millisecond})
	if err := w.SetKeyEnabled(p, false); err != nil {
		t.Fatal(err)
	}
	w.Tick(ctx)
	if _, err := w.WaitNotice(ctx, p, alert.GuardBlind, alert.Raised, 1); err != nil {
		t.Fatal(err)
	}
	for _, src := range blindSources(w, p, alert.Raised) {
		if !strings.HasPrefix(src, "arm:") {
			t.Errorf("guard blind on %s during an ARM outage", src)
		}
	}
	if n := w.Notices(p, alert.KeyDisabled, ""); len(n) != 0 {
		t.Fatalf("key-disabled raised while the key could not be read")
	}
	w.ARM().ClearFaults()
	tickUntil(ctx, t, w, "key-disabled after the outage", func() bool { return len(w.Notices(p, alert.KeyDisabled, alert.Raised)) == 1 })
	tickUntil(ctx, t, w, "guard-blind resolved", func() bool {
		return len(blindSources(w, p, alert.Resolved)) >= len(blindSources(w, p, alert.Raised))
	})
	uniqueIDs(t, w)
}

// The managed identity endpoint is down when the guard starts: it cannot
// get a token for ARM, says so, and recovers when the endpoint is back.
func TestManagedIdentityOutage(t *testing.T) {
	t.Parallel()
	w := newWorld(t, setup{})
	p := w.Project(0)
	w.ARM().SetIdentityDown(true)
	startGuard(t, w, world.GuardOptions{})
	ctx := deadline(t, 90*time.Second)

	names := w.EnablePrivateNetworking(p)
	start := time.Now()
	w.Tick(ctx)
	t.Logf("a reconcile without managed identity took %s", time.Since(start).Round(time.Millisecond))
	ns, err := w.WaitNotice(ctx, p, alert.GuardBlind, alert.Raised, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ns[0].Alert.Subject, "arm:") {
		t.Errorf("guard blind on %s, want an ARM source", ns[0].Alert.Subject)
	}
	if n := len(w.Approvals()); n != 0 {
		t.Fatalf("%d approvals without a token", n)
	}
	w.ARM().SetIdentityDown(false)
	tickUntil(ctx, t, w, "approvals after the outage", func() bool { return allStatus(w, p, names, vault.StatusApproved) })
	tickUntil(ctx, t, w, "guard-blind resolved", func() bool {
		return len(blindSources(w, p, alert.Resolved)) >= len(blindSources(w, p, alert.Raised))
	})
	if _, err := w.WaitNotice(ctx, p, alert.Approved, "", len(names)); err != nil {
		t.Fatal(err)
	}
	uniqueIDs(t, w)
}

// Storage goes away (Azurite stopped) and comes back: approvals go on, the
// timer fails transiently, and the alert raised meanwhile reaches the
// webhook once storage is back — once.
func TestStorageOutage(t *testing.T) {
	t.Parallel()
	own := azurite.Start(t) // this test stops its storage: not the shared one
	w := newWorld(t, setup{Options: world.Options{StorageConnectionString: own.ConnectionString}})
	p := w.Project(0)
	startGuard(t, w, world.GuardOptions{})
	ctx := deadline(t, 90*time.Second)
	ticks(ctx, t, w, 1)

	own.Stop()
	names := w.EnablePrivateNetworking(p)
	if err := w.SetKeyEnabled(p, false); err != nil {
		t.Fatal(err)
	}
	res, err := w.Tick(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Status != http.StatusInternalServerError {
		t.Errorf("timer without storage answered %d, want 500", res[0].Status)
	}
	if !allStatus(w, p, names, vault.StatusApproved) {
		t.Errorf("approvals did not go on without storage")
	}
	if n := w.Notices(p, alert.KeyDisabled, ""); len(n) != 0 {
		t.Errorf("key-disabled reached the webhook without storage (no de-duplication possible)")
	}
	if err := own.Restart(); err != nil {
		t.Fatal(err)
	}
	tickUntil(ctx, t, w, "key-disabled at the webhook after storage is back", func() bool {
		return len(w.Notices(p, alert.KeyDisabled, alert.Raised)) > 0
	})
	ticks(ctx, t, w, 2)
	if n := w.Notices(p, alert.KeyDisabled, alert.Raised); len(n) != 1 {
		t.Errorf("%d key-disabled notices, want 1", len(n))
	}
	if n := w.Notices(p, alert.Approved, ""); len(n) != len(names) {
		t.Errorf("%d approved notices after the outage, want %d (approvals made while storage was down)", len(n), len(names))
	}
	uniqueIDs(t, w)
}

// Two handler processes share one world and one state store; every event
// and timer reaches both at once: one approval per connection and no
// notice twice.
func TestTwoHandlers(t *testing.T) {
	t.Parallel()
	w := newWorld(t, setup{Events: true, Timer: true})
	p := w.Project(0)
	startGuard(t, w, world.GuardOptions{Name: "guard-a"})
	startGuard(t, w, world.GuardOptions{Name: "guard-b"})
	ctx := deadline(t, 60*time.Second)

	names := w.EnablePrivateNetworking(p)
	waitFor(ctx, t, "Atlas's endpoints ACTIVE", func() bool { return len(w.AtlasConnections(p, "ACTIVE")) == len(names) })
	if err := w.AddForeignConnection(p, "shadow-pe.00000000-1111-4222-8333-444444444444"); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WaitNotice(ctx, p, alert.ForeignConnection, alert.Raised, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WaitNotice(ctx, p, alert.Approved, "", len(names)); err != nil {
		t.Fatal(err)
	}
	ticks(ctx, t, w, 3)
	if n := len(w.Approvals()); n != len(names) {
		t.Errorf("%d approvals, want %d (one per connection)", n, len(names))
	}
	for _, k := range []alert.Kind{alert.Approved, alert.ForeignConnection} {
		if n := w.Notices(p, k, ""); len(n) != map[alert.Kind]int{alert.Approved: len(names), alert.ForeignConnection: 1}[k] {
			t.Errorf("%d %s notices at the webhook", len(n), k)
		}
	}
	if n := w.Notices(p, alert.GuardBlind, ""); len(n) != 0 {
		t.Errorf("two instances raised guard-blind: %s", n[0].Alert.Details["error"])
	}
	uniqueIDs(t, w)
	seen := map[string]bool{}
	for _, e := range w.Topic().Events() {
		if seen[e.ID] {
			t.Errorf("topic event %s delivered twice", e.ID)
		}
		seen[e.ID] = true
	}
}

// SIGTERM while a reconcile is in flight: the reconcile finishes, the
// process exits 0, and the state document is readable.
func TestSIGTERMMidReconcile(t *testing.T) {
	t.Parallel()
	w := newWorld(t, setup{})
	p := w.Project(0)
	g := startGuard(t, w, world.GuardOptions{})
	ctx := deadline(t, 60*time.Second)

	w.EnablePrivateNetworking(p)
	w.Atlas().Inject(atlassim.Fault{Match: "/encryptionAtRest", Latency: 1500 * time.Millisecond, Times: 1})
	before := w.Atlas().Stats().ByRoute[atlassim.RouteEncryptionAtRest]
	done := make(chan world.Result, 1)
	go func() { done <- w.TickGuard(ctx, g) }()
	waitFor(ctx, t, "the reconcile in flight", func() bool {
		return w.Atlas().Stats().ByRoute[atlassim.RouteEncryptionAtRest] > before
	})
	if err := g.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := g.Wait(ctx)
	if err != nil || code != 0 {
		t.Fatalf("exit status %d (%v), want 0; stderr: %s", code, err, g.Stderr())
	}
	r := <-done
	if r.Status != http.StatusOK {
		t.Errorf("the in-flight reconcile answered %d (%v), want 200", r.Status, r.Err)
	}
	if len(g.Find("stopped")) != 1 {
		t.Errorf("no clean stop record")
	}

	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	store, err := state.NewBlob(sctx, state.BlobOptions{ConnectionString: storage.ConnectionString, Container: w.Container()})
	if err != nil {
		t.Fatal(err)
	}
	data, _, err := store.Get(sctx, reconcile.ProjectKey(p.ID))
	if err != nil {
		t.Fatal(err)
	}
	var doc reconcile.Doc
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("state document unreadable: %v", err)
	}
	if doc.ProjectID != p.ID || doc.Summary == nil || len(doc.Summary.Approved) == 0 {
		t.Errorf("state document does not record the finished reconcile: project %q, summary %+v", doc.ProjectID, doc.Summary)
	}
}

// Bad input through the host contract: garbage, an oversized body and an
// array with one bad item are answered 200 (never retried), the good item is
// acted on, and each bad invocation is kept aside and counted on the Status
// page. (Before: 400, 413 and 400, and the good item was dropped.)
func TestBadInputKeptAside(t *testing.T) {
	t.Parallel()
	w := newWorld(t, setup{})
	p := w.Project(0)
	g := startGuard(t, w, world.GuardOptions{})
	ctx := deadline(t, 60*time.Second)
	names := w.EnablePrivateNetworking(p)
	if err := world.WaitFor(ctx, "the connection on the vault", func() bool { return w.ConnectionStatus(p, names[0]) == vault.StatusPending }); err != nil {
		t.Fatal(err)
	}
	good := w.ConnectionEvent(p, names[0], world.Ada, time.Now()).JSON
	mixed, _ := json.Marshal(string(`[` + string(good) + `,{"eventType":"x"}]`))
	post := func(function, body string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.URL()+"/"+function, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for name, body := range map[string]string{
		"garbage":   "<html>not json",
		"oversized": `{"Data":{"event":"` + strings.Repeat("a", 5<<20) + `"}}`,
		"bad item":  `{"Data":{"event":` + string(mixed) + `}}`,
	} {
		if code := post("PrivateLinkEvents", body); code != http.StatusOK {
			t.Errorf("%s: %d, want 200", name, code)
		}
	}
	if !allStatus(w, p, names[:1], vault.StatusApproved) {
		t.Error("the good item of the array was not acted on")
	}
	resp, err := http.Get(g.URL() + "/api/Status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var page struct{ Quarantined int }
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || page.Quarantined != 3 {
		t.Errorf("Status page counts %d quarantined (%v), want 3", page.Quarantined, err)
	}
}
