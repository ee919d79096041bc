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
	pl.judge(alert.AppSecretExpiring, alert.AppSecretExpired)
	sec := pl.s.AppSecret
	if sec == nil || sec.Expires.IsZero() || !pl.s.Config.Enabled {
		return
	}
	exp, left := sec.Expires.UTC().Format(time.RFC3339), sec.Expires.Sub(pl.now)
	d := map[string]string{"clientID": sec.ClientID, "expires": exp, "from": sec.From}
	var a alert.Alert
	switch {
	case left <= 0:
		a = alertOf(alert.AppSecretExpired, sec.ClientID, d, "The secret of Azure application %s that Atlas uses for Key Vault expired at %s; Atlas pauses the clusters at its next validity check.", sec.ClientID, exp)
	case left <= pl.p.KeyExpiryWarn:
		a = alertOf(alert.AppSecretExpiring, sec.ClientID, d, "The secret of Azure application %s that Atlas uses for Key Vault expires at %s (in %s); Atlas pauses the clusters when it lapses.", sec.ClientID, exp, roundDays(left))
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
	if pl.noVault || pl.vaultOK {
		pl.judge(alert.PurgeUnprotected)
	}
	v := pl.s.VaultState
	if !pl.vaultOK || !v.Found || !pl.s.Config.Enabled || (v.EnablePurgeProtection && v.EnableSoftDelete) {
		return
	}
	onOff := map[bool]string{true: "on", false: "off"}
	pl.raise(alertOf(alert.PurgeUnprotected, "", map[string]string{"enablePurgeProtection": fmt.Sprint(v.EnablePurgeProtection), "enableSoftDelete": fmt.Sprint(v.EnableSoftDelete)},
		"Key Vault %s that holds Atlas's key has purge protection %s and soft delete %s: a deleted key can be purged for good, and the data it encrypts is then unreadable forever.",
		pl.cfgVault.Name, onOff[v.EnablePurgeProtection], onOff[v.EnableSoftDelete]))
}
