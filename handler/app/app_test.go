package app_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/app"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/config"
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
	code := app.Run(t.Context(), args, func(k string) string { return env[k] }, &out, &errb, "v-test")
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
		{"version", nil, []string{"version"}, app.ExitOK, "atlas-akv-guard v-test", ""},
		{"help", nil, []string{"help"}, app.ExitOK, "usage: handler", ""},
		{"--help", nil, []string{"--help"}, app.ExitOK, "1  check: problems found", ""},
		{"check --help", nil, []string{"check", "--help"}, app.ExitOK, "2  could not run", ""},
		{"serve -h", nil, []string{"serve", "-h"}, app.ExitOK, "0  healthy", ""},
		{"check bad flag", nil, []string{"check", "-nope"}, app.ExitError, "", "flag provided but not defined: -nope"},
		{"no command outside the host", nil, nil, app.ExitError, "", "usage: handler"},
		{"unknown command", nil, []string{"approve-everything"}, app.ExitError, "", `unknown command "approve-everything"`},
		{"serve with bad config", map[string]string{"FUNCTIONS_CUSTOMHANDLER_PORT": "7071"}, nil, app.ExitError, "", "config: ATLAS_PROJECT_IDS: missing"},
		{"serve without a port", baseEnv(), []string{"serve"}, app.ExitError, "", "FUNCTIONS_CUSTOMHANDLER_PORT: missing"},
		{"serve bad flag", baseEnv(), []string{"serve", "-nope"}, app.ExitError, "", "flag provided but not defined"},
		{"check bad settings file", baseEnv(), []string{"check", "-settings", "/no/such/file.json"}, app.ExitError, "", "config: read /no/such/file.json"},
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
	if code != app.ExitError || strings.Count(strings.TrimSpace(errs), "\n") != 0 || !strings.HasPrefix(errs, "config: AzureWebJobsStorage") {
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
	sinks, err := app.Sinks(cfg, nil)
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
