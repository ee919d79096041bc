package perf

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/backoff"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/armsim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/notifytest"
	simworld "github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/world"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// ReactOptions configure MeasureReact: the handler binary and its
// AzureWebJobsStorage (Azurite) are required; Period (default 1s) is the real
// duration that stands for the guard's default 60 s timer period (one world
// minute); Runs per path default to 30; Logf gets one line per run.
type ReactOptions struct {
	Binary, Storage string
	Period          time.Duration
	Runs            int
	Logf            func(format string, args ...any)
}

// ReactResult holds real durations (one Period is one world minute):
// KeyAlert, key disabled at ARM → critical notice at the webhook (timer only:
// Azure has no event for it), of which KeyAhead arrived before Atlas's next
// validity check (every 15 world minutes); ConnTimer and ConnEvent, Atlas's
// recreated Pending connection appears on the vault → the approval PUT
// reaches ARM, timer only and with events; TickFloor, a lone Reconcile
// invocation with nothing to do.
type ReactResult struct {
	Period                                    time.Duration
	KeyAlert, ConnTimer, ConnEvent, TickFloor []time.Duration
	KeyAhead                                  int
}

// recreateAfter is how long (world time) Atlas waits before replacing an
// endpoint whose connection was rejected: short, so runs stay fast; the
// measurement starts when the replacement appears.
const recreateAfter = 15 * time.Second

// MeasureReact runs the real handler binary against the world simulator on
// a compressed clock and measures how long the guard takes to react:
//
//  1. the floor: lone Reconcile invocations with nothing to do;
//  2. at once, on different projects, with Event Grid delivery off: key
//     disabled → critical alert, and Atlas's recreated connection appears →
//     approved (timer only); each run starts after a random delay so that
//     its phase against the timer is uniform;
//  3. with the timer off and events on: recreated connection appears →
//     approved.
func MeasureReact(ctx context.Context, o ReactOptions) (*ReactResult, error) {
	o.Period = cmp.Or(o.Period, time.Second)
	o.Runs = cmp.Or(o.Runs, 30)
	if o.Logf == nil {
		o.Logf = func(string, ...any) {}
	}
	h := &reactHooks{appeared: map[string][]time.Time{}, approved: map[string]time.Time{}}
	// Project 0: connection runs; projects 1 and 2 take turns for the key
	// runs (while one is re-enabled and resolved, the other is disabled).
	w, err := simworld.New(simworld.Options{
		Projects: 3, Regions: []string{"EUROPE_WEST"}, Minute: o.Period, RecreateAfter: recreateAfter,
		StorageConnectionString: o.Storage, Timeline: h.timeline,
	})
	if err != nil {
		return nil, err
	}
	defer w.Close()
	worldStart := time.Now().Add(-w.Elapsed())
	w.ARM().OnChange(h.change)
	res := &ReactResult{Period: o.Period}
	hook := notifytest.NewWebhookRecorder()
	hookSrv := httptest.NewServer(hook)
	defer hookSrv.Close()
	gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	g, err := w.StartGuard(gctx, simworld.GuardOptions{Binary: o.Binary, Quiet: true, Env: map[string]string{"GUARD_ALERT_WEBHOOK_URL": hookSrv.URL + "/hook"}})
	cancel()
	if err != nil {
		return nil, err
	}
	// Setup: Atlas asks for one connection per project; the guard approves.
	for _, p := range w.Projects() {
		w.EnablePrivateNetworking(p)
	}
	if err := waitWithin(ctx, 20*time.Second, "the first approvals", func() bool {
		return !slices.ContainsFunc(w.Projects(), func(p *simworld.Project) bool { return current(w, p) == "" })
	}); err != nil {
		return nil, err
	}
	w.SetTimer(false)
	w.SetEvents(false)
	for i := range 6 {
		r := w.TickGuard(ctx, g)
		if r.Status != http.StatusOK {
			return nil, fmt.Errorf("react: lone Reconcile answered %d (%v): %s", r.Status, r.Err, r.Body)
		}
		if i > 0 { // the first one warms up
			res.TickFloor = append(res.TickFloor, r.Duration)
		}
	}
	w.SetTimer(true)
	validity := w.Real(15 * time.Minute)
	random := func() time.Duration { return rand.N(o.Period) }
	runs := func(what string, delay func() time.Duration, run func(i int) (t0, t1 time.Time, err error), out *[]time.Duration) error {
		for i := range o.Runs {
			backoff.Sleep(ctx, delay())
			t0, t1, err := run(i)
			if err != nil {
				return fmt.Errorf("%s run %d: %w", what, i+1, err)
			}
			*out = append(*out, t1.Sub(t0))
			o.Logf("%s run %d/%d: %s", what, i+1, o.Runs, t1.Sub(t0).Round(time.Millisecond))
		}
		return nil
	}
	var wg sync.WaitGroup
	var keyErr, conErr error
	wg.Go(func() {
		keyErr = runs("key", random, func(i int) (t0, t1 time.Time, err error) {
			if t0, t1, err = keyRun(ctx, w, hook, w.Project(1+i%2), o.Period); err == nil &&
				worldStart.Add((t0.Sub(worldStart)/validity+1)*validity).After(t1) {
				res.KeyAhead++
			}
			return t0, t1, err
		}, &res.KeyAlert)
	})
	wg.Go(func() {
		conErr = runs("timer connection", random, func(int) (time.Time, time.Time, error) { return connRun(ctx, w, h, w.Project(0), o.Period) }, &res.ConnTimer)
	})
	wg.Wait()
	if err := errors.Join(keyErr, conErr); err != nil {
		return nil, err
	}
	// Events only. Each run first lets the reconcile that the previous
	// approval's own ARM event triggered finish.
	w.SetTimer(false)
	w.SetEvents(true)
	if err := runs("event connection", func() time.Duration { return o.Period / 5 }, func(int) (time.Time, time.Time, error) { return connRun(ctx, w, h, w.Project(0), o.Period) }, &res.ConnEvent); err != nil {
		return nil, err
	}
	if code := g.ExitCode(); code >= 0 {
		return nil, fmt.Errorf("react: the guard exited with status %d: %s", code, g.Stderr())
	}
	return res, nil
}

// keyRun disables p's key, waits for the critical key-disabled notice, then
// re-enables the key. It returns when the key was disabled and when the
// notice arrived.
func keyRun(ctx context.Context, w *simworld.World, hook *notifytest.WebhookRecorder, p *simworld.Project, period time.Duration) (t0, t1 time.Time, err error) {
	// The previous alert of p must be resolved, or no new one is raised.
	raised := func() int { return countNotices(hook, p.ID, alert.KeyDisabled, alert.Raised) }
	if err := waitWithin(ctx, 3*period+5*time.Second, "the previous key-disabled alert resolved", func() bool {
		return countNotices(hook, p.ID, alert.KeyDisabled, alert.Resolved) >= raised()
	}); err != nil {
		return t0, t1, err
	}
	n, t0 := raised(), time.Now()
	if err := w.SetKeyEnabled(p, false); err != nil {
		return t0, t1, err
	}
	// Seen within the 10 ms the wait polls at: 1 % of the default period.
	err = waitWithin(ctx, 3*period+5*time.Second, "the key-disabled alert", func() bool { return raised() > n })
	t1 = time.Now()
	return t0, t1, errors.Join(err, w.SetKeyEnabled(p, true))
}

// connRun rejects p's current connection, waits for Atlas to replace it
// with a new Pending one and for the guard to approve that. It returns when
// the new connection appeared and when its approval reached ARM.
func connRun(ctx context.Context, w *simworld.World, h *reactHooks, p *simworld.Project, period time.Duration) (t0, t1 time.Time, err error) {
	cur := current(w, p)
	if cur == "" {
		return t0, t1, errors.New("no approved Atlas connection to reject")
	}
	old := w.AtlasConnections(p)
	var n int
	h.locked(func() { n = len(h.appeared[p.Vault.Name]) })
	if err := w.RejectConnection(p, cur, simworld.Ada); err != nil {
		return t0, t1, err
	}
	if err := waitWithin(ctx, w.Real(recreateAfter)+2*period+5*time.Second, "Atlas's replacement connection", func() (ok bool) {
		h.locked(func() {
			if ok = len(h.appeared[p.Vault.Name]) > n; ok {
				t0 = h.appeared[p.Vault.Name][n]
			}
		})
		return ok
	}); err != nil {
		return t0, t1, err
	}
	var fresh string
	err = waitWithin(ctx, 3*period+5*time.Second, "the replacement approved", func() bool {
		if fresh == "" {
			for _, c := range w.AtlasConnections(p) {
				if !slices.Contains(old, c) {
					fresh = c
				}
			}
		}
		var ok bool
		h.locked(func() { t1, ok = h.approved[fresh] })
		return fresh != "" && ok
	})
	return t0, t1, err
}

// current returns p's Atlas connection that is Approved on the vault ("" if
// none).
func current(w *simworld.World, p *simworld.Project) string {
	for _, c := range w.AtlasConnections(p, "INITIATING", "PENDING_ACCEPTANCE", "ACTIVE") {
		if w.ConnectionStatus(p, c) == vault.StatusApproved {
			return c
		}
	}
	return ""
}

func waitWithin(ctx context.Context, d time.Duration, what string, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return simworld.WaitFor(ctx, what, cond)
}

// reactHooks note, from the world's timeline and ARM writes, when Atlas's
// new Pending connections appear (per vault name, in order) and when the
// guard's first approval PUT of each connection lands.
type reactHooks struct {
	mu       sync.Mutex
	appeared map[string][]time.Time
	approved map[string]time.Time
}

func (h *reactHooks) locked(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	f()
}

// timeline is called synchronously by the world right after Atlas added the
// connection on the vault (and before the ARM event is published).
func (h *reactHooks) timeline(e simworld.Entry) {
	_, v, ok := strings.Cut(e.Text, "Pending connection ")
	if _, v, ok2 := strings.Cut(v, " appears on "); ok && ok2 && e.Source == simworld.SourceAtlas {
		now := time.Now()
		h.locked(func() { h.appeared[v] = append(h.appeared[v], now) })
	}
}

func (h *reactHooks) change(c armsim.Change) {
	now := time.Now()
	h.locked(func() {
		if _, ok := h.approved[c.After.Name]; !ok && c.After.Status == vault.StatusApproved {
			h.approved[c.After.Name] = now
		}
	})
}

// countNotices counts hook's notices of kind with action for project.
func countNotices(hook *notifytest.WebhookRecorder, project string, kind alert.Kind, action alert.Action) int {
	n := 0
	for _, x := range hook.Notices() {
		if x.Alert.ProjectID == project && x.Alert.Kind == kind && x.Action == action {
			n++
		}
	}
	return n
}

// BuildHandler builds the handler as make build does (run from handler/perf,
// as tests are) into dir and returns its path.
func BuildHandler(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "handler")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "..")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("react: building the handler: %v\n%s", err, out)
	}
	return bin, nil
}

// ReactTable renders r as the "Time to react" section of the report.
func ReactTable(r *ReactResult) string {
	var b strings.Builder
	fmt.Fprintf(&b, "### Time to react\n\nP = %s real stands for the default 60 s; %d runs per path.\n\n", r.Period, len(r.KeyAlert))
	b.WriteString("| path | p50 | p90 | max | floor (lone reconcile) |\n|---|---:|---:|---:|---:|\n")
	floor := Quantile(r.TickFloor, 0.5).Round(100 * time.Microsecond)
	periods := func(d time.Duration) string { return fmt.Sprintf("%.2f P", float64(d)/float64(r.Period)) }
	for _, row := range []struct {
		name string
		d    []time.Duration
		f    func(time.Duration) string
	}{
		{"key disabled → critical alert at the webhook (timer)", r.KeyAlert, periods},
		{"Atlas's recreated connection → approved (timer only)", r.ConnTimer, periods},
		{"the same with an Event Grid event", r.ConnEvent, func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }},
	} {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", row.name, row.f(Quantile(row.d, 0.5)), row.f(Quantile(row.d, 0.9)), row.f(slices.Max(row.d)), floor)
	}
	fmt.Fprintf(&b, "\n%d of %d key alerts arrived before Atlas's next validity check.\n", r.KeyAhead, len(r.KeyAlert))
	return b.String()
}
