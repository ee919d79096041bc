package check

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

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
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/simtest"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/state"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

const (
	project    = "65f0c0ffee00000000000001"
	keyVersion = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
	connActive = "atlas-pe-westeurope-1a2b"
	connAsking = "atlas-pe-eastus2-3c4d"
)

var kv = resource.ID{SubscriptionID: "11111111-2222-3333-4444-555555555555", ResourceGroup: "rg-atlas-ear", Name: "kv-atlas-check"}

// world is Atlas and ARM (with the managed identity endpoint) simulated over
// TLS, holding one healthy project: an ACTIVE endpoint whose connection is
// Approved, a PENDING_ACCEPTANCE one whose connection is Pending, an enabled
// key that expires in a year and an EAR cluster.
type world struct{ *simtest.Sims }

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{simtest.New(t, simtest.Options{ARM: armsim.Config{SettleReads: -1}})}
	must := func(_ string, err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.AddProject(simtest.Project{ID: project, Vault: kv, KeyVersion: keyVersion, Clusters: []string{"orders"}, Regions: []string{"EUROPE_WEST"}}))
	must(w.AddEndpoint(project, kv, "EUROPE_WEST", connActive, atlassim.StatusActive, vault.StatusApproved))
	must(w.AddEndpoint(project, kv, "US_EAST_2", connAsking, atlassim.StatusPendingAcceptance, vault.StatusPending))
	return w
}

// options builds what app.check builds: real clients against the
// simulators, an observe-mode reconciler over a fresh memory store.
func (w *world) options(t *testing.T, atlasSecret string, projects ...string) Options {
	t.Helper()
	ac, err := w.AtlasClient(atlas.Options{ClientSecret: atlasSecret, MaxAttempts: 2, MaxRetryWait: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	vc, err := w.VaultClient(policy.RetryOptions{MaxRetries: 1, RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 20 * time.Millisecond})
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
	return Options{Reconciler: r, Store: store, Projects: projects, Prereqs: vc}
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
	for _, s := range []string{w.AtlasSecret, w.ARM.IdentityHeader()} {
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
	text, res := w.run(t, "", ExitHealthy)
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
	if c, _ := w.ARM.Connection(kv, connAsking); c.Status != vault.StatusPending {
		t.Errorf("the check changed %s to %s", connAsking, c.Status)
	}
}

func TestKeyDisabled(t *testing.T) {
	w := newWorld(t)
	if err := w.ARM.SetKeyEnabled(kv, "atlas-ear", keyVersion, false); err != nil {
		t.Fatal(err)
	}
	text, res := w.run(t, "", ExitProblems)
	contains(t, text, ": CRITICAL ==", "enabled                   no", "key-disabled", "RESULT: problems found",
		"What to do about key-disabled", "1. Re-enable the key version Atlas uses: az keyvault key set-attributes --enabled true --subscription "+kv.SubscriptionID+" --vault-name "+kv.Name+" --name atlas-ear --version "+keyVersion)
	if res.Outcome != OutcomeProblems || res.Alerts[alert.Critical] == 0 {
		t.Errorf("result %+v", res)
	}
	if !hasAlert(res.Projects[0], alert.KeyDisabled, alert.Critical) {
		t.Errorf("no critical key-disabled in %+v", res.Projects[0].Status.OpenAlerts)
	}
}

func TestConnectionsReadDenied(t *testing.T) {
	w := newWorld(t)
	w.ARM.Deny(vault.ActionConnectionsRead)
	text, res := w.run(t, "", ExitProblems)
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
	text, res := w.run(t, "", ExitProblems, project, missing)
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
	o := w.options(t, "")
	o.Projects, o.Out = nil, &out
	if got := Run(t.Context(), o); got != ExitFailed || !strings.Contains(out.String(), "no project to check") {
		t.Errorf("exit %d: %s", got, out.String())
	}
}

func TestHostileNamesAreCleaned(t *testing.T) {
	w := newWorld(t)
	w.Atlas.AddEndpoint(project, "EUROPE_NORTH", "evil\x1b]0;pwned\x07\x1b[2J", atlassim.StatusFailed)
	text, _ := w.run(t, "", ExitProblems)
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
