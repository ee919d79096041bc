package state_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/internal/azurite"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
)

// shared is one Azurite for the tests that don't stop it; started on first
// use, stopped by TestMain.
var (
	sharedOnce sync.Once
	shared     *azurite.Instance
	sharedErr  error
	containerN atomic.Int64
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Close()
	}
	os.Exit(code)
}

func sharedAzurite(t testing.TB) *azurite.Instance {
	t.Helper()
	sharedOnce.Do(func() { shared, sharedErr = azurite.StartProcess(context.Background()) })
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

// newBlob returns a Blob store on a fresh container of the shared Azurite.
func newBlob(t testing.TB) *state.Blob {
	t.Helper()
	az := sharedAzurite(t)
	name := fmt.Sprintf("test-%d-%d", os.Getpid(), containerN.Add(1))
	b, err := state.NewBlob(t.Context(), state.BlobOptions{ConnectionString: az.ConnectionString, Container: name})
	must(t, err)
	return b
}

// stores is the table every contract test runs against.
var stores = []struct {
	name string
	new  func(testing.TB) state.Store
}{
	{"memory", func(testing.TB) state.Store { return state.NewMemory() }},
	{"blob", func(t testing.TB) state.Store { return newBlob(t) }},
}

func eachStore(t *testing.T, f func(t *testing.T, s state.Store)) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			t.Parallel()
			f(t, st.new(t))
		})
	}
}

func TestPutGetConflict(t *testing.T) {
	eachStore(t, func(t *testing.T, s state.Store) {
		ctx := t.Context()
		const key = "projects/65a1b2c3d4e5f60718293a4b"
		_, _, err := s.Get(ctx, key)
		var se *state.Error
		if !errors.Is(err, state.ErrNotFound) || !errors.As(err, &se) || transient.Is(err) {
			t.Fatalf("get of a missing document: %#v, want a permanent *state.Error wrapping ErrNotFound", err)
		}
		e1, err := s.Put(ctx, key, []byte(`{"v":1}`), "", nil)
		if err != nil || e1 == "" {
			t.Fatalf("create: etag %q, err %v", e1, err)
		}
		data, etag, err := s.Get(ctx, key)
		if err != nil || string(data) != `{"v":1}` || etag != e1 {
			t.Fatalf("get = %s, %q, %v; want {\"v\":1}, %q", data, etag, err, e1)
		}
		if _, err := s.Put(ctx, key, []byte(`{"v":9}`), "", nil); !errors.Is(err, state.ErrConflict) {
			t.Fatalf("create over existing: err = %v, want ErrConflict", err)
		}
		e2, err := s.Put(ctx, key, []byte(`{"v":2}`), e1, nil)
		if err != nil || e2 == "" || e2 == e1 {
			t.Fatalf("update: etag %q (old %q), err %v", e2, e1, err)
		}
		if _, err := s.Put(ctx, key, []byte(`{"v":3}`), e1, nil); !errors.Is(err, state.ErrConflict) {
			t.Fatalf("stale etag: err = %v, want ErrConflict", err)
		}
		if _, err := s.Put(ctx, "projects/other", []byte(`{}`), e2, nil); !errors.Is(err, state.ErrConflict) {
			t.Fatalf("etag on a missing document: err = %v, want ErrConflict", err)
		}
		data, etag, _ = s.Get(ctx, key)
		if string(data) != `{"v":2}` || etag != e2 {
			t.Fatalf("after conflicts: %s %q, want {\"v\":2} %q", data, etag, e2)
		}
	})
}

func TestArbitraryKeysAndList(t *testing.T) {
	keys := []string{
		"projects/a1", "projects/a2", "projects/b/c", "index", "index.json", "a.", ".", "..", "/", "//x//",
		"with space", "tilde~7E", "percent%2F", "ünïcödé", "q?x=1&y#z", "back\\slash", strings.Repeat("k", state.MaxKeyLen),
	}
	eachStore(t, func(t *testing.T, s state.Store) {
		ctx := t.Context()
		for _, k := range keys {
			if _, err := s.Put(ctx, k, []byte(fmt.Sprintf("%q", k)), "", map[string]string{"vault": "/subscriptions/s/ü " + k}); err != nil {
				t.Fatalf("put %q: %v", k, err)
			}
		}
		for _, k := range keys {
			data, _, err := s.Get(ctx, k)
			if err != nil || string(data) != fmt.Sprintf("%q", k) {
				t.Fatalf("get %q = %s, %v", k, data, err)
			}
		}
		all, err := s.List(ctx, "")
		must(t, err)
		want := slices.Sorted(slices.Values(keys))
		if !slices.Equal(listed(all), want) {
			t.Fatalf("List(\"\") = %q\nwant %q", listed(all), want)
		}
		for _, it := range all {
			if it.Meta["vault"] != "/subscriptions/s/ü "+it.Key || len(it.Meta) != 1 {
				t.Fatalf("metadata of %q = %q", it.Key, it.Meta)
			}
		}
		got, err := s.List(ctx, "projects/a")
		if err != nil || !slices.Equal(listed(got), []string{"projects/a1", "projects/a2"}) {
			t.Fatalf("List(projects/a) = %q, %v", got, err)
		}
		got, err = s.List(ctx, "nothing-here")
		if err != nil || got == nil || len(got) != 0 {
			t.Fatalf("List(nothing-here) = %#v, %v; want empty non-nil", got, err)
		}
		for _, bad := range []string{"", strings.Repeat("k", state.MaxKeyLen+1)} {
			if _, err := s.Put(ctx, bad, []byte(`{}`), "", nil); err == nil {
				t.Fatalf("put with key of %d bytes: want an error", len(bad))
			}
		}
	})
}

type counter struct {
	N       int      `json:"n"`
	Writers []string `json:"writers,omitempty"`
}

func TestUpdate(t *testing.T) {
	eachStore(t, func(t *testing.T, s state.Store) {
		ctx := t.Context()
		got, err := update(ctx, s, "c", func(c *counter) error { c.N++; return nil })
		if err != nil || got.N != 1 {
			t.Fatalf("first update = %+v, %v", got, err)
		}
		_, etag, _ := s.Get(ctx, "c")
		got, err = update(ctx, s, "c", func(c *counter) error { return nil })
		if err != nil || got.N != 1 {
			t.Fatalf("no-op update = %+v, %v", got, err)
		}
		if _, etag2, _ := s.Get(ctx, "c"); etag2 != etag {
			t.Fatal("an update that changed nothing wrote the document")
		}
		boom := errors.New("boom")
		if _, err := update(ctx, s, "c", func(c *counter) error { c.N = 99; return boom }); !errors.Is(err, boom) {
			t.Fatalf("fn error: got %v", err)
		}
		if data, _, _ := s.Get(ctx, "c"); string(data) != `{"n":1}` {
			t.Fatalf("after failed fn: %s", data)
		}
		if _, err := s.Put(ctx, "garbage", []byte("not json"), "", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := update(ctx, s, "garbage", func(c *counter) error { return nil }); err == nil {
			t.Fatal("update of a non-JSON document: want an error")
		}
		canceled, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := update(canceled, s, "x", func(c *counter) error { c.N++; return nil }); err == nil {
			t.Fatal("canceled context: want an error")
		}
	})
}

func TestUpdateConcurrentIncrements(t *testing.T) {
	const n = 25
	eachStore(t, func(t *testing.T, s state.Store) {
		ctx := t.Context()
		var calls atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, 2*n)
		for w := range 2 {
			wg.Go(func() {
				for range n {
					_, err := update(ctx, s, "projects/shared", func(c *counter) error {
						calls.Add(1)
						c.N++
						c.Writers = append(c.Writers[max(0, len(c.Writers)-3):], fmt.Sprint(w))
						return nil
					})
					if err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		got, err := update(ctx, s, "projects/shared", func(c *counter) error { return nil })
		if err != nil || got.N != 2*n {
			t.Fatalf("counter = %d (%v), want exactly %d", got.N, err, 2*n)
		}
		t.Logf("%d increments took %d calls of fn (conflicts retried)", 2*n, calls.Load())
	})
}

func TestUpdateStartsWithTheCallersRead(t *testing.T) {
	eachStore(t, func(t *testing.T, s state.Store) {
		ctx := t.Context()
		first, err := state.Load(ctx, s, "u")
		if err != nil || first.Found {
			t.Fatalf("Load of a missing document = %+v, %v", first, err)
		}
		got, _, err := state.Update(ctx, s, "u", &first, func(c *counter) error { c.N++; return nil })
		if err != nil || got.N != 1 {
			t.Fatalf("update from an empty read = %+v, %v", got, err)
		}
		// A stale read: someone wrote since. Update must notice the
		// conflict, re-read and apply fn to the fresh document.
		stale, _ := state.Load(ctx, s, "u")
		if _, err := update(ctx, s, "u", func(c *counter) error { c.N = 10; return nil }); err != nil {
			t.Fatal(err)
		}
		calls := 0
		got, _, err = state.Update(ctx, s, "u", &stale, func(c *counter) error { calls++; c.N++; return nil })
		if err != nil || got.N != 11 || calls != 2 {
			t.Fatalf("update from a stale read = %+v, %v after %d calls; want 11 after 2", got, err, calls)
		}
	})
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// update is state.Update without a first read and without the new Read.
func update[T any](ctx context.Context, s state.Store, key string, fn func(*T) error) (T, error) {
	v, _, err := state.Update(ctx, s, key, nil, fn)
	return v, err
}

func listed(items []state.Item) []string {
	keys := []string{}
	for _, it := range items {
		keys = append(keys, it.Key)
	}
	return keys
}
