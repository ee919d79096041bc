package reconcile_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// TestAlertConfigsReadHourly: Atlas's alert configurations cost one Atlas
// call per project per hour however often the project is reconciled. A
// change inside the hour shows at the next hour's read. A failed read raises
// guard-blind (service atlas, the missing role named) once, is retried after
// AlertConfigsRetry (not at once: it never asks the platform to retry), and
// leaves the rule unread (nothing raised or resolved) until a read succeeds,
// which resolves the guard-blind within minutes, not an hour.
func TestAlertConfigsReadHourly(t *testing.T) {
	r := newRig(t)
	clk := &clock{t: time.Now()}
	g := r.guard(options{now: clk.Now})
	reads := func() int64 { return r.atlas.Stats().ByRoute[atlassim.RouteAlertConfigs] }
	off, blind := alert.AtlasAlertsOff, alert.GuardBlind
	// reconcile runs the project n times, 10 minutes apart, then checks the
	// reads so far and the notices of the two kinds (raised/resolved).
	reconcile := func(step string, n int, wantReads int64, want map[alert.Kind][2]int) {
		t.Helper()
		for range n {
			if rep, err := g.Project(t.Context(), project, nil); err != nil {
				t.Fatalf("%s: %v (%+v)", step, err, rep)
			}
			clk.Advance(10 * time.Minute)
		}
		if got := reads(); got != wantReads {
			t.Errorf("%s: %d reads of alertConfigs, want %d", step, got, wantReads)
		}
		for kind, w := range want {
			if got := [2]int{r.noticeCount(kind, alert.Raised), r.noticeCount(kind, alert.Resolved)}; got != w {
				t.Errorf("%s: %s raised/resolved %v, want %v", step, kind, got, w)
			}
		}
	}
	r.atlas.SetAlertConfigs(project, atlassim.EventEARKMSNetworkAccessDenied, false)
	reconcile("disabled", 1, 1, map[alert.Kind][2]int{off: {1, 0}})
	r.atlas.SetAlertConfigs(project, atlassim.EventEARKMSNetworkAccessDenied, true)
	reconcile("enabled inside the hour", 5, 1, map[alert.Kind][2]int{off: {1, 0}})
	reconcile("next hour", 1, 2, map[alert.Kind][2]int{off: {1, 1}})

	r.atlas.Inject(atlassim.Fault{Match: "/alertConfigs", Status: 403})
	clk.Advance(time.Hour)
	reconcile("read refused", 1, 3, map[alert.Kind][2]int{blind: {1, 0}})
	r.atlas.SetAlertConfigs(project, atlassim.EventEARConfigNoLongerValid)
	reconcile("refused, retried every AlertConfigsRetry", 5, 8, map[alert.Kind][2]int{blind: {1, 0}, off: {1, 1}})
	for _, n := range r.hook.Notices() {
		if n.Alert.Kind == alert.GuardBlind && (n.Alert.Details["service"] != "atlas" || n.Alert.Details["reads"] != "atlas:alertConfigs" ||
			!strings.Contains(n.Alert.Details["permission"], "Project Read Only")) {
			t.Errorf("guard-blind details %v", n.Alert.Details)
		}
	}
	r.atlas.ClearFaults()
	reconcile("readable again", 1, 9, map[alert.Kind][2]int{blind: {1, 1}, off: {2, 1}})
}
