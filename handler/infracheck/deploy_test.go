package infracheck_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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

// parse runs parse-bicep.cjs with the parser's node_modules and args. Under
// `make test` (BICEP_PARSER_DIR set) a missing node or parser fails the test;
// a bare `go test` without node skips it.
func parse(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root, modules := repoRoot(t), os.Getenv("BICEP_PARSER_DIR")
	node, lookErr := exec.LookPath("node")
	switch {
	case lookErr != nil && modules == "":
		t.Skip("node not found: the Bicep checks need Node.js and the parser `make test` installs (run make test)")
	case lookErr != nil:
		t.Fatalf("BICEP_PARSER_DIR is set but node is not on PATH: %v", lookErr)
	case modules == "":
		modules = filepath.Join(root, ".cache", "bicep-parser", "node_modules")
	}
	if _, err := os.Stat(filepath.Join(modules, "tree-sitter-bicep", "tree-sitter-bicep.wasm")); err != nil {
		t.Fatalf("the Bicep parser is not installed in %s: run `make tools`", modules)
	}
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(t.Context(), node, append([]string{filepath.Join(root, "handler", "infracheck", "parse-bicep.cjs"), modules}, args...)...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// TestBicepSyntax parses every infra/**/*.bicep with tree-sitter-bicep (as
// `make test` does) and proves that planted syntax errors are reported as
// file:line:column.
func TestBicepSyntax(t *testing.T) {
	root := repoRoot(t)
	if out, _, err := parse(t, filepath.Join(root, "infra")); err != nil || !strings.Contains(out, " 0 syntax errors") {
		t.Fatalf("infra/ does not parse (%v):\n%s", err, out)
	}
	src, err := os.ReadFile(filepath.Join(root, "infra", "modules", "vault-guard.bicep"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, old, new, want string }{
		{"missing closing brace", "\n}\n\nresource approverAssignment", "\n\nresource approverAssignment", `\d+:\d+: `},
		{"missing closing bracket", "resourceGroup().id\n    ]\n", "resourceGroup().id\n", `\d+:\d+: `},
		{"stray token", "param principalId string\n", "param principalId string )\n", `LINE:26: syntax error`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			i := strings.Index(string(src), tc.old)
			if i < 0 || strings.Count(string(src), tc.old) != 1 {
				t.Fatalf("mutation must apply once: %q", tc.old)
			}
			file := filepath.Join(t.TempDir(), "vault-guard.bicep")
			if err := os.WriteFile(file, []byte(strings.Replace(string(src), tc.old, tc.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			want := strings.Replace(tc.want, "LINE", strconv.Itoa(strings.Count(string(src[:i]), "\n")+1), 1)
			out, _, err := parse(t, file)
			if err == nil || !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(file)+`:`+want).MatchString(out) {
				t.Errorf("planted error not reported as %s (exit %v):\n%s", want, err, out)
			}
		})
	}
}

// TestDeployScript runs the deployment the README documents (make deploy →
// infra/deploy.sh, and the azd postprovision hook) from a copy of the
// repository root, with the user's parameter file where the docs put it and a
// recording fake `az` on PATH (testdata/az). It asserts the exact az calls and
// their order (infra, publish, events), that every file handed to az exists,
// that deployEventSubscriptions is false and then true, and that no secret
// reaches a command line.
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
	secrets := map[string]string{"ATLAS_CLIENT_SECRET": "sentinel-client-secret", "ATLAS_PRIVATE_KEY": `sentinel-private"key\`, "GUARD_ALERT_WEBHOOK_URL": "https://hooks.example/sentinel-webhook"}
	const app = "--resource-group rg --name func-guard"
	find := func(typ string) string {
		return "az resource list --resource-group rg --resource-type " + typ + " --tag application=atlas-akv-guard --query [0].name --output tsv"
	}
	deployment := func(params, events string) string {
		if strings.HasSuffix(params, ".json") {
			return "DEPLOY_EVENT_SUBSCRIPTIONS=unset az deployment group create --resource-group rg --name atlas-akv-guard --template-file $ROOT/infra/main.bicep --parameters @" +
				params + " --parameters @$SECRETS --parameters deployEventSubscriptions=" + events + " --output none"
		}
		return "DEPLOY_EVENT_SUBSCRIPTIONS=" + events + " az deployment group create --resource-group rg --name atlas-akv-guard --parameters " + params + " --output none"
	}
	publish := map[string][]string{
		"FlexConsumption": {"az functionapp deployment source config-zip " + app + " --src dist/app.zip --output none"},
		"ElasticPremium": {find("Microsoft.Storage/storageAccounts"),
			"az storage blob upload --auth-mode login --account-name stguard --container-name app-package --name app.zip --file dist/app.zip --overwrite --output none",
			"az functionapp restart " + app + " --output none",
			"az rest --method post --output none --url https://management.azure.com/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Web/sites/func-guard/syncfunctiontriggers?api-version=2024-04-01"},
	}
	cases := []struct{ name, plan, params, command string }{
		{"make deploy, Flex, bicepparam", "FlexConsumption", "infra/main.bicepparam", `infra/deploy.sh rg "$PARAMS" dist/app.zip`},
		{"make deploy, Elastic Premium, bicepparam", "ElasticPremium", "infra/main.bicepparam", `infra/deploy.sh rg "$PARAMS" dist/app.zip`},
		{"make deploy, Flex, json", "FlexConsumption", "infra/main.parameters.json", `infra/deploy.sh rg "$PARAMS" dist/app.zip`},
		{"make deploy, Elastic Premium, json", "ElasticPremium", "infra/main.parameters.json", `infra/deploy.sh rg "$PARAMS" dist/app.zip`},
		{"azd hook, Flex", "FlexConsumption", "infra/main.bicepparam", hook[1]},
		{"azd hook, Elastic Premium", "ElasticPremium", "infra/main.bicepparam", hook[1]},
		{"parameter file outside infra/", "FlexConsumption", "my.bicepparam", `infra/deploy.sh rg "$PARAMS" dist/app.zip`},
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
			log, files := filepath.Join(dir, "az.log"), filepath.Join(dir, "az.files")
			shell := map[bool]string{true: bash, false: "sh"}[strings.HasPrefix(tc.command, "infra/")]
			cmd := exec.CommandContext(t.Context(), shell, "-c", tc.command)
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "PATH="+filepath.Join(dir, "bin")+":"+os.Getenv("PATH"), "AZ_LOG="+log, "AZ_FILES="+files,
				"FAKE_PLAN="+tc.plan, "PARAMS="+tc.params, "AZURE_RESOURCE_GROUP=rg", "STEPS=", "DEPLOYMENT_NAME=", "DEPLOY_EVENT_SUBSCRIPTIONS=")
			for k, v := range secrets {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			out, runErr := cmd.CombinedOutput()
			got := read(log)
			if tc.params == "my.bicepparam" {
				if runErr == nil || !strings.Contains(string(out), "does not resolve to infra/main.bicep") || got != "" {
					t.Fatalf("a parameter file outside infra/ must stop before any az call with a clear message; err %v, output:\n%s\ncalls:\n%s", runErr, out, got)
				}
				return
			} else if runErr != nil {
				t.Fatalf("deploy failed: %v\n%s", runErr, out)
			}
			secretsFile := ""
			if m := regexp.MustCompile(`--parameters @(\S+) --parameters deploy`).FindStringSubmatch(got); m != nil {
				secretsFile = m[1]
				got = strings.ReplaceAll(got, "@"+m[1]+" ", "@$SECRETS ")
			}
			want := []string{"az group show --name rg --output none", deployment(tc.params, "false")}
			if !strings.HasPrefix(tc.command, "infra/") { // azd provision ran phase 1 itself
				want = []string{"make package", want[0]}
			}
			want = append(append(append(want, find("Microsoft.Web/sites"), "az functionapp show "+app+" --query sku --output tsv",
				"az functionapp show "+app+" --query id --output tsv"), publish[tc.plan]...),
				"az functionapp function list "+app+" --query [].name --output tsv", deployment(tc.params, "true"),
				find("Microsoft.Web/sites"), "az functionapp show "+app+" --query defaultHostName --output tsv")
			if calls := strings.TrimSpace(strings.ReplaceAll(got, dir, "$ROOT")); calls != strings.Join(want, "\n") {
				t.Errorf("az calls:\n%s\nwant:\n%s", calls, strings.Join(want, "\n"))
			}
			for k, v := range secrets {
				if strings.Contains(got, v) || strings.Contains(string(out), v) {
					t.Errorf("secret %s on a command line or in the output", k)
				}
			}
			if !strings.HasSuffix(tc.params, ".json") {
				return
			}
			// The secrets reach ARM through a private parameters file, removed afterwards.
			passed := read(files)
			var p struct {
				Parameters map[string]struct{ Value string }
			}
			_, doc, _ := strings.Cut(passed, "== "+secretsFile+"\n")
			doc, _, _ = strings.Cut(doc, "\n== ")
			err := json.Unmarshal([]byte(doc), &p)
			for param, env := range map[string]string{"atlasClientSecret": "ATLAS_CLIENT_SECRET", "atlasPrivateKey": "ATLAS_PRIVATE_KEY", "alertWebhookUrl": "GUARD_ALERT_WEBHOOK_URL"} {
				if err != nil || p.Parameters[param].Value != secrets[env] {
					t.Errorf("secrets parameters file %s: %s = %q, want $%s (%v)", secretsFile, param, p.Parameters[param].Value, env, err)
				}
			}
			if _, err := os.Stat(secretsFile); err == nil {
				t.Errorf("secrets parameters file %s left behind", secretsFile)
			}
		})
	}
}
