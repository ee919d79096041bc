package state

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
)

// Memory is a Store in process memory with the same semantics as Blob:
// conditional writes, ErrNotFound, ErrConflict, and an ETag that changes on
// every write. It is safe for concurrent use. The zero value is not usable;
// call NewMemory.
type Memory struct {
	mu   sync.Mutex
	docs map[string]memDoc
	seq  uint64
}

type memDoc struct {
	data []byte
	etag string
	meta map[string]string
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{docs: map[string]memDoc{}} }

// String names the store in messages.
func (m *Memory) String() string { return "memory" }

// Get implements Store.
func (m *Memory) Get(ctx context.Context, key string) ([]byte, string, error) {
	if err := cmp.Or(checkKey(key), ctx.Err()); err != nil {
		return nil, "", &Error{Store: "memory", Op: "get", Key: key, Err: err}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.docs[key]
	if !ok {
		return nil, "", &Error{Store: "memory", Op: "get", Key: key, Err: ErrNotFound}
	}
	return slices.Clone(d.data), d.etag, nil
}

// Put implements Store.
func (m *Memory) Put(ctx context.Context, key string, data []byte, etag string, meta map[string]string) (string, error) {
	if err := cmp.Or(checkKey(key), ctx.Err()); err != nil {
		return "", &Error{Store: "memory", Op: "put", Key: key, Err: err}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.docs[key]
	if (etag == "" && ok) || (etag != "" && (!ok || d.etag != etag)) {
		return "", transient.Mark(&Error{Store: "memory", Op: "put", Key: key, Err: ErrConflict})
	}
	m.seq++
	tag := fmt.Sprintf("\"m%d\"", m.seq)
	m.docs[key] = memDoc{data: slices.Clone(data), etag: tag, meta: maps.Clone(meta)}
	return tag, nil
}

// List implements Store.
func (m *Memory) List(ctx context.Context, prefix string) ([]Item, error) {
	if err := ctx.Err(); err != nil {
		return nil, &Error{Store: "memory", Op: "list", Err: err}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	items := []Item{}
	for _, k := range slices.Sorted(maps.Keys(m.docs)) {
		if strings.HasPrefix(k, prefix) {
			items = append(items, Item{Key: k, Meta: maps.Clone(m.docs[k].meta)})
		}
	}
	return items, nil
}
