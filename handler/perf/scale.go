package perf

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

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
	var (
		peak uint64
		wg   sync.WaitGroup
		done = make(chan struct{})
	)
	wg.Go(func() {
		t := time.NewTicker(period)
		defer t.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() uint64 {
		close(done)
		wg.Wait()
		return peak
	}
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
