package reconcile_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/event"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/internal/azurite"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/reconcile"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/armsim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// Atlas's connection is approved once, with a description naming the
// project and endpoint; a foreign Pending connection (Atlas's name plus a
// suffix) is reported and left alone; a second run does and says nothing new
// and costs 3 Atlas + 3 ARM calls.
func TestApprovesAtlasConnectionOnceAndIsIdempotent(t *testing.T) {
	r := newRig(t)
	foreign := peConn + "-x"
	r.arm.AddConnection(kv, foreign, vault.StatusPending, "/subscriptions/evil/resourceGroups/x/providers/Microsoft.Network/privateEndpoints/x")
	g := r.guard(options{})

	rep, err := g.Project(t.Context(), project, nil)
	if err != nil || !slices.Equal(rep.Approved, []string{peConn}) {
		t.Fatalf("approved %v (%v), want [%s]", rep.Approved, err, peConn)
	}
	c, _ := r.arm.Connection(kv, peConn)
	if c.Status != vault.StatusApproved || !strings.Contains(c.Description, project) || !strings.Contains(c.Description, r.endpt) {
		t.Fatalf("connection after approval: %+v", c)
	}
	if c, _ := r.arm.Connection(kv, foreign); c.Status != vault.StatusPending || r.noticeCount(alert.ForeignConnection, alert.Raised) != 1 {
		t.Fatalf("foreign connection %+v, notices %+v", c, r.hook.Notices())
	}
	if n := r.noticeCount(alert.Approved, alert.AuditEvent); n != 1 || !strings.Contains(r.logs(), `"kind":"approved"`) {
		t.Fatalf("approved notices at the webhook = %d (want 1), log:\n%s", n, r.logs())
	}

	before := len(r.hook.Notices())
	rep, err = g.Project(t.Context(), project, nil)
	if err != nil || r.puts() != 1 || len(rep.Approved) != 0 || len(r.hook.Notices()) != before {
		t.Fatalf("second reconcile (%v): %d PUTs, approved %v, notices %d→%d", err, r.puts(), rep.Approved, before, len(r.hook.Notices()))
	}
	if rep.AtlasCalls != 3 || rep.ARMCalls != 3 {
		t.Errorf("steady-state calls: %d Atlas, %d ARM; want 3 and 3", rep.AtlasCalls, rep.ARMCalls)
	}
	if doc := r.doc(""); doc.Summary == nil || len(doc.Pending) != 0 || doc.Vault != kv.String() {
		t.Fatalf("state document: %+v", doc)
	}
}

func connectionTrigger(id string) event.Trigger {
	return event.Trigger{Kind: event.ConnectionChanged, EventID: id, Vault: kv, Scope: kv.String(), Object: peConn,
		Operation: event.OpConnectionWrite, Actor: "mallory@contoso.com", Time: time.Now()}
}

// An event for another vault reconciles nothing; a role assignment deleted
// at the vault's resource group reaches the project and names who did it.
func TestEventsReachTheProjectsOfTheirScope(t *testing.T) {
	r := newRig(t)
	g := r.guard(options{})
	other := event.Trigger{Kind: event.ConnectionChanged, EventID: "ev-other", Vault: resource.ID{SubscriptionID: kv.SubscriptionID, ResourceGroup: "rg-other", Name: "kv-other"}, Object: peConn}
	out, err := g.Events(t.Context(), []event.Trigger{other})
	if err != nil || r.puts() != 0 || len(out.Logs) != 1 || !strings.Contains(out.Logs[0], "no guarded project") {
		t.Fatalf("event for another vault (%v): %d approvals, logs %v", err, r.puts(), out.Logs)
	}
	tr := event.Trigger{Kind: event.RoleAssignmentDeleted, EventID: "ev-ra", Scope: "/subscriptions/" + kv.SubscriptionID + "/resourceGroups/" + kv.ResourceGroup,
		Operation: event.OpRoleAssignmentDelete, Actor: "mallory@contoso.com", Time: time.Now()}
	if _, err := g.Events(t.Context(), []event.Trigger{tr}); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(r.hook.Notices(), func(n alert.Notice) bool { return n.Alert.Kind == alert.AccessChanged && n.Action == alert.Raised })
	if i < 0 || r.hook.Notices()[i].Alert.Actor != "mallory@contoso.com" {
		t.Fatalf("no access-changed alert naming the actor: %+v", r.hook.Notices())
	}
}

func TestWebhookDownDeliversOnALaterReconcile(t *testing.T) {
	r := newRig(t)
	r.hook.SetStatus(503)
	r.arm.SetKeyEnabled(kv, keyName, r.keyVer, false)
	g := r.guard(options{})
	r.project(g)
	if r.noticeCount(alert.KeyDisabled, alert.Raised) != 0 || !strings.Contains(r.logs(), `"kind":"key-disabled"`) {
		t.Fatal("delivered while the webhook was down, or not logged")
	}
	if !slices.ContainsFunc(r.doc("").Pending, func(p reconcile.Delivery) bool {
		return p.Sink == "webhook" && p.Attempts == 1 && p.ClaimedBy == ""
	}) {
		t.Fatalf("nothing pending for the webhook: %+v", r.doc("").Pending)
	}
	r.hook.SetStatus(0)
	r.project(g)
	if r.noticeCount(alert.KeyDisabled, alert.Raised) != 1 || len(r.doc("").Pending) != 0 {
		t.Fatalf("key-disabled not delivered once after recovery: %+v", r.hook.Notices())
	}
}

func TestStorageDownStillApprovesAndLogs(t *testing.T) {
	r := newRig(t)
	own := azurite.Start(t)
	store, err := state.NewBlob(t.Context(), state.BlobOptions{ConnectionString: own.ConnectionString, Container: "down"})
	must(t, err)
	own.Stop()
	r.arm.SetKeyEnabled(kv, keyName, r.keyVer, false)
	g := r.guard(options{store: store})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	rep, err := g.Project(ctx, project, nil)
	var re *reconcile.Error
	if !errors.As(err, &re) || !transient.Is(err) || !strings.Contains(err.Error(), "state") {
		t.Fatalf("want a transient state error, got %v", err)
	}
	if r.puts() != 1 || len(rep.Approved) != 1 || len(r.hook.Notices()) != 0 {
		t.Fatalf("storage down: %d approvals (want 1), %d webhook notices (want 0: no de-duplication)", r.puts(), len(r.hook.Notices()))
	}
	if !strings.Contains(r.logs(), `"kind":"key-disabled"`) || !strings.Contains(r.logs(), `"kind":"approved"`) {
		t.Fatalf("log sink missed alerts with storage down:\n%s", r.logs())
	}
	must(t, own.Restart())
	r.project(g)
	if r.noticeCount(alert.KeyDisabled, alert.Raised) != 1 || r.noticeCount(alert.Approved, alert.AuditEvent) != 1 {
		t.Fatalf("key-disabled and approved not delivered once after storage came back: %+v", r.hook.Notices())
	}
}

// A failed approval is a fact for the next plan: the second run raises
// guard-blind naming the missing action; it resolves after the grant.
func TestForbiddenApprovalMakesTheGuardBlind(t *testing.T) {
	r := newRig(t)
	r.arm.Deny(vault.ActionConnectionsWrite)
	g := r.guard(options{})
	r.project(g)
	r.project(g)
	i := slices.IndexFunc(r.hook.Notices(), func(n alert.Notice) bool {
		return n.Alert.Kind == alert.GuardBlind && slices.Contains(strings.Split(n.Alert.Details["reads"], ","), string(reconcile.SourceApprove))
	})
	if i < 0 {
		t.Fatalf("no guard-blind for the approval: %+v", r.hook.Notices())
	}
	if a := r.hook.Notices()[i].Alert; a.Severity != alert.Critical || !strings.Contains(a.Details["permission"]+a.Summary, vault.ActionConnectionsWrite) {
		t.Fatalf("guard-blind does not name %s: %+v", vault.ActionConnectionsWrite, a)
	}
	r.arm.Allow(vault.ActionConnectionsWrite)
	r.project(g)
	r.project(g)
	if c, _ := r.arm.Connection(kv, peConn); c.Status != vault.StatusApproved || r.noticeCount(alert.GuardBlind, alert.Resolved) != 1 {
		t.Fatalf("after the grant: connection %s, notices %+v", c.Status, r.hook.Notices())
	}
}

func TestAtlasOutageIsTransientAndBlind(t *testing.T) {
	r := newRig(t)
	r.atlas.Inject(atlassim.Fault{Status: 503})
	_, err := r.guard(options{}).Timer(t.Context(), event.Timer{})
	if err == nil || !transient.Is(err) || r.puts() != 0 || r.noticeCount(alert.GuardBlind, alert.Raised) == 0 {
		t.Fatalf("timer with Atlas down: %v, %d approvals, notices %+v", err, r.puts(), r.hook.Notices())
	}
}

// TestConcurrentInvocationsApproveExactlyOnce runs six reconciles at once,
// twice — timer, events and direct runs, in one reconciler and again in
// three sharing the store — against an ARM that checks neither If-Match nor
// the body etag: one approval PUT, and every fingerprint notified once.
func TestConcurrentInvocationsApproveExactlyOnce(t *testing.T) {
	for _, instances := range []int{1, 3} {
		t.Run(strings.Repeat("instance ", instances), func(t *testing.T) {
			r := newRig(t)
			r.arm.SetEtagChecks(false, false)
			r.arm.Inject(armsim.Fault{Match: armsim.RouteConnectionPut, Latency: 100 * time.Millisecond}) // ARM writes are slow
			r.arm.SetKeyEnabled(kv, keyName, r.keyVer, false)
			r.atlas.SetPaused(project, "orders", true)
			var guards []*reconcile.Reconciler
			for i := range instances {
				guards = append(guards, r.guard(options{instance: string(rune('a' + i))}))
			}
			for range 2 {
				var wg sync.WaitGroup
				for i := range 6 {
					g := guards[i%instances]
					wg.Go(func() {
						var err error
						switch i % 3 {
						case 0:
							_, err = g.Timer(t.Context(), event.Timer{})
						case 1:
							_, err = g.Events(t.Context(), []event.Trigger{connectionTrigger("ev-race")})
						default:
							_, err = g.Project(t.Context(), project, nil)
						}
						if err != nil {
							t.Errorf("invocation %d: %v", i, err)
						}
					})
				}
				wg.Wait()
			}
			seen := map[string]int{}
			for _, n := range r.hook.Notices() {
				seen[n.Alert.Fingerprint+"/"+string(n.Action)]++
			}
			for k, c := range seen {
				if c != 1 {
					t.Errorf("%s notified %d times", k, c)
				}
			}
			if r.puts() != 1 || r.noticeCount(alert.Approved, alert.AuditEvent) != 1 ||
				r.noticeCount(alert.KeyDisabled, alert.Raised) != 1 || r.noticeCount(alert.ClustersPaused, alert.Raised) != 1 {
				t.Fatalf("%d approval PUTs; want one, and one approved, key-disabled and clusters-paused notice: %v", r.puts(), seen)
			}
		})
	}
}
