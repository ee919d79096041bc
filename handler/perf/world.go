// Package perf produces the README's performance figures: time to react (the
// real handler against the world simulator), API calls per project, start-up
// and memory of the built binary, and reconcile wall time and memory as the
// projects grow. Everything runs on loopback, bounded in count and time. The
// tests run each measurement briefly; `make perf` (-full) runs them at full
// size and writes out/*.md. Nothing in the product imports this package.
package perf

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/logging"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/notify"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/reconcile"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/armsim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtest"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// Auth methods of the Atlas client, and the API key the simulated Atlas
// accepts.
const (
	AuthServiceAccount = "service-account"
	AuthDigest         = "api-key-digest"

	publicKey  = "perfpubkey"
	privateKey = "perf-private-key-0000-1111"
)

// World is the shared simulator rig (simtest) holding Projects healthy
// projects in steady state: each has its own vault with one ACTIVE endpoint
// whose connection is already Approved, an enabled key that expires in a
// year and one EAR cluster. A reconcile of such a project changes nothing.
// azidentity's environment and token cache are process-wide: use one World
// per process.
type World struct {
	*simtest.Sims
	Projects []string
	vc       *vault.Client
}

// NewWorld starts the simulators with n projects and puts the managed
// identity endpoint in the process environment.
func NewWorld(n int) (*World, error) {
	s, err := simtest.Start(simtest.Options{ARM: armsim.Config{SettleReads: -1}})
	if err != nil {
		return nil, err
	}
	w := &World{Sims: s}
	s.Atlas.AddAPIKey(publicKey, privateKey)
	// The ARM client as the app wires it, over a transport that keeps
	// azcore's default of 10 idle connections per host.
	retry := policy.RetryOptions{RetryDelay: 50 * time.Millisecond}
	var cred azcore.TokenCredential
	var cloudCfg cloud.Configuration
	if err = s.Setenv(); err == nil {
		cred, err = s.Credential(retry)
	}
	if err == nil {
		cloudCfg, err = vault.CloudFor("AZURE", s.ARMURL)
	}
	if err == nil {
		w.vc, err = vault.New(vault.Options{Credential: cred, Cloud: cloudCfg, Transport: w.client(10), Retry: retry, PollInterval: 5 * time.Millisecond})
	}
	if err == nil {
		err = w.AddProjects(n)
	}
	if err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// ProjectID returns the Atlas project id of the i-th simulated project.
func ProjectID(i int) string { return fmt.Sprintf("65f0c0ffee%014x", i) }

// AddProjects adds healthy projects until the world holds n.
func (w *World) AddProjects(n int) error {
	for i := len(w.Projects); i < n; i++ {
		p := ProjectID(i)
		kv := resource.ID{SubscriptionID: "11111111-2222-3333-4444-555555555555", ResourceGroup: "rg-atlas-ear", Name: fmt.Sprintf("kv-perf-%05d", i)}
		if _, err := w.AddProject(simtest.Project{ID: p, Vault: kv, Clusters: []string{"orders"}, Regions: []string{"EUROPE_WEST"}}); err != nil {
			return err
		}
		if _, err := w.AddEndpoint(p, kv, "EUROPE_WEST", fmt.Sprintf("atlas-pe-westeurope-%05d", i), atlassim.StatusActive, vault.StatusApproved); err != nil {
			return err
		}
		w.Projects = append(w.Projects, p)
	}
	return nil
}

// SetLatency makes every Atlas and ARM call (token fetches included, the
// managed identity endpoint excluded) take at least d; 0 removes it.
func (w *World) SetLatency(d time.Duration) {
	w.Atlas.ClearFaults()
	w.ARM.ClearFaults()
	if d > 0 {
		w.Atlas.Inject(atlassim.Fault{Latency: d})
		w.ARM.Inject(armsim.Fault{Latency: d})
	}
}

// ReconcilerOptions choose how the guard is wired to the world: Projects,
// Auth (AuthServiceAccount or AuthDigest), Concurrency (0: the guard's
// default) and Store (default a fresh state.NewMemory()).
type ReconcilerOptions struct {
	Projects    []string
	Auth        string
	Concurrency int
	Store       state.Store
}

// Reconciler wires a reconciler to the world the way package app does in
// production, in enforce mode.
func (w *World) Reconciler(o ReconcilerOptions) (*reconcile.Reconciler, error) {
	ao := atlas.Options{HTTPClient: w.client(8)} // atlas's default idle connections per host
	if o.Auth == AuthDigest {
		ao.PublicKey, ao.PrivateKey = publicKey, privateKey
	}
	ac, err := w.AtlasClient(ao)
	if err != nil {
		return nil, err
	}
	return reconcile.New(reconcile.Options{
		Projects: o.Projects, Atlas: ac,
		Azure: func(string) (reconcile.Azure, error) { return w.vc, nil },
		Store: cmp.Or[state.Store](o.Store, state.NewMemory()), Log: notify.NewLog(logging.Discard()),
		Policy:      plan.DefaultPolicy(plan.ModeEnforce),
		Concurrency: o.Concurrency,
		Timeout:     10 * time.Minute,
	})
}

// client trusts the simulators' CA and keeps idle connections per host as
// the production client's default transport does (net/http's own default
// is 2, which would make concurrent runs pay TLS handshakes).
func (w *World) client(idle int) *http.Client {
	t := w.CA.Transport()
	t.MaxIdleConnsPerHost = idle
	return &http.Client{Transport: t, Timeout: time.Minute}
}

// ScaleCase is one reconcile of many projects against the simulators, with
// Latency injected into every Atlas and ARM call, Auth AuthServiceAccount
// (default) or AuthDigest, and, when RateLimit > 0, atlassim's token bucket
// (requests per second, bursts of Burst) on during the timed run.
type ScaleCase struct {
	Projects, Concurrency int
	Latency               time.Duration
	Auth                  string
	RateLimit             float64
	Burst                 int
}

// ScaleResult is what one ScaleCase measured: Wall, the wall time of
// Reconciler.All; CriticalPath, the median of a lone project's reconcile in
// the same world (the floor); Ideal, ceil(Projects/Concurrency) ×
// CriticalPath; BaseHeap, HeapInuse after a GC before the run, and PeakHeap,
// the highest sampled during it (the simulators share the process); the
// requests the simulators served (token fetches and digest challenges
// included); Atlas429, the rate limiter's 429s; Failed, the projects whose
// reconcile reported an error.
type ScaleResult struct {
	ScaleCase
	Wall, CriticalPath, Ideal  time.Duration
	BaseHeap, PeakHeap         uint64
	AtlasRequests, ARMRequests int64
	Atlas429                   int64
	Failed                     int
}

// Scale runs c: it grows the world to c.Projects, wires a fresh reconciler
// (fresh state store, as after a cold start), warms it on one project
// (tokens, connections), measures a lone project's reconcile three times,
// then times Reconciler.All over c.Projects projects while sampling the heap.
func (w *World) Scale(ctx context.Context, c ScaleCase) (ScaleResult, error) {
	res := ScaleResult{ScaleCase: c}
	c.Concurrency = cmp.Or(c.Concurrency, 8)
	res.Concurrency = c.Concurrency
	if err := w.AddProjects(c.Projects); err != nil {
		return res, err
	}
	w.Atlas.SetRateLimit(0, 0)
	w.SetLatency(c.Latency)
	defer w.SetLatency(0)
	r, err := w.Reconciler(ReconcilerOptions{Projects: w.Projects[:c.Projects], Auth: c.Auth, Concurrency: c.Concurrency})
	if err != nil {
		return res, err
	}
	if _, err := r.Project(ctx, w.Projects[0], nil); err != nil { // tokens, connections
		return res, fmt.Errorf("warm-up: %w", err)
	}
	var lone []time.Duration
	for range 3 {
		start := time.Now()
		if _, err := r.Project(ctx, w.Projects[0], nil); err != nil {
			return res, fmt.Errorf("lone project: %w", err)
		}
		lone = append(lone, time.Since(start))
	}
	res.CriticalPath = Quantile(lone, 0.5)
	res.Ideal = time.Duration((c.Projects+c.Concurrency-1)/c.Concurrency) * res.CriticalPath

	if c.RateLimit > 0 {
		w.Atlas.SetRateLimit(c.RateLimit, c.Burst)
		defer w.Atlas.SetRateLimit(0, 0)
	}
	w.Atlas.ResetStats()
	w.ARM.ResetCounts()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	res.BaseHeap = ms.HeapInuse
	stop := sampleHeap(5 * time.Millisecond)

	start := time.Now()
	reports, err := r.All(ctx)
	res.Wall = time.Since(start)
	res.PeakHeap = max(stop(), res.BaseHeap)

	st := w.Atlas.Stats()
	res.AtlasRequests, res.Atlas429 = st.Requests, st.ByStatus[429]
	for _, n := range w.ARM.Counts() {
		res.ARMRequests += int64(n)
	}
	for _, rep := range reports {
		if rep.Error != "" {
			res.Failed++
		}
	}
	if len(reports) != c.Projects {
		return res, fmt.Errorf("%d reports for %d projects: %v", len(reports), c.Projects, err)
	}
	return res, nil
}

// sampleHeap samples HeapInuse every period until the returned function is
// called; that returns the highest value seen.
func sampleHeap(period time.Duration) (stop func() uint64) {
	done, peak := make(chan struct{}), make(chan uint64)
	go func() {
		t := time.NewTicker(period)
		defer t.Stop()
		var ms runtime.MemStats
		for p := uint64(0); ; {
			runtime.ReadMemStats(&ms)
			p = max(p, ms.HeapInuse)
			select {
			case <-done:
				peak <- p
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 { close(done); return <-peak }
}

// Quantile returns the q-quantile (nearest rank) of d; d is not modified.
func Quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// ScaleTable renders results as the "Scale" section of the report.
func ScaleTable(rs []ScaleResult) string {
	var b strings.Builder
	b.WriteString("### Scale\n\n| projects | concurrency | latency | auth | wall | ideal | wall / ideal | Atlas 429s | peak heap added |\n|---:|---:|---:|---|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		auth := cmp.Or(r.Auth, AuthServiceAccount)
		if r.RateLimit > 0 {
			auth += fmt.Sprintf(", Atlas token bucket %g/s", r.RateLimit)
		}
		fmt.Fprintf(&b, "| %d | %d | %s | %s | %s | %s | %.2f | %d | %.1f MiB |\n", r.Projects, r.Concurrency, r.Latency,
			auth, r.Wall.Round(time.Millisecond), r.Ideal.Round(time.Millisecond), float64(r.Wall)/float64(r.Ideal), r.Atlas429,
			float64(r.PeakHeap-min(r.BaseHeap, r.PeakHeap))/(1<<20))
	}
	return b.String()
}
