package perf

import (
	"context"
	"maps"
	"sync"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/reconcile"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/armsim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
)

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
		auth      string
		wantAtlas map[string]int64
		wantAuth  map[string]int64
	}{
		{AuthServiceAccount,
			map[string]int64{atlassim.RouteEncryptionAtRest: 1, atlassim.RoutePrivateEndpoints: 1, atlassim.RouteClusters: 1},
			map[string]int64{atlassim.AuthBearer: 3}},
		{AuthDigest,
			map[string]int64{atlassim.RouteEncryptionAtRest: 2, atlassim.RoutePrivateEndpoints: 2, atlassim.RouteClusters: 2},
			map[string]int64{atlassim.AuthNone: 3, atlassim.AuthDigest: 3}},
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
			if !maps.Equal(st.ByRoute, tc.wantAtlas) {
				t.Errorf("Atlas requests by route %v, want %v", st.ByRoute, tc.wantAtlas)
			}
			if !maps.Equal(st.ByAuth, tc.wantAuth) {
				t.Errorf("Atlas requests by auth %v, want %v", st.ByAuth, tc.wantAuth)
			}
			if got := w.ARM.Counts(); !maps.Equal(got, wantARM) {
				t.Errorf("ARM requests by route %v, want %v", got, wantARM)
			}
			if rep.AtlasCalls != st.Requests || rep.ARMCalls != 3 {
				t.Errorf("report counts Atlas %d, ARM %d; simulators served Atlas %d, ARM %v",
					rep.AtlasCalls, rep.ARMCalls, st.Requests, w.ARM.Counts())
			}
			// The project's document is read once (its ETag conditions the
			// one write; the vault index is not rewritten).
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
