package plan

import (
	"strings"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
)

// Atlas's own alert event types for encryption at rest that the guard wants
// an enabled alert configuration for: the first whenever EAR uses Azure Key
// Vault, the second when the config requires private networking (Atlas then
// reaches the vault only through connections someone can reject or remove).
const (
	EventConfigNoLongerValid    = "ENCRYPTION_AT_REST_CONFIG_NO_LONGER_VALID"
	EventKMSNetworkAccessDenied = "ENCRYPTION_AT_REST_KMS_NETWORK_ACCESS_DENIED"
)

// atlasWould says what each wanted event means.
var atlasWould = map[string]string{
	EventConfigNoLongerValid:    "when it finds the encryption-at-rest configuration invalid (it then pauses the clusters)",
	EventKMSNetworkAccessDenied: "when it is denied network access to the key vault",
}

// atlasAlertsOff: atlas-ear-alerts-off (info, one per event type) while EAR
// uses Azure Key Vault and the project has no enabled alert configuration
// for a wanted event type (none at all, or only disabled ones). With the
// configurations unread it raises and resolves nothing.
func (pl *planner) atlasAlertsOff() {
	if !pl.cfgOK {
		return
	}
	c := pl.s.Config
	if !c.Enabled {
		pl.judge(alert.AtlasAlertsOff)
		return
	}
	if pl.s.AlertConfigs == nil || len(pl.errs[SourceAlertConfigs]) > 0 {
		return
	}
	pl.judge(alert.AtlasAlertsOff)
	wanted := []string{EventConfigNoLongerValid}
	if c.RequirePrivateNetworking {
		wanted = append(wanted, EventKMSNetworkAccessDenied)
	}
	for _, ev := range wanted {
		var disabled []string
		on := false
		for _, ac := range pl.s.AlertConfigs {
			if ac.EventTypeName == ev {
				on = on || ac.Enabled
				disabled = append(disabled, ac.ID)
			}
		}
		if on {
			continue
		}
		state := map[bool]string{true: "disabled", false: "absent"}[len(disabled) > 0]
		a := alertOf(alert.AtlasAlertsOff, ev, map[string]string{"eventTypeName": ev},
			"Atlas's own alert configuration for %s is %s in the project: Atlas notifies nobody %s.", ev, state, atlasWould[ev])
		setDetail(&a, "disabled", strings.Join(disabled, ","))
		pl.raise(a)
	}
}
