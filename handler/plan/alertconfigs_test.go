package plan

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
)

// alertCfgs replaces the project's Atlas alert configurations of event type
// ev with one per value of enabled (none: ev has no configuration).
func alertCfgs(ev string, enabled ...bool) func(*Snapshot) {
	return func(s *Snapshot) {
		s.AlertConfigs = slices.DeleteFunc(slices.Clone(s.AlertConfigs), func(a atlas.AlertConfig) bool { return a.EventTypeName == ev })
		for i, on := range enabled {
			s.AlertConfigs = append(s.AlertConfigs, atlas.AlertConfig{ID: ev[:4] + string(rune('0'+i)), EventTypeName: ev, Enabled: on})
		}
	}
}

// TestAtlasAlertsOffWhileUnread: an open atlas-ear-alerts-off is neither
// raised again nor resolved while the alert configurations are unread (not
// read this time, or their read failed, which blinds the guard); it resolves
// once they are read with the type enabled, or once EAR is off. A disabled
// configuration's runbook enables that very configuration.
func TestAtlasAlertsOffWhileUnread(t *testing.T) {
	kmsOff := alertCfgs(EventKMSNetworkAccessDenied, false)
	off := with(covered(), kmsOff)
	rs := run(t, enforce(),
		step{0, off, []string{"atlas-ear-alerts-off/raised"}},
		step{time.Minute, with(off, func(s *Snapshot) { s.AlertConfigs = nil }), nil},
		step{2 * time.Minute, with(covered(), fail(SourceAlertConfigs, "403")), []string{"guard-blind/raised"}},
		step{3 * time.Minute, with(covered(), fail(SourceAlertConfigs, "403")), nil},
		step{4 * time.Minute, covered(), []string{"atlas-ear-alerts-off/resolved", "guard-blind/resolved"}},
		step{5 * time.Minute, off, []string{"atlas-ear-alerts-off/raised"}},
		step{6 * time.Minute, with(covered(), kmsOff, func(s *Snapshot) { s.Config.Enabled = false }), []string{"atlas-ear-alerts-off/resolved"}},
	)
	a, ok := hasOpen(rs[0].Memory, alert.AtlasAlertsOff, EventKMSNetworkAccessDenied)
	steps := strings.Join(a.Runbook, "\n")
	if !ok || len(a.Runbook) != 2 || !strings.Contains(steps, "-X PATCH") || !strings.Contains(steps, project+"/alertConfigs/ENCR0\n") ||
		!strings.Contains(steps, "-X POST") || !strings.Contains(a.Summary, "is disabled") {
		t.Errorf("disabled configuration: open %v, summary %q, runbook:\n%s", ok, a.Summary, steps)
	}
}
