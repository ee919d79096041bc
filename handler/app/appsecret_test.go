package app

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/config"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/graph"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/graphsim"
)

type staticCred struct{}

func (staticCred) GetToken(context.Context, policy.TokenRequestOptions) (azcore.AccessToken, error) {
	return azcore.AccessToken{Token: "t", ExpiresOn: time.Now().Add(time.Hour)}, nil
}

// TestAppSecrets: the app's own date wins, then Graph when enabled, then the
// date for every project; nothing configured asks nothing.
func TestAppSecrets(t *testing.T) {
	sim := graphsim.New()
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	g := graph.New(graph.Options{BaseURL: srv.URL, Credential: staticCred{}, HTTP: srv.Client()})
	d1, d2, d3 := time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 2, 1, 0, 0, 0, 0, time.UTC), time.Date(2027, 3, 1, 0, 0, 0, 0, time.UTC)
	sim.SetSecrets("0a", d3)
	both := config.AppSecret{Expiry: map[string]time.Time{"0b": d1, "": d2}, FromGraph: true}
	for _, tc := range []struct {
		name, id string
		a        config.AppSecret
		want     *plan.AppSecret
	}{
		{"own date", "0b", both, &plan.AppSecret{ClientID: "0b", Expires: d1, From: "setting GUARD_AZURE_APP_SECRET_EXPIRY"}},
		{"graph", "0a", both, &plan.AppSecret{ClientID: "0a", Expires: d3, From: plan.AppSecretFromGraph}},
		{"date for every project", "0a", config.AppSecret{Expiry: both.Expiry}, &plan.AppSecret{ClientID: "0a", Expires: d2, From: "setting GUARD_AZURE_APP_SECRET_EXPIRY"}},
	} {
		got, err := appSecrets(tc.a, g)(t.Context(), tc.id)
		if err != nil || got == nil || *got != *tc.want {
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	if _, err := appSecrets(both, g)(t.Context(), "0c"); err == nil {
		t.Error("an application Graph does not know: no error")
	}
	if appSecrets(config.AppSecret{}, g) != nil {
		t.Error("nothing configured, yet a lookup")
	}
	if sim.Calls() != 2 {
		t.Errorf("%d Graph calls, want 2", sim.Calls())
	}
}
