package e2e

import (
	"sync"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/armsim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/world"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// Six invocations at once — timer ticks and connection events, spread over
// two handler processes sharing the state store — against an ARM that
// checks neither If-Match nor the body etag: exactly one accepted PUT and
// one approved notice for the connection.
func TestSixConcurrentInvocationsApproveOnce(t *testing.T) {
	t.Parallel()
	w := newWorld(t, setup{Options: world.Options{Regions: []string{"US_EAST_2"}}})
	w.ARM().SetEtagChecks(false, false)
	w.ARM().Inject(armsim.Fault{Match: armsim.RouteConnectionPut, Latency: 100 * time.Millisecond}) // ARM writes are slow
	p := w.Project(0)
	guards := []*world.Guard{startGuard(t, w, world.GuardOptions{Name: "guard-a"}), startGuard(t, w, world.GuardOptions{Name: "guard-b"})}
	ctx := deadline(t, 60*time.Second)

	name := w.EnablePrivateNetworking(p)[0]
	waitFor(ctx, t, "Atlas's connection pending on the vault", func() bool { return w.ConnectionStatus(p, name) == vault.StatusPending })
	ev := w.ConnectionEvent(p, name, world.Ada, time.Now())
	var wg sync.WaitGroup
	for i := range 6 {
		g := guards[i%2]
		wg.Go(func() {
			var r world.Result
			if i%3 == 0 {
				r = w.TickGuard(ctx, g)
			} else {
				r = w.DeliverTo(ctx, g, ev)
			}
			if r.Status != 200 {
				t.Errorf("invocation %d on %s answered %d (%v): %s", i, g.Name(), r.Status, r.Err, r.Body)
			}
		})
	}
	wg.Wait()
	if _, err := w.WaitNotice(ctx, p, alert.Approved, "", 1); err != nil {
		t.Fatal(err)
	}
	ticks(ctx, t, w, 1)
	if n := w.ARM().Count("privateEndpointConnections/put"); n != 1 {
		t.Errorf("%d approval PUTs, want exactly 1", n)
	}
	if n := w.Notices(p, alert.Approved, ""); len(n) != 1 {
		t.Errorf("%d approved notices, want exactly 1", len(n))
	}
}
