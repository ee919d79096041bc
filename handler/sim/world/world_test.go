package world

import (
	"strings"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/event"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
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
			raw, err := event.DecodeInvocation(eventBody(c.ev), "event")
			if err != nil {
				t.Fatal(err)
			}
			evs, err := event.Decode(raw)
			if err != nil || len(evs) != 1 || raw[0] != '"' {
				t.Fatalf("decode: %v (%d events) from %s", err, len(evs), raw)
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
	raw, err := event.DecodeInvocation(timerBody(), "timer")
	if err != nil {
		t.Fatal(err)
	}
	if tm, err := event.DecodeTimer(raw); err != nil || tm.ScheduleStatus == nil || !tm.ScheduleStatus.Next.After(time.Now()) {
		t.Errorf("timer: %+v, %v", tm, err)
	}
}
