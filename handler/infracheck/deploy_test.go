package infracheck_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// repoRoot is the repository root (go test runs in handler/infracheck).
func repoRoot(t *testing.T) string {
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if _, statErr := os.Stat(filepath.Join(root, "go.mod")); err != nil || statErr != nil {
		t.Fatal("repository root not found", err, statErr)
	}
	return root
}

// TestDeployScript runs the deployment the README documents (make deploy →
// infra/deploy.sh, and the azd postprovision hook) from a copy of the
// repository root, with the user's parameter file where the docs put it and a
// recording fake `az` on PATH (testdata/az). It asserts the exact az calls and
// their order (testdata/calls/<case>.txt: infra, publish, events, with
// deployEventSubscriptions false and then true), that every file handed to az
// exists (the fake logs MISSING otherwise), and that no secret reaches a
// command line.
func TestDeployScript(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not found")
	}
	root := repoRoot(t)
	read := func(name string) string { // relative to the repository root
		if !filepath.IsAbs(name) {
			name = filepath.Join(root, name)
		}
		b, _ := os.ReadFile(name)
		return string(b)
	}
	// What the docs tell the user to run, which this test replays.
	readme := []string{"cp infra/example.bicepparam infra/main.bicepparam", "make deploy RESOURCE_GROUP=rg-atlas-akv-guard "}
	for file, wants := range map[string][]string{"README.md": readme, "infra/README.md": readme,
		"Makefile": {"PARAMS       ?= infra/main.bicepparam\n", "\tinfra/deploy.sh \"$(RESOURCE_GROUP)\" \"$(PARAMS)\" dist/app.zip\n"}} {
		for _, want := range wants {
			if !strings.Contains(read(file), want) {
				t.Fatalf("%s no longer holds %q: update this test with the documented command", file, want)
			}
		}
	}
	hook := regexp.MustCompile(`(?m)^    run: (.+)$`).FindStringSubmatch(read("azure.yaml"))
	if hook == nil {
		t.Fatal("azure.yaml: no postprovision run: line")
	}
	secrets := map[string]string{"atlasClientSecret=ATLAS_CLIENT_SECRET": "sentinel-client-secret",
		"atlasPrivateKey=ATLAS_PRIVATE_KEY": `sentinel-private"key\`, "alertWebhookUrl=GUARD_ALERT_WEBHOOK_URL": "https://hooks.example/sentinel-webhook"}
	const deploy = `infra/deploy.sh rg "$PARAMS" dist/app.zip` // what make deploy runs
	cases := []struct{ name, plan, params, command, fails string }{
		{"make deploy, Flex, bicepparam", "FlexConsumption", "infra/main.bicepparam", deploy, ""},
		{"make deploy, Elastic Premium, bicepparam", "ElasticPremium", "infra/main.bicepparam", deploy, ""},
		{"make deploy, Flex, json", "FlexConsumption", "infra/main.parameters.json", deploy, ""},
		{"make deploy, Elastic Premium, json", "ElasticPremium", "infra/main.parameters.json", deploy, ""},
		{"azd hook, Flex", "FlexConsumption", "infra/main.bicepparam", hook[1], ""},
		{"azd hook, Elastic Premium", "ElasticPremium", "infra/main.bicepparam", hook[1], ""},
		{"parameter file outside infra", "FlexConsumption", "my.bicepparam", deploy, "does not resolve to infra/main.bicep"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, userFile := t.TempDir(), "infra/example.bicepparam"
			if strings.HasSuffix(tc.params, ".json") {
				userFile = "handler/infracheck/testdata/main.parameters.json"
			}
			for from, to := range map[string]string{"infra/deploy.sh": "infra/deploy.sh", "infra/main.bicep": "infra/main.bicep",
				userFile: tc.params, "handler/infracheck/testdata/az": "bin/az", "go.mod": "dist/app.zip"} {
				if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, to)), 0o755); err != nil || os.WriteFile(filepath.Join(dir, to), []byte(read(from)), 0o755) != nil {
					t.Fatal(to, err)
				}
			}
			if err := os.WriteFile(filepath.Join(dir, "bin", "make"), []byte("#!/bin/sh\necho \"make $*\" >>\"$AZ_LOG\"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			shell := map[bool]string{true: bash, false: "sh"}[tc.command == deploy]
			cmd := exec.CommandContext(t.Context(), shell, "-c", tc.command)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "PATH="+filepath.Join(dir, "bin")+":"+os.Getenv("PATH"), "AZ_LOG="+dir+"/az.log", "AZ_FILES="+dir+"/az.files",
				"FAKE_PLAN="+tc.plan, "PARAMS="+tc.params, "AZURE_RESOURCE_GROUP=rg", "STEPS=", "DEPLOYMENT_NAME=", "DEPLOY_EVENT_SUBSCRIPTIONS=")
			for k, v := range secrets {
				cmd.Env = append(cmd.Env, k[strings.Index(k, "=")+1:]+"="+v)
			}
			out, err := cmd.CombinedOutput()
			if (err != nil) != (tc.fails != "") || !strings.Contains(string(out), tc.fails) {
				t.Fatalf("deploy: err %v, want it to fail with %q; output:\n%s", err, tc.fails, out)
			}
			// The secrets of a .json deployment reach ARM through a private parameters file, removed afterwards.
			calls, secretsFile := read(dir+"/az.log"), ""
			if m := regexp.MustCompile(`--parameters @(\S+) --parameters deploy`).FindStringSubmatch(calls); m != nil {
				secretsFile, calls = m[1], strings.ReplaceAll(calls, "@"+m[1]+" ", "@$SECRETS ")
			}
			golden := "handler/infracheck/testdata/calls/" + strings.NewReplacer(" ", "-", ",", "").Replace(tc.name) + ".txt"
			if calls = strings.ReplaceAll(calls, dir, "$ROOT"); calls != read(golden) {
				t.Errorf("az calls:\n%s\nwant (%s):\n%s", calls, golden, read(golden))
			}
			_, doc, _ := strings.Cut(read(dir+"/az.files"), "== "+secretsFile+"\n")
			doc, _, _ = strings.Cut(doc, "\n== ")
			var p struct {
				Parameters map[string]struct{ Value string }
			}
			jsonErr := json.Unmarshal([]byte(doc), &p)
			for k, v := range secrets {
				if strings.Contains(calls, v) || strings.Contains(string(out), v) {
					t.Errorf("secret %s on a command line or in the output", k)
				}
				if param := k[:strings.Index(k, "=")]; secretsFile != "" && p.Parameters[param].Value != v {
					t.Errorf("secrets parameters file %s: %s = %q, want $%s (%v)", secretsFile, param, p.Parameters[param].Value, k, jsonErr)
				}
			}
			if _, err := os.Stat(secretsFile); err == nil {
				t.Errorf("secrets parameters file %s left behind", secretsFile)
			}
			if strings.HasSuffix(tc.params, ".json") != (secretsFile != "") {
				t.Errorf("secrets parameters file passed: %q, want one exactly for .json parameters", secretsFile)
			}
		})
	}
}
