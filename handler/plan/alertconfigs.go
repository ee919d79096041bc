package plan

import (
	"fmt"
	"strings"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
)

// SourceAlertConfigs is the Atlas read of the project's alert
// configurations (GET /groups/{groupId}/alertConfigs, Project Read Only).
const SourceAlertConfigs Source = "atlas:alertConfigs"

// Atlas's own alert event types for encryption at rest that the guard wants
// an enabled alert configuration for.
const (
	// EventConfigNoLongerValid: Atlas found the EAR configuration invalid
	// (and pauses the clusters). Wanted whenever EAR uses Azure Key Vault.
	EventConfigNoLongerValid = "ENCRYPTION_AT_REST_CONFIG_NO_LONGER_VALID"
	// EventKMSNetworkAccessDenied: Atlas was denied network access to the
	// key. Wanted only when the config requires private networking: Atlas
	// then reaches the vault only through the private endpoints, whose
	// connections someone can reject or remove.
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
		pl.settled(alert.AtlasAlertsOff)
		return
	}
	if pl.s.AlertConfigs == nil || len(pl.errs[SourceAlertConfigs]) > 0 {
		return
	}
	pl.settled(alert.AtlasAlertsOff)
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
		a := alert.Alert{Kind: alert.AtlasAlertsOff, Severity: alert.Info, Subject: ev, Details: map[string]string{"eventTypeName": ev}}
		state := "absent"
		if len(disabled) > 0 {
			state = "disabled"
			a.Details["disabled"] = strings.Join(disabled, ",")
		}
		a.Summary = fmt.Sprintf("Atlas's own alert configuration for %s is %s in the project: Atlas notifies nobody %s.", ev, state, atlasWould[ev])
		pl.raise(a)
	}
}
