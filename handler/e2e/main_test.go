// Package e2e runs the real handler binary, as a separate process configured
// only through its environment, against the simulated world (package world):
// Atlas and ARM simulators over TLS, the managed identity endpoint, real
// Azurite storage and alert receivers, driven through the Azure Functions
// host contract. Each test has its own world (and state container); they
// share one handler build and one Azurite.
package e2e

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/internal/azurite"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/world"
)

var (
	handlerBin string
	storage    *azurite.Instance
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "e2e-*")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 2
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	handlerBin = filepath.Join(dir, "handler")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", handlerBin, "..").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: building the handler: %v\n%s", err, out)
		return 2
	}
	storage, err = azurite.StartProcess(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 2
	}
	defer storage.Close()
	return m.Run()
}

// setup is one test's world and its options.
type setup struct {
	world.Options
	// Events and Timer set the initial delivery switches.
	Events, Timer bool
}

// newWorld starts a world for the test; its timeline goes to the test log
// when the test fails.
func newWorld(t *testing.T, s setup) *world.World {
	t.Helper()
	s.StorageConnectionString = cmp.Or(s.StorageConnectionString, storage.ConnectionString)
	s.Minute = cmp.Or(s.Minute, 250*time.Millisecond)
	w, err := world.New(s.Options)
	must(t, err)
	t.Cleanup(func() {
		w.Close()
		if t.Failed() {
			var b strings.Builder
			w.WriteTimeline(&b)
			t.Logf("timeline:\n%s", b.String())
		}
	})
	if !s.Events {
		w.SetEvents(false)
	}
	if !s.Timer {
		w.SetTimer(false)
	}
	return w
}

// startGuard starts a handler process for the test; its stderr and log
// records are reported when the test fails.
func startGuard(t *testing.T, w *world.World, o world.GuardOptions) *world.Guard {
	t.Helper()
	o.Binary = handlerBin
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	g, err := w.StartGuard(ctx, o)
	must(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s stderr: %s", g.Name(), g.Stderr())
			for _, r := range g.Records() {
				if lvl := r.Str("level"); lvl == "WARN" || lvl == "ERROR" {
					t.Logf("%s: %s %s %s", g.Name(), lvl, r.Msg(), r.Str("error"))
				}
			}
		}
	})
	return g
}

// begin runs the test in parallel with its own world and one guard, bounded
// by d; p is the world's first project.
func begin(t *testing.T, s setup, o world.GuardOptions, d time.Duration) (w *world.World, p *world.Project, g *world.Guard, ctx context.Context) {
	t.Parallel()
	w = newWorld(t, s)
	g = startGuard(t, w, o)
	return w, w.Project(0), g, deadline(t, d)
}

// deadline returns a context bounded by d (and the test's own deadline).
func deadline(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}

// tickUntil fires the timer on every guard until cond holds or ctx ends.
func tickUntil(ctx context.Context, t *testing.T, w *world.World, what string, cond func() bool) {
	t.Helper()
	for !cond() {
		if _, err := w.Tick(ctx); err != nil {
			t.Fatalf("tick: %v", err)
		}
		if cond() {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ticks fires the timer n times on every guard and fails on a non-2xx.
func ticks(ctx context.Context, t *testing.T, w *world.World, n int) {
	t.Helper()
	for range n {
		res, err := w.Tick(ctx)
		if err != nil {
			t.Fatalf("tick: %v", err)
		}
		for _, r := range res {
			if r.Status != 200 {
				t.Fatalf("tick: %s answered %d (%v): %s", r.Guard, r.Status, r.Err, r.Body)
			}
		}
	}
}

func waitFor(ctx context.Context, t *testing.T, what string, cond func() bool) {
	t.Helper()
	must(t, world.WaitFor(ctx, what, cond))
}

// notices waits for at least n notices of kind and action ("" = any) for p.
func notices(ctx context.Context, t *testing.T, w *world.World, p *world.Project, kind alert.Kind, action alert.Action, n int) []alert.Notice {
	t.Helper()
	ns, err := w.WaitNotice(ctx, p, kind, action, n)
	must(t, err)
	return ns
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// allStatus reports whether every named connection on p's vault has status.
func allStatus(w *world.World, p *world.Project, names []string, status string) bool {
	for _, n := range names {
		if w.ConnectionStatus(p, n) != status {
			return false
		}
	}
	return true
}

// blindSources returns the sources of the guard-blind notices with action.
func blindSources(w *world.World, p *world.Project, action alert.Action) []string {
	var out []string
	for _, n := range w.Notices(p, alert.GuardBlind, action) {
		out = append(out, n.Alert.Subject)
	}
	return out
}

// uniqueIDs fails the test when the webhook or the topic received a notice
// twice.
func uniqueIDs(t *testing.T, w *world.World) {
	t.Helper()
	seen := map[string]bool{}
	for _, n := range w.Webhook().Notices() {
		if seen["webhook "+n.ID] {
			t.Errorf("notice %s (%s %s) delivered twice", n.ID, n.Alert.Kind, n.Action)
		}
		seen["webhook "+n.ID] = true
	}
	for _, e := range w.Topic().Events() {
		if seen["topic "+e.ID] {
			t.Errorf("topic event %s delivered twice", e.ID)
		}
		seen["topic "+e.ID] = true
	}
}
