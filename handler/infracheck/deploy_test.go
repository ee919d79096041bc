package infracheck_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// repoRoot is the folder holding go.mod above the test's directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test directory")
		}
		dir = parent
	}
}

func copyFile(t *testing.T, from, to string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, mode); err != nil {
		t.Fatal(err)
	}
}

// TestBicepSyntax parses every infra/**/*.bicep with tree-sitter-bicep (the
// script `make test` also runs) and proves that planted syntax errors are
// reported as file:line:column.
func TestBicepSyntax(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not found: the Bicep syntax check needs Node.js (make test installs its parser with npm)")
	}
	root := repoRoot(t)
	modules := os.Getenv("BICEP_PARSER_DIR")
	if modules == "" {
		modules = filepath.Join(root, ".cache", "bicep-parser", "node_modules")
	}
	if _, err := os.Stat(filepath.Join(modules, "tree-sitter-bicep", "tree-sitter-bicep.wasm")); err != nil {
		t.Fatalf("the Bicep parser is not installed in %s: run `make tools`", modules)
	}
	parse := func(path string) (string, error) {
		out, err := exec.CommandContext(t.Context(), node, filepath.Join(root, "handler", "infracheck", "parse-bicep.cjs"), modules, path).CombinedOutput()
		return string(out), err
	}
	if out, err := parse(filepath.Join(root, "infra")); err != nil || !strings.Contains(out, " 0 syntax errors") {
		t.Fatalf("infra/ does not parse (%v):\n%s", err, out)
	}
	src, err := os.ReadFile(filepath.Join(root, "infra", "modules", "vault-guard.bicep"))
	if err != nil {
		t.Fatal(err)
	}
	line := strconv.Itoa(strings.Count(string(src[:strings.Index(string(src), "param principalId string\n")]), "\n") + 1)
	cases := []struct{ name, old, new, want string }{
		{"missing closing brace", "\n}\n\nresource approverAssignment", "\n\nresource approverAssignment", `\d+:\d+: `},
		{"missing closing bracket", "      roleAssignableScope == 'vault' ? vault.id : resourceGroup().id\n    ]\n",
			"      roleAssignableScope == 'vault' ? vault.id : resourceGroup().id\n", `\d+:\d+: `},
		{"stray token", "param principalId string\n", "param principalId string )\n", line + `:26: syntax error`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if strings.Count(string(src), tc.old) != 1 {
				t.Fatalf("mutation must apply once: %q", tc.old)
			}
			path := filepath.Join(t.TempDir(), "vault-guard.bicep")
			if err := os.WriteFile(path, []byte(strings.Replace(string(src), tc.old, tc.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := parse(path)
			if err == nil || !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(path)+`:`+tc.want).MatchString(out) {
				t.Errorf("planted error not reported as %s (exit %v):\n%s", tc.want, err, out)
			}
		})
	}
}

// TestDeployScript runs the deployment the README documents (make deploy →
// infra/deploy.sh, and the azd postprovision hook) from a copy of the
// repository root, with the user's parameter file where the docs put it and a
// recording fake `az` on PATH. It asserts the exact az calls and their order
// (infra, publish, events), that every file handed to az exists, that
// deployEventSubscriptions is false and then true, and that no secret reaches
// a command line.
func TestDeployScript(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("bash not found")
	}
	root := repoRoot(t)
	makefile, _ := os.ReadFile(filepath.Join(root, "Makefile"))
	azureYAML, _ := os.ReadFile(filepath.Join(root, "azure.yaml"))
	// What `make deploy RESOURCE_GROUP=rg` runs, and what azd runs after provisioning.
	for _, want := range []string{"PARAMS       ?= infra/main.bicepparam\n", "\tinfra/deploy.sh \"$(RESOURCE_GROUP)\" \"$(PARAMS)\" dist/app.zip\n"} {
		if !strings.Contains(string(makefile), want) {
			t.Fatalf("Makefile changed: %q not found; update this test with the documented command", want)
		}
	}
	for _, doc := range []string{"README.md", "infra/README.md"} {
		b, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil || !strings.Contains(string(b), "cp infra/example.bicepparam infra/main.bicepparam") || !strings.Contains(string(b), "make deploy RESOURCE_GROUP=rg-atlas-akv-guard ") {
			t.Fatalf("%s no longer documents `cp infra/example.bicepparam infra/main.bicepparam` + `make deploy RESOURCE_GROUP=…`: update this test with it (%v)", doc, err)
		}
	}
	hook := regexp.MustCompile(`(?m)^    run: (.+)$`).FindSubmatch(azureYAML)
	if hook == nil {
		t.Fatal("azure.yaml: no postprovision run: line")
	}
	secrets := map[string]string{
		"ATLAS_CLIENT_SECRET":     "sentinel-client-secret",
		"ATLAS_PRIVATE_KEY":       `sentinel-private"key\`,
		"GUARD_ALERT_WEBHOOK_URL": "https://hooks.example/sentinel-webhook",
	}
	const app = "--resource-group rg --name func-guard"
	find := func(typ string) string {
		return "az resource list --resource-group rg --resource-type " + typ + " --tag application=atlas-akv-guard --query [0].name --output tsv"
	}
	deployment := func(params string, events string) string {
		if strings.HasSuffix(params, ".json") {
			return "DEPLOY_EVENT_SUBSCRIPTIONS=unset az deployment group create --resource-group rg --name atlas-akv-guard --template-file $ROOT/infra/main.bicep --parameters @" +
				params + " --parameters @$SECRETS --parameters deployEventSubscriptions=" + events + " --output none"
		}
		return "DEPLOY_EVENT_SUBSCRIPTIONS=" + events + " az deployment group create --resource-group rg --name atlas-akv-guard --parameters " + params + " --output none"
	}
	publish := map[string][]string{
		"FlexConsumption": {"az functionapp deployment source config-zip " + app + " --src dist/app.zip --output none"},
		"ElasticPremium": {
			find("Microsoft.Storage/storageAccounts"),
			"az storage blob upload --auth-mode login --account-name stguard --container-name app-package --name app.zip --file dist/app.zip --overwrite --output none",
			"az functionapp restart " + app + " --output none",
			"az rest --method post --output none --url https://management.azure.com/subscriptions/sub/resourceGroups/rg/providers/Microsoft.Web/sites/func-guard/syncfunctiontriggers?api-version=2024-04-01",
		},
	}
	cases := []struct{ name, plan, params, command string }{
		{"make deploy, Flex, bicepparam", "FlexConsumption", "infra/main.bicepparam", "make"},
		{"make deploy, Elastic Premium, bicepparam", "ElasticPremium", "infra/main.bicepparam", "make"},
		{"make deploy, Flex, json", "FlexConsumption", "infra/main.parameters.json", "make"},
		{"make deploy, Elastic Premium, json", "ElasticPremium", "infra/main.parameters.json", "make"},
		{"azd hook, Flex", "FlexConsumption", "infra/main.bicepparam", "azd"},
		{"azd hook, Elastic Premium", "ElasticPremium", "infra/main.bicepparam", "azd"},
		{"parameter file outside infra/", "FlexConsumption", "my.bicepparam", "make"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for _, f := range []string{"deploy.sh", "main.bicep", "example.bicepparam"} {
				copyFile(t, filepath.Join(root, "infra", f), filepath.Join(dir, "infra", f), 0o755)
			}
			// The user's file, where the README tells them to keep it.
			if strings.HasSuffix(tc.params, ".json") {
				copyFile(t, filepath.Join(root, "handler", "infracheck", "testdata", "main.parameters.json"), filepath.Join(dir, tc.params), 0o644)
			} else {
				copyFile(t, filepath.Join(root, "infra", "example.bicepparam"), filepath.Join(dir, tc.params), 0o644)
			}
			copyFile(t, filepath.Join(root, "handler", "infracheck", "testdata", "az"), filepath.Join(dir, "bin", "az"), 0o755)
			if err := os.WriteFile(filepath.Join(dir, "bin", "make"), []byte("#!/bin/sh\necho \"make $*\" >>\"$AZ_LOG\"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			copyFile(t, filepath.Join(root, "go.mod"), filepath.Join(dir, "dist", "app.zip"), 0o644)
			log, files := filepath.Join(dir, "az.log"), filepath.Join(dir, "az.files")
			cmd := exec.CommandContext(t.Context(), bash, "-c", `infra/deploy.sh rg "$PARAMS" dist/app.zip`)
			if tc.command == "azd" {
				cmd = exec.CommandContext(t.Context(), "sh", "-c", string(hook[1]))
			}
			cmd.Dir = dir
			cmd.Env = append(os.Environ(), "PATH="+filepath.Join(dir, "bin")+":"+os.Getenv("PATH"), "AZ_LOG="+log, "AZ_FILES="+files,
				"FAKE_PLAN="+tc.plan, "PARAMS="+tc.params, "AZURE_RESOURCE_GROUP=rg", "STEPS=", "DEPLOYMENT_NAME=", "DEPLOY_EVENT_SUBSCRIPTIONS=")
			for k, v := range secrets {
				cmd.Env = append(cmd.Env, k+"="+v)
			}
			out, runErr := cmd.CombinedOutput()
			got, _ := os.ReadFile(log)
			calls := strings.Split(strings.TrimSpace(strings.ReplaceAll(string(got), dir, "$ROOT")), "\n")
			if tc.params == "my.bicepparam" {
				if runErr == nil || !strings.Contains(string(out), "does not resolve to infra/main.bicep") || len(got) != 0 {
					t.Fatalf("a parameter file outside infra/ must stop before any az call with a clear message; err %v, output:\n%s\ncalls:\n%s", runErr, out, got)
				}
				return
			}
			if runErr != nil {
				t.Fatalf("deploy failed: %v\n%s", runErr, out)
			}
			secretsFile := ""
			for i, c := range calls {
				if m := regexp.MustCompile(`--parameters @(\S+) --parameters deploy`).FindStringSubmatch(c); m != nil {
					secretsFile = strings.ReplaceAll(m[1], "$ROOT", dir)
					calls[i] = strings.Replace(c, "@"+m[1]+" ", "@$SECRETS ", 1)
				}
			}
			want := []string{"az group show --name rg --output none", deployment(tc.params, "false")}
			if tc.command == "azd" { // azd provision ran phase 1 itself
				want = []string{"make package", want[0]}
			}
			want = append(append(append(want, find("Microsoft.Web/sites"),
				"az functionapp show "+app+" --query sku --output tsv",
				"az functionapp show "+app+" --query id --output tsv"), publish[tc.plan]...),
				"az functionapp function list "+app+" --query [].name --output tsv",
				deployment(tc.params, "true"),
				find("Microsoft.Web/sites"),
				"az functionapp show "+app+" --query defaultHostName --output tsv")
			if strings.Join(calls, "\n") != strings.Join(want, "\n") {
				t.Errorf("az calls:\n%s\nwant:\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
			}
			for k, v := range secrets {
				if strings.Contains(string(got), v) || strings.Contains(string(out), v) {
					t.Errorf("secret %s on a command line or in the output", k)
				}
			}
			if strings.HasSuffix(tc.params, ".json") {
				// The secrets reach ARM through a private parameters file, removed afterwards.
				passed, _ := os.ReadFile(files)
				doc := string(passed)[strings.LastIndex(string(passed), "== "+secretsFile+"\n")+len(secretsFile)+4:]
				var p struct {
					Parameters map[string]struct{ Value string } `json:"parameters"`
				}
				if err := json.Unmarshal([]byte(doc), &p); err != nil || p.Parameters["atlasClientSecret"].Value != secrets["ATLAS_CLIENT_SECRET"] ||
					p.Parameters["atlasPrivateKey"].Value != secrets["ATLAS_PRIVATE_KEY"] || p.Parameters["alertWebhookUrl"].Value != secrets["GUARD_ALERT_WEBHOOK_URL"] {
					t.Errorf("secrets parameters file %s = %q (%v)", secretsFile, doc, err)
				}
				if _, err := os.Stat(secretsFile); err == nil {
					t.Errorf("secrets parameters file %s left behind", secretsFile)
				}
			}
		})
	}
}
