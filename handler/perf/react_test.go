package perf

import (
	"context"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/internal/azurite"
)

// TestReactSmoke runs the time-to-react harness briefly (P = 500 ms, 2 runs
// per path): every path completes, and the event path's split adds up. It
// asserts no timing beyond what the runs' own bounds enforce; the figures
// are logged (go test -v) and produced at full size by cmd/perfreport.
func TestReactSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the handler and starts Azurite")
	}
	az := azurite.Start(t)
	bin, err := BuildHandler(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	const runs = 2
	res, err := MeasureReact(ctx, ReactOptions{Binary: bin, Storage: az.ConnectionString, Period: 500 * time.Millisecond, Runs: runs, FloorRuns: 2, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	for name, d := range map[string][]time.Duration{"key alert": res.KeyAlert, "timer connection": res.ConnTimer, "event connection": res.ConnEvent} {
		if len(d) != runs {
			t.Fatalf("%s: %d runs, want %d", name, len(d), runs)
		}
		for _, x := range d {
			if x <= 0 {
				t.Errorf("%s: latency %s", name, x)
			}
		}
	}
	for i, d := range res.ConnEvent {
		if api, o := res.EventAPI[i], res.EventOverhead[i]; api <= 0 || o < 0 || api+o != d {
			t.Errorf("event run %d: %s = API %s + overhead %s does not add up", i, d, api, o)
		}
	}
	if len(res.TickFloor) != 2 || len(res.EventFloor) != 2 {
		t.Errorf("floors: %d tick, %d event", len(res.TickFloor), len(res.EventFloor))
	}
	t.Log("\n" + ReactTable(res))
}
