package world

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/event"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// What the world delivers is what the handler's own decoders and classifier
// expect from the host: events string-wrapped in the "event" binding, the
// timer's object in "timer".
func TestHostBodiesDecode(t *testing.T) {
	v := resource.ID{SubscriptionID: "8f3c2a1e-4b7d-4e9a-9c1f-2d6b5a7e0c34", ResourceGroup: "rg", Name: "kv-one"}
	p := &Project{Vault: v, KeyName: "k"}
	conn := "atlas-pe-useast2-0123456789abcdef01234567.3b4f1c2a-9d7e-4a6b-8c5d-1e2f3a4b5c6d"
	exp := time.Now().Add(48 * time.Hour).Truncate(time.Second)
	mi := "6d2f8b1e-3c9a-4e7d-a5b0-1f4c7e9d2a68"
	for _, c := range []struct {
		ev            Event
		kind          event.Kind
		object, actor string
	}{
		{connEvent(v, conn, opConnWrite, userActor(Ada), time.Now()), event.ConnectionChanged, conn, Ada.UPN},
		{connEvent(v, conn, opConnDelete, userActor(Ada), time.Now()), event.ConnectionChanged, conn, Ada.UPN},
		{connEvent(v, conn, opProxyWrite, atlasActor, time.Now()), event.ConnectionChanged, conn, "0f9d3b7a-1e5c-4a2b-8d6f-9c3e1a7b5d24"},
		{connEvent(v, conn, opConnWrite, managedIdentityActor(mi, guid(), v), time.Now()), event.ConnectionChanged, conn, mi},
		{armEvent(v, v.String()+"/providers/Microsoft.Authorization/roleAssignments/"+guid(), opRoleAssignmentDelete, userActor(Ada), time.Now()), event.RoleAssignmentDeleted, "", Ada.UPN},
		{keyEvent(p, typeKeyNearExpiry, "abc", exp), event.KeyNearExpiry, "k", ""},
		{keyEvent(p, typeKeyExpired, "abc", exp), event.KeyExpired, "k", ""},
		{keyEvent(p, typeKeyNewVersion, "abd", exp), event.KeyNewVersion, "k", ""},
	} {
		t.Run(c.ev.String(), func(t *testing.T) {
			inv, err := event.DecodeInvocation(eventBody(c.ev))
			if err != nil {
				t.Fatal(err)
			}
			evs, err := event.Decode(inv.Data["event"])
			if err != nil || len(evs) != 1 || inv.Data["event"][0] != '"' {
				t.Fatalf("decode: %v (%d events) from %s", err, len(evs), inv.Data["event"])
			}
			tr, err := event.Classify(evs[0])
			if err != nil {
				t.Fatal(err)
			}
			if tr.Kind != c.kind || tr.Object != c.object || !strings.Contains(tr.Actor, c.actor) || !tr.Covers(v) {
				t.Errorf("got kind %s object %q actor %q covers %v; want %s %q %q", tr.Kind, tr.Object, tr.Actor, tr.Covers(v), c.kind, c.object, c.actor)
			}
			if c.kind == event.KeyNearExpiry && (tr.Expires == nil || !tr.Expires.Equal(exp)) {
				t.Errorf("expires %s, want %s", tr.Expires, exp)
			}
		})
	}
	inv, err := event.DecodeInvocation(timerBody())
	if err != nil {
		t.Fatal(err)
	}
	if tm, err := event.DecodeTimer(inv.Data["timer"]); err != nil || tm.ScheduleStatus == nil || !tm.ScheduleStatus.Next.After(time.Now()) {
		t.Errorf("timer: %+v, %v", tm, err)
	}
}

// Atlas's control plane: approved → ACTIVE; rejected → PENDING_RECREATION →
// replaced by a new endpoint with a new Pending connection; and the validity
// check pauses the EAR clusters while the key is disabled, resumes them after.
func TestAtlas(t *testing.T) {
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
	w.SetEvents(false)
	p := w.Project(0)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	wait := func(what string, cond func() bool) {
		t.Helper()
		if err := w.WaitFor(ctx, what, cond); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.StartGuard(ctx, GuardOptions{Binary: "/nonexistent"}); err == nil {
		t.Error("StartGuard without storage succeeded")
	}

	names := w.EnablePrivateNetworking(p)
	wait("PENDING_ACCEPTANCE", func() bool { return len(w.AtlasConnections(p, atlassim.StatusPendingAcceptance)) == 2 })
	for _, n := range names {
		if err := w.ARM().SetConnectionStatus(p.Vault, n, vault.StatusApproved, "test"); err != nil {
			t.Fatal(err)
		}
	}
	wait("ACTIVE", func() bool { return len(w.AtlasConnections(p, atlassim.StatusActive)) == 2 })
	if err := w.RejectConnection(p, names[0], Ada); err != nil {
		t.Fatal(err)
	}
	wait("PENDING_RECREATION", func() bool {
		return slices.ContainsFunc(w.Atlas().Endpoints(p.ID), func(e atlassim.Endpoint) bool {
			return e.Status == atlassim.StatusPendingRecreation && strings.Contains(e.ErrorMessage, "rejected")
		})
	})
	var fresh []string
	wait("a new endpoint", func() bool {
		fresh = w.AtlasConnections(p, atlassim.StatusInitiating, atlassim.StatusPendingAcceptance)
		return len(fresh) == 1
	})
	if fresh[0] == names[0] || w.ConnectionStatus(p, fresh[0]) != vault.StatusPending || w.ConnectionStatus(p, names[0]) != "" {
		t.Errorf("new connection %s is %q; the rejected one is %q", fresh[0], w.ConnectionStatus(p, fresh[0]), w.ConnectionStatus(p, names[0]))
	}
	if len(w.Approvals()) != 0 {
		t.Errorf("the world's own changes were reported as API writes")
	}

	valid := func() bool { akv, _ := w.Atlas().Project(p.ID); return *akv.Valid }
	if err := w.SetKeyEnabled(p, false); err != nil {
		t.Fatal(err)
	}
	wait("clusters paused", func() bool { return !valid() && len(w.Paused(p)) == len(p.Clusters) })
	if err := w.SetKeyEnabled(p, true); err != nil {
		t.Fatal(err)
	}
	wait("clusters resumed", func() bool { return valid() && len(w.Paused(p)) == 0 })
}
