package app

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/config"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/graph"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/graphsim"
)

const secret = "mdb_sa_sk_never-print-this"

func baseEnv() map[string]string {
	return map[string]string{
		"ATLAS_PROJECT_IDS":   "65a1b2c3d4e5f60718293a4b",
		"ATLAS_CLIENT_ID":     "mdb_sa_id_1",
		"ATLAS_CLIENT_SECRET": secret,
		"AzureWebJobsStorage": "UseDevelopmentStorage=true",
	}
}

func run(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(t.Context(), args, func(k string) string { return env[k] }, &out, &errb, "v-test")
	return code, out.String(), errb.String()
}

func TestCommands(t *testing.T) {
	cases := []struct {
		name   string
		env    map[string]string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"version", nil, []string{"version"}, ExitOK, "atlas-akv-guard v-test", ""},
		{"help", nil, []string{"help"}, ExitOK, "usage: handler", ""},
		{"--help", nil, []string{"--help"}, ExitOK, "1  check: problems found", ""},
		{"check --help", nil, []string{"check", "--help"}, ExitOK, "2  could not run", ""},
		{"serve -h", nil, []string{"serve", "-h"}, ExitOK, "0  healthy", ""},
		{"check bad flag", nil, []string{"check", "-nope"}, ExitError, "", "flag provided but not defined: -nope"},
		{"no command outside the host", nil, nil, ExitError, "", "usage: handler"},
		{"unknown command", nil, []string{"approve-everything"}, ExitError, "", `unknown command "approve-everything"`},
		{"serve with bad config", map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "7071"}, nil, ExitError, "", "config: ATLAS_PROJECT_IDS: missing"},
		{"serve without a port", baseEnv(), []string{"serve"}, ExitError, "", "FUNCTIONS_CUSTOMHANDLER_PORT: missing"},
		{"serve bad flag", baseEnv(), []string{"serve", "-nope"}, ExitError, "", "flag provided but not defined"},
		{"check bad settings file", baseEnv(), []string{"check", "-settings", "/no/such/file.json"}, ExitError, "", "config: read /no/such/file.json"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := run(t, tc.env, tc.args...)
			if code != tc.code || !strings.Contains(out, tc.stdout) || !strings.Contains(errs, tc.stderr) {
				t.Fatalf("code %d (want %d)\nstdout %q\nstderr %q", code, tc.code, out, errs)
			}
			if strings.Contains(out+errs, secret) {
				t.Fatal("a secret was printed")
			}
		})
	}
}

func TestServeWithoutStorageSettingFailsFast(t *testing.T) {
	env := baseEnv()
	delete(env, "AzureWebJobsStorage")
	env["FUNCTIONS_CUSTOMHANDLER_PORT"] = "7071"
	code, _, errs := run(t, env)
	if code != ExitError || strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.HasPrefix(errs, "config: AzureWebJobsStorage") {
		t.Fatalf("code %d, stderr %q", code, errs)
	}
}

func TestSinksFromConfig(t *testing.T) {
	env := baseEnv()
	env["GUARD_ALERT_WEBHOOK_URL"] = "https://hooks.slack.com/services/T0/B0/" + secret
	env["GUARD_ALERT_TOPIC_ENDPOINT"] = "https://guard-alerts.westeurope-1.eventgrid.azure.net/api/events"
	env["GUARD_ALERT_TOPIC_KEY"] = secret
	cfg, err := config.Load(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	sinks, err := Sinks(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range sinks {
		names = append(names, s.Name())
	}
	if strings.Join(names, ",") != "webhook,eventgrid" {
		t.Fatalf("sinks = %v", names)
	}
	if strings.Contains(fmt.Sprintf("%v %+v %#v", sinks, sinks, sinks), secret) {
		t.Fatal("a sink prints its secret")
	}
}

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
