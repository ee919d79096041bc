package perf

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/internal/azurite"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/reconcile"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/armsim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
)

// worldProjects is the size of the one World the tests share (azidentity's
// environment and token cache are process-wide), started on first use.
const worldProjects = 100

var (
	started     *World
	sharedWorld = sync.OnceValues(func() (w *World, err error) { started, err = NewWorld(worldProjects); return started, err })
)

func world(tb testing.TB) *World {
	w, err := sharedWorld()
	if err != nil {
		tb.Fatal(err)
	}
	return w
}

func TestMain(m *testing.M) {
	code := m.Run()
	if started != nil {
		started.Close()
	}
	os.Exit(code)
}

// full runs every measurement at the size the README reports and writes the
// tables to out/ (make perf); without it each test is a quick smoke run that
// asserts only that every path completes.
var full = flag.Bool("full", false, "measure at full size and write handler/perf/out/*.md")

// report logs a section and, with -full, writes it to out/name.md.
func report(t *testing.T, name, text string) {
	t.Log("\n" + text)
	if *full {
		if err := os.WriteFile(filepath.Join("out", name+".md"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReact(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the handler and starts Azurite")
	}
	az := azurite.Start(t)
	bin, err := BuildHandler(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	o := ReactOptions{Binary: bin, Storage: az.ConnectionString, Period: 500 * time.Millisecond, Runs: 2, Logf: t.Logf}
	limit := time.Minute
	if *full {
		o.Period, o.Runs, limit = time.Second, 30, 15*time.Minute
	}
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	res, err := MeasureReact(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.KeyAlert) != o.Runs || len(res.ConnTimer) != o.Runs || len(res.ConnEvent) != o.Runs || len(res.TickFloor) == 0 {
		t.Fatalf("runs: %d key, %d timer, %d event, %d floor", len(res.KeyAlert), len(res.ConnTimer), len(res.ConnEvent), len(res.TickFloor))
	}
	report(t, "react", ReactTable(res))
}

// TestScale: every project reconciles, and the simulators serve exactly 3
// Atlas and 3 ARM requests per project (6 Atlas with digest), plus, the
// reconciler being fresh, each project's first hourly read of its alert
// configurations (the warmed-up project's came before).
func TestScale(t *testing.T) {
	w := world(t)
	cases := []ScaleCase{{Projects: 10, Concurrency: 4, Latency: 10 * time.Millisecond}, {Projects: 10, Concurrency: 4, Latency: 10 * time.Millisecond, Auth: AuthDigest}}
	if *full {
		const l = 50 * time.Millisecond
		cases = []ScaleCase{{Projects: 1, Latency: l}, {Projects: 10, Latency: l}, {Projects: 100, Latency: l}, {Projects: 1000, Latency: l},
			{Projects: 1000, Concurrency: 32, Latency: l}, {Projects: 100, Latency: l, Auth: AuthDigest}, {Projects: 100, Latency: l, RateLimit: 100, Burst: 100}}
	}
	var rs []ScaleResult
	for _, c := range cases {
		res, err := w.Scale(t.Context(), c)
		if err != nil {
			t.Fatal(err)
		}
		perCall := int64(1)
		if c.Auth == AuthDigest {
			perCall = 2
		}
		if c.RateLimit == 0 && (res.Failed != 0 || res.AtlasRequests != perCall*int64(3*c.Projects+c.Projects-1) || res.ARMRequests != 3*int64(c.Projects)) {
			t.Errorf("%+v: failed %d, Atlas %d requests, ARM %d requests", c, res.Failed, res.AtlasRequests, res.ARMRequests)
		}
		rs = append(rs, res)
	}
	report(t, "scale", ScaleTable(rs))
}

// TestStartup measures the built binary (as `make build` builds it): size,
// exec → first answer to GET / (what the Functions host waits for) and RSS
// when idle, with a valid configuration whose storage and identity are only
// used on the first reconcile. It also pins the binary's host contract: ready
// on GET /, "listening" and "stopped" logged, exit 0 after SIGTERM, no secret
// printed.
func TestStartup(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the handler")
	}
	bin, err := BuildHandler(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	runs := map[bool]int{false: 3, true: 20}[*full]
	var ready []time.Duration
	var rss int
	for i := range runs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		ln.Close()
		cmd := exec.Command(bin)
		cmd.Env = []string{"FUNCTIONS_CUSTOMHANDLER_PORT=" + port, "ATLAS_PROJECT_IDS=" + ProjectID(0), "ATLAS_CLIENT_ID=mdb_sa_id_perf",
			"ATLAS_CLIENT_SECRET=perf-sa-secret", "AzureWebJobsStorage=UseDevelopmentStorage=true", "IDENTITY_ENDPOINT=http://127.0.0.1:9/msi/token", "IDENTITY_HEADER=perf"}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c := &http.Client{Timeout: 100 * time.Millisecond}
		for {
			if resp, err := c.Get("http://127.0.0.1:" + port + "/"); err == nil {
				resp.Body.Close()
				break
			}
			if time.Since(start) > 10*time.Second {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatal("not ready after 10s")
			}
			time.Sleep(200 * time.Microsecond) // polling, as the host does
		}
		ready = append(ready, time.Since(start))
		if i == 0 {
			if *full {
				time.Sleep(time.Second) // let it settle: RSS when idle, not while starting
			}
			rss = vmRSS(t, cmd.Process.Pid)
		}
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil || !strings.Contains(out.String(), `"msg":"listening"`) ||
			!strings.Contains(out.String(), `"msg":"stopped"`) || strings.Contains(out.String(), "perf-sa-secret") {
			t.Errorf("exit after SIGTERM: %v; output:\n%s", err, out.String())
		}
	}
	report(t, "startup", fmt.Sprintf("### Start-up, size, memory\n\n| binary | size | ready p50 | ready max | RSS idle |\n|---|---:|---:|---:|---:|\n| guard | %.1f MiB | %s | %s | %.1f MiB |\n",
		float64(fi.Size())/(1<<20), Quantile(ready, 0.5).Round(100*time.Microsecond), Quantile(ready, 1).Round(100*time.Microsecond), float64(rss)/(1<<10)))
}

// vmRSS reads VmRSS (KiB) from /proc/pid/status.
func vmRSS(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	_, v, found := strings.Cut(string(b), "VmRSS:")
	v, _, _ = strings.Cut(v, "kB")
	n, aerr := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || !found || aerr != nil {
		t.Fatalf("VmRSS of %d: %v %v", pid, err, aerr)
	}
	return n
}

// TestSteadyStateRequests pins the API economy of one reconcile of a project
// in which nothing changes: every Atlas and ARM resource is fetched exactly
// once, nothing is written, no token is fetched again, and the counts the
// reconciler reports agree with what the simulators served. Digest
// authentication costs one extra (challenge) round trip per Atlas call.
func TestSteadyStateRequests(t *testing.T) {
	w := world(t)
	w.SetLatency(0)
	p := w.Projects[0]
	wantARM := map[string]int{armsim.RouteVaultGet: 1, armsim.RouteConnectionsList: 1, armsim.RouteKeyGet: 1}
	for _, tc := range []struct {
		auth     string
		perCall  int64 // requests per Atlas call
		wantAuth map[string]int64
	}{
		{AuthServiceAccount, 1, map[string]int64{atlassim.AuthBearer: 3}},
		{AuthDigest, 2, map[string]int64{atlassim.AuthNone: 3, atlassim.AuthDigest: 3}},
	} {
		t.Run(tc.auth, func(t *testing.T) {
			store := &countingStore{Store: state.NewMemory(), counts: map[string]int{}}
			r, err := w.Reconciler(ReconcilerOptions{Projects: []string{p}, Auth: tc.auth, Store: store})
			if err != nil {
				t.Fatal(err)
			}
			// The first reconcile fetches tokens and records the state.
			if rep, err := r.Project(t.Context(), p, nil); err != nil || rep.Error != "" {
				t.Fatalf("first reconcile: %+v, %v", rep, err)
			}
			w.Atlas.ResetStats()
			w.ARM.ResetCounts()
			clear(store.counts)
			rep, err := r.Project(t.Context(), p, nil)
			if err != nil || rep.Error != "" || len(rep.Approved) != 0 || rep.Notices != 0 {
				t.Fatalf("steady-state reconcile: %+v, %v", rep, err)
			}
			st := w.Atlas.Stats()
			wantAtlas := map[string]int64{atlassim.RouteEncryptionAtRest: tc.perCall, atlassim.RoutePrivateEndpoints: tc.perCall, atlassim.RouteClusters: tc.perCall}
			if !maps.Equal(st.ByRoute, wantAtlas) || !maps.Equal(st.ByAuth, tc.wantAuth) {
				t.Errorf("Atlas requests by route %v and by auth %v, want %v and %v", st.ByRoute, st.ByAuth, wantAtlas, tc.wantAuth)
			}
			if got := w.ARM.Counts(); !maps.Equal(got, wantARM) {
				t.Errorf("ARM requests by route %v, want %v", got, wantARM)
			}
			if rep.AtlasCalls != st.Requests || rep.ARMCalls != 3 {
				t.Errorf("report counts Atlas %d, ARM %d; simulators served Atlas %d, ARM %v",
					rep.AtlasCalls, rep.ARMCalls, st.Requests, w.ARM.Counts())
			}
			// The project's document is read once; its ETag conditions the one write.
			key := reconcile.ProjectKey(p)
			if got, want := store.counts, map[string]int{"get " + key: 1, "put " + key: 1}; !maps.Equal(got, want) {
				t.Errorf("state store operations %v, want %v", got, want)
			}
			t.Logf("%s: Atlas %d requests %v, ARM %d requests %v", tc.auth, rep.AtlasCalls, st.ByRoute, rep.ARMCalls, w.ARM.Counts())
		})
	}
}

// countingStore counts the operations per operation and key ("get projects/…").
type countingStore struct {
	state.Store
	mu     sync.Mutex
	counts map[string]int
}

func (c *countingStore) add(op string) {
	c.mu.Lock()
	c.counts[op]++
	c.mu.Unlock()
}

func (c *countingStore) Get(ctx context.Context, key string) ([]byte, string, error) {
	c.add("get " + key)
	return c.Store.Get(ctx, key)
}

func (c *countingStore) Put(ctx context.Context, key string, data []byte, etag string, meta map[string]string) (string, error) {
	c.add("put " + key)
	return c.Store.Put(ctx, key, data, etag, meta)
}

func (c *countingStore) List(ctx context.Context, prefix string) ([]state.Item, error) {
	c.add("list " + prefix)
	return c.Store.List(ctx, prefix)
}
