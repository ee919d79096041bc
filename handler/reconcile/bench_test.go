package reconcile_test

import (
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
)

// BenchmarkReconcile measures one steady-state reconcile of one project
// against the Atlas and ARM simulators over TLS, with the state in memory and
// in Azurite, and reports the API round trips per reconcile.
//
//	go test -run '^$' -bench Reconcile -benchtime 50x ./handler/reconcile
func BenchmarkReconcile(b *testing.B) {
	r := newRig(b)
	for _, bc := range []struct {
		name  string
		store state.Store
	}{{"memory", state.NewMemory()}, {"azurite", r.store}} {
		b.Run(bc.name, func(b *testing.B) {
			g := r.guard(options{store: bc.store, noHook: true})
			if _, err := g.Project(b.Context(), project, nil); err != nil { // first approval, token fetch
				b.Fatal(err)
			}
			var atlasCalls, armCalls int64
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				rep, err := g.Project(b.Context(), project, nil)
				if err != nil {
					b.Fatal(err)
				}
				atlasCalls += rep.AtlasCalls
				armCalls += rep.ARMCalls
			}
			b.ReportMetric(float64(atlasCalls)/float64(b.N), "atlas-calls/op")
			b.ReportMetric(float64(armCalls)/float64(b.N), "arm-calls/op")
		})
	}
}
