package e2e

import (
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

// An upstream is unusable for a while (an Atlas 429 storm, ARM answering
// 503, the managed identity endpoint down from the start): the guard says
// it is blind on that service's reads, approves nothing and raises no alert
// it cannot back (the key is disabled meanwhile); once the service is back
// it approves, raises key-disabled once and resolves guard-blind.
func TestUpstreamOutage(t *testing.T) {
	for _, tc := range []struct {
		name, source string
		status       int // the timer's answer during the outage (0: not checked)
		down         func(w *world.World)
	}{
		{"atlas 429 storm", "atlas:", http.StatusInternalServerError, func(w *world.World) {
			w.Atlas().Inject(atlassim.Fault{Match: "/api/atlas/v2/", Status: http.StatusTooManyRequests, RetryAfter: 100 * time.Millisecond})
		}},
		{"arm 503", "arm:", 0, func(w *world.World) {
			w.ARM().Inject(armsim.Fault{Status: http.StatusServiceUnavailable, RetryAfter: 50 * time.Millisecond})
		}},
		{"managed identity down", "arm:", 0, func(w *world.World) { w.ARM().SetIdentityDown(true) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, setup{})
			p := w.Project(0)
			tc.down(w)
			startGuard(t, w, world.GuardOptions{})
			ctx := deadline(t, 90*time.Second)

			names := w.EnablePrivateNetworking(p)
			must(t, w.SetKeyEnabled(p, false))
			res, err := w.Tick(ctx)
			must(t, err)
			if tc.status != 0 && res[0].Status != tc.status {
				t.Errorf("timer during the outage answered %d, want %d", res[0].Status, tc.status)
			}
			notices(ctx, t, w, p, alert.GuardBlind, alert.Raised, 1)
			raised := blindSources(w, p, alert.Raised)
			for _, src := range raised {
				if !strings.HasPrefix(src, tc.source) {
					t.Errorf("guard blind on %s, want only %s sources", src, tc.source)
				}
			}
			if n, k := len(w.Approvals()), len(w.Notices(p, alert.KeyDisabled, "")); n != 0 || k != 0 {
				t.Fatalf("%d approvals and %d key-disabled notices while blind", n, k)
			}
			w.Atlas().ClearFaults() // the service is back
			w.ARM().ClearFaults()
			w.ARM().SetIdentityDown(false)
			tickUntil(ctx, t, w, "approvals after the outage", func() bool { return allStatus(w, p, names, vault.StatusApproved) })
			tickUntil(ctx, t, w, "key-disabled after the outage", func() bool { return len(w.Notices(p, alert.KeyDisabled, alert.Raised)) == 1 })
			tickUntil(ctx, t, w, "guard-blind resolved", func() bool {
				return len(blindSources(w, p, alert.Resolved)) >= len(blindSources(w, p, alert.Raised))
			})
			notices(ctx, t, w, p, alert.Approved, "", len(names))
			uniqueIDs(t, w)
		})
	}
}

// Storage goes away (Azurite stopped) and comes back: approvals go on, the
// timer fails transiently, and the alert raised meanwhile reaches the
// webhook once storage is back — once.
func TestStorageOutage(t *testing.T) {
	own := azurite.Start(t) // this test stops its storage: not the shared one
	w, p, _, ctx := begin(t, setup{Options: world.Options{StorageConnectionString: own.ConnectionString}}, world.GuardOptions{}, 90*time.Second)
	ticks(ctx, t, w, 1)

	own.Stop()
	names := w.EnablePrivateNetworking(p)
	must(t, w.SetKeyEnabled(p, false))
	res, err := w.Tick(ctx)
	must(t, err)
	if res[0].Status != http.StatusInternalServerError {
		t.Errorf("timer without storage answered %d, want 500", res[0].Status)
	}
	if !allStatus(w, p, names, vault.StatusApproved) {
		t.Errorf("approvals did not go on without storage")
	}
	if n := w.Notices(p, alert.KeyDisabled, ""); len(n) != 0 {
		t.Errorf("key-disabled reached the webhook without storage (no de-duplication possible)")
	}
	must(t, own.Restart())
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

// Bad input through the host contract: garbage, an oversized body and an
// array with one bad item are answered 200 (never retried), the good item is
// acted on, and each bad invocation is kept aside and counted on the Status
// page. Then SIGTERM arrives while a reconcile is in flight: the reconcile
// finishes, the process exits 0, and the state document records it.
func TestBadInputThenSIGTERM(t *testing.T) {
	w, p, g, ctx := begin(t, setup{}, world.GuardOptions{}, 60*time.Second)
	names := w.EnablePrivateNetworking(p)
	waitFor(ctx, t, "the connection on the vault", func() bool { return w.ConnectionStatus(p, names[0]) == vault.StatusPending })
	good := w.ConnectionEvent(p, names[0], world.Ada, time.Now()).JSON
	mixed, _ := json.Marshal(string(`[` + string(good) + `,{"eventType":"x"}]`))
	for name, body := range map[string]string{
		"garbage":   "<html>not json",
		"oversized": `{"Data":{"event":"` + strings.Repeat("a", 5<<20) + `"}}`,
		"bad item":  `{"Data":{"event":` + string(mixed) + `}}`,
	} {
		resp, err := http.Post(g.URL()+"/PrivateLinkEvents", "application/json", strings.NewReader(body))
		must(t, err)
		if resp.Body.Close(); resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d, want 200", name, resp.StatusCode)
		}
	}
	if !allStatus(w, p, names[:1], vault.StatusApproved) {
		t.Error("the good item of the array was not acted on")
	}
	resp, err := http.Get(g.URL() + "/api/Status")
	must(t, err)
	var page struct{ Quarantined int }
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || page.Quarantined != 3 {
		t.Errorf("Status page counts %d quarantined (%v), want 3", page.Quarantined, err)
	}
	resp.Body.Close()

	w.Atlas().Inject(atlassim.Fault{Match: "/encryptionAtRest", Latency: 1500 * time.Millisecond, Times: 1})
	before := w.Atlas().Stats().ByRoute[atlassim.RouteEncryptionAtRest]
	start := time.Now()
	done := make(chan world.Result, 1)
	go func() { done <- w.TickGuard(ctx, g) }()
	waitFor(ctx, t, "the reconcile in flight", func() bool {
		return w.Atlas().Stats().ByRoute[atlassim.RouteEncryptionAtRest] > before
	})
	must(t, g.Signal(syscall.SIGTERM))
	if code, err := g.Wait(ctx); err != nil || code != 0 {
		t.Fatalf("exit status %d (%v), want 0; stderr: %s", code, err, g.Stderr())
	}
	if r := <-done; r.Status != http.StatusOK {
		t.Errorf("the in-flight reconcile answered %d (%v), want 200", r.Status, r.Err)
	}
	if len(g.Find("stopped")) != 1 {
		t.Errorf("no clean stop record")
	}
	store, err := state.NewBlob(ctx, state.BlobOptions{ConnectionString: storage.ConnectionString, Container: w.Container()})
	must(t, err)
	data, _, err := store.Get(ctx, reconcile.ProjectKey(p.ID))
	must(t, err)
	var doc reconcile.Doc
	if err := json.Unmarshal(data, &doc); err != nil || doc.ProjectID != p.ID || doc.Summary == nil || doc.Summary.At.Before(start) {
		t.Errorf("state document does not record the finished reconcile (%v): %+v", err, doc.Summary)
	}
}
