package graph_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/graph"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/graphsim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/transient"
)

type cred struct{ scopes []string }

func (c *cred) GetToken(_ context.Context, o policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.scopes = o.Scopes
	return azcore.AccessToken{Token: "t", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

const app = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"

func TestSecretExpiry(t *testing.T) {
	sim := graphsim.New()
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	c := &cred{}
	r := graph.New(graph.Options{BaseURL: srv.URL, Credential: c, HTTP: srv.Client(), Now: func() time.Time { return now }})

	early, late := now.AddDate(0, 2, 0), now.AddDate(1, 0, 0)
	sim.SetSecrets(app, early, late)
	got, err := r.SecretExpiry(t.Context(), app)
	if err != nil || !got.Equal(late) {
		t.Fatalf("SecretExpiry = %v, %v; want the latest-expiring %v", got, err, late)
	}
	if len(c.scopes) != 1 || c.scopes[0] != srv.URL+"/.default" {
		t.Errorf("token scopes %v", c.scopes)
	}
	// Cached for an hour: a changed answer is not read again before then.
	sim.SetSecrets(app, early)
	now = now.Add(graph.CacheFor - time.Second)
	if got, _ := r.SecretExpiry(t.Context(), app); !got.Equal(late) || sim.Calls() != 1 {
		t.Errorf("within the hour: %v after %d calls, want the cached answer after 1", got, sim.Calls())
	}
	now = now.Add(time.Second)
	if got, _ := r.SecretExpiry(t.Context(), app); !got.Equal(early) || sim.Calls() != 2 {
		t.Errorf("after the hour: %v after %d calls", got, sim.Calls())
	}

	// 403 names the permission and is cached too; a missing app is an error.
	sim.SetForbidden(true)
	now = now.Add(graph.CacheFor)
	var fe *graph.ForbiddenError
	for range 3 {
		if _, err := r.SecretExpiry(t.Context(), app); !errors.As(err, &fe) {
			t.Fatalf("forbidden: %v", err)
		}
	}
	if sim.Calls() != 3 {
		t.Errorf("%d calls, want 3 (403 cached)", sim.Calls())
	}
	sim.SetForbidden(false)
	if _, err := r.SecretExpiry(t.Context(), "11111111-0000-0000-0000-000000000000"); err == nil {
		t.Errorf("unknown app: %v", err)
	}
	if _, err := r.SecretExpiry(t.Context(), "x') or (1 eq 1"); err == nil || sim.Calls() != 4 {
		t.Errorf("bad app id reached Graph or was accepted: %v", err)
	}
	srv.Close()
	now = now.Add(graph.CacheFor)
	if _, err := r.SecretExpiry(t.Context(), app); err == nil || transient.Is(err) {
		t.Errorf("network failure: %v, want a non-transient error (cached for the hour)", err)
	}
}
