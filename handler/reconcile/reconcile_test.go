package reconcile_test

import (
	"context"
	"encoding/json"
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
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

func TestApprovesAtlasConnectionOnceAndIsIdempotent(t *testing.T) {
	r := newRig(t)
	g := r.guard(options{})

	rep, err := g.Project(t.Context(), project, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Approved) != 1 || rep.Approved[0] != peConn {
		t.Fatalf("approved %v, want [%s]", rep.Approved, peConn)
	}
	c, _ := r.arm.Connection(kv, peConn)
	if c.Status != vault.StatusApproved || !strings.Contains(c.Description, project) || !strings.Contains(c.Description, r.endpt) {
		t.Fatalf("connection after approval: %+v", c)
	}
	if n := r.noticeCount(string(alert.Approved), string(alert.AuditEvent)); n != 1 {
		t.Fatalf("approved notices at the webhook = %d, want 1", n)
	}
	if !strings.Contains(r.logs(), `"kind":"approved"`) {
		t.Errorf("log sink has no approved record:\n%s", r.logs())
	}

	// Running it again changes nothing and says nothing new.
	before := len(r.hook.Notices())
	rep, err = g.Project(t.Context(), project, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.puts() != 1 || len(rep.Approved) != 0 || len(r.hook.Notices()) != before {
		t.Fatalf("second reconcile: %d PUTs, approved %v, notices %d→%d", r.puts(), rep.Approved, before, len(r.hook.Notices()))
	}
	// Steady state costs 3 Atlas and 3 ARM round trips (the token is cached).
	if rep.AtlasCalls != 3 || rep.ARMCalls != 3 {
		t.Errorf("steady-state calls: %d Atlas, %d ARM; want 3 and 3", rep.AtlasCalls, rep.ARMCalls)
	}
	var doc reconcile.Doc
	data, _, err := r.store.Get(t.Context(), reconcile.ProjectKey(project))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &doc); err != nil || doc.Summary == nil || len(doc.Pending) != 0 || doc.Vault != kv.String() {
		t.Fatalf("state document: err %v, %+v", err, doc)
	}
}

func TestForeignConnectionIsReportedNeverApproved(t *testing.T) {
	r := newRig(t)
	foreign := peConn + "-x" // Atlas's name plus a suffix: still foreign
	r.arm.AddConnection(kv, foreign, vault.StatusPending, "/subscriptions/evil/resourceGroups/x/providers/Microsoft.Network/privateEndpoints/x")
	g := r.guard(options{})
	if _, err := g.Project(t.Context(), project, nil); err != nil {
		t.Fatal(err)
	}
	c, _ := r.arm.Connection(kv, foreign)
	if c.Status != vault.StatusPending {
		t.Fatalf("foreign connection touched: %+v", c)
	}
	if r.noticeCount(string(alert.ForeignConnection), string(alert.Raised)) != 1 {
		t.Fatalf("no foreign-connection alert: %+v", r.hook.Notices())
	}
}

func connectionTrigger(id string) event.Trigger {
	return event.Trigger{Kind: event.ConnectionChanged, EventID: id, Vault: kv, Scope: kv.String(), Object: peConn,
		Operation: event.OpConnectionWrite, Actor: "mallory@contoso.com", Time: time.Now()}
}

func TestEventForAnotherVaultReconcilesNothing(t *testing.T) {
	r := newRig(t)
	g := r.guard(options{})
	other := event.Trigger{Kind: event.ConnectionChanged, EventID: "ev-other", Vault: resource.ID{SubscriptionID: kv.SubscriptionID, ResourceGroup: "rg-other", Name: "kv-other"}, Object: peConn}
	out, err := g.Events(t.Context(), []event.Trigger{other})
	if err != nil {
		t.Fatal(err)
	}
	if r.approvals() != 0 || len(out.Logs) != 1 || !strings.Contains(out.Logs[0], "no guarded project") {
		t.Fatalf("event for another vault: %d PUTs, logs %v", r.approvals(), out.Logs)
	}
}

func TestRoleAssignmentAtResourceGroupEnrichesAccessAlert(t *testing.T) {
	r := newRig(t)
	g := r.guard(options{})
	g.Project(t.Context(), project, nil) // learn the project's vault
	tr := event.Trigger{Kind: event.RoleAssignmentDeleted, EventID: "ev-ra", Scope: "/subscriptions/" + kv.SubscriptionID + "/resourceGroups/" + kv.ResourceGroup,
		Operation: event.OpRoleAssignmentDelete, Actor: "mallory@contoso.com", Time: time.Now()}
	if _, err := g.Events(t.Context(), []event.Trigger{tr}); err != nil {
		t.Fatal(err)
	}
	for _, n := range r.hook.Notices() {
		if n.Alert.Kind == alert.AccessChanged && n.Action == alert.Raised {
			if n.Alert.Actor != "mallory@contoso.com" {
				t.Fatalf("access-changed actor = %q", n.Alert.Actor)
			}
			return
		}
	}
	t.Fatalf("no access-changed alert: %+v", r.hook.Notices())
}

func TestParallelInstancesNotifyOncePerFingerprint(t *testing.T) {
	r := newRig(t)
	r.arm.SetKeyEnabled(kv, keyName, r.keyVer, false)
	r.atlas.SetPaused(project, "orders", true)
	guards := []*reconcile.Reconciler{r.guard(options{instance: "a"}), r.guard(options{instance: "b"}), r.guard(options{instance: "c"})}
	for round := range 2 {
		var wg sync.WaitGroup
		for _, g := range guards {
			wg.Go(func() {
				if _, err := g.Project(t.Context(), project, nil); err != nil {
					t.Errorf("round %d: %v", round, err)
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
	if r.noticeCount(string(alert.KeyDisabled), string(alert.Raised)) != 1 || r.noticeCount(string(alert.ClustersPaused), string(alert.Raised)) != 1 {
		t.Fatalf("want one key-disabled and one clusters-paused notice: %v", seen)
	}
	if r.approvals() != 1 || r.noticeCount(string(alert.Approved), string(alert.AuditEvent)) != 1 {
		t.Fatalf("approvals %d, approved notices %d", r.approvals(), r.noticeCount(string(alert.Approved), string(alert.AuditEvent)))
	}
}

func TestWebhookDownDeliversOnALaterReconcile(t *testing.T) {
	r := newRig(t)
	r.hook.SetStatus(503)
	r.arm.SetKeyEnabled(kv, keyName, r.keyVer, false)
	g := r.guard(options{})
	if _, err := g.Project(t.Context(), project, nil); err != nil {
		t.Fatal(err)
	}
	if r.noticeCount(string(alert.KeyDisabled), string(alert.Raised)) != 0 {
		t.Fatal("delivered while the webhook was down")
	}
	data, _, _ := r.store.Get(t.Context(), reconcile.ProjectKey(project))
	var doc reconcile.Doc
	json.Unmarshal(data, &doc)
	pending := 0
	for _, p := range doc.Pending {
		if p.Sink == "webhook" && p.Attempts == 1 && p.ClaimedBy == "" {
			pending++
		}
	}
	if pending == 0 {
		t.Fatalf("nothing pending for the webhook: %+v", doc.Pending)
	}
	if !strings.Contains(r.logs(), `"kind":"key-disabled"`) {
		t.Error("the log sink did not record the alert while the webhook was down")
	}

	r.hook.SetStatus(0)
	if _, err := g.Project(t.Context(), project, nil); err != nil {
		t.Fatal(err)
	}
	if r.noticeCount(string(alert.KeyDisabled), string(alert.Raised)) != 1 {
		t.Fatalf("key-disabled not delivered once after recovery: %+v", r.hook.Notices())
	}
	data, _, _ = r.store.Get(t.Context(), reconcile.ProjectKey(project))
	doc = reconcile.Doc{}
	json.Unmarshal(data, &doc)
	if len(doc.Pending) != 0 {
		t.Fatalf("still pending after delivery: %+v", doc.Pending)
	}
}

func TestStorageDownStillApprovesAndLogs(t *testing.T) {
	r := newRig(t)
	own := azurite.Start(t)
	store, err := state.NewBlob(t.Context(), state.BlobOptions{ConnectionString: own.ConnectionString, Container: "down"})
	if err != nil {
		t.Fatal(err)
	}
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
	if r.approvals() != 1 || len(rep.Approved) != 1 {
		t.Fatalf("approval did not happen with storage down: %d PUTs", r.approvals())
	}
	if !strings.Contains(r.logs(), `"kind":"key-disabled"`) || !strings.Contains(r.logs(), `"kind":"approved"`) {
		t.Fatalf("log sink missed alerts with storage down:\n%s", r.logs())
	}
	if len(r.hook.Notices()) != 0 {
		t.Fatal("external sink used without de-duplication state")
	}

	// Storage back: the open alerts reach the webhook.
	if err := own.Restart(); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Project(t.Context(), project, nil); err != nil {
		t.Fatal(err)
	}
	if r.noticeCount(string(alert.KeyDisabled), string(alert.Raised)) != 1 {
		t.Fatalf("key-disabled not delivered after storage came back: %+v", r.hook.Notices())
	}
}

func TestForbiddenApprovalMakesTheGuardBlind(t *testing.T) {
	r := newRig(t)
	r.arm.Deny(vault.ActionConnectionsWrite)
	g := r.guard(options{})
	// A failed approval is a fact for the next plan: the second run says so.
	for range 2 {
		if _, err := g.Project(t.Context(), project, nil); err != nil {
			t.Fatal(err)
		}
	}
	var blind *alert.Alert
	for _, n := range r.hook.Notices() {
		if n.Alert.Kind == alert.GuardBlind && slices.Contains(strings.Split(n.Alert.Details["reads"], ","), string(reconcile.SourceApprove)) {
			blind = &n.Alert
		}
	}
	if blind == nil || blind.Severity != alert.Critical || !strings.Contains(blind.Details["permission"]+blind.Summary, vault.ActionConnectionsWrite) {
		t.Fatalf("guard-blind for the approval does not name %s: %+v", vault.ActionConnectionsWrite, blind)
	}
	r.arm.Allow(vault.ActionConnectionsWrite)
	for range 2 {
		if _, err := g.Project(t.Context(), project, nil); err != nil {
			t.Fatal(err)
		}
	}
	if r.approvals() == 0 || r.noticeCount(string(alert.GuardBlind), string(alert.Resolved)) != 1 {
		t.Fatalf("after the grant: %d PUTs, notices %+v", r.approvals(), r.hook.Notices())
	}
}

func TestAtlasOutageIsTransientAndBlind(t *testing.T) {
	r := newRig(t)
	r.atlas.Inject(atlassim.Fault{Status: 503})
	g := r.guard(options{})
	_, err := g.Timer(t.Context(), event.Timer{})
	if err == nil || !transient.Is(err) {
		t.Fatalf("timer with Atlas down: %v", err)
	}
	if r.noticeCount(string(alert.GuardBlind), string(alert.Raised)) == 0 {
		t.Fatalf("no guard-blind alert: %+v", r.hook.Notices())
	}
	if r.approvals() != 0 {
		t.Fatal("approved without reading Atlas")
	}
}
