package check

import (
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// The check reads the vault's subscription with the operator's identity: the
// providers Atlas's private endpoints and the deployment's system topics need,
// and the vault's existence and region. A read it is refused is "cannot tell",
// naming the action, never "ok".
func TestPrerequisites(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(w *world)
		exit   int
		states map[string]string // check → state
		text   []string
	}{
		{"all in place", func(*world) {}, ExitHealthy,
			map[string]string{"vault exists": PrereqOK, "Microsoft.Network registered": PrereqOK, "Microsoft.EventGrid registered": PrereqOK},
			[]string{"Azure prerequisites (read with your identity)", "region westeurope", "RESULT: healthy"}},
		{"Event Grid not registered", func(w *world) { w.ARM.SetProvider(kv.SubscriptionID, "Microsoft.EventGrid", "NotRegistered") }, ExitProblems,
			map[string]string{"Microsoft.Network registered": PrereqOK, "Microsoft.EventGrid registered": PrereqProblem},
			[]string{"az provider register --namespace Microsoft.EventGrid --subscription " + kv.SubscriptionID, "1 prerequisite problem(s)"}},
		{"Network registering", func(w *world) { w.ARM.SetProvider(kv.SubscriptionID, "Microsoft.Network", "Registering") }, ExitProblems,
			map[string]string{"Microsoft.Network registered": PrereqProblem}, []string{"Registering: az provider register --namespace Microsoft.Network"}},
		{"vault deleted", func(w *world) {
			if err := w.ARM.DeleteVault(kv); err != nil {
				t.Fatal(err)
			}
		}, ExitProblems, map[string]string{"vault exists": PrereqProblem}, []string{"names a vault that does not exist"}},
		{"providers unreadable", func(w *world) { w.ARM.Deny(vault.ActionProvidersRead) }, ExitHealthy,
			map[string]string{"vault exists": PrereqOK, "Microsoft.Network registered": PrereqCannotTell, "Microsoft.EventGrid registered": PrereqCannotTell},
			[]string{"cannot-tell", "lacks " + vault.ActionProvidersRead, "2 prerequisite(s) could not be checked"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			tc.setup(w)
			text, res := w.run(t, "", tc.exit)
			contains(t, text, tc.text...)
			got := map[string]string{}
			for _, p := range res.Prerequisites {
				if p.Vault != kv.String() {
					t.Errorf("prerequisite of %q, want the project's vault", p.Vault)
				}
				got[p.Check] = p.State
			}
			if len(res.Prerequisites) != 3 {
				t.Errorf("prerequisites %+v, want 3", res.Prerequisites)
			}
			for check, want := range tc.states {
				if got[check] != want {
					t.Errorf("%s: %q, want %q (%+v)", check, got[check], want, res.Prerequisites)
				}
			}
		})
	}
}
