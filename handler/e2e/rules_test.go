package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/world"
)

// The coverage, purge, app-secret and Atlas-alerts rules through the host
// contract: each is raised by the real handler from the simulators' wire
// data and reaches the webhook with a runbook filled in with the project's
// identifiers. Atlas's alert configurations are read once per project (the
// guard reads them hourly).
func TestCoveragePurgeAndAppSecretRules(t *testing.T) {
	t.Parallel()
	w := newWorld(t, setup{Options: world.Options{Regions: []string{"US_EAST_2"}}})
	p := w.Project(0)
	offID := w.Atlas().SetAlertConfigs(p.ID, atlassim.EventEARConfigNoLongerValid, false)[0]
	expiry := time.Now().UTC().AddDate(0, 0, 10).Format(time.DateOnly)
	startGuard(t, w, world.GuardOptions{Env: map[string]string{"GUARD_AZURE_APP_SECRET_EXPIRY": expiry}})
	ctx := deadline(t, 60*time.Second)

	expect := func(kind alert.Kind, action alert.Action, runbook ...string) {
		t.Helper()
		tickUntil(ctx, t, w, string(kind)+" "+string(action), func() bool { return len(w.Notices(p, kind, action)) > 0 })
		n := w.Notices(p, kind, action)[0]
		steps := strings.Join(n.Alert.Runbook, "\n")
		for _, want := range runbook {
			if !strings.Contains(steps, want) {
				t.Errorf("%s runbook lacks %q:\n%s", kind, want, steps)
			}
		}
	}
	// Private networking is required and Atlas has no endpoint yet.
	expect(alert.NoPrivateEndpoint, alert.Raised, p.ID, `"regionName":"US_EAST_2"`)
	expect(alert.AppSecretExpiring, alert.Raised, "az ad app credential reset", p.ID)
	expect(alert.AtlasAlertsOff, alert.Raised, p.ID+"/alertConfigs/"+offID, `{"enabled":true}`)
	w.EnablePrivateNetworking(p)
	expect(alert.NoPrivateEndpoint, alert.Resolved)

	w.Atlas().AddRegion(p.ID, "orders", "AZURE", "EUROPE_WEST")
	expect(alert.RegionUncovered, alert.Raised, p.ID, `"regionName":"EUROPE_WEST"`)
	w.Atlas().AddRegion(p.ID, "payments", "AWS", "US_EAST_1")
	expect(alert.UnsupportedCluster, alert.Raised, p.ID, "/clusters/payments")
	must(t, w.ARM().SetProtection(p.Vault, false, true))
	expect(alert.PurgeUnprotected, alert.Raised, "--enable-purge-protection true", p.Vault.SubscriptionID, p.Vault.ResourceGroup, p.Vault.Name)
	must(t, w.ARM().SetProtection(p.Vault, true, true))
	expect(alert.PurgeUnprotected, alert.Resolved)
	if n := w.Atlas().Stats().ByRoute[atlassim.RouteAlertConfigs]; n != int64(len(w.Projects())) {
		t.Errorf("%d reads of alertConfigs, want one per project (%d)", n, len(w.Projects()))
	}
	for _, k := range []alert.Kind{alert.RegionUncovered, alert.UnsupportedCluster, alert.NoPrivateEndpoint} {
		if n := len(w.Notices(p, k, alert.Raised)); n != 1 {
			t.Errorf("%s raised %d times, want once", k, n)
		}
	}
}
