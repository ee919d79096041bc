package atlas

import (
	"context"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/meter"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
)

// BenchmarkProjectRead measures one full read of a project (configuration,
// endpoints, clusters) against the simulator over TLS, per credential kind,
// and reports the Atlas round trips each read costs.
func BenchmarkProjectRead(b *testing.B) {
	for _, auth := range authMethods {
		b.Run(auth, func(b *testing.B) {
			f := newFixture(b, atlassim.Options{})
			seed(f.sim)
			c, _ := f.client(b, auth, nil)
			calls := &meter.Calls{}
			ctx := meter.WithCalls(context.Background(), calls)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.EncryptionAtRest(ctx, group); err != nil {
					b.Fatal(err)
				}
				if _, err := c.PrivateEndpoints(ctx, group); err != nil {
					b.Fatal(err)
				}
				if _, err := c.Clusters(ctx, group); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(calls.Atlas())/float64(b.N), "requests/op")
		})
	}
}
