package infracheck_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/config"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/event"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// The drift test: the Bicep under infra/ must agree with the code. Each check
// reads the templates as text (see bicep_test.go) and returns the problems it
// finds; TestInfraMatchesCode runs them on the real files and
// TestChecksCatchDrift proves that each one fails on a drifted copy.

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

var secretName = regexp.MustCompile(`(?i)secret|key|password|token|connection|webhook`)

// The module that holds the function app; its *Settings variables are the app
// settings.
const functionAppModule = "modules/functionapp.bicep"

type binding struct {
	Type     string `json:"type"`
	Name     string `json:"name"`
	Schedule string `json:"schedule"`
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

// repo is what the checks read: the Bicep and .bicepparam files (path
// relative to infra/ → text) and the bindings of each function folder.
type repo struct {
	bicep     map[string]string
	params    map[string]string
	functions map[string][]binding
}

func (r *repo) code(path string) string { return stripComments(r.bicep[path]) }

// vars returns the variables of a file: name → expression.
func (r *repo) vars(path string) map[string]string {
	out := map[string]string{}
	for _, d := range declarations(r.code(path)) {
		if d.kind == "var" {
			out[d.name] = d.body
		}
	}
	return out
}

func (r *repo) paths() []string {
	ps := make([]string, 0, len(r.bicep))
	for p := range r.bicep {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

// resources returns the resource declarations, across files, whose type
// starts with prefix (e.g. "Microsoft.Authorization/roleDefinitions@").
func (r *repo) resources(prefix string) map[string][]decl {
	out := map[string][]decl{}
	for _, p := range r.paths() {
		for _, d := range declarations(r.code(p)) {
			if d.kind == "resource" && strings.HasPrefix(d.typ, prefix) {
				out[p] = append(out[p], d)
			}
		}
	}
	return out
}

func loadRepo(t *testing.T) *repo {
	t.Helper()
	root := repoRoot(t)
	r := &repo{bicep: map[string]string{}, params: map[string]string{}, functions: map[string][]binding{}}
	infra := filepath.Join(root, "infra")
	err := filepath.WalkDir(infra, func(path string, d os.DirEntry, err error) error {
		into := map[string]map[string]string{".bicep": r.bicep, ".bicepparam": r.params}[filepath.Ext(path)]
		if err != nil || d.IsDir() || into == nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(infra, path)
		into[filepath.ToSlash(rel)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.bicep["main.bicep"] == "" || r.bicep[functionAppModule] == "" {
		t.Fatalf("infra/main.bicep or infra/%s missing", functionAppModule)
	}
	dirs, err := filepath.Glob(filepath.Join(root, "functions", "*", "function.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var fj struct {
			Bindings []binding `json:"bindings"`
		}
		if err := json.Unmarshal(b, &fj); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		r.functions[filepath.Base(filepath.Dir(f))] = fj.Bindings
	}
	return r
}

type check struct {
	name string
	run  func(*repo) []string
}

var checks = []check{
	{"functions", checkFunctions},
	{"settings", checkSettings},
	{"role", checkRole},
	{"secure", checkSecure},
	{"runtime", checkRuntime},
	{"events", checkEvents},
	{"apiVersions", checkAPIVersions},
	{"site", checkSite},
	{"params", checkParams},
}

func TestInfraMatchesCode(t *testing.T) {
	r := loadRepo(t)
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			for _, p := range c.run(r) {
				t.Error(p)
			}
		})
	}
}

// appSettings returns the app settings of the function app module: the keys of
// its *Settings variables, with their values as written.
func appSettings(r *repo) map[string]string {
	out := map[string]string{}
	for _, d := range declarations(r.code(functionAppModule)) {
		if d.kind == "var" && strings.HasSuffix(d.name, "Settings") {
			for _, kv := range keys(d.body) {
				out[kv[0]] = kv[1]
			}
		}
	}
	return out
}

var functionTarget = regexp.MustCompile(`/functions/([A-Za-z0-9_-]+)'`)

// checkFunctions: every function an event subscription targets exists with an
// eventGridTrigger binding; every Event Grid function is targeted; every
// %SETTING% of a timer schedule is an app setting.
func checkFunctions(r *repo) []string {
	var problems []string
	targeted := map[string]bool{}
	for _, p := range r.paths() {
		for _, m := range functionTarget.FindAllStringSubmatch(r.code(p), -1) {
			name := m[1]
			targeted[name] = true
			bs, ok := r.functions[name]
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: event subscription targets function %s, but functions/%s/function.json does not exist", p, name, name))
				continue
			}
			if !slices.ContainsFunc(bs, func(b binding) bool { return b.Type == "eventGridTrigger" }) {
				problems = append(problems, fmt.Sprintf("%s: event subscription targets function %s, which has no eventGridTrigger binding", p, name))
			}
		}
	}
	settings := appSettings(r)
	for _, name := range sortedKeys(r.functions) {
		for _, b := range r.functions[name] {
			if b.Type == "eventGridTrigger" && !targeted[name] {
				problems = append(problems, fmt.Sprintf("function %s has an eventGridTrigger but no event subscription in infra/ targets it", name))
			}
			if b.Type == "timerTrigger" {
				if s, ok := strings.CutPrefix(b.Schedule, "%"); ok {
					s = strings.TrimSuffix(s, "%")
					if _, set := settings[s]; !set {
						problems = append(problems, fmt.Sprintf("function %s: timer schedule %%%s%% is resolved by the host from app setting %s, which %s does not set", name, s, s, functionAppModule))
					}
				}
			}
		}
	}
	return problems
}

// checkSettings: every setting of config.Settings() the deployment must
// provide is an app setting (or allow-listed with a reason), secrets are Key
// Vault references, host storage is identity-based, and no GUARD_/ATLAS_
// setting is unknown to the code.
func checkSettings(r *repo) []string {
	var problems []string
	settings := appSettings(r)
	if len(settings) == 0 {
		return []string{functionAppModule + ": no app settings found (no var ...Settings objects)"}
	}
	known := map[string]bool{}
	for _, s := range config.Settings() {
		known[s.Name] = true
		value, set := settings[s.Name]
		switch {
		case s.Name == "AzureWebJobsStorage":
			if set {
				problems = append(problems, "AzureWebJobsStorage is a connection string (shared key); use the identity-based AzureWebJobsStorage__* settings")
			}
			continue
		case s.Host && !s.Required:
			continue // set by the host itself (FUNCTIONS_CUSTOMHANDLER_PORT)
		}
		if reason, allowed := optionalSettings[s.Name]; allowed {
			if set {
				problems = append(problems, fmt.Sprintf("%s is set but listed in optionalSettings (%s): drop it from the list", s.Name, reason))
			}
			continue
		}
		if !set {
			problems = append(problems, fmt.Sprintf("setting %s (config.Settings) is not set in %s; set it or add it to optionalSettings with a reason", s.Name, functionAppModule))
			continue
		}
		if s.Secret && !strings.Contains(value, "@Microsoft.KeyVault(") {
			problems = append(problems, fmt.Sprintf("secret setting %s must be a Key Vault reference (@Microsoft.KeyVault(SecretUri=...)), got %s", s.Name, value))
		}
	}
	for name := range optionalSettings {
		if !known[name] {
			problems = append(problems, fmt.Sprintf("optionalSettings lists %s, which config.Settings does not know", name))
		}
	}
	for _, name := range sortedKeys(settings) {
		if (strings.HasPrefix(name, "GUARD_") || strings.HasPrefix(name, "ATLAS_")) && !known[name] {
			problems = append(problems, fmt.Sprintf("app setting %s is not a setting of config.Settings (typo?)", name))
		}
	}
	if v, _ := literal(settings["AzureWebJobsStorage__credential"]); v != "managedidentity" {
		problems = append(problems, "AzureWebJobsStorage__credential must be 'managedidentity'")
	}
	for _, name := range []string{"AzureWebJobsStorage__blobServiceUri", "AzureWebJobsStorage__clientId", "AZURE_CLIENT_ID"} {
		if _, ok := settings[name]; !ok {
			problems = append(problems, name+" must be set (identity-based host storage, user-assigned identity)")
		}
	}
	if !regexp.MustCompile(`(?m)^\s*keyVaultReferenceIdentity\s*:`).MatchString(r.code(functionAppModule)) {
		problems = append(problems, functionAppModule+": keyVaultReferenceIdentity must name the user-assigned identity, or Key Vault references resolve with no identity")
	}
	return problems
}

// checkRole: the custom role's actions are exactly vault.RoleActions(), with
// no wildcard and no data actions.
func checkRole(r *repo) []string {
	var problems []string
	found := 0
	for p, ds := range r.resources("Microsoft.Authorization/roleDefinitions@") {
		for _, d := range ds {
			found++
			where := fmt.Sprintf("%s:%d role %s", p, d.line, d.name)
			blocks := propertyBlocks(d.body, "actions")
			if len(blocks) != 1 {
				problems = append(problems, fmt.Sprintf("%s: want one actions list, found %d", where, len(blocks)))
				continue
			}
			got := items(blocks[0])
			for _, a := range got {
				if strings.Contains(a, "*") {
					problems = append(problems, fmt.Sprintf("%s: wildcard action %q", where, a))
				}
			}
			extra, missing, dups := diff(got, vault.RoleActions())
			for _, a := range extra {
				problems = append(problems, fmt.Sprintf("%s: action %q is not in vault.RoleActions() (the code does not need it)", where, a))
			}
			for _, a := range missing {
				problems = append(problems, fmt.Sprintf("%s: action %q of vault.RoleActions() is missing", where, a))
			}
			for _, a := range dups {
				problems = append(problems, fmt.Sprintf("%s: action %q listed twice", where, a))
			}
			for _, prop := range []string{"dataActions", "notDataActions"} {
				for _, b := range propertyBlocks(d.body, prop) {
					if len(items(b)) > 0 {
						problems = append(problems, fmt.Sprintf("%s: %s must be empty (the guard uses no data-plane action), got %v", where, prop, items(b)))
					}
				}
			}
			for _, b := range propertyBlocks(d.body, "assignableScopes") {
				if strings.Contains(b, "subscription()") || strings.Contains(b, "managementGroup") {
					problems = append(problems, fmt.Sprintf("%s: assignableScopes must stay at the vault or its resource group", where))
				}
			}
		}
	}
	if found == 0 {
		problems = append(problems, "no Microsoft.Authorization/roleDefinitions resource in infra/")
	}
	return problems
}

// checkSecure: parameters with secret-looking names are @secure() (unless
// listed in notSecrets), secure parameters reach no output and are passed only
// to @secure() module parameters, and the function app module takes no secret
// at all (secrets reach it as Key Vault URIs).
func checkSecure(r *repo) []string {
	var problems []string
	params := map[string]map[string]decl{}
	for _, p := range r.paths() {
		params[p] = map[string]decl{}
		for _, d := range declarations(r.code(p)) {
			if d.kind == "param" {
				params[p][d.name] = d
			}
		}
	}
	isSecure := func(d decl) bool { return slices.Contains(d.decorators, "secure") }
	for _, p := range r.paths() {
		var secure []string
		for _, name := range sortedKeys(params[p]) {
			d := params[p][name]
			if isSecure(d) {
				secure = append(secure, name)
				if p == functionAppModule {
					problems = append(problems, fmt.Sprintf("%s: @secure() param %s: secrets must reach the app as Key Vault references, not parameters", p, name))
				}
				continue
			}
			if _, ok := notSecrets[name]; ok || d.typ == "bool" || d.typ == "int" {
				continue
			}
			if secretName.MatchString(name) {
				problems = append(problems, fmt.Sprintf("%s:%d: param %s looks secret but lacks @secure() (or add it to notSecrets with a reason)", p, d.line, name))
			}
		}
		for _, d := range declarations(r.code(p)) {
			switch d.kind {
			case "output":
				for _, s := range secure {
					if mentions(d.body, s) {
						problems = append(problems, fmt.Sprintf("%s:%d: output %s depends on @secure() param %s", p, d.line, d.name, s))
					}
				}
			case "module":
				target := filepath.ToSlash(filepath.Join(filepath.Dir(p), d.typ))
				for _, b := range propertyBlocks(d.body, "params") {
					for _, kv := range keys(b) {
						v := regexp.MustCompile(`!?empty\([A-Za-z0-9_]+\)`).ReplaceAllString(kv[1], "")
						for _, s := range secure {
							if !mentions(v, s) {
								continue
							}
							if tp, ok := params[target][kv[0]]; !ok || !isSecure(tp) {
								problems = append(problems, fmt.Sprintf("%s:%d: @secure() param %s flows into %s param %s, which is not @secure()", p, d.line, s, target, kv[0]))
							}
						}
					}
				}
			}
		}
	}
	return problems
}

// checkRuntime: Flex runs the custom runtime, and FUNCTIONS_WORKER_RUNTIME is
// custom wherever it is set.
func checkRuntime(r *repo) []string {
	var problems []string
	code := r.code(functionAppModule)
	runtimes := propertyBlocks(code, "runtime")
	if len(runtimes) == 0 {
		problems = append(problems, functionAppModule+": no functionAppConfig runtime block")
	}
	for _, b := range runtimes {
		kv := map[string]string{}
		for _, p := range keys(b) {
			kv[p[0]], _ = literal(p[1])
		}
		if kv["name"] != "custom" || kv["version"] != "1.0" {
			problems = append(problems, fmt.Sprintf("%s: functionAppConfig.runtime must be {name: 'custom', version: '1.0'}, got name=%q version=%q", functionAppModule, kv["name"], kv["version"]))
		}
	}
	if !strings.Contains(code, "'functionapp,linux'") {
		problems = append(problems, functionAppModule+": the site must be kind 'functionapp,linux'")
	}
	re := regexp.MustCompile(`(?m)^\s*'?FUNCTIONS_WORKER_RUNTIME'?\s*:\s*(.*?)\s*$`)
	for _, p := range r.paths() {
		for _, m := range re.FindAllStringSubmatch(r.code(p), -1) {
			if v, _ := literal(m[1]); v != "custom" {
				problems = append(problems, fmt.Sprintf("%s: FUNCTIONS_WORKER_RUNTIME must be 'custom', got %s", p, m[1]))
			}
		}
	}
	return problems
}

// eventExpectations says what each Event Grid function receives: the event
// types and ARM operations its handler classifies.
func eventExpectations() map[string]struct{ types, operations []string } {
	return map[string]struct{ types, operations []string }{
		"KeyVaultEvents":    {types: event.KeyVaultEventTypes()},
		"PrivateLinkEvents": {types: event.ARMEventTypes(), operations: event.ARMOperations()},
	}
}

// checkEvents: each event subscription's filters hold exactly what the
// handler classifies, it delivers one event per batch to an AzureFunction
// endpoint with retries and dead-lettering, and it waits for phase 2.
func checkEvents(r *repo) []string {
	var problems []string
	want := eventExpectations()
	seen := map[string]bool{}
	subs := r.resources("Microsoft.EventGrid/systemTopics/eventSubscriptions@")
	for p, ds := range r.resources("Microsoft.EventGrid/eventSubscriptions@") {
		subs[p] = append(subs[p], ds...)
	}
	for _, p := range sortedKeys(subs) {
		for _, d := range subs[p] {
			where := fmt.Sprintf("%s:%d subscription %s", p, d.line, d.name)
			m := functionTarget.FindStringSubmatch(d.body)
			if m == nil {
				problems = append(problems, where+": no AzureFunction destination (…/functions/<Name>)")
				continue
			}
			fn := m[1]
			exp, ok := want[fn]
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: targets %s, for which the test knows no event types (add it to eventExpectations)", where, fn))
				continue
			}
			seen[fn] = true
			if !strings.HasPrefix(d.body, "if (deployEventSubscriptions)") {
				problems = append(problems, where+": must be created only in phase 2: `= if (deployEventSubscriptions) {`")
			}
			for _, need := range []string{"destination: eventDelivery == 'WebHook' ? {", "endpointType: 'WebHook'", "endpointType: 'AzureFunction'",
				"endpointUrl: '${webhookUrl}" + fn + "&code=${eventGridKey}'", "retryPolicy:"} {
				if !strings.Contains(d.body, need) {
					problems = append(problems, fmt.Sprintf("%s: missing %q", where, need))
				}
			}
			if n := strings.Count(d.body, "properties: union(batching, {"); n != 2 {
				problems = append(problems, fmt.Sprintf("%s: both destinations must use batching (one event per batch), found %d", where, n))
			}
			if !strings.Contains(d.body, "deadLetterWithResourceIdentity:") && !strings.Contains(d.body, "deadLetterDestination:") {
				problems = append(problems, where+": no dead-letter destination")
			}
			types := propertyBlocks(d.body, "includedEventTypes")
			if len(types) != 1 {
				problems = append(problems, fmt.Sprintf("%s: want one includedEventTypes list, found %d", where, len(types)))
			} else {
				problems = append(problems, sameSet(where+": includedEventTypes", items(types[0]), exp.types)...)
			}
			ops := operationFilter(d.body)
			switch {
			case exp.operations == nil && ops != nil:
				problems = append(problems, where+": unexpected data.operationName filter")
			case exp.operations != nil && ops == nil:
				problems = append(problems, where+": no StringIn filter on data.operationName")
			case exp.operations != nil:
				problems = append(problems, sameSet(where+": data.operationName StringIn values", ops, exp.operations)...)
			}
		}
	}
	for _, fn := range sortedKeys(want) {
		if !seen[fn] {
			problems = append(problems, "no event subscription delivers to "+fn)
		}
	}
	for p := range subs {
		vars := r.vars(p)
		// The WebHook form authenticates with the host's Event Grid extension key.
		if !strings.Contains(vars["eventGridKey"], "listKeys('${functionAppId}/host/default', '2024-04-01').systemKeys.eventgrid_extension") {
			problems = append(problems, p+": var eventGridKey must be listKeys('${functionAppId}/host/default', '2024-04-01').systemKeys.eventgrid_extension")
		}
		if !strings.HasSuffix(vars["webhookUrl"], "/runtime/webhooks/eventgrid?functionName='") {
			problems = append(problems, p+": var webhookUrl must end in /runtime/webhooks/eventgrid?functionName=")
		}
		if !regexp.MustCompile(`(?m)^\s*maxEventsPerBatch: 1$`).MatchString(vars["batching"]) {
			problems = append(problems, p+": var batching must set maxEventsPerBatch: 1")
		}
	}
	return problems
}

// checkSite: on Flex the site's siteConfig holds only flexSiteConfigKeys, and
// FTP and basic-auth publishing are off on both plans.
func checkSite(r *repo) []string {
	var problems []string
	for _, kv := range keys(r.vars(functionAppModule)["flexSiteConfig"]) {
		if !slices.Contains(flexSiteConfigKeys, kv[0]) {
			problems = append(problems, fmt.Sprintf("%s: siteConfig key %s on Flex Consumption (ARM error 51021 rejects it; allowed: %v)", functionAppModule, kv[0], flexSiteConfigKeys))
		}
	}
	sites := r.resources("Microsoft.Web/sites@")[functionAppModule]
	const want = "siteConfig: isFlex ? flexSiteConfig : union(flexSiteConfig, elasticPremiumSiteConfig)"
	if len(sites) != 1 || !strings.Contains(sites[0].body, want) {
		problems = append(problems, fmt.Sprintf("%s: the site must set `%s`", functionAppModule, want))
	}
	var names []string
	for _, d := range r.resources("Microsoft.Web/sites/basicPublishingCredentialsPolicies@")[functionAppModule] {
		m := regexp.MustCompile(`(?m)^  name: '(\w+)'$`).FindStringSubmatch(d.body)
		if m != nil && strings.HasPrefix(d.body, "{") && strings.Contains(d.body, "\n  parent: site\n") && strings.Contains(d.body, "\n    allow: false\n") {
			names = append(names, m[1])
		}
	}
	if slices.Sort(names); !slices.Equal(names, []string{"ftp", "scm"}) {
		problems = append(problems, fmt.Sprintf("%s: basicPublishingCredentialsPolicies must set allow: false for ftp and scm on the site, on both plans (no condition); found %v", functionAppModule, names))
	}
	return problems
}

var usingRE = regexp.MustCompile(`(?m)^using\s+'([^']+)'`)

// checkParams: each .bicepparam resolves `using` to main.bicep from where it
// lives (the copy users deploy lives beside it, as infra/main.bicepparam),
// sets only parameters main.bicep has, sets every parameter without a
// default, and reads every @secure() one from the environment.
func checkParams(r *repo) []string {
	var problems []string
	main := map[string]decl{}
	for _, d := range declarations(r.code("main.bicep")) {
		if d.kind == "param" {
			main[d.name] = d
		}
	}
	if len(r.params) == 0 {
		problems = append(problems, "no .bicepparam file in infra/")
	}
	for _, p := range sortedKeys(r.params) {
		code := stripComments(r.params[p])
		m := usingRE.FindStringSubmatch(code)
		if m == nil || filepath.ToSlash(filepath.Join(filepath.Dir(p), m[1])) != "main.bicep" {
			problems = append(problems, fmt.Sprintf("%s: `using` must resolve to infra/main.bicep from the file's own folder", p))
		}
		set := map[string]bool{}
		for _, d := range declarations(code) {
			if d.kind != "param" {
				continue
			}
			set[d.name] = true
			target, ok := main[d.name]
			switch {
			case !ok:
				problems = append(problems, fmt.Sprintf("%s:%d: param %s is not a parameter of main.bicep", p, d.line, d.name))
			case slices.Contains(target.decorators, "secure") && !strings.HasPrefix(d.body, "readEnvironmentVariable("):
				problems = append(problems, fmt.Sprintf("%s:%d: @secure() param %s must come from readEnvironmentVariable(), never the file", p, d.line, d.name))
			}
		}
		for _, name := range sortedKeys(main) {
			if main[name].body == "" && !set[name] {
				problems = append(problems, fmt.Sprintf("%s: required param %s of main.bicep (no default) is not set", p, name))
			}
		}
	}
	return problems
}

// operationFilter returns the values of the StringIn advanced filter on
// data.operationName, or nil when there is none.
func operationFilter(body string) []string {
	for _, filters := range propertyBlocks(body, "advancedFilters") {
		for i := 0; i < len(filters); i++ {
			if filters[i] != '{' {
				continue
			}
			end := closing(filters, i)
			if end < 0 {
				return nil
			}
			obj := filters[i+1 : end]
			i = end
			kv := map[string]string{}
			for _, p := range keys(obj) {
				kv[p[0]], _ = literal(p[1])
			}
			if kv["key"] != "data.operationName" {
				continue
			}
			if kv["operatorType"] != "StringIn" {
				return []string{"expr:operatorType " + kv["operatorType"]}
			}
			vs := propertyBlocks(obj, "values")
			if len(vs) != 1 {
				return []string{"expr:no values"}
			}
			return items(vs[0])
		}
	}
	return nil
}

var apiVersionRE = regexp.MustCompile(`'((?:Microsoft|microsoft)\.[A-Za-z]+/[A-Za-z/]+)@([^']*)'`)

// checkAPIVersions: every type@version used is in the verified allow-list.
func checkAPIVersions(r *repo) []string {
	var problems []string
	for _, p := range r.paths() {
		code := r.code(p)
		for _, m := range apiVersionRE.FindAllStringSubmatch(code, -1) {
			tv := m[1] + "@" + m[2]
			if _, ok := apiVersions[tv]; !ok {
				problems = append(problems, fmt.Sprintf("%s: %s is not in the verified apiVersions list (check learn.microsoft.com/azure/templates and add it with its source)", p, tv))
			}
		}
		for _, d := range declarations(code) {
			if d.kind == "resource" && !strings.Contains(d.typ, "@") {
				problems = append(problems, fmt.Sprintf("%s:%d: resource %s has no API version", p, d.line, d.name))
			}
		}
	}
	return problems
}

// diff compares got with want as sets: entries only in got, only in want,
// and entries repeated in got.
func diff(got, want []string) (extra, missing, dups []string) {
	count := map[string]int{}
	for _, g := range got {
		count[g]++
		if count[g] == 2 {
			dups = append(dups, g)
		}
	}
	w := map[string]bool{}
	for _, x := range want {
		w[x] = true
		if count[x] == 0 {
			missing = append(missing, x)
		}
	}
	for _, g := range got {
		if !w[g] && !slices.Contains(extra, g) {
			extra = append(extra, g)
		}
	}
	return extra, missing, dups
}

func sameSet(what string, got, want []string) []string {
	var problems []string
	extra, missing, dups := diff(got, want)
	for _, x := range extra {
		problems = append(problems, fmt.Sprintf("%s: %q is not classified by the handler", what, x))
	}
	for _, x := range missing {
		problems = append(problems, fmt.Sprintf("%s: %q is classified by the handler but missing", what, x))
	}
	for _, x := range dups {
		problems = append(problems, fmt.Sprintf("%s: %q listed twice", what, x))
	}
	return problems
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// TestChecksCatchDrift mutates copies of the real templates and requires the
// named check to report a problem mentioning want. Each mutation must apply
// exactly once, so the table fails loudly when the templates change under it.
func TestChecksCatchDrift(t *testing.T) {
	const (
		main    = "main.bicep"
		app     = functionAppModule
		vg      = "modules/vault-guard.bicep"
		secrets = "modules/secrets.bicep"
		example = "example.bicepparam"
	)
	cases := []struct {
		name, file, old, new, check, want string
	}{
		{"role with an extra action", vg,
			"'Microsoft.KeyVault/vaults/keys/read'\n",
			"'Microsoft.KeyVault/vaults/keys/read'\n          'Microsoft.KeyVault/vaults/delete'\n",
			"role", "Microsoft.KeyVault/vaults/delete"},
		{"role missing an action", vg,
			"          'Microsoft.KeyVault/vaults/keys/versions/read'\n", "",
			"role", "keys/versions/read"},
		{"role with a wildcard", vg,
			"'Microsoft.KeyVault/vaults/read'", "'Microsoft.KeyVault/vaults/*'",
			"role", "wildcard"},
		{"role with data actions", vg,
			"dataActions: []", "dataActions: [\n          'Microsoft.KeyVault/vaults/keys/decrypt/action'\n        ]",
			"role", "dataActions must be empty"},
		{"secret param without @secure", main,
			"@secure()\nparam atlasPrivateKey", "param atlasPrivateKey",
			"secure", "atlasPrivateKey"},
		{"secret param in a module without @secure", secrets,
			"@secure()\nparam alertWebhookUrl", "param alertWebhookUrl",
			"secure", "alertWebhookUrl"},
		{"secure param into an output", main,
			"output hostingPlan string = hostingPlan", "output hostingPlan string = '${hostingPlan}${atlasClientSecret}'",
			"secure", "output hostingPlan depends on @secure() param atlasClientSecret"},
		{"secure param into the function app", main,
			"    atlasClientId: atlasClientId\n", "    atlasClientId: atlasClientSecret\n",
			"secure", "flows into modules/functionapp.bicep param atlasClientId"},
		{"event subscription to a function that does not exist", vg,
			"/functions/KeyVaultEvents'", "/functions/KeyVaultEvent'",
			"functions", "functions/KeyVaultEvent/function.json does not exist"},
		{"Event Grid function without subscription", vg,
			"/functions/PrivateLinkEvents'", "/functions/KeyVaultEvents'",
			"functions", "function PrivateLinkEvents has an eventGridTrigger but no event subscription"},
		{"timer schedule setting missing", app,
			"  GUARD_SCHEDULE: guardSchedule\n", "",
			"functions", "%GUARD_SCHEDULE%"},
		{"app setting missing", app,
			"  GUARD_STUCK_AFTER: stuckAfter\n", "",
			"settings", "GUARD_STUCK_AFTER"},
		{"app setting with a typo", app,
			"GUARD_RENOTIFY_AFTER: renotifyAfter", "GUARD_RENOTIFY_AFTR: renotifyAfter",
			"settings", "GUARD_RENOTIFY_AFTR is not a setting"},
		{"secret as a plain app setting", app,
			"ATLAS_CLIENT_SECRET: '@Microsoft.KeyVault(SecretUri=${atlasClientSecretUri})'", "ATLAS_CLIENT_SECRET: atlasClientSecretUri",
			"settings", "must be a Key Vault reference"},
		{"connection-string host storage", app,
			"  AzureWebJobsStorage__credential: 'managedidentity'\n", "  AzureWebJobsStorage: 'DefaultEndpointsProtocol=https'\n",
			"settings", "AzureWebJobsStorage is a connection string"},
		{"Flex runtime not custom", app,
			"        name: 'custom'\n        version: '1.0'", "        name: 'dotnet-isolated'\n        version: '1.0'",
			"runtime", "runtime must be"},
		{"worker runtime not custom", app,
			"FUNCTIONS_WORKER_RUNTIME: 'custom'", "FUNCTIONS_WORKER_RUNTIME: 'node'",
			"runtime", "FUNCTIONS_WORKER_RUNTIME must be 'custom'"},
		{"Key Vault event type missing", vg,
			"        'Microsoft.KeyVault.KeyNearExpiry'\n", "",
			"events", "Microsoft.KeyVault.KeyNearExpiry"},
		{"ARM event type not classified", vg,
			"        'Microsoft.Resources.ResourceDeleteSuccess'\n",
			"        'Microsoft.Resources.ResourceDeleteSuccess'\n        'Microsoft.Resources.ResourceActionSuccess'\n",
			"events", "ResourceActionSuccess"},
		{"ARM operation filter too broad", vg,
			"            'Microsoft.Authorization/roleAssignments/delete'\n",
			"            'Microsoft.Authorization/roleAssignments/delete'\n            'Microsoft.Authorization/roleAssignments/write'\n",
			"events", "roleAssignments/write"},
		{"event subscription in phase 1", vg,
			"eventSubscriptions@2022-06-15' = if (deployEventSubscriptions) {\n  parent: vaultTopic",
			"eventSubscriptions@2022-06-15' = {\n  parent: vaultTopic",
			"events", "phase 2"},
		{"ftpsState on Flex (ARM 51021)", app,
			"var flexSiteConfig = {\n", "var flexSiteConfig = {\n  ftpsState: 'Disabled'\n",
			"site", "siteConfig key ftpsState"},
		{"Elastic Premium siteConfig on Flex", app,
			"siteConfig: isFlex ? flexSiteConfig : union(", "siteConfig: union(",
			"site", "the site must set"},
		{"basic-auth publishing left on", app,
			"  name: 'scm'\n  properties: {\n    allow: false", "  name: 'scm'\n  properties: {\n    allow: true",
			"site", "basicPublishingCredentialsPolicies must"},
		{"FTP off only on Elastic Premium", app,
			"resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {", "resource ftpPublishing 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = if (!isFlex) {",
			"site", "basicPublishingCredentialsPolicies must"},
		{"WebHook with the master key", vg,
			".systemKeys.eventgrid_extension", ".masterKey",
			"events", "var eventGridKey"},
		{"WebHook to another function", vg,
			"'${webhookUrl}KeyVaultEvents&", "'${webhookUrl}PrivateLinkEvents&",
			"events", "webhookUrl}KeyVaultEvents&code"},
		{"batches of ten", vg,
			"maxEventsPerBatch: 1\n", "maxEventsPerBatch: 10\n",
			"events", "maxEventsPerBatch: 1"},
		{"param file using another template", example,
			"using 'main.bicep'", "using '../main.bicep'",
			"params", "must resolve to infra/main.bicep"},
		{"param file sets an unknown param", example,
			"param guardMode =", "param guardModes =",
			"params", "guardModes is not a parameter of main.bicep"},
		{"param file misses a required param", example,
			"param atlasProjectIds =", "// param atlasProjectIds =",
			"params", "required param atlasProjectIds"},
		{"new required param in main.bicep", main,
			"param atlasBaseUrl string = 'https://cloud.mongodb.com'", "param atlasBaseUrl string",
			"params", "required param atlasBaseUrl"},
		{"secret written into the param file", example,
			"param atlasClientSecret = readEnvironmentVariable('ATLAS_CLIENT_SECRET', '')", "param atlasClientSecret = 'hunter2'",
			"params", "must come from readEnvironmentVariable"},
		{"unverified API version", app,
			"'Microsoft.Web/sites@2024-04-01'", "'Microsoft.Web/sites@2099-01-01'",
			"apiVersions", "Microsoft.Web/sites@2099-01-01"},
	}
	base := loadRepo(t)
	run := map[string]func(*repo) []string{}
	for _, c := range checks {
		run[c.name] = c.run
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := &repo{bicep: maps.Clone(base.bicep), params: maps.Clone(base.params), functions: base.functions}
			files := r.bicep
			if strings.HasSuffix(tc.file, ".bicepparam") {
				files = r.params
			}
			text := files[tc.file]
			if n := strings.Count(text, tc.old); n != 1 {
				t.Fatalf("mutation must apply once to infra/%s, applies %d times: %q", tc.file, n, tc.old)
			}
			files[tc.file] = strings.Replace(text, tc.old, tc.new, 1)
			check, ok := run[tc.check]
			if !ok {
				t.Fatalf("no check %q", tc.check)
			}
			problems := check(r)
			for _, p := range problems {
				if strings.Contains(p, tc.want) {
					return
				}
			}
			t.Errorf("check %s missed the drift: want a problem mentioning %q, got %q", tc.check, tc.want, problems)
		})
	}
}
