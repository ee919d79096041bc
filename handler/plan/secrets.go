package plan

import (
	"fmt"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
)

// AppSecret is when the secret of the Azure application Atlas authenticates
// with expires. From says where the guard learnt it: the setting
// GUARD_AZURE_APP_SECRET_EXPIRY, or Microsoft Graph, which gives the
// latest-expiring of the application's secrets (the one Atlas holds is not
// knowable, so it expires at or before Expires).
type AppSecret struct {
	ClientID string    `json:"clientID"`
	Expires  time.Time `json:"expires"`
	From     string    `json:"from"`
}

// AppSecretFromGraph is AppSecret.From for a Microsoft Graph answer.
const AppSecretFromGraph = "Microsoft Graph"

// appSecretAlerts: app-secret-expired (critical) or app-secret-expiring
// (warning, within KeyExpiryWarn) while EAR with Azure Key Vault is enabled,
// whether or not it requires private networking. A failed Graph read carries
// them forward (guard-blind says why).
func (pl *planner) appSecretAlerts() {
	if !pl.cfgOK || len(pl.errs[SourceGraph]) > 0 {
		return
	}
	pl.settled(alert.AppSecretExpiring, alert.AppSecretExpired)
	sec := pl.s.AppSecret
	if sec == nil || sec.Expires.IsZero() || !pl.s.Config.Enabled {
		return
	}
	exp := sec.Expires.UTC().Format(time.RFC3339)
	a := alert.Alert{
		Kind: alert.AppSecretExpiring, Severity: alert.Warning, Subject: sec.ClientID,
		Details: map[string]string{"clientID": sec.ClientID, "expires": exp, "from": sec.From},
	}
	left := sec.Expires.Sub(pl.now)
	switch {
	case left <= 0:
		a.Kind, a.Severity = alert.AppSecretExpired, alert.Critical
		a.Summary = fmt.Sprintf("The secret of Azure application %s that Atlas uses for Key Vault expired at %s; Atlas pauses the clusters at its next validity check.", sec.ClientID, exp)
	case left <= pl.p.KeyExpiryWarn:
		a.Summary = fmt.Sprintf("The secret of Azure application %s that Atlas uses for Key Vault expires at %s (in %s); Atlas pauses the clusters when it lapses.", sec.ClientID, exp, roundDays(left))
	default:
		return
	}
	if sec.From == AppSecretFromGraph {
		a.Summary += " This is the latest-expiring secret of the application, so the one Atlas holds expires then or sooner."
	}
	pl.raise(a)
}

// purgeAlerts: vault-purge-unprotected while EAR uses the vault and it lacks
// purge protection or soft delete (a deleted key could be purged for good and
// the data it encrypts would be unreadable), private networking or not.
func (pl *planner) purgeAlerts() {
	if pl.noVault {
		pl.settled(alert.PurgeUnprotected)
	}
	if !pl.vaultOK {
		return
	}
	pl.settled(alert.PurgeUnprotected)
	v := pl.s.VaultState
	if !v.Found || !pl.s.Config.Enabled || (v.EnablePurgeProtection && v.EnableSoftDelete) {
		return
	}
	pl.raise(alert.Alert{
		Kind: alert.PurgeUnprotected, Severity: alert.Warning,
		Summary: fmt.Sprintf("Key Vault %s that holds Atlas's key has purge protection %s and soft delete %s: a deleted key can be purged for good, and the data it encrypts is then unreadable forever.",
			pl.cfgVault.Name, onOff[v.EnablePurgeProtection], onOff[v.EnableSoftDelete]),
		Details: map[string]string{"enablePurgeProtection": fmt.Sprint(v.EnablePurgeProtection), "enableSoftDelete": fmt.Sprint(v.EnableSoftDelete)},
	})
}

var onOff = map[bool]string{true: "on", false: "off"}
