package check

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/logging"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/notify"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/reconcile"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/armsim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtls"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

const (
	project    = "65f0c0ffee00000000000001"
	saID       = "mdb_sa_id_check"
	saSecret   = "check-secret-value"
	keyName    = "atlas-ear"
	keyVersion = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
	connActive = "atlas-pe-westeurope-1a2b"
	connAsking = "atlas-pe-eastus2-3c4d"
)

var kv = resource.ID{SubscriptionID: "11111111-2222-3333-4444-555555555555", ResourceGroup: "rg-atlas-ear", Name: "kv-atlas-check"}

// world is Atlas and ARM (with the managed identity endpoint) simulated over
// TLS, holding one healthy project: an ACTIVE endpoint whose connection is
// Approved, a PENDING_ACCEPTANCE one whose connection is Pending, an enabled
// key that expires in a year and an EAR cluster.
type world struct {
	ca    *simtls.Authority
	atlas *atlassim.Sim
	arm   *armsim.Server

	atlasURL, armURL string
	env              map[string]string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ca, err := simtls.New()
	if err != nil {
		t.Fatal(err)
	}
	w := &world{ca: ca, atlas: atlassim.New(atlassim.Options{}), arm: armsim.New(armsim.Config{SettleReads: -1})}
	if w.atlasURL, err = w.atlas.Start(ca); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.atlas.Close() })
	if w.armURL, err = w.arm.Start(ca); err != nil {
		t.Fatal(err)
	}
	idEndpoint, err := w.arm.StartIdentity()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.arm.Close)
	// azidentity reads these from the process environment. MSAL caches
	// managed identity tokens process-wide by identity: every world uses its
	// own user-assigned client ID so no test gets another simulator's token.
	t.Setenv("IDENTITY_ENDPOINT", idEndpoint)
	t.Setenv("IDENTITY_HEADER", w.arm.IdentityHeader())
	b := make([]byte, 8)
	rand.Read(b)
	w.env = map[string]string{"IDENTITY_ENDPOINT": idEndpoint, "IDENTITY_HEADER": w.arm.IdentityHeader(), "AZURE_CLIENT_ID": "guard-" + hex.EncodeToString(b)}

	w.atlas.AddServiceAccount(saID, saSecret)
	valid := true
	w.atlas.PutProject(project, atlassim.AzureKeyVault{
		AzureEnvironment: "AZURE", Enabled: true, ClientID: "app-client-id", TenantID: "tenant-id",
		KeyIdentifier: "https://" + kv.Name + ".vault.azure.net/keys/" + keyName + "/" + keyVersion,
		KeyVaultName:  kv.Name, ResourceGroupName: kv.ResourceGroup, SubscriptionID: kv.SubscriptionID,
		RequirePrivateNetworking: true, Valid: &valid,
	})
	w.atlas.AddEndpoint(project, "EUROPE_WEST", connActive, atlassim.StatusActive)
	w.atlas.AddEndpoint(project, "US_EAST_2", connAsking, atlassim.StatusPendingAcceptance)
	w.atlas.AddCluster(project, "orders", "AZURE", "EUROPE_WEST")

	w.arm.AddVault(kv, map[string]string{"env": "prod"})
	atlasPE := "/subscriptions/atlas-sub/resourceGroups/atlas-rg/providers/Microsoft.Network/privateEndpoints/"
	if err := w.arm.AddConnection(kv, connActive, vault.StatusApproved, atlasPE+"pe-1"); err != nil {
		t.Fatal(err)
	}
	if err := w.arm.AddConnection(kv, connAsking, vault.StatusPending, atlasPE+"pe-2"); err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(365 * 24 * time.Hour).UTC().Truncate(time.Second)
	if _, err := w.arm.AddKey(kv, keyName, keyVersion, true, nil, &exp); err != nil {
		t.Fatal(err)
	}
	return w
}

// options builds what app.check builds: real clients against the
// simulators, an observe-mode reconciler over a fresh memory store.
func (w *world) options(t *testing.T, atlasSecret string, projects ...string) Options {
	t.Helper()
	ac, err := atlas.New(atlas.Options{
		BaseURL: w.atlasURL, ClientID: saID, ClientSecret: atlasSecret,
		HTTPClient: w.ca.Client(), MaxAttempts: 2, MaxRetryWait: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	fast := policy.RetryOptions{MaxRetries: 1, RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 20 * time.Millisecond}
	cred, err := vault.Credential(func(k string) string { return w.env[k] }, &azcore.ClientOptions{Transport: w.ca.Client(), Retry: fast})
	if err != nil {
		t.Fatal(err)
	}
	cloudCfg, err := vault.CloudFor("AZURE", w.armURL)
	if err != nil {
		t.Fatal(err)
	}
	vc, err := vault.New(vault.Options{Credential: cred, Cloud: cloudCfg, Transport: w.ca.Client(), Retry: fast, PollInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	store := state.NewMemory()
	if len(projects) == 0 {
		projects = []string{project}
	}
	r, err := reconcile.New(reconcile.Options{
		Projects: projects, Atlas: ac,
		Azure: func(string) (reconcile.Azure, error) { return vc, nil },
		Store: store, Log: notify.NewLog(logging.Discard()),
		Policy: plan.Policy{Mode: plan.ModeObserve},
	})
	if err != nil {
		t.Fatal(err)
	}
	return Options{Reconciler: r, Store: store, Projects: projects}
}

// run runs the check twice on fresh reconcilers (text, then JSON) and
// returns both outputs; the exit codes must agree.
func (w *world) run(t *testing.T, atlasSecret string, want int, projects ...string) (string, Result) {
	t.Helper()
	var text, js bytes.Buffer
	o := w.options(t, atlasSecret, projects...)
	o.Out = &text
	if got := Run(t.Context(), o); got != want {
		t.Errorf("text: exit %d, want %d\n%s", got, want, text.String())
	}
	o = w.options(t, atlasSecret, projects...)
	o.Out, o.JSON = &js, true
	if got := Run(t.Context(), o); got != want {
		t.Errorf("json: exit %d, want %d\n%s", got, want, js.String())
	}
	var res Result
	if err := json.Unmarshal(js.Bytes(), &res); err != nil {
		t.Fatalf("-json output is not one JSON document: %v\n%s", err, js.String())
	}
	if res.ExitCode != want {
		t.Errorf("JSON exitCode %d, want %d", res.ExitCode, want)
	}
	for _, s := range []string{saSecret, w.arm.IdentityHeader()} {
		if strings.Contains(text.String(), s) || strings.Contains(js.String(), s) {
			t.Errorf("output contains a secret %q", s)
		}
	}
	t.Logf("report:\n%s", text.String())
	return text.String(), res
}

func contains(t *testing.T, text string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(text, w) {
			t.Errorf("report lacks %q", w)
		}
	}
}

func TestHealthy(t *testing.T) {
	w := newWorld(t)
	text, res := w.run(t, saSecret, ExitHealthy)
	contains(t, text,
		"== project "+project+": HEALTHY ==",
		"vault                     "+kv.String(),
		"requirePrivateNetworking  yes",
		"enabled                   yes",
		"(in 364 days)",
		connAsking, "PENDING_ACCEPTANCE", "Pending", "would-approve",
		connActive, "ACTIVE", "Approved", "already-approved",
		"observe mode: not approved",
		"would approve "+connAsking,
		"RESULT: healthy",
	)
	if res.Outcome != OutcomeHealthy || len(res.Projects) != 1 {
		t.Fatalf("result %+v", res)
	}
	p := res.Projects[0]
	if !p.Checked || p.Status.State != "healthy" || len(p.Report.WouldApprove) != 1 || p.Report.WouldApprove[0] != connAsking {
		t.Errorf("project %+v", p)
	}
	verdicts := map[string]string{}
	for _, e := range p.Status.Endpoints {
		verdicts[e.ConnectionName] = e.Verdict
	}
	if verdicts[connAsking] != plan.VerdictWouldApprove || verdicts[connActive] != plan.VerdictAlreadyApproved {
		t.Errorf("verdicts %v", verdicts)
	}
	// Observe mode: nothing was approved in Azure.
	if c, _ := w.arm.Connection(kv, connAsking); c.Status != vault.StatusPending {
		t.Errorf("the check changed %s to %s", connAsking, c.Status)
	}
}

func TestKeyDisabled(t *testing.T) {
	w := newWorld(t)
	if err := w.arm.SetKeyEnabled(kv, keyName, keyVersion, false); err != nil {
		t.Fatal(err)
	}
	text, res := w.run(t, saSecret, ExitProblems)
	contains(t, text, ": CRITICAL ==", "enabled                   no", "key-disabled", "RESULT: problems found")
	if res.Outcome != OutcomeProblems || res.Alerts[alert.Critical] == 0 {
		t.Errorf("result %+v", res)
	}
	if !hasAlert(res.Projects[0], alert.KeyDisabled, alert.Critical) {
		t.Errorf("no critical key-disabled in %+v", res.Projects[0].Status.OpenAlerts)
	}
}

func TestConnectionsReadDenied(t *testing.T) {
	w := newWorld(t)
	w.arm.Deny(vault.ActionConnectionsRead)
	text, res := w.run(t, saSecret, ExitProblems)
	contains(t, text,
		"guard-blind",
		"Missing permissions",
		"grant Microsoft.KeyVault/vaults/privateEndpointConnections/read on the vault "+kv.String(),
		"connections-unreadable",
	)
	p := res.Projects[0]
	if !p.Checked || len(p.MissingPermissions) != 1 || p.MissingPermissions[0].Action != vault.ActionConnectionsRead ||
		p.MissingPermissions[0].Source != plan.SourceConnections {
		t.Errorf("missing permissions %+v", p.MissingPermissions)
	}
	if !hasAlert(p, alert.GuardBlind, alert.Critical) {
		t.Errorf("no guard-blind alert in %+v", p.Status.OpenAlerts)
	}
}

func TestWrongAtlasCredentials(t *testing.T) {
	w := newWorld(t)
	text, res := w.run(t, "not-the-secret", ExitFailed)
	contains(t, text, "not checked", "atlas:encryptionAtRest", "Missing permissions", "check the Atlas credentials",
		"RESULT: the check could not run: no project could be checked")
	if res.Outcome != OutcomeFailed || res.Projects[0].Checked || res.Reason == "" {
		t.Errorf("result %+v", res)
	}
	// Nothing that was not read is stated; each section says not read and why.
	if strings.Contains(text, "requirePrivateNetworking") || strings.Contains(text, "hold tag") || strings.Contains(text, "Clusters (") {
		t.Errorf("the report states values it never read")
	}
	contains(t, text, "(not read: Atlas's EAR config was not read, so the vault is unknown)")
	// What is known is still there: the guard-blind alerts.
	if !hasAlert(res.Projects[0], alert.GuardBlind, alert.Critical) {
		t.Errorf("no guard-blind alert in %+v", res.Projects[0].Status.OpenAlerts)
	}
}

// One project that can't be read beside one that can is a problem found,
// not a failed check.
func TestOneProjectUnreadable(t *testing.T) {
	w := newWorld(t)
	const missing = "65f0c0ffee0000000000dead"
	text, res := w.run(t, saSecret, ExitProblems, project, missing)
	contains(t, text, "== project "+missing+": CRITICAL ==", "== project "+project+": HEALTHY ==")
	if !res.Projects[0].Checked || res.Projects[1].Checked {
		t.Errorf("checked: %v %v", res.Projects[0].Checked, res.Projects[1].Checked)
	}
}

func TestNothingToCheck(t *testing.T) {
	var out bytes.Buffer
	if got := Run(t.Context(), Options{Out: &out}); got != ExitFailed {
		t.Errorf("exit %d", got)
	}
	w := newWorld(t)
	o := w.options(t, saSecret)
	o.Projects, o.Out = nil, &out
	if got := Run(t.Context(), o); got != ExitFailed || !strings.Contains(out.String(), "no project to check") {
		t.Errorf("exit %d: %s", got, out.String())
	}
}

func TestHostileNamesAreCleaned(t *testing.T) {
	w := newWorld(t)
	w.atlas.AddEndpoint(project, "EUROPE_NORTH", "evil\x1b]0;pwned\x07\x1b[2J", atlassim.StatusFailed)
	text, _ := w.run(t, saSecret, ExitProblems)
	if strings.ContainsAny(text, "\x1b\x07") {
		t.Errorf("terminal control characters reached the report")
	}
}

func hasAlert(p Project, k alert.Kind, s alert.Severity) bool {
	for _, a := range p.Status.OpenAlerts {
		if a.Kind == k && a.Severity == s {
			return true
		}
	}
	return false
}
