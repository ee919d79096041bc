package perf

import (
	"encoding/json"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/event"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
)

// BenchmarkDecode puts the guard's decoding of one host invocation (envelope,
// string-wrapped event, classification) beside its floor: the least any
// decoder must do with the same bytes — validate the body once and unquote
// the event string once (encoding/json, no struct decoding).
//
//	go test -run '^$' -bench Decode -benchmem -count 5 ./handler/perf
func BenchmarkDecode(b *testing.B) {
	body := ClassifiedBody(resource.ID{})
	b.Run("floor-valid+unquote", func(b *testing.B) {
		var top struct{ Data struct{ Event string } }
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			if err := json.Unmarshal(body, &top); err != nil || !json.Valid([]byte(top.Data.Event)) {
				b.Fatal(err)
			}
		}
	})
	b.Run("guard", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for b.Loop() {
			inv, err := event.DecodeInvocation(body)
			if err != nil {
				b.Fatal(err)
			}
			raw, _ := inv.Binding("event")
			evs, err := event.Decode(raw)
			if err != nil {
				b.Fatal(err)
			}
			if t, err := event.Classify(evs[0]); err != nil || t.Kind != event.ConnectionChanged {
				b.Fatal(t.Kind, err)
			}
		}
	})
}

// BenchmarkReconcileSteadyState measures one project's reconcile against the
// simulators without injected latency (CPU and loopback cost) and reports
// the API round trips it makes.
func BenchmarkReconcileSteadyState(b *testing.B) {
	w := sharedWorld(b)
	w.SetLatency(0)
	for _, auth := range []string{AuthServiceAccount, AuthDigest} {
		b.Run(auth, func(b *testing.B) {
			p := w.Projects[0]
			r, err := w.Reconciler(ReconcilerOptions{Projects: []string{p}, Auth: auth})
			if err != nil {
				b.Fatal(err)
			}
			if err := w.Warm(b.Context(), r); err != nil {
				b.Fatal(err)
			}
			var atlasCalls, armCalls int64
			b.ReportAllocs()
			for b.Loop() {
				rep, err := r.Project(b.Context(), p, nil)
				if err != nil {
					b.Fatal(err)
				}
				atlasCalls += rep.AtlasCalls
				armCalls += rep.ARMCalls
			}
			b.ReportMetric(float64(atlasCalls)/float64(b.N), "atlas-req/op")
			b.ReportMetric(float64(armCalls)/float64(b.N), "arm-req/op")
		})
	}
}
