package infracheck_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/config"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/event"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// The drift test: the Bicep under infra/ must agree with the code. The
// templates are read through the syntax tree parse-bicep.cjs --json dumps;
// the .bicepparam files (which the grammar does not cover) as text. Each check
// reports problems; TestInfraMatchesCode runs them on the real files (which
// must parse without a syntax error) and TestChecksCatchDrift proves that each
// check, and the syntax check, catches a drifted copy.

// apiVersions lists every resource type@version the templates may use, each
// verified to exist (sources: the Bicep/ARM template reference on
// learn.microsoft.com/azure/templates/<provider>/<version>/<type>, and for
// Microsoft.Web the Azure-Samples azure-functions-flex-consumption-samples
// templates, which deploy functionAppConfig with 2024-04-01). Add a version
// here only after checking that page.
var apiVersions = map[string]string{
	"Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31":          "templates/microsoft.managedidentity/2023-01-31/userassignedidentities",
	"Microsoft.Storage/storageAccounts@2023-05-01":                         "templates/microsoft.storage/storageaccounts (2023-05-01)",
	"Microsoft.Storage/storageAccounts/blobServices@2023-05-01":            "templates/microsoft.storage/storageaccounts/blobservices (2023-05-01)",
	"Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01": "templates/microsoft.storage/storageaccounts/blobservices/containers (2023-05-01)",
	"Microsoft.Authorization/roleAssignments@2022-04-01":                   "templates/microsoft.authorization/roleassignments (2022-04-01)",
	"Microsoft.Authorization/roleDefinitions@2022-04-01":                   "templates/microsoft.authorization/2022-04-01/roledefinitions",
	"Microsoft.OperationalInsights/workspaces@2023-09-01":                  "operationalinsights workspaces REST 2023-09-01 (azure-native Workspace)",
	"Microsoft.Insights/components@2020-02-02":                             "templates/microsoft.insights/components (2020-02-02)",
	"Microsoft.KeyVault/vaults@2023-07-01":                                 "templates/microsoft.keyvault/vaults (2023-07-01)",
	"Microsoft.KeyVault/vaults/secrets@2023-07-01":                         "templates/microsoft.keyvault/vaults/secrets (2023-07-01)",
	"Microsoft.Web/serverfarms@2024-04-01":                                 "Azure-Samples/azure-functions-flex-consumption-samples IaC/bicep",
	"Microsoft.Web/sites@2024-04-01":                                       "Azure-Samples/azure-functions-flex-consumption-samples IaC/bicep",
	"Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01":    "bicep-types-az generated/web/microsoft.web/2024-04-01 (names ftp, scm)",
	"Microsoft.EventGrid/systemTopics@2022-06-15":                          "templates/microsoft.eventgrid/2022-06-15/systemtopics",
	"Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15":       "templates/microsoft.eventgrid/2022-06-15/systemtopics/eventsubscriptions",
	"Microsoft.EventGrid/topics@2022-06-15":                                "templates/microsoft.eventgrid/2022-06-15/topics",
	"Microsoft.Insights/actionGroups@2022-04-01":                           "templates/microsoft.insights/2022-04-01/actiongroups",
	"Microsoft.Insights/scheduledQueryRules@2021-08-01":                    "templates/microsoft.insights/2021-08-01/scheduledqueryrules",
}

// optionalSettings are settings of config.Settings() the Bicep deliberately
// never sets, with the reason.
var optionalSettings = map[string]string{
	"GUARD_ALERT_TOPIC_KEY": "the alert topic is created with local auth disabled; the guard publishes " +
		"with its identity (EventGrid Data Sender), so no topic key exists",
	"AzureWebJobsStorage__accountName": "the Bicep uses the explicit AzureWebJobsStorage__blobServiceUri " +
		"(+ queue/table) form of identity-based host storage; accountName is the alternative to it",
}

// notSecrets are parameters whose names look secret but whose values are not.
var notSecrets = map[string]string{
	"keyVaultName":         "name of the customer-key vault",
	"customerKeyVaults":    "subscription, resource group and name of the customer-key vaults",
	"secretsVaultName":     "name of the guard's secrets vault",
	"atlasPublicKey":       "public half of an Atlas API key: an identifier, like a user name",
	"atlasClientSecretUri": "Key Vault URI of the secret: a location, useless without Key Vault Secrets User",
	"atlasPrivateKeyUri":   "Key Vault URI of the secret: a location",
	"alertWebhookUrlUri":   "Key Vault URI of the secret: a location",
	"alertWebhookFormat":   "auto, generic, teams or slack",
	"appSecretExpiry":      "the dates when the Atlas application's secret expires, not the secret",
	"appInsightsConnectionString": "locates the ingestion endpoint; the component has local auth disabled, " +
		"so the instrumentation key in it authorizes nothing (ingestion needs the identity's Entra token)",
}

// flexSiteConfigKeys are the only siteConfig keys the site may carry on Flex
// Consumption. ARM rejects many others on Flex with error 51021 ("The following
// site configuration property (Site.SiteConfig.FtpsState, ...) for Flex
// Consumption sites is invalid", quoted in Azure/azure-cli#31414); the AVM
// web-site module (Azure/terraform-azurerm-avm-res-web-site PR #345) lists
// linuxFxVersion, windowsFxVersion, netFrameworkVersion, ftpsState,
// use32BitWorkerProcess, preWarmedInstanceCount and alwaysOn among them and
// notes that enforcement varies by region. Microsoft's Flex samples
// (Azure-Samples/azure-functions-flex-consumption-samples, the Flex quickstart)
// set only appSettings and minTlsVersion. Add a key only with such evidence.
var flexSiteConfigKeys = []string{"appSettings", "minTlsVersion"}

var (
	secretName     = regexp.MustCompile(`(?i)secret|key|password|token|connection|webhook`)
	functionTarget = regexp.MustCompile(`/functions/([A-Za-z0-9_-]+)'`)
	emptyCall      = regexp.MustCompile(`!?empty\(\w+\)`) // reveals only whether a value is set
	usingRE        = regexp.MustCompile(`(?m)^using\s+'([^']+)'`)
	paramRE        = regexp.MustCompile(`^param\s+(\w+)\s*=\s*(.*)`)
)

// The module that holds the function app; its *Settings variables are the app settings.
const functionAppModule = "modules/functionapp.bicep"

// decl is a top-level declaration of a .bicep file as parse-bicep.cjs --json
// dumps it. Value is JSON where Bicep is literal; any other expression is
// {"$": source, "args": operands}. Text is the value as written ("" for a
// param without default).
type decl struct {
	File                       string // relative to infra/, set by repo.decls
	Kind, Name, Type, If, Text string
	Decorators                 []string
	Line                       int
	Value                      any
}

type binding struct{ Type, Schedule string }

// repo is what the checks read.
type repo struct {
	bicep     map[string][]decl // file relative to infra/ → its declarations
	params    map[string]string // .bicepparam file relative to infra/ → text
	functions map[string][]binding
}

// decls returns the declarations of kind ("" for all) in file ("" for all)
// whose type starts with prefix.
func (r *repo) decls(file, kind, prefix string) []decl {
	var out []decl
	for _, f := range slices.Sorted(maps.Keys(r.bicep)) {
		for _, d := range r.bicep[f] {
			if d.File = f; (file == "" || f == file) && (kind == "" || d.Kind == kind) && strings.HasPrefix(d.Type, prefix) {
				out = append(out, d)
			}
		}
	}
	return out
}

func (r *repo) vars(file string) map[string]any {
	out := map[string]any{}
	for _, d := range r.decls(file, "var", "") {
		out[d.Name] = d.Value
	}
	return out
}

// site is the value of the function app (the one Microsoft.Web/sites resource).
func site(r *repo, p *report) any {
	if s := r.decls(functionAppModule, "resource", "Microsoft.Web/sites@"); len(s) == 1 {
		return s[0].Value
	}
	p.must(false, "%s: want one Microsoft.Web/sites resource", functionAppModule)
	return nil
}

// get descends through objects along keys.
func get(v any, keys ...string) any {
	for _, k := range keys {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	return v
}

// src is a literal string's value or an expression's source.
func src(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	if s, ok := get(v, "$").(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// objects returns every object literal in v, expression operands included.
func objects(v any) []map[string]any {
	var out []map[string]any
	switch v := v.(type) {
	case []any:
		for _, e := range v {
			out = append(out, objects(e)...)
		}
	case map[string]any:
		if _, expr := v["$"]; expr {
			return objects(v["args"])
		}
		out = append(out, v)
		for _, k := range slices.Sorted(maps.Keys(v)) {
			out = append(out, objects(v[k])...)
		}
	}
	return out
}

// strs returns an array's elements: literal strings as they are, anything
// else as "expr:<source>".
func strs(v any) []string {
	var out []string
	a, _ := v.([]any)
	for _, e := range a {
		if s, ok := e.(string); ok {
			out = append(out, s)
		} else {
			out = append(out, "expr:"+src(e))
		}
	}
	return out
}

// mentions reports whether the Bicep expression refers to identifier name.
func mentions(expr, name string) bool {
	return regexp.MustCompile(`(^|[^\w.'])` + name + `\b`).MatchString(expr)
}

func isSecure(d decl) bool { return slices.Contains(d.Decorators, "secure") }

type report []string

// must adds the problem unless ok, and returns ok.
func (p *report) must(ok bool, format string, a ...any) bool {
	if !ok {
		*p = append(*p, fmt.Sprintf(format, a...))
	}
	return ok
}

// sameSet reports what got has beyond want, lacks of it, or repeats.
func (p *report) sameSet(what string, got, want []string, source string) {
	for i, g := range got {
		p.must(slices.Contains(want, g), "%s: %q is not in %s", what, g, source)
		p.must(slices.Index(got, g) == i, "%s: %q listed twice", what, g)
	}
	for _, w := range want {
		p.must(slices.Contains(got, w), "%s: %q of %s is missing", what, w, source)
	}
}

var checks = map[string]func(*repo, *report){
	"functions": checkFunctions, "settings": checkSettings, "role": checkRole, "secure": checkSecure,
	"runtime": checkRuntime, "events": checkEvents, "apiVersions": checkAPIVersions, "site": checkSite, "params": checkParams,
}

func TestInfraMatchesCode(t *testing.T) {
	r := loadRepo(t)
	for name, check := range checks {
		var p report
		check(r, &p)
		for _, problem := range p {
			t.Errorf("%s: %s", name, problem)
		}
	}
}

// dump parses the .bicep files under dir with parse-bicep.cjs --json: file
// relative to dir → declarations, the syntax errors reported
// (file:line:column: …) and the parser's exit status. Under `make test`
// (BICEP_PARSER_DIR set) a missing node or parser fails the test; a bare
// `go test` without node skips it.
func dump(t *testing.T, dir string) (map[string][]decl, string, error) {
	t.Helper()
	root, modules := repoRoot(t), os.Getenv("BICEP_PARSER_DIR")
	node, err := exec.LookPath("node")
	switch {
	case err != nil && modules == "":
		t.Skip("node not found: the Bicep checks need Node.js and the parser `make test` installs (run make test)")
	case err != nil:
		t.Fatalf("BICEP_PARSER_DIR is set but node is not on PATH: %v", err)
	case modules == "":
		modules = filepath.Join(root, ".cache", "bicep-parser", "node_modules")
	}
	if _, err := os.Stat(filepath.Join(modules, "tree-sitter-bicep", "tree-sitter-bicep.wasm")); err != nil {
		t.Fatalf("the Bicep parser is not installed in %s: run `make tools`", modules)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), node, filepath.Join(root, "handler", "infracheck", "parse-bicep.cjs"), modules, dir, "--json")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var files map[string][]decl
	if jsonErr := json.Unmarshal(stdout.Bytes(), &files); jsonErr != nil || !strings.Contains(stderr.String(), " Bicep files parsed, ") {
		t.Fatalf("parse-bicep.cjs --json %s: %v %v\n%s", dir, err, jsonErr, stderr.String())
	}
	return files, stderr.String(), err
}

func loadRepo(t *testing.T) *repo {
	t.Helper()
	root := repoRoot(t)
	bicep, errs, err := dump(t, filepath.Join(root, "infra"))
	if err != nil || !strings.Contains(errs, " 0 syntax errors") || bicep["main.bicep"] == nil || bicep[functionAppModule] == nil {
		t.Fatalf("infra/ does not parse, or infra/main.bicep or infra/%s is missing (%v):\n%s", functionAppModule, err, errs)
	}
	r := &repo{bicep: bicep, params: map[string]string{}, functions: map[string][]binding{}}
	params, _ := filepath.Glob(filepath.Join(root, "infra", "*.bicepparam"))
	fns, _ := filepath.Glob(filepath.Join(root, "functions", "*", "function.json"))
	for _, f := range append(params, fns...) {
		b, err := os.ReadFile(f)
		var fj struct{ Bindings []binding }
		if strings.HasSuffix(f, ".bicepparam") {
			r.params[filepath.Base(f)] = string(b)
		} else if err == nil {
			err = json.Unmarshal(b, &fj)
			r.functions[filepath.Base(filepath.Dir(f))] = fj.Bindings
		}
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
	}
	return r
}

// appSettings returns the keys of the function app module's *Settings objects.
func appSettings(r *repo) map[string]any {
	out := map[string]any{}
	for name, v := range r.vars(functionAppModule) {
		for _, o := range objects(v) {
			if strings.HasSuffix(name, "Settings") {
				maps.Copy(out, o)
			}
		}
	}
	return out
}

// checkFunctions: every function an event subscription targets exists with an
// eventGridTrigger binding; every Event Grid function is targeted; every
// %SETTING% of a timer schedule is an app setting.
func checkFunctions(r *repo, p *report) {
	targeted := map[string]bool{}
	for _, d := range r.decls("", "", "") {
		for _, m := range functionTarget.FindAllStringSubmatch(d.Text, -1) {
			bs, ok := r.functions[m[1]]
			targeted[m[1]] = true
			p.must(ok, "%s: event subscription targets function %s, but functions/%s/function.json does not exist", d.File, m[1], m[1])
			p.must(!ok || slices.ContainsFunc(bs, func(b binding) bool { return b.Type == "eventGridTrigger" }),
				"%s: event subscription targets function %s, which has no eventGridTrigger binding", d.File, m[1])
		}
	}
	settings := appSettings(r)
	for _, name := range slices.Sorted(maps.Keys(r.functions)) {
		for _, b := range r.functions[name] {
			s := strings.Trim(b.Schedule, "%")
			p.must(b.Type != "eventGridTrigger" || targeted[name], "function %s has an eventGridTrigger but no event subscription in infra/ targets it", name)
			p.must(b.Type != "timerTrigger" || !strings.HasPrefix(b.Schedule, "%") || settings[s] != nil,
				"function %s: timer schedule %%%s%% is resolved by the host from app setting %s, which %s does not set", name, s, s, functionAppModule)
		}
	}
}

// checkSettings: every setting of config.Settings() the deployment must
// provide is an app setting (or in optionalSettings with a reason), secrets
// are Key Vault references, host storage is identity-based, and no GUARD_ or
// ATLAS_ setting is unknown to the code.
func checkSettings(r *repo, p *report) {
	settings := appSettings(r)
	known := map[string]bool{}
	for _, s := range config.Settings() {
		known[s.Name] = true
		value, set := settings[s.Name]
		reason, optional := optionalSettings[s.Name]
		switch {
		case s.Name == "AzureWebJobsStorage":
			p.must(!set, "AzureWebJobsStorage is a connection string (shared key); use the identity-based AzureWebJobsStorage__* settings")
		case s.Host: // the host sets FUNCTIONS_CUSTOMHANDLER_PORT
		case optional:
			p.must(!set, "%s is set but listed in optionalSettings (%s): drop it from the list", s.Name, reason)
		case !set:
			p.must(false, "setting %s (config.Settings) is not set in %s; set it or add it to optionalSettings with a reason", s.Name, functionAppModule)
		case s.Secret:
			p.must(strings.Contains(src(value), "@Microsoft.KeyVault("), "secret setting %s must be a Key Vault reference (@Microsoft.KeyVault(SecretUri=...)), got %s", s.Name, src(value))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(optionalSettings)) {
		p.must(known[name], "optionalSettings lists %s, which config.Settings does not know", name)
	}
	for _, name := range slices.Sorted(maps.Keys(settings)) {
		p.must(known[name] || !strings.HasPrefix(name, "GUARD_") && !strings.HasPrefix(name, "ATLAS_"), "app setting %s is not a setting of config.Settings (typo?)", name)
	}
	p.must(settings["AzureWebJobsStorage__credential"] == "managedidentity", "AzureWebJobsStorage__credential must be 'managedidentity'")
	for _, name := range []string{"AzureWebJobsStorage__blobServiceUri", "AzureWebJobsStorage__clientId", "AZURE_CLIENT_ID"} {
		p.must(settings[name] != nil, "%s must be set (identity-based host storage, user-assigned identity)", name)
	}
}

// checkRole: the custom role's actions are exactly vault.RoleActions(), with
// no wildcard and no data actions, assignable at the vault or its group only.
func checkRole(r *repo, p *report) {
	roles := r.decls("", "resource", "Microsoft.Authorization/roleDefinitions@")
	p.must(len(roles) > 0, "no Microsoft.Authorization/roleDefinitions resource in infra/")
	for _, d := range roles {
		where := fmt.Sprintf("%s:%d role %s", d.File, d.Line, d.Name)
		perms, _ := get(d.Value, "properties", "permissions").([]any)
		if !p.must(len(perms) == 1, "%s: want one permissions entry, found %d", where, len(perms)) {
			continue
		}
		actions := strs(get(perms[0], "actions"))
		for _, a := range actions {
			p.must(!strings.Contains(a, "*"), "%s: wildcard action %q", where, a)
		}
		p.sameSet(where+": actions", actions, vault.RoleActions(), "vault.RoleActions() (what the code needs)")
		for _, k := range []string{"dataActions", "notDataActions"} {
			p.must(len(strs(get(perms[0], k))) == 0, "%s: %s must be empty (the guard uses no data-plane action), got %v", where, k, strs(get(perms[0], k)))
		}
		for _, s := range strs(get(d.Value, "properties", "assignableScopes")) {
			p.must(!strings.Contains(s, "subscription()") && !strings.Contains(s, "managementGroup"), "%s: assignableScopes must stay at the vault or its resource group", where)
		}
	}
}

// checkSecure: parameters with secret-looking names are @secure() (unless in
// notSecrets), secure parameters reach no output and are passed only to
// @secure() module parameters, and the function app module takes no secret at
// all (secrets reach it as Key Vault URIs).
func checkSecure(r *repo, p *report) {
	for _, f := range slices.Sorted(maps.Keys(r.bicep)) {
		var secure []string
		for _, d := range r.decls(f, "param", "") {
			_, notSecret := notSecrets[d.Name]
			if isSecure(d) {
				secure = append(secure, d.Name)
				p.must(f != functionAppModule, "%s: @secure() param %s: secrets must reach the app as Key Vault references, not parameters", f, d.Name)
			} else {
				p.must(notSecret || d.Type == "bool" || d.Type == "int" || !secretName.MatchString(d.Name),
					"%s:%d: param %s looks secret but lacks @secure() (or add it to notSecrets with a reason)", f, d.Line, d.Name)
			}
		}
		for _, d := range r.bicep[f] {
			args, _ := get(d.Value, "params").(map[string]any)
			target := path.Join(path.Dir(f), d.Type)
			for _, s := range secure {
				p.must(d.Kind != "output" || !mentions(d.Text, s), "%s:%d: output %s depends on @secure() param %s", f, d.Line, d.Name, s)
				for _, k := range slices.Sorted(maps.Keys(args)) {
					secureParam := func(x decl) bool { return x.Kind == "param" && x.Name == k && isSecure(x) }
					p.must(d.Kind != "module" || !mentions(emptyCall.ReplaceAllString(src(args[k]), ""), s) || slices.ContainsFunc(r.bicep[target], secureParam),
						"%s:%d: @secure() param %s flows into %s param %s, which is not @secure()", f, d.Line, s, target, k)
				}
			}
		}
	}
}

// checkRuntime: Flex runs the custom runtime on Linux, and
// FUNCTIONS_WORKER_RUNTIME is custom wherever it is set.
func checkRuntime(r *repo, p *report) {
	runtimes := 0
	for _, o := range objects(site(r, p)) {
		if rt, ok := o["runtime"]; ok {
			runtimes++
			p.must(get(rt, "name") == "custom" && get(rt, "version") == "1.0", "%s: functionAppConfig.runtime must be {name: 'custom', version: '1.0'}, got %s", functionAppModule, src(rt))
		}
	}
	p.must(runtimes > 0, "%s: no functionAppConfig runtime block", functionAppModule)
	p.must(get(site(r, p), "kind") == "functionapp,linux", "%s: the site must be kind 'functionapp,linux'", functionAppModule)
	for _, d := range r.decls("", "", "") {
		for _, o := range objects(d.Value) {
			v, ok := o["FUNCTIONS_WORKER_RUNTIME"]
			p.must(!ok || v == "custom", "%s: FUNCTIONS_WORKER_RUNTIME must be 'custom', got %s", d.File, src(v))
		}
	}
}

// checkEvents: each event subscription's filters hold exactly what the
// handler classifies; it is created only in phase 2 and delivers one event per
// batch to the function (AzureFunction, or the WebHook fallback with the
// host's eventgrid_extension key), with retries and dead-lettering.
func checkEvents(r *repo, p *report) {
	want := map[string][2][]string{ // function → event types, ARM operations
		"KeyVaultEvents":    {event.KeyVaultEventTypes(), nil},
		"PrivateLinkEvents": {event.ARMEventTypes(), event.ARMOperations()},
	}
	seen, files := map[string]bool{}, map[string]bool{}
	subs := append(r.decls("", "resource", "Microsoft.EventGrid/systemTopics/eventSubscriptions@"), r.decls("", "resource", "Microsoft.EventGrid/eventSubscriptions@")...)
	for _, d := range subs {
		where, props := fmt.Sprintf("%s:%d subscription %s", d.File, d.Line, d.Name), get(d.Value, "properties")
		fn := append(functionTarget.FindStringSubmatch(d.Text), "", "")[1]
		exp, ok := want[fn]
		if files[d.File] = true; !p.must(ok, "%s: no AzureFunction destination (…/functions/<Name>) to a function the test knows (add it to want)", where) {
			continue
		}
		seen[fn] = true
		p.must(d.If == "deployEventSubscriptions", "%s: must be created only in phase 2: `= if (deployEventSubscriptions) {`", where)
		for _, need := range []string{"destination: eventDelivery == 'WebHook' ? {", "endpointType: 'WebHook'", "endpointType: 'AzureFunction'",
			"endpointUrl: '${webhookUrl}" + fn + "&code=${eventGridKey}'", "retryPolicy:"} {
			p.must(strings.Contains(d.Text, need), "%s: missing %q", where, need)
		}
		p.must(strings.Count(d.Text, "properties: union(batching, {") == 2, "%s: both destinations must use batching (one event per batch)", where)
		p.must(get(props, "deadLetterWithResourceIdentity") != nil || get(props, "deadLetterDestination") != nil, "%s: no dead-letter destination", where)
		p.sameSet(where+": includedEventTypes", strs(get(props, "filter", "includedEventTypes")), exp[0], "the handler's classification")
		var ops []string
		for _, f := range objects(get(props, "filter", "advancedFilters")) {
			if f["key"] == "data.operationName" {
				ops = strs(f["values"])
				p.must(f["operatorType"] == "StringIn", "%s: the data.operationName filter must be StringIn", where)
			}
		}
		p.must(exp[1] != nil || ops == nil, "%s: unexpected data.operationName filter", where)
		if p.must(exp[1] == nil || ops != nil, "%s: no StringIn filter on data.operationName", where) && exp[1] != nil {
			p.sameSet(where+": data.operationName StringIn values", ops, exp[1], "the handler's classification")
		}
	}
	for _, fn := range slices.Sorted(maps.Keys(want)) {
		p.must(seen[fn], "no event subscription delivers to %s", fn)
	}
	for _, f := range slices.Sorted(maps.Keys(files)) {
		vars := r.vars(f)
		const key = "listKeys('${functionAppId}/host/default', '2024-04-01').systemKeys.eventgrid_extension"
		p.must(strings.Contains(src(vars["eventGridKey"]), key), "%s: var eventGridKey must be %s", f, key)
		p.must(strings.HasSuffix(src(vars["webhookUrl"]), "/runtime/webhooks/eventgrid?functionName='"), "%s: var webhookUrl must end in /runtime/webhooks/eventgrid?functionName=", f)
		p.must(get(vars["batching"], "maxEventsPerBatch") == 1.0, "%s: var batching must set maxEventsPerBatch: 1", f)
	}
}

// checkAPIVersions: every resource names a type@version of the verified list.
func checkAPIVersions(r *repo, p *report) {
	for _, d := range r.decls("", "resource", "") {
		p.must(apiVersions[d.Type] != "", "%s:%d: %s is not in the verified apiVersions list (check learn.microsoft.com/azure/templates and add it with its source)", d.File, d.Line, d.Type)
	}
}

// checkSite: on Flex the site's siteConfig holds only flexSiteConfigKeys, FTP
// and basic-auth publishing are off on both plans, and Key Vault references
// resolve with the user-assigned identity.
func checkSite(r *repo, p *report) {
	flex, ok := r.vars(functionAppModule)["flexSiteConfig"].(map[string]any)
	p.must(ok, "%s: var flexSiteConfig must be an object literal", functionAppModule)
	for _, k := range slices.Sorted(maps.Keys(flex)) {
		p.must(slices.Contains(flexSiteConfigKeys, k), "%s: siteConfig key %s on Flex Consumption (ARM error 51021 rejects it; allowed: %v)", functionAppModule, k, flexSiteConfigKeys)
	}
	const want = "isFlex ? flexSiteConfig : union(flexSiteConfig, elasticPremiumSiteConfig)"
	p.must(src(get(site(r, p), "properties", "siteConfig")) == want, "%s: the site must set `siteConfig: %s`", functionAppModule, want)
	p.must(get(site(r, p), "properties", "keyVaultReferenceIdentity") != nil, "%s: keyVaultReferenceIdentity must name the user-assigned identity, or Key Vault references resolve with no identity", functionAppModule)
	var names []string
	for _, d := range r.decls(functionAppModule, "resource", "Microsoft.Web/sites/basicPublishingCredentialsPolicies@") {
		if d.If == "" && src(get(d.Value, "parent")) == "site" && get(d.Value, "properties", "allow") == false {
			names = append(names, src(get(d.Value, "name")))
		}
	}
	slices.Sort(names)
	p.must(slices.Equal(names, []string{"ftp", "scm"}), "%s: basicPublishingCredentialsPolicies must set allow: false for ftp and scm on the site, on both plans (no condition); found %v", functionAppModule, names)
}

// checkParams: each .bicepparam resolves `using` to main.bicep from where it
// lives (the copy users deploy lives beside it, as infra/main.bicepparam),
// sets only parameters main.bicep has, sets every parameter without a
// default, and reads every @secure() one from the environment.
func checkParams(r *repo, p *report) {
	main := map[string]decl{}
	for _, d := range r.decls("main.bicep", "param", "") {
		main[d.Name] = d
	}
	p.must(len(r.params) > 0, "no .bicepparam file in infra/")
	for _, f := range slices.Sorted(maps.Keys(r.params)) {
		using := append(usingRE.FindStringSubmatch(r.params[f]), "", "")[1]
		p.must(using != "" && path.Join(path.Dir(f), using) == "main.bicep", "%s: `using` must resolve to infra/main.bicep from the file's own folder", f)
		set := map[string]bool{}
		for i, line := range strings.Split(r.params[f], "\n") {
			if m := paramRE.FindStringSubmatch(line); m != nil {
				target, ok := main[m[1]]
				set[m[1]] = true
				p.must(ok, "%s:%d: param %s is not a parameter of main.bicep", f, i+1, m[1])
				p.must(!isSecure(target) || strings.HasPrefix(m[2], "readEnvironmentVariable("), "%s:%d: @secure() param %s must come from readEnvironmentVariable(), never the file", f, i+1, m[1])
			}
		}
		for _, name := range slices.Sorted(maps.Keys(main)) {
			p.must(main[name].Text != "" || set[name], "%s: required param %s of main.bicep (no default) is not set", f, name)
		}
	}
}

// TestChecksCatchDrift plants each drift in a copy of the real file and
// requires the named check to report a problem mentioning want; for a planted
// syntax error, the parser to report file:want (LINE: where old starts) and
// exit non-zero. Each mutation must apply exactly once, so the table fails
// loudly when the templates change under it.
func TestChecksCatchDrift(t *testing.T) {
	const main, app, vg, secrets, example = "main.bicep", functionAppModule, "modules/vault-guard.bicep", "modules/secrets.bicep", "example.bicepparam"
	cases := []struct{ name, file, old, new, check, want string }{
		{"syntax: missing closing brace", vg, "\n}\n\nresource approverAssignment", "\n\nresource approverAssignment", "syntax", `\d+:\d+: `},
		{"syntax: missing closing bracket", vg, "resourceGroup().id\n    ]\n", "resourceGroup().id\n", "syntax", `\d+:\d+: `},
		{"syntax: stray token", vg, "param principalId string\n", "param principalId string )\n", "syntax", `LINE:26: syntax error`},
		{"role with an extra action", vg, "'Microsoft.KeyVault/vaults/keys/read'\n", "'Microsoft.KeyVault/vaults/keys/read'\n          'Microsoft.KeyVault/vaults/delete'\n", "role", "Microsoft.KeyVault/vaults/delete"},
		{"role missing an action", vg, "          'Microsoft.KeyVault/vaults/keys/versions/read'\n", "", "role", "keys/versions/read"},
		{"role with a wildcard", vg, "'Microsoft.KeyVault/vaults/read'", "'Microsoft.KeyVault/vaults/*'", "role", "wildcard"},
		{"role with data actions", vg, "dataActions: []", "dataActions: [\n          'Microsoft.KeyVault/vaults/keys/decrypt/action'\n        ]", "role", "dataActions must be empty"},
		{"secret param without @secure", main, "@secure()\nparam atlasPrivateKey", "param atlasPrivateKey", "secure", "atlasPrivateKey"},
		{"secret param in a module without @secure", secrets, "@secure()\nparam alertWebhookUrl", "param alertWebhookUrl", "secure", "alertWebhookUrl"},
		{"secure param into an output", main, "output hostingPlan string = hostingPlan", "output hostingPlan string = '${hostingPlan}${atlasClientSecret}'", "secure", "output hostingPlan depends on @secure() param atlasClientSecret"},
		{"secure param into the function app", main, "    atlasClientId: atlasClientId\n", "    atlasClientId: atlasClientSecret\n", "secure", "flows into modules/functionapp.bicep param atlasClientId"},
		{"event subscription to a function that does not exist", vg, "/functions/KeyVaultEvents'", "/functions/KeyVaultEvent'", "functions", "functions/KeyVaultEvent/function.json does not exist"},
		{"Event Grid function without subscription", vg, "/functions/PrivateLinkEvents'", "/functions/KeyVaultEvents'", "functions", "function PrivateLinkEvents has an eventGridTrigger but no event subscription"},
		{"timer schedule setting missing", app, "  GUARD_SCHEDULE: guardSchedule\n", "", "functions", "%GUARD_SCHEDULE%"},
		{"app setting missing", app, "  GUARD_STUCK_AFTER: stuckAfter\n", "", "settings", "GUARD_STUCK_AFTER"},
		{"app setting with a typo", app, "GUARD_RENOTIFY_AFTER: renotifyAfter", "GUARD_RENOTIFY_AFTR: renotifyAfter", "settings", "GUARD_RENOTIFY_AFTR is not a setting"},
		{"secret as a plain app setting", app, "ATLAS_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${atlasClientSecretUri})'", "ATLAS_CLIENT_SECRET: atlasClientSecretUri", "settings", "must be a Key Vault reference"},
		{"connection-string host storage", app, "  AzureWebJobsStorage__credential: 'managedidentity'\n", "  AzureWebJobsStorage: 'DefaultEndpointsProtocol=https'\n", "settings", "AzureWebJobsStorage is a connection string"},
		{"Key Vault references without identity", app, "    keyVaultReferenceIdentity: identityId\n", "", "site", "keyVaultReferenceIdentity must name"},
		{"Flex runtime not custom", app, "        name: 'custom'\n        version: '1.0'", "        name: 'dotnet-isolated'\n        version: '1.0'", "runtime", "runtime must be"},
		{"worker runtime not custom", app, "FUNCTIONS_WORKER_RUNTIME: 'custom'", "FUNCTIONS_WORKER_RUNTIME: 'node'", "runtime", "FUNCTIONS_WORKER_RUNTIME must be 'custom'"},
		{"Key Vault event type missing", vg, "        'Microsoft.KeyVault.KeyNearExpiry'\n", "", "events", "Microsoft.KeyVault.KeyNearExpiry"},
		{"ARM event type not classified", vg, "        'Microsoft.Resources.ResourceDeleteSuccess'\n", "        'Microsoft.Resources.ResourceDeleteSuccess'\n        'Microsoft.Resources.ResourceActionSuccess'\n", "events", "ResourceActionSuccess"},
		{"ARM operation filter too broad", vg, "            'Microsoft.Authorization/roleAssignments/delete'\n", "            'Microsoft.Authorization/roleAssignments/delete'\n            'Microsoft.Authorization/roleAssignments/write'\n", "events", "roleAssignments/write"},
		{"event subscription in phase 1", vg, "eventSubscriptions@2022-06-15' = if (deployEventSubscriptions) {\n  parent: vaultTopic", "eventSubscriptions@2022-06-15' = {\n  parent: vaultTopic", "events", "phase 2"},
		{"no dead-lettering", vg, "    deadLetterWithResourceIdentity: deadLetter\n  }\n}\n\nresource newResourceGroupTopic", "  }\n}\n\nresource newResourceGroupTopic", "events", "no dead-letter destination"},
		{"ftpsState on Flex (ARM 51021)", app, "var flexSiteConfig = {\n", "var flexSiteConfig = {\n  ftpsState: 'Disabled'\n", "site", "siteConfig key ftpsState"},
		{"Elastic Premium siteConfig on Flex", app, "siteConfig: isFlex ? flexSiteConfig : union(", "siteConfig: union(", "site", "the site must set"},
		{"basic-auth publishing left on", app, "  name: 'scm'\n  properties: {\n    allow: false", "  name: 'scm'\n  properties: {\n    allow: true", "site", "basicPublishingCredentialsPolicies must"},
		{"FTP off only on Elastic Premium", app, "basicPublishingCredentialsPolicies@2024-04-01' = {\n  parent: site\n  name: 'ftp'", "basicPublishingCredentialsPolicies@2024-04-01' = if (!isFlex) {\n  parent: site\n  name: 'ftp'", "site", "basicPublishingCredentialsPolicies must"},
		{"WebHook with the master key", vg, ".systemKeys.eventgrid_extension", ".masterKey", "events", "var eventGridKey"},
		{"WebHook to another function", vg, "'${webhookUrl}KeyVaultEvents&", "'${webhookUrl}PrivateLinkEvents&", "events", "webhookUrl}KeyVaultEvents&code"},
		{"batches of ten", vg, "maxEventsPerBatch: 1\n", "maxEventsPerBatch: 10\n", "events", "maxEventsPerBatch: 1"},
		{"param file using another template", example, "using 'main.bicep'", "using '../main.bicep'", "params", "must resolve to infra/main.bicep"},
		{"param file sets an unknown param", example, "param guardMode =", "param guardModes =", "params", "guardModes is not a parameter of main.bicep"},
		{"param file misses a required param", example, "param atlasProjectIds =", "// param atlasProjectIds =", "params", "required param atlasProjectIds"},
		{"new required param in main.bicep", main, "param atlasBaseUrl string = 'https://cloud.mongodb.com'", "param atlasBaseUrl string", "params", "required param atlasBaseUrl"},
		{"secret written into the param file", example, "param atlasClientSecret = readEnvironmentVariable('ATLAS_CLIENT_SECRET', '')", "param atlasClientSecret = 'hunter2'", "params", "must come from readEnvironmentVariable"},
		{"unverified API version", app, "'Microsoft.Web/sites@2024-04-01'", "'Microsoft.Web/sites@2099-01-01'", "apiVersions", "Microsoft.Web/sites@2099-01-01"},
	}
	base, root, tmp := loadRepo(t), repoRoot(t), t.TempDir()
	drifted := make([]string, len(cases)) // the drifted text of each case
	for i, tc := range cases {
		text, err := os.ReadFile(filepath.Join(root, "infra", tc.file))
		if n := strings.Count(string(text), tc.old); err != nil || n != 1 {
			t.Fatalf("%s: mutation must apply once to infra/%s, applies %d times (%v): %q", tc.name, tc.file, n, err, tc.old)
		}
		drifted[i] = strings.Replace(string(text), tc.old, tc.new, 1)
		cases[i].want = strings.Replace(tc.want, "LINE", strconv.Itoa(strings.Count(string(text[:strings.Index(string(text), tc.old)]), "\n")+1), 1)
		if f := filepath.Join(tmp, strconv.Itoa(i), tc.file); strings.HasSuffix(f, ".bicep") {
			if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil || os.WriteFile(f, []byte(drifted[i]), 0o644) != nil {
				t.Fatal(f, err)
			}
		}
	}
	parsed, errs, err := dump(t, tmp) // one run of the parser for every drifted template
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.check == "syntax" {
				if !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(filepath.Join(tmp, strconv.Itoa(i), tc.file))+`:`+tc.want).MatchString(errs) || err == nil {
					t.Errorf("planted error not reported as %s (exit %v):\n%s", tc.want, err, errs)
				}
				return
			}
			r := &repo{bicep: maps.Clone(base.bicep), params: maps.Clone(base.params), functions: base.functions}
			if ds, ok := parsed[strconv.Itoa(i)+"/"+tc.file]; ok {
				r.bicep[tc.file] = ds
			} else {
				r.params[tc.file] = drifted[i]
			}
			var p report
			if checks[tc.check](r, &p); !slices.ContainsFunc(p, func(s string) bool { return strings.Contains(s, tc.want) }) {
				t.Errorf("check %s missed the drift: want a problem mentioning %q, got %q", tc.check, tc.want, p)
			}
		})
	}
}
