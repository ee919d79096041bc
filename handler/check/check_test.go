package check

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
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
	add := func(_ string, err error) { must(t, err) }
	add(w.AddProject(simtest.Project{ID: project, Vault: kv, KeyVersion: keyVersion, Clusters: []string{"orders"}, Regions: []string{"EUROPE_WEST"}}))
	add(w.AddEndpoint(project, kv, "EUROPE_WEST", connActive, atlassim.StatusActive, vault.StatusApproved))
	add(w.AddEndpoint(project, kv, "US_EAST_2", connAsking, atlassim.StatusPendingAcceptance, vault.StatusPending))
	return w
}

// options builds what app.check builds: real clients against the
// simulators, an observe-mode reconciler over a fresh memory store.
func (w *world) options(t *testing.T, atlasSecret string, projects ...string) Options {
	t.Helper()
	ac, errA := w.AtlasClient(atlas.Options{ClientSecret: atlasSecret, MaxAttempts: 2, MaxRetryWait: 10 * time.Millisecond})
	vc, errV := w.VaultClient(policy.RetryOptions{MaxRetries: 1, RetryDelay: 5 * time.Millisecond, MaxRetryDelay: 20 * time.Millisecond})
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
	must(t, errors.Join(errA, errV, err))
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

func hasAlert(p Project, k alert.Kind, s alert.Severity) bool {
	return slices.ContainsFunc(p.Status.OpenAlerts, func(a alert.Alert) bool { return a.Kind == k && a.Severity == s })
}

// TestCheck: each case changes the healthy world, runs the check (text and
// -json) and says the exit code, what the report must say and what the JSON
// result must hold. The prerequisites are read with the operator's identity:
// a read it is refused is "cannot tell", naming the action, never "ok".
func TestCheck(t *testing.T) {
	const missing = "65f0c0ffee0000000000dead"
	ok := map[string]string{"vault exists": PrereqOK, "Microsoft.Network registered": PrereqOK, "Microsoft.EventGrid registered": PrereqOK}
	cases := []struct {
		name     string
		setup    func(t *testing.T, w *world)
		secret   string   // the Atlas secret the check uses ("" the right one)
		projects []string // nil: the one project
		exit     int
		text     []string
		prereqs  map[string]string // check → state
		result   func(t *testing.T, res Result)
	}{
		{"healthy", nil, "", nil, ExitHealthy, []string{
			"== project " + project + ": HEALTHY ==", "vault                     " + kv.String(), "requirePrivateNetworking  yes",
			"enabled                   yes", "(364 days left)", connAsking, "PENDING_ACCEPTANCE", "Pending", "would-approve",
			connActive, "ACTIVE", "Approved", "already-approved", "observe mode: not approved", "would approve " + connAsking,
			"Azure prerequisites (read with your identity)", "region westeurope", "RESULT: healthy",
		}, ok, func(t *testing.T, res Result) {
			p := res.Projects[0]
			verdicts := map[string]string{}
			for _, e := range p.Status.Endpoints {
				verdicts[e.ConnectionName] = e.Verdict
			}
			if res.Outcome != OutcomeHealthy || !p.Checked || p.Status.State != "healthy" || !slices.Equal(p.Report.WouldApprove, []string{connAsking}) ||
				verdicts[connAsking] != plan.VerdictWouldApprove || verdicts[connActive] != plan.VerdictAlreadyApproved {
				t.Errorf("result %+v", res)
			}
		}},
		{"key disabled", func(t *testing.T, w *world) { must(t, w.ARM.SetKeyEnabled(kv, "atlas-ear", keyVersion, false)) }, "", nil, ExitProblems, []string{
			": CRITICAL ==", "enabled                   no", "key-disabled", "RESULT: problems found", "What to do about key-disabled",
			"1. Re-enable the key version Atlas uses: az keyvault key set-attributes --enabled true --subscription " + kv.SubscriptionID + " --vault-name " + kv.Name + " --name atlas-ear --version " + keyVersion,
		}, nil, func(t *testing.T, res Result) {
			if res.Outcome != OutcomeProblems || res.Alerts[alert.Critical] == 0 || !hasAlert(res.Projects[0], alert.KeyDisabled, alert.Critical) {
				t.Errorf("result %+v", res)
			}
		}},
		{"connections read denied", func(t *testing.T, w *world) { w.ARM.Deny(vault.ActionConnectionsRead) }, "", nil, ExitProblems, []string{
			"guard-blind", "Missing permissions", "connections-unreadable",
			"grant Microsoft.KeyVault/vaults/privateEndpointConnections/read on the vault " + kv.String(),
		}, nil, func(t *testing.T, res Result) {
			p := res.Projects[0]
			if !p.Checked || len(p.MissingPermissions) != 1 || p.MissingPermissions[0].Action != vault.ActionConnectionsRead ||
				p.MissingPermissions[0].Source != plan.SourceConnections || !hasAlert(p, alert.GuardBlind, alert.Critical) {
				t.Errorf("project %+v", p)
			}
		}},
		// Nothing that was not read is stated; each section says not read
		// and why; what is known (the guard-blind alerts) is still there.
		{"wrong Atlas credentials", nil, "not-the-secret", nil, ExitFailed, []string{
			"not checked", "atlas:encryptionAtRest", "Missing permissions", "check the Atlas credentials",
			"RESULT: the check could not run: no project could be checked",
			"(not read: Atlas's EAR config was not read, so the vault is unknown)",
		}, nil, func(t *testing.T, res Result) {
			if res.Outcome != OutcomeFailed || res.Projects[0].Checked || res.Reason == "" || !hasAlert(res.Projects[0], alert.GuardBlind, alert.Critical) {
				t.Errorf("result %+v", res)
			}
		}},
		// One project that can't be read beside one that can is a problem
		// found, not a failed check.
		{"one project unreadable", nil, "", []string{project, missing}, ExitProblems, []string{
			"== project " + missing + ": CRITICAL ==", "== project " + project + ": HEALTHY ==",
		}, nil, func(t *testing.T, res Result) {
			if !res.Projects[0].Checked || res.Projects[1].Checked {
				t.Errorf("checked: %v %v", res.Projects[0].Checked, res.Projects[1].Checked)
			}
		}},
		{"hostile names are cleaned", func(t *testing.T, w *world) {
			w.Atlas.AddEndpoint(project, "EUROPE_NORTH", "evil\x1b]0;pwned\x07\x1b[2J\tx\ny", atlassim.StatusFailed)
		}, "", nil, ExitProblems, []string{"evil ]0;pwned  [2J x y"}, nil, nil},
		{"Event Grid not registered", func(t *testing.T, w *world) {
			w.ARM.SetProvider(kv.SubscriptionID, "Microsoft.EventGrid", "NotRegistered")
		}, "", nil, ExitProblems,
			[]string{"az provider register --namespace Microsoft.EventGrid --subscription " + kv.SubscriptionID, "1 prerequisite problem(s)"},
			map[string]string{"Microsoft.Network registered": PrereqOK, "Microsoft.EventGrid registered": PrereqProblem}, nil},
		{"Network registering", func(t *testing.T, w *world) { w.ARM.SetProvider(kv.SubscriptionID, "Microsoft.Network", "Registering") }, "", nil, ExitProblems,
			[]string{"Registering: az provider register --namespace Microsoft.Network"}, map[string]string{"Microsoft.Network registered": PrereqProblem}, nil},
		{"vault deleted", func(t *testing.T, w *world) { must(t, w.ARM.DeleteVault(kv)) }, "", nil, ExitProblems,
			[]string{"names a vault that does not exist"}, map[string]string{"vault exists": PrereqProblem}, nil},
		{"providers unreadable", func(t *testing.T, w *world) { w.ARM.Deny(vault.ActionProvidersRead) }, "", nil, ExitHealthy,
			[]string{"cannot-tell", "lacks " + vault.ActionProvidersRead, "2 prerequisite(s) could not be checked"},
			map[string]string{"vault exists": PrereqOK, "Microsoft.Network registered": PrereqCannotTell, "Microsoft.EventGrid registered": PrereqCannotTell}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			if tc.setup != nil {
				tc.setup(t, w)
			}
			text, res := w.run(t, tc.secret, tc.exit, tc.projects...)
			for _, want := range tc.text {
				if !strings.Contains(text, want) {
					t.Errorf("report lacks %q", want)
				}
			}
			if strings.ContainsAny(text, "\x1b\x07") {
				t.Errorf("terminal control characters reached the report")
			}
			if tc.result != nil {
				tc.result(t, res)
			}
			got := map[string]string{}
			for _, p := range res.Prerequisites {
				got[p.Check] = p.State
				if p.Vault != kv.String() {
					t.Errorf("prerequisite of %q, want the project's vault", p.Vault)
				}
			}
			for check, want := range tc.prereqs {
				if got[check] != want || len(res.Prerequisites) != 3 {
					t.Errorf("%s: %q, want %q (%+v)", check, got[check], want, res.Prerequisites)
				}
			}
		})
	}
	// Nothing to check, or nothing to check with: the check failed.
	var out bytes.Buffer
	if got := Run(t.Context(), Options{Out: &out}); got != ExitFailed {
		t.Errorf("exit %d", got)
	}
	o := newWorld(t).options(t, "")
	o.Projects, o.Out = nil, &out
	if got := Run(t.Context(), o); got != ExitFailed || !strings.Contains(out.String(), "no project to check") {
		t.Errorf("exit %d: %s", got, out.String())
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
