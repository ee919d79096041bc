package perf

import (
	"context"
	"sync"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
)

// CountingStore is a state.Store that counts the operations per key and
// operation ("get projects/…", "put index/vaults", …) and passes them on.
type CountingStore struct {
	state.Store
	mu     sync.Mutex
	counts map[string]int
}

// NewCountingStore wraps s.
func NewCountingStore(s state.Store) *CountingStore {
	return &CountingStore{Store: s, counts: map[string]int{}}
}

func (c *CountingStore) add(op string) {
	c.mu.Lock()
	c.counts[op]++
	c.mu.Unlock()
}

// Get counts and reads.
func (c *CountingStore) Get(ctx context.Context, key string) ([]byte, string, error) {
	c.add("get " + key)
	return c.Store.Get(ctx, key)
}

// Put counts and writes.
func (c *CountingStore) Put(ctx context.Context, key string, data []byte, etag string, meta map[string]string) (string, error) {
	c.add("put " + key)
	return c.Store.Put(ctx, key, data, etag, meta)
}

// List counts and lists.
func (c *CountingStore) List(ctx context.Context, prefix string) ([]state.Item, error) {
	c.add("list " + prefix)
	return c.Store.List(ctx, prefix)
}

// Counts returns a copy of the counters.
func (c *CountingStore) Counts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

// Reset zeroes the counters.
func (c *CountingStore) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.counts)
}
