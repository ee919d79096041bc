package reconcile_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/event"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/reconcile"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtest"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

func TestCorruptStateIsQuarantinedAndAlertingGoesOn(t *testing.T) {
	for name, bad := range map[string]string{
		"wrong type":    `{"memory":42}`,
		"truncated":     `{"projectId":"65a1b2c3d4e5f60718293a4b","memo`,
		"later version": `{"version":99,"projectId":"65a1b2c3d4e5f60718293a4b","memory":{}}`,
	} {
		t.Run(name, func(t *testing.T) {
			r := newRig(t)
			r.arm.SetKeyEnabled(kv, keyName, r.keyVer, false)
			ctx := t.Context()
			if _, err := r.store.Put(ctx, reconcile.ProjectKey(project), []byte(bad), "", nil); err != nil {
				t.Fatal(err)
			}
			rep, err := r.guard(options{}).Project(ctx, project, nil)
			if err != nil {
				t.Fatalf("reconcile over a corrupt document: %v", err)
			}
			if r.noticeCount(alert.KeyDisabled, alert.Raised) != 1 || r.noticeCount(alert.StateUnreadable, alert.Raised) != 1 ||
				r.noticeCount(alert.GuardBlind, alert.Raised) != 0 {
				t.Fatalf("want key-disabled, one state-unreadable warning and no guard-blind: %+v", r.hook.Notices())
			}
			if !slices.Contains(rep.Blind, string(reconcile.SourceState)) {
				t.Errorf("report does not say the state was unreadable: %+v", rep)
			}
			items, err := r.store.List(ctx, "quarantine/")
			if err != nil || len(items) != 1 {
				t.Fatalf("quarantined copies %+v, %v; want one", items, err)
			}
			if data, _, _ := r.store.Get(ctx, items[0].Key); string(data) != bad {
				t.Fatalf("quarantined copy %q, want %q", data, bad)
			}
			if doc := r.doc(""); len(doc.Memory.Open) == 0 {
				t.Fatalf("document not rewritten: %+v", doc)
			}
		})
	}
}

func TestConcurrentEventsOnAColdIndexAreRouted(t *testing.T) {
	r := newRig(t)
	const other = "65a1b2c3d4e5f60718293a4c"
	kv2 := resource.ID{SubscriptionID: kv.SubscriptionID, ResourceGroup: "rg-two", Name: "kv-two"}
	r.addProject(other, kv2, "atlas-pe-two")
	g := r.guard(options{projects: []string{project, other}})
	var wg sync.WaitGroup
	for i, v := range []resource.ID{kv, kv2} {
		wg.Go(func() {
			tr := event.Trigger{Kind: event.ConnectionChanged, EventID: "ev", Vault: v, Scope: v.String(), Operation: event.OpConnectionWrite}
			out, err := g.Events(t.Context(), []event.Trigger{tr})
			if err != nil || len(out.Reports) != 1 {
				t.Errorf("event %d: %v, %v", i, out.Logs, err)
			}
		})
	}
	wg.Wait()
	if r.puts() != 2 {
		t.Fatalf("approvals = %d, want one per project", r.puts())
	}
}

type panickyAtlas struct{ reconcile.Atlas }

func (panickyAtlas) Clusters(context.Context, string) ([]atlas.Cluster, error) { panic("boom") }

func TestPanicInAReadIsAFailedRead(t *testing.T) {
	r := newRig(t)
	rep, err := r.guard(options{atlas: panickyAtlas{r.ac}}).Project(t.Context(), project, nil)
	must(t, err)
	if !slices.Contains(rep.Blind, "atlas:clusters") || r.puts() != 1 || r.noticeCount(alert.GuardBlind, alert.Raised) == 0 {
		t.Fatalf("report %+v, %d approvals, notices %+v", rep, r.puts(), r.hook.Notices())
	}
}

type stuckAtlas struct{ reconcile.Atlas }

func (stuckAtlas) EncryptionAtRest(ctx context.Context, _ string) (atlas.EncryptionAtRest, error) {
	<-ctx.Done()
	return atlas.EncryptionAtRest{}, ctx.Err()
}

func TestEventReconcileHasTheTimersDeadline(t *testing.T) {
	r := newRig(t)
	r.project(r.guard(options{})) // the document records the vault
	g := r.guard(options{atlas: stuckAtlas{r.ac}, timeout: 100 * time.Millisecond})
	done := make(chan error, 1)
	go func() {
		_, err := g.Events(t.Context(), []event.Trigger{connectionTrigger("ev-slow")})
		done <- err
	}()
	select {
	case err := <-done:
		if !transient.Is(err) {
			t.Fatalf("event reconcile past its deadline: %v, want a transient error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("event reconcile ignored the deadline")
	}
}

// interceptStore calls before once, ahead of the first write of key.
type interceptStore struct {
	state.Store
	key    string
	once   sync.Once
	before func()
}

func (s *interceptStore) Put(ctx context.Context, key string, data []byte, etag string, meta map[string]string) (string, error) {
	if key == s.key {
		s.once.Do(s.before)
	}
	return s.Store.Put(ctx, key, data, etag, meta)
}

// Another instance re-raises an alert while this one, working from an older
// read, sees it cleared: the late "resolved" must not be stamped before the
// re-raise (a consumer ordering by time would think it open), and the next
// run resolves it after it.
func TestNoticesOfOneFingerprintAreStampedInCausalOrder(t *testing.T) {
	r := newRig(t)
	ctx := t.Context()
	r.arm.SetKeyEnabled(kv, keyName, r.keyVer, false)
	r.project(r.guard(options{}))
	r.arm.SetKeyEnabled(kv, keyName, r.keyVer, true)
	key := reconcile.ProjectKey(project)
	reraised := time.Now().Add(time.Hour).UTC()
	var fp string
	st := &interceptStore{Store: r.store, key: key, before: func() {
		_, _, err := state.Update(ctx, r.store, key, nil, func(d *reconcile.Doc) error {
			for f, a := range d.Memory.Open {
				if a.Kind == alert.KeyDisabled {
					fp, a.LastNotified = f, reraised
					d.Memory.Open[f], d.Notified = a, map[string]time.Time{f: reraised}
				}
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	}}
	g := r.guard(options{store: st})
	for range 2 {
		r.project(g)
	}
	resolved := 0
	for _, n := range r.hook.Notices() {
		if n.Alert.Fingerprint == fp && n.Action == alert.Resolved {
			resolved++
			if !n.At.After(reraised) {
				t.Errorf("resolved stamped %v, before the re-raise at %v", n.At, reraised)
			}
		}
	}
	if fp == "" || resolved != 1 {
		t.Fatalf("fingerprint %q resolved %d times, want once", fp, resolved)
	}
}

// A person rejects the connection between the guard's read and its write:
// ARM answers 412, nothing is approved, no blind spot is raised, and the
// next run sees the rejection.
func TestRejectBetweenReadAndWriteIsNotOverridden(t *testing.T) {
	r := newRig(t)
	r.arm.BeforePut(func(v resource.ID, name string) {
		r.arm.SetConnectionStatus(v, name, vault.StatusRejected, "not this one")
	})
	g := r.guard(options{})
	rep, err := g.Project(t.Context(), project, nil)
	if err != nil || len(rep.Approved) != 0 || len(rep.Blind) != 0 {
		t.Fatalf("report %+v, %v; want no approval and no blind spot", rep, err)
	}
	if c, _ := r.arm.Connection(kv, peConn); c.Status != vault.StatusRejected {
		t.Fatalf("connection is %s, want Rejected", c.Status)
	}
	r.arm.BeforePut(nil)
	r.project(g)
	if r.puts() != 1 || r.noticeCount(alert.GuardBlind, alert.Raised) != 0 {
		t.Fatalf("%d PUTs, notices %+v", r.puts(), r.hook.Notices())
	}
}

// Two guarded projects on one vault, each with its own Pending connection:
// neither calls the other's connection foreign.
func TestProjectsSharingAVaultDoNotCallEachOthersConnectionsForeign(t *testing.T) {
	r := newRig(t)
	const other, otherConn = "65a1b2c3d4e5f60718293a4d", "atlas-pe-eastus2-65a1b2c3d4e5f60718293a4d.0000"
	if _, err := r.AddProject(simtest.Project{ID: other, Vault: kv, Key: "other-key", Clusters: []string{"orders"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.AddEndpoint(other, kv, "US_EAST_2", otherConn, atlas.StatusPendingAcceptance, vault.StatusPending); err != nil {
		t.Fatal(err)
	}
	g := r.guard(options{mode: plan.ModeObserve, projects: []string{project, other}})
	for range 2 {
		if _, err := g.Timer(t.Context(), event.Timer{}); err != nil {
			t.Fatal(err)
		}
	}
	for p, conn := range map[string]string{project: otherConn, other: peConn} {
		doc := r.doc(p)
		if doc.Summary == nil {
			t.Fatalf("document of %s has no summary", p)
		}
		i := slices.IndexFunc(doc.Summary.Decisions, func(d plan.Decision) bool { return d.Connection == conn })
		if i < 0 || doc.Summary.Decisions[i].Verdict != plan.VerdictOtherProject {
			t.Errorf("%s's decision on %s: %+v", p, conn, doc.Summary.Decisions)
		}
	}
	if n := r.noticeCount(alert.ForeignConnection, alert.Raised); n != 0 {
		t.Fatalf("%d foreign-connection alerts", n)
	}
}

// Deliveries an older version queued for the log, or for a sink no longer
// configured, do not stay pending forever.
func TestPendingForUnconfiguredSinksIsDropped(t *testing.T) {
	r := newRig(t)
	old := `{"projectId":"` + project + `","memory":{},"pending":[{"notice":{"id":"n1"},"sink":"log"},{"notice":{"id":"n2"},"sink":"eventgrid"}]}`
	if _, err := r.store.Put(t.Context(), reconcile.ProjectKey(project), []byte(old), "", nil); err != nil {
		t.Fatal(err)
	}
	r.project(r.guard(options{}))
	if doc := r.doc(""); len(doc.Pending) != 0 {
		t.Fatalf("pending after the reconcile: %+v", doc.Pending)
	}
}
