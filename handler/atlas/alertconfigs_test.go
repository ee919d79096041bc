package atlas

import (
	"errors"
	"slices"
	"testing"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
)

// TestAlertConfigs: every page is read (the simulator serving 2 per page),
// in Atlas's order, with each configuration's event type and enabled flag;
// an unknown project is a 404, a refused principal a 403.
func TestAlertConfigs(t *testing.T) {
	f := newFixture(t, atlassim.Options{PageSizeCap: 2})
	f.sim.PutProject(group, atlassim.AzureKeyVault{Enabled: true})
	ids := f.sim.SetAlertConfigs(group, atlassim.EventEARKMSNetworkAccessDenied, false, true, false)
	c, _ := f.client(t, authSA, nil)
	got, err := c.AlertConfigs(t.Context(), group)
	if err != nil {
		t.Fatal(err)
	}
	// Three defaults stay (the network-denied one was replaced), then ours.
	if len(got) != 6 || f.sim.Stats().ByRoute[atlassim.RouteAlertConfigs] != 3 {
		t.Fatalf("read %d configurations in %d pages, want 6 in 3: %+v", len(got), f.sim.Stats().ByRoute[atlassim.RouteAlertConfigs], got)
	}
	want := []AlertConfig{{ids[0], atlassim.EventEARKMSNetworkAccessDenied, false}, {ids[1], atlassim.EventEARKMSNetworkAccessDenied, true},
		{ids[2], atlassim.EventEARKMSNetworkAccessDenied, false}}
	if !slices.Equal(got[3:], want) || !slices.ContainsFunc(got, func(a AlertConfig) bool {
		return a.EventTypeName == atlassim.EventEARConfigNoLongerValid && a.Enabled && len(a.ID) == 24
	}) {
		t.Errorf("configurations %+v, want the defaults then %+v", got, want)
	}

	for _, tc := range []struct {
		name   string
		group  string
		block  bool
		status int
	}{{"unknown project", otherGrp, false, 404}, {"principal refused", group, true, 403}} {
		f.sim.Block(saID, tc.block)
		_, err := c.AlertConfigs(t.Context(), tc.group)
		if ae, ok := errors.AsType[*Error](err); !ok || ae.StatusCode != tc.status {
			t.Errorf("%s: %v, want an *Error %d", tc.name, err, tc.status)
		}
	}
}
