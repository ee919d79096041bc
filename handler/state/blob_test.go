package state_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/internal/azurite"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
)

func TestBlobStorageDownThenBack(t *testing.T) {
	az := azurite.Start(t) // own instance: this test stops it
	ctx := t.Context()
	b, err := state.NewBlob(ctx, state.BlobOptions{ConnectionString: az.ConnectionString})
	must(t, err)
	if _, err := update(ctx, b, "projects/p1", func(c *counter) error { c.N++; return nil }); err != nil {
		t.Fatal(err)
	}

	az.Stop()
	start := time.Now()
	_, _, err = b.Get(ctx, "projects/p1")
	t.Logf("storage down: %v (after %v)", err, time.Since(start).Round(time.Millisecond))
	if err == nil {
		t.Fatal("get with storage down: want an error")
	}
	var se *state.Error
	if !errors.As(err, &se) || !transient.Is(err) {
		t.Fatalf("want a transient *state.Error, got %#v", err)
	}
	for _, want := range []string{"state: blob 127.0.0.1", state.DefaultContainer, `get "projects/p1"`, "storage unreachable"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if _, err := update(ctx, b, "projects/p1", func(c *counter) error { c.N++; return nil }); !transient.Is(err) {
		t.Fatalf("update with storage down: %v", err)
	}
	if _, err := b.List(ctx, ""); !transient.Is(err) {
		t.Fatalf("list with storage down: %v", err)
	}

	must(t, az.Restart())
	got, err := update(ctx, b, "projects/p1", func(c *counter) error { c.N++; return nil })
	if err != nil || got.N != 2 {
		t.Fatalf("after restart: %+v, %v; want N=2 (data kept)", got, err)
	}
}

// A wrong key is a permanent error, a malformed connection string or a bad
// container name is refused, and no message or String shows the key.
func TestBlobOptionsAndPermanentErrors(t *testing.T) {
	az := sharedAzurite(t)
	wrongKey := "c2VjcmV0LWtleS10aGF0LW11c3Qtbm90LWxlYWs="
	for name, o := range map[string]state.BlobOptions{
		"wrong key":  {ConnectionString: strings.Replace(az.ConnectionString, azurite.AccountKey, wrongKey, 1), Container: "wrong-key"},
		"malformed":  {ConnectionString: "AccountKey=" + wrongKey + ";garbage"},
		"bad name":   {ConnectionString: az.ConnectionString, Container: "Bad_Name"},
		"no storage": {},
	} {
		if _, err := state.NewBlob(t.Context(), o); err == nil || transient.Is(err) || strings.Contains(err.Error(), wrongKey) {
			t.Errorf("%s: err = %v, want a permanent error without the key", name, err)
		}
	}
	opts := &azblob.ClientOptions{}
	opts.Retry = policy.RetryOptions{MaxRetries: -1}
	b, err := state.NewBlob(t.Context(), state.BlobOptions{ConnectionString: az.ConnectionString, Container: fmt.Sprintf("injected-options-%d", containerN.Add(1)), ClientOptions: opts})
	must(t, err)
	if _, err := b.Put(t.Context(), "k", []byte(`{}`), "", nil); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "injected-options") || strings.Contains(b.String(), azurite.AccountKey) {
		t.Fatalf("String() = %q", b.String())
	}
}

func BenchmarkUpdate(b *testing.B) {
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			s := st.new(b)
			for i := 0; b.Loop(); i++ {
				if _, err := update(b.Context(), s, fmt.Sprintf("projects/p%d", i%8), func(c *counter) error { c.N++; return nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
