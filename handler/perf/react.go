package perf

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
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
	simworld "github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/world"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// ReactOptions configure MeasureReact. Zero values take the defaults noted.
type ReactOptions struct {
	// Binary is the handler binary (see BuildHandler); required.
	Binary string
	// Storage is the guard's AzureWebJobsStorage (Azurite); required.
	Storage string
	// Period is the real duration of the guard's timer period, which stands
	// for the default 60 s (one world minute); 0 means 1s.
	Period time.Duration
	// Runs per path; 0 means 30.
	Runs int
	// FloorRuns are the lone reconciles measured for each floor; 0 means 5.
	FloorRuns int
	// Logf, when set, receives one line per finished run.
	Logf func(format string, args ...any)
}

// ReactResult holds the time-to-react measurements of one world. Latencies
// are real durations; Period converts them to timer periods, and one period
// is one world minute.
type ReactResult struct {
	Period time.Duration
	// ValidityEvery is Atlas's validity check period, world time.
	ValidityEvery time.Duration
	Runs          int

	// KeyAlert: key disabled at ARM → critical key-disabled notice received
	// by the webhook (timer only: Azure has no event for it).
	KeyAlert []time.Duration
	// KeyLead: world time from each alert to the first validity check after
	// the key was disabled (negative when Atlas checked first).
	KeyLead []time.Duration
	// KeyAhead counts alerts that arrived before the first validity check
	// after the key was disabled (before Atlas could pause the clusters).
	KeyAhead int

	// ConnTimer and ConnEvent: Atlas's recreated Pending connection appears
	// on the vault → the guard's approval PUT reaches ARM; timer only (Event
	// Grid delivery off), and with events (timer off).
	ConnTimer, ConnEvent []time.Duration
	// EventAPI is, per ConnEvent run, how much of the same window at least
	// one call to an external endpoint (Atlas, ARM, identity, storage, alert
	// sinks) was outstanding; EventOverhead is the rest: handler time.
	EventAPI, EventOverhead []time.Duration
	// EventByWire is, per ConnEvent run, the busy time of each endpoint
	// alone (they overlap when calls run in parallel).
	EventByWire []map[string]time.Duration

	// TickFloor: a lone Reconcile invocation (every project, nothing to do),
	// host request → answer. EventFloor: a lone event invocation about one
	// project (nothing to do) and, per run, its API part.
	TickFloor, EventFloor, EventFloorAPI []time.Duration

	Elapsed time.Duration
}

// Periods returns d in timer periods.
func (r *ReactResult) Periods(d time.Duration) float64 { return float64(d) / float64(r.Period) }

// World returns real duration d as world time (one period is one minute).
func (r *ReactResult) World(d time.Duration) time.Duration {
	return time.Duration(float64(d) / float64(r.Period) * float64(time.Minute))
}

// recreateAfter is how long (world time) Atlas waits before replacing an
// endpoint whose connection was rejected: short, so runs stay fast; the
// measurement starts when the replacement appears.
const recreateAfter = 15 * time.Second

// MeasureReact runs the real handler binary against the world simulator on
// a compressed clock and measures how long the guard takes to react:
//
//  1. floors: lone Reconcile and event invocations with nothing to do;
//  2. at once, on different projects, with Event Grid delivery off: key
//     disabled → critical alert, and Atlas's recreated connection appears →
//     approved (timer only); each run starts after a random delay so that
//     its phase against the timer is uniform;
//  3. with the timer off and events on: recreated connection appears →
//     approved, with the API part of the window taken from Wire relays in
//     front of every endpoint the guard calls.
func MeasureReact(ctx context.Context, o ReactOptions) (*ReactResult, error) {
	if o.Binary == "" || o.Storage == "" {
		return nil, errors.New("react: Binary and Storage are required")
	}
	if o.Period <= 0 {
		o.Period = time.Second
	}
	if o.Runs <= 0 {
		o.Runs = 30
	}
	if o.FloorRuns <= 0 {
		o.FloorRuns = 5
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	start := time.Now()
	h := &reactHooks{appeared: map[string][]time.Time{}, approved: map[string]time.Time{}}
	// Project 0: connection runs; projects 1 and 2 take turns for the key
	// runs (while one is re-enabled and resolved, the other is disabled).
	w, err := simworld.New(simworld.Options{
		Projects:                3,
		Regions:                 []string{"EUROPE_WEST"},
		Minute:                  o.Period,
		RecreateAfter:           recreateAfter,
		StorageConnectionString: o.Storage,
		Timeline:                h.timeline,
	})
	if err != nil {
		return nil, err
	}
	defer w.Close()
	worldStart := time.Now().Add(-w.Elapsed())
	w.ARM().OnChange(h.change)
	res := &ReactResult{Period: o.Period, ValidityEvery: 15 * time.Minute, Runs: o.Runs}

	alerts, err := newAlertLog()
	if err != nil {
		return nil, err
	}
	defer alerts.close()
	env, wires, err := wireGuard(w.Env(0, ""), alerts.url)
	defer func() {
		for _, x := range wires {
			x.Close()
		}
	}()
	if err != nil {
		return nil, err
	}
	gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	g, err := w.StartGuard(gctx, simworld.GuardOptions{Binary: o.Binary, Quiet: true, Env: env})
	cancel()
	if err != nil {
		return nil, err
	}

	// Setup: Atlas asks for one connection per project; the guard approves
	// them (events and timer on).
	for _, p := range w.Projects() {
		w.EnablePrivateNetworking(p)
	}
	if err := waitWithin(ctx, 20*time.Second, "the first approvals", func() bool {
		for _, p := range w.Projects() {
			if current(w, p) == "" {
				return false
			}
		}
		return true
	}); err != nil {
		return nil, err
	}

	// 1. Floors, with nothing else going on.
	w.SetTimer(false)
	w.SetEvents(false)
	p0 := w.Project(0)
	for i := range o.FloorRuns + 1 {
		r := w.TickGuard(ctx, g)
		if r.Status != http.StatusOK {
			return nil, fmt.Errorf("react: lone Reconcile answered %d (%v): %s", r.Status, r.Err, r.Body)
		}
		if i > 0 { // the first one warms up
			res.TickFloor = append(res.TickFloor, r.Duration)
		}
	}
	for i := range o.FloorRuns + 2 {
		ev := w.ConnectionEvent(p0, current(w, p0), simworld.Ada, time.Now())
		t0 := time.Now()
		r := w.DeliverTo(ctx, g, ev)
		t1 := time.Now()
		if r.Status != http.StatusOK {
			return nil, fmt.Errorf("react: lone event answered %d (%v): %s", r.Status, r.Err, r.Body)
		}
		if i >= 2 { // the first raises (and records) a connection-changed warning
			res.EventFloor = append(res.EventFloor, r.Duration)
			res.EventFloorAPI = append(res.EventFloorAPI, Busy(t0, t1, wires...))
			by := map[string]time.Duration{}
			for _, x := range wires {
				if d := Busy(t0, t1, x); d > 0 {
					by[x.Name] = d
				}
			}
			logf("lone event: %s (API %s: %s)", r.Duration.Round(time.Microsecond), Busy(t0, t1, wires...).Round(time.Microsecond), byWire(by))
		}
	}

	// 2. Timer only: key runs and connection runs at once.
	w.SetTimer(true)
	nextCheck := func(t time.Time) time.Time {
		v := w.Real(res.ValidityEvery)
		return worldStart.Add((t.Sub(worldStart)/v + 1) * v)
	}
	var (
		wg             sync.WaitGroup
		keyErr, conErr error
	)
	wg.Go(func() {
		for i := range o.Runs {
			p := w.Project(1 + i%2)
			backoff.Sleep(ctx, rand.N(o.Period))
			lat, t1, err := keyRun(ctx, w, alerts, p, o.Period)
			if err != nil {
				keyErr = fmt.Errorf("key run %d: %w", i+1, err)
				return
			}
			t0 := t1.Add(-lat)
			res.KeyAlert = append(res.KeyAlert, lat)
			lead := nextCheck(t0).Sub(t1) // negative: Atlas checked first
			res.KeyLead = append(res.KeyLead, res.World(lead))
			if lead > 0 {
				res.KeyAhead++
			}
			logf("key run %d/%d: alert after %s (%.2f periods)", i+1, o.Runs, lat.Round(time.Millisecond), res.Periods(lat))
		}
	})
	wg.Go(func() {
		for i := range o.Runs {
			backoff.Sleep(ctx, rand.N(o.Period))
			t0, t1, err := connRun(ctx, w, h, p0, o.Period)
			if err != nil {
				conErr = fmt.Errorf("timer connection run %d: %w", i+1, err)
				return
			}
			res.ConnTimer = append(res.ConnTimer, t1.Sub(t0))
			logf("timer connection run %d/%d: approved after %s (%.2f periods)", i+1, o.Runs, t1.Sub(t0).Round(time.Millisecond), res.Periods(t1.Sub(t0)))
		}
	})
	wg.Wait()
	if err := errors.Join(keyErr, conErr); err != nil {
		return nil, err
	}

	// 3. Events only.
	w.SetTimer(false)
	w.SetEvents(true)
	for i := range o.Runs {
		// Let the reconcile that the previous approval's own ARM event
		// triggered finish.
		backoff.Sleep(ctx, o.Period/5)
		t0, t1, err := connRun(ctx, w, h, p0, o.Period)
		if err != nil {
			return nil, fmt.Errorf("event connection run %d: %w", i+1, err)
		}
		api := Busy(t0, t1, wires...)
		by := map[string]time.Duration{}
		for _, x := range wires {
			if d := Busy(t0, t1, x); d > 0 {
				by[x.Name] = d
			}
		}
		res.EventByWire = append(res.EventByWire, by)
		res.ConnEvent = append(res.ConnEvent, t1.Sub(t0))
		res.EventAPI = append(res.EventAPI, api)
		res.EventOverhead = append(res.EventOverhead, t1.Sub(t0)-api)
		logf("event connection run %d/%d: approved after %s (API %s: %s)", i+1, o.Runs, t1.Sub(t0).Round(time.Microsecond), api.Round(time.Microsecond), byWire(by))
	}
	if code := g.ExitCode(); code >= 0 {
		return nil, fmt.Errorf("react: the guard exited with status %d: %s", code, g.Stderr())
	}
	res.Elapsed = time.Since(start)
	return res, nil
}

// keyRun disables p's key and waits for the critical key-disabled notice;
// then re-enables the key. It returns the latency and the notice's arrival.
func keyRun(ctx context.Context, w *simworld.World, a *alertLog, p *simworld.Project, period time.Duration) (time.Duration, time.Time, error) {
	// The previous alert of p must be resolved, or no new one is raised.
	if err := waitWithin(ctx, 3*period+5*time.Second, "the previous key-disabled alert resolved", func() bool {
		return a.count(p.ID, alert.KeyDisabled, alert.Resolved) >= a.count(p.ID, alert.KeyDisabled, alert.Raised)
	}); err != nil {
		return 0, time.Time{}, err
	}
	n := a.count(p.ID, alert.KeyDisabled, alert.Raised)
	t0 := time.Now()
	if err := w.SetKeyEnabled(p, false); err != nil {
		return 0, time.Time{}, err
	}
	var got received
	err := waitWithin(ctx, 3*period+5*time.Second, "the key-disabled alert", func() bool {
		var ok bool
		got, ok = a.nth(p.ID, alert.KeyDisabled, alert.Raised, n)
		return ok
	})
	if err2 := w.SetKeyEnabled(p, true); err == nil {
		err = err2
	}
	if err != nil {
		return 0, time.Time{}, err
	}
	if got.n.Alert.Severity != alert.Critical {
		return 0, time.Time{}, fmt.Errorf("key-disabled alert has severity %s, want critical", got.n.Alert.Severity)
	}
	return got.at.Sub(t0), got.at, nil
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
	n := h.appearances(p.Vault.Name)
	if err := w.RejectConnection(p, cur, simworld.Ada); err != nil {
		return t0, t1, err
	}
	if err := waitWithin(ctx, w.Real(recreateAfter)+2*period+5*time.Second, "Atlas's replacement connection", func() bool {
		return h.appearances(p.Vault.Name) > n
	}); err != nil {
		return t0, t1, err
	}
	t0 = h.appearedAt(p.Vault.Name, n)
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
		t1, ok = h.approval(fresh)
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

// wireGuard starts a Wire in front of every endpoint in the guard's
// environment env and returns the overrides that route the guard through
// them, alerts going to the webhook hookURL.
func wireGuard(env map[string]string, hookURL string) (map[string]string, []*Wire, error) {
	out := map[string]string{}
	var wires []*Wire
	through := func(name, raw string) (string, error) {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return "", fmt.Errorf("react: %s: not a URL: %q", name, raw)
		}
		x, err := StartWire(name, u.Host)
		if err != nil {
			return "", err
		}
		wires = append(wires, x)
		u.Host = x.Addr()
		return u.String(), nil
	}
	for _, k := range []string{"ATLAS_BASE_URL", "GUARD_ARM_ENDPOINT", "IDENTITY_ENDPOINT", "GUARD_ALERT_TOPIC_ENDPOINT"} {
		v, err := through(k, env[k])
		if err != nil {
			return nil, wires, err
		}
		out[k] = v
	}
	v, err := through("GUARD_ALERT_WEBHOOK_URL", hookURL)
	if err != nil {
		return nil, wires, err
	}
	out["GUARD_ALERT_WEBHOOK_URL"] = v
	// AzureWebJobsStorage=…;BlobEndpoint=http://127.0.0.1:PORT/devstoreaccount1;
	cs := env["AzureWebJobsStorage"]
	var parts []string
	for _, part := range strings.Split(cs, ";") {
		if blob, ok := strings.CutPrefix(part, "BlobEndpoint="); ok {
			v, err := through("storage", blob)
			if err != nil {
				return nil, wires, err
			}
			part = "BlobEndpoint=" + v
		}
		parts = append(parts, part)
	}
	out["AzureWebJobsStorage"] = strings.Join(parts, ";")
	if out["AzureWebJobsStorage"] == cs {
		return nil, wires, errors.New("react: AzureWebJobsStorage has no BlobEndpoint to relay")
	}
	return out, wires, nil
}

// reactHooks note, from the world's timeline and ARM writes, when Atlas's
// new Pending connections appear and when the guard's approvals land.
type reactHooks struct {
	mu       sync.Mutex
	appeared map[string][]time.Time // vault name → appearance times, in order
	approved map[string]time.Time   // connection name → first approval PUT
}

// timeline is called synchronously by the world right after Atlas added the
// connection on the vault (and before the ARM event is published).
func (h *reactHooks) timeline(e simworld.Entry) {
	if e.Source != simworld.SourceAtlas {
		return
	}
	_, v, ok := strings.Cut(e.Text, "Pending connection ")
	if !ok {
		return
	}
	_, v, ok = strings.Cut(v, " appears on ")
	if !ok {
		return
	}
	now := time.Now()
	h.mu.Lock()
	h.appeared[v] = append(h.appeared[v], now)
	h.mu.Unlock()
}

func (h *reactHooks) change(c armsim.Change) {
	if c.After.Status != vault.StatusApproved {
		return
	}
	now := time.Now()
	h.mu.Lock()
	if _, ok := h.approved[c.After.Name]; !ok {
		h.approved[c.After.Name] = now
	}
	h.mu.Unlock()
}

func (h *reactHooks) appearances(vaultName string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.appeared[vaultName])
}

func (h *reactHooks) appearedAt(vaultName string, i int) time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.appeared[vaultName][i]
}

func (h *reactHooks) approval(conn string) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.approved[conn]
	return t, ok
}

// alertLog is the guard's alert webhook: it decodes the generic payload and
// notes when each notice arrived.
type alertLog struct {
	url string
	srv *http.Server

	mu  sync.Mutex
	got []received
}

type received struct {
	at time.Time
	n  alert.Notice
}

func newAlertLog() (*alertLog, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &alertLog{url: "http://" + ln.Addr().String() + "/hook"}
	a.srv = &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second}
	go a.srv.Serve(ln)
	return a, nil
}

func (a *alertLog) close() { a.srv.Close() }

func (a *alertLog) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	var body struct {
		Notices []alert.Notice `json:"notices"`
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	now := time.Now()
	if err != nil || json.Unmarshal(b, &body) != nil {
		http.Error(rw, "body is not a generic webhook payload", http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	for _, n := range body.Notices {
		a.got = append(a.got, received{at: now, n: n})
	}
	a.mu.Unlock()
	rw.WriteHeader(http.StatusOK)
}

// nth returns the i-th (0-based) notice of kind with action for project.
func (a *alertLog) nth(project string, kind alert.Kind, action alert.Action, i int) (received, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range a.got {
		if r.n.Alert.ProjectID == project && r.n.Alert.Kind == kind && r.n.Action == action {
			if i == 0 {
				return r, true
			}
			i--
		}
	}
	return received{}, false
}

func (a *alertLog) count(project string, kind alert.Kind, action alert.Action) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, r := range a.got {
		if r.n.Alert.ProjectID == project && r.n.Alert.Kind == kind && r.n.Action == action {
			n++
		}
	}
	return n
}

// BuildHandler builds the handler (./handler of the module that holds the
// working directory) into dir and returns its path.
func BuildHandler(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("react: cannot find the module root (go env GOMOD): %v", err)
	}
	bin := filepath.Join(dir, "handler")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./handler")
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("react: building the handler: %v\n%s", err, out)
	}
	return bin, nil
}

// ReactTable renders r as the "Time to react" section of perf.md.
func ReactTable(r *ReactResult) string {
	var b strings.Builder
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/1e6) }
	dist := func(d []time.Duration) (p50, p90, mx time.Duration) {
		return Quantile(d, 0.5), Quantile(d, 0.9), slices.Max(d)
	}
	inP := func(d time.Duration) string {
		return fmt.Sprintf("%s = %.2f P", ms(d), r.Periods(d))
	}
	tick := Median(r.TickFloor)
	fmt.Fprintf(&b, "### Time to react\n\n"+
		"The real handler binary (separate process, configured only through its environment) in the world simulator: Atlas, ARM and managed identity simulators over TLS, Azurite storage, alert webhook, all on loopback. "+
		"Compressed clock: the timer period P = %s real stands for the default 60 s (1 world minute); Atlas's validity check runs every %s world time. "+
		"%d runs per path; p50/p90 nearest rank. Timer runs start after a random delay in [0, P), so their phase against the timer is uniform: expect ≈ U(0, P) + one reconcile. "+
		"Floors in the same world: lone Reconcile = host request → answer of one timer invocation that changes nothing (3 projects, median of %d); lone event = the same for one event about one project (median of %d). Took %s.\n\n",
		r.Period, r.ValidityEvery, r.Runs, len(r.TickFloor), len(r.EventFloor), r.Elapsed.Round(time.Second))
	b.WriteString("| path | p50 | p90 | max | floor (lone reconcile) | target | met |\n|---|---:|---:|---:|---:|---|---|\n")
	timerRow := func(name string, d []time.Duration) {
		p50, p90, mx := dist(d)
		met := "yes"
		if over := mx - r.Period; over > 0 {
			met = fmt.Sprintf("max − P = %s (%.1f × lone reconcile)", ms(over), float64(over)/float64(tick))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | ≤ 1 period | %s |\n", name, inP(p50), inP(p90), inP(mx), ms(tick), met)
	}
	timerRow("key disabled at ARM → critical alert at the webhook (timer; Azure has no event)", r.KeyAlert)
	timerRow("Atlas's recreated connection appears → approval PUT at ARM (timer only, Event Grid off)", r.ConnTimer)
	p50, p90, mx := dist(r.ConnEvent)
	o50, o90, omx := dist(r.EventOverhead)
	met := "yes"
	if omx > 50*time.Millisecond {
		met = "**no**"
	}
	fmt.Fprintf(&b, "| same, with Event Grid (timer off) | %s | %s | %s | %s | handler overhead ≤ 50 ms | %s (overhead max %s) |\n",
		ms(p50), ms(p90), ms(mx), ms(Median(r.EventFloor)), met, ms(omx))

	a50, a90, amx := dist(r.EventAPI)
	f50, fa50 := Median(r.EventFloor), Median(r.EventFloorAPI)
	fmt.Fprintf(&b, "\nEvent path, split. API = part of the window in which at least one call to Atlas, ARM, the identity endpoint, storage or an alert sink, begun in the window, was outstanding (TCP relays in front of each endpoint timestamp every exchange, TLS handshakes included); handler overhead = the rest (the world's Event Grid hop, event decoding, routing, state decoding, plan, the guard's own scheduling on 2 noisy cores). Calls begun before the window are left out, so the overhead is, if anything, overstated.\n\n")
	b.WriteString("| event path | p50 | p90 | max |\n|---|---:|---:|---:|\n")
	fmt.Fprintf(&b, "| connection appears → approval PUT | %s | %s | %s |\n", ms(p50), ms(p90), ms(mx))
	fmt.Fprintf(&b, "| of which API | %s | %s | %s |\n", ms(a50), ms(a90), ms(amx))
	fmt.Fprintf(&b, "| **handler overhead** (target ≤ 50 ms) | %s | %s | %s |\n", ms(o50), ms(o90), ms(omx))
	fmt.Fprintf(&b, "| floor: lone event reconcile (median) | %s | | |\n", ms(f50))
	var fo []time.Duration
	for i, d := range r.EventFloor {
		fo = append(fo, d-r.EventFloorAPI[i])
	}
	fmt.Fprintf(&b, "| floor: of which API / the rest (medians) | %s / %s | | |\n", ms(fa50), ms(Median(fo)))
	slow := 0
	for i, d := range r.ConnEvent {
		if d > r.ConnEvent[slow] {
			slow = i
		}
	}
	fmt.Fprintf(&b, "\nSlowest event run: %s, API %s (per endpoint: %s), overhead %s.\n",
		ms(r.ConnEvent[slow]), ms(r.EventAPI[slow]), byWire(r.EventByWire[slow]), ms(r.EventOverhead[slow]))

	k50, _, kmx := dist(r.KeyAlert)
	l50 := Quantile(r.KeyLead, 0.5)
	fmt.Fprintf(&b, "\nAlert lead before Atlas's validity check (world time): the key-disabled alert came %s after the key was disabled at p50 and %s at worst, "+
		"so a key disabled right after a check is alerted %s ahead of the next one, and any key disabled more than %s before a check is alerted before Atlas pauses the clusters (%.0f%% of a %s cycle). "+
		"Measured against the world's own check schedule: lead p50 %s, min %s; %d/%d alerts arrived before the first check after the disable "+
		"(the others: keys disabled less than the alert latency before a check; no poller can beat that, and Azure publishes no event for it).\n",
		worldMin(r.World(k50)), worldMin(r.World(kmx)), worldMin(r.ValidityEvery-r.World(kmx)), worldMin(r.World(kmx)),
		100*(1-float64(r.World(kmx))/float64(r.ValidityEvery)), r.ValidityEvery,
		worldMin(l50), worldMin(slices.Min(r.KeyLead)), r.KeyAhead, len(r.KeyAlert))
	return b.String()
}

// byWire formats per-endpoint busy times, largest first.
func byWire(by map[string]time.Duration) string {
	names := slices.Collect(maps.Keys(by))
	slices.SortFunc(names, func(a, b string) int { return cmp.Compare(by[b], by[a]) })
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %.1f ms", wireLabel(n), float64(by[n])/1e6))
	}
	return strings.Join(parts, ", ")
}

func wireLabel(env string) string {
	switch env {
	case "ATLAS_BASE_URL":
		return "Atlas"
	case "GUARD_ARM_ENDPOINT":
		return "ARM"
	case "IDENTITY_ENDPOINT":
		return "identity"
	case "GUARD_ALERT_TOPIC_ENDPOINT":
		return "topic"
	case "GUARD_ALERT_WEBHOOK_URL":
		return "webhook"
	}
	return env
}

// worldMin formats world time d in minutes, or in seconds under a minute.
func worldMin(d time.Duration) string {
	if d > -time.Minute && d < time.Minute {
		return fmt.Sprintf("%.0f world s", d.Seconds())
	}
	return fmt.Sprintf("%.1f world min", d.Minutes())
}
