package plan

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/event"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// serviceNames are how guard-blind alerts name a SourceError's Service.
var serviceNames = map[string]string{"atlas": "Atlas", "arm": "Azure Resource Manager", "storage": "the state store", "graph": "Microsoft Graph"}

// guardBlind raises one critical alert per (Service, Cause) over the reads
// that failed with that cause, listing them; a read that failed without a
// Cause, or that should have been read and was not, gets an alert of its own.
// An open guard-blind alert resolves once every read it listed was read or
// fails otherwise; while any of them was not attempted it is carried forward.
func (pl *planner) guardBlind() {
	vaultNamed := pl.cfgOK && !pl.noVault
	read := map[Source]bool{
		SourceEncryptionAtRest: pl.cfgOK, SourcePrivateEndpoints: pl.endpointsOK, SourceClusters: pl.clustersOK,
		SourceVault: pl.vaultOK, SourceConnections: pl.connsOK, SourceKey: pl.keyOK,
	}
	expected := map[Source]bool{
		SourceEncryptionAtRest: true, SourcePrivateEndpoints: true, SourceClusters: true,
		SourceVault: vaultNamed, SourceConnections: pl.vaultOK && !pl.vaultGone, SourceKey: pl.vaultOK && !pl.vaultGone,
	}
	for src := range pl.errs { // other sources (e.g. a failed write) but the state: judged by their errors alone
		if _, ok := read[src]; !ok && src != SourceState {
			read[src], expected[src] = false, true
		}
	}
	waiting := map[Source]bool{}    // neither read (nor moot) nor failed: an open alert listing it is carried forward
	groups := map[string][]Source{} // subject → the failed reads it covers
	for _, src := range slices.Sorted(maps.Keys(read)) {
		switch {
		case pl.vaultGone && (src == SourceConnections || src == SourceKey): // vault-missing explains them
			waiting[src] = true
		case src == SourceVault && vaultNamed && !pl.armTrusted,
			len(pl.errs[src]) > 0, expected[src] && !read[src]:
			subject := string(src)
			if e := pl.errs[src]; len(e) > 0 && e[0].Cause != "" {
				subject = e[0].Service + ": " + alert.Scrub(e[0].Cause)
			}
			groups[subject] = append(groups[subject], src)
		case !read[src] && !(pl.noVault && strings.HasPrefix(string(src), "arm:")):
			waiting[src] = true
		}
	}
	for subject, srcs := range groups {
		pl.raiseBlind(subject, srcs)
	}
	for fp, a := range pl.prev.Open {
		listed := strings.Split(cmp.Or(a.Details["reads"], a.Subject), ",")
		if a.Kind == alert.GuardBlind && !slices.ContainsFunc(listed, func(s string) bool { return waiting[Source(s)] }) {
			pl.judged[fp] = true
		}
	}
}

// raiseBlind raises the guard-blind alert subject over the failed reads srcs.
// A grouped alert (subject "service: cause") names the cause, not the raw
// errors: those stay in the log and on the Status page. A per-read alert
// carries its scrubbed errors.
func (pl *planner) raiseBlind(subject string, srcs []Source) {
	reads := make([]string, len(srcs))
	var msgs, perms []string
	for i, src := range srcs {
		reads[i] = string(src)
		for _, e := range pl.errs[src] {
			if e.Message != "" {
				msgs = append(msgs, alert.Scrub(e.Message))
			}
			if e.Permission != "" && !slices.Contains(perms, e.Permission) {
				perms = append(perms, e.Permission)
			}
		}
	}
	what, missing := strings.Join(reads, ", "), ""
	a := alertOf(alert.GuardBlind, subject, map[string]string{"reads": strings.Join(reads, ",")}, "")
	switch e := pl.errs[srcs[0]]; {
	case len(e) > 0 && e[0].Cause != "":
		a.Details["service"], a.Details["cause"] = e[0].Service, alert.Scrub(e[0].Cause)
		what = fmt.Sprintf("%s from %s (%s)", what, cmp.Or(serviceNames[e[0].Service], e[0].Service), a.Details["cause"])
	case srcs[0] == SourceVault && pl.cfgOK && !pl.noVault && !pl.armTrusted:
		a.Details["source"], a.Details["error"] = string(srcs[0]), strings.Join(append(msgs, fmt.Sprintf("the snapshot's vault %q is not the vault Atlas's EAR config names (%s); ARM data ignored",
			pl.s.Vault.String(), pl.cfgVault)), "; ")
	default:
		a.Details["source"], a.Details["error"] = string(srcs[0]), cmp.Or(strings.Join(msgs, "; "), "not read in this reconcile")
	}
	if len(perms) > 0 {
		a.Details["permission"] = strings.Join(perms, "; ")
		missing = ": permission " + a.Details["permission"] + " is missing"
	}
	a.Summary = fmt.Sprintf("atlas-akv-guard cannot read %s%s; monitoring that depends on it is off.", what, missing)
	pl.raise(a)
}

// stateAlert: the project's state document did not decode. It is raised in
// the run that kept the document aside and resolves with the next run that
// reads the fresh one.
func (pl *planner) stateAlert() {
	pl.judge(alert.StateUnreadable)
	if e := pl.errs[SourceState]; len(e) > 0 {
		pl.raise(alertOf(alert.StateUnreadable, "", map[string]string{"error": alert.Scrub(e[0].Message)},
			"atlas-akv-guard could not decode this project's state document; it was kept aside and memory restarted "+
				"empty, so alerts already sent may be sent again. Monitoring goes on."))
	}
}

// configAlerts: Atlas says the EAR config is invalid. Valid not reported is
// unknown: the alert is carried forward.
func (pl *planner) configAlerts() {
	if !pl.cfgOK || pl.s.Config.Valid == nil {
		return
	}
	pl.judge(alert.ConfigInvalid)
	if c := pl.s.Config; !*c.Valid {
		pl.raise(alertOf(alert.ConfigInvalid, "", map[string]string{"keyIdentifier": c.KeyIdentifier, "keyVaultName": c.KeyVaultName},
			"Atlas reports the Azure Key Vault encryption-at-rest configuration as invalid; clusters are or will be shut down."))
	}
}

// vaultAlerts: vault-missing. When the vault is missing, key and connection
// alerts do not apply: they are neither raised nor resolved.
func (pl *planner) vaultAlerts() {
	if pl.noVault || pl.vaultOK {
		pl.judge(alert.VaultMissing)
	}
	if pl.noVault {
		pl.judge(keyKinds...)
	}
	if pl.vaultGone {
		a := alertOf(alert.VaultMissing, "", nil,
			"Key Vault %s named in Atlas's EAR config was not found; Atlas cannot reach the key and will shut down clusters.", pl.cfgVault.Name)
		enrich(&a, pl.latestHint(func(h Hint) bool { return h.Kind == event.VaultChanged }))
		pl.raise(a)
	}
}

// keyKinds are the alerts about the pinned key version.
var keyKinds = []alert.Kind{alert.KeyMissing, alert.KeyDisabled, alert.KeyExpired, alert.KeyNotYetValid, alert.KeyExpiresSoon, alert.KeyRotated}

// keyAlerts covers the key rows. When the pinned version is missing, the
// other key rows do not apply.
func (pl *planner) keyAlerts() {
	if !pl.keyOK {
		return
	}
	k, subject := pl.s.Key, pl.keySubject()
	// key is an alert about the pinned version with extra details (k1, v1,
	// ...), enriched by the latest hint of kind hint about the key.
	key := func(kind alert.Kind, hint event.Kind, summary string, details ...string) alert.Alert {
		a := alertOf(kind, subject, map[string]string{"keyIdentifier": pl.s.Config.KeyIdentifier, "version": k.Version}, "%s", summary)
		for i := 0; i+1 < len(details); i += 2 {
			a.Details[details[i]] = details[i+1]
		}
		enrich(&a, pl.latestHint(func(h Hint) bool {
			return hint != "" && h.Kind == hint && (h.Object == "" || h.Object == k.Name || h.Object == subject)
		}))
		return a
	}
	pl.judge(keyKinds...)
	if !k.Found { // the other key rows do not apply
		pl.raise(alertOf(alert.KeyMissing, subject, map[string]string{"keyIdentifier": pl.s.Config.KeyIdentifier},
			"Key version %s that Atlas uses was not found in the vault; Atlas will shut down clusters at its next check.", subject))
		return
	}
	if !k.Enabled {
		pl.raise(key(alert.KeyDisabled, "", fmt.Sprintf("Key version %s that Atlas uses is disabled; Atlas shuts down the project's clusters at its next validity check (within 15 minutes).", subject)))
	}
	if k.Expires != nil {
		exp := k.Expires.UTC().Format(time.RFC3339)
		switch left := k.Expires.Sub(pl.now); {
		case left <= 0:
			pl.raise(key(alert.KeyExpired, event.KeyExpired, fmt.Sprintf("Key version %s that Atlas uses expired at %s; Atlas shuts down the project's clusters.", subject, exp), "expires", exp))
		case left <= pl.p.KeyExpiryWarn:
			pl.raise(key(alert.KeyExpiresSoon, event.KeyNearExpiry, fmt.Sprintf("Key version %s that Atlas uses expires at %s (in %s); rotate it and update keyIdentifier in Atlas.", subject, exp, roundDays(left)), "expires", exp))
		}
	}
	if k.NotBefore != nil && k.NotBefore.After(pl.now) {
		nb := k.NotBefore.UTC().Format(time.RFC3339)
		pl.raise(key(alert.KeyNotYetValid, "", fmt.Sprintf("Key version %s that Atlas uses is not valid before %s.", subject, nb), "notBefore", nb))
	}
	// key-rotated: a newer enabled version exists while Atlas pins this one;
	// critical when the pinned version is disabled.
	if k.Latest == "" || k.Latest == k.Version || !k.LatestEnabled {
		return
	}
	summary := fmt.Sprintf("Key %s has a newer enabled version %s, but Atlas's keyIdentifier still pins %s; rotate keyIdentifier in Atlas.", k.Name, k.Latest, k.Version)
	a := key(alert.KeyRotated, event.KeyNewVersion, summary, "latest", k.Latest)
	if !k.Enabled {
		a.Severity = alert.Critical
		a.Summary = fmt.Sprintf("Key version %s that Atlas pins is disabled while the newer version %s is enabled; update keyIdentifier in Atlas now.", subject, k.Latest)
	}
	pl.raise(a)
}

// keySubject names the pinned key version as "name/version" (or less).
func (pl *planner) keySubject() string {
	name, version := pl.s.Key.Name, pl.s.Key.Version
	if name == "" && pl.s.Config != nil {
		_, name, version, _ = resource.ParseKeyIdentifier(pl.s.Config.KeyIdentifier)
	}
	return strings.TrimSuffix(cmp.Or(name, "key")+"/"+version, "/")
}

func roundDays(d time.Duration) string {
	if d >= 48*time.Hour {
		return strconv.Itoa(int(d/(24*time.Hour))) + " days"
	}
	return d.Round(time.Minute).String()
}

// clusterAlerts: one project-level alert listing the paused EAR clusters.
func (pl *planner) clusterAlerts() {
	if !pl.clustersOK {
		return
	}
	pl.judge(alert.ClustersPaused)
	var names []string
	for _, c := range pl.s.Clusters {
		if c.UsesAzureKeys() && c.Paused {
			names = append(names, c.Name)
		}
	}
	slices.Sort(names)
	if len(names) > 0 {
		pl.raise(alertOf(alert.ClustersPaused, "", map[string]string{"clusters": strings.Join(names, ","), "count": strconv.Itoa(len(names))},
			"%d cluster(s) encrypted with the Azure Key Vault key are paused: %s.", len(names), strings.Join(names, ", ")))
	}
}

// endpointAlerts: endpoint-failed and endpoint-stuck, per Atlas endpoint id.
func (pl *planner) endpointAlerts() {
	if !pl.endpointsOK {
		return
	}
	pl.judge(alert.EndpointFailed, alert.EndpointStuck)
	for _, e := range pl.s.Endpoints {
		d := map[string]string{"endpointId": e.ID, "region": e.RegionName, "status": e.Status, "connection": e.PrivateEndpointConnectionName}
		switch seen := pl.seen(e.ID, e.Status); {
		case e.Status == atlas.StatusFailed:
			a := alertOf(alert.EndpointFailed, e.ID, d, "Atlas EAR private endpoint %s (%s) FAILED: %s", e.ID, e.RegionName, alert.Scrub(e.ErrorMessage))
			setDetail(&a, "errorMessage", alert.Scrub(e.ErrorMessage))
			pl.raise(a)
		case (e.Requesting() || e.Status == atlas.StatusPendingRecreation) && pl.now.Sub(seen.Since) > pl.p.StuckAfter:
			d["since"] = seen.Since.UTC().Format(time.RFC3339)
			pl.raise(alertOf(alert.EndpointStuck, e.ID, d, "Atlas EAR private endpoint %s (%s) has been %s since %s (longer than %s).",
				e.ID, e.RegionName, e.Status, d["since"], pl.p.StuckAfter))
		}
	}
}

// connectionChanged: Atlas's connection was rejected or removed. Raised from
// the endpoint alone for PENDING_RECREATION; from the vault's list for
// Rejected/Disconnected and for an ACTIVE endpoint whose connection is gone.
// Resolved only when both lists were read.
func (pl *planner) connectionChanged() {
	if !pl.endpointsOK {
		return
	}
	if pl.connsOK || pl.noVault {
		pl.judge(alert.ConnectionChanged)
	}
	for _, e := range pl.s.Endpoints {
		name := e.PrivateEndpointConnectionName
		i := slices.IndexFunc(pl.s.Connections, func(c vault.Connection) bool { return c.Name == name })
		var c vault.Connection // the first of that name on the vault, when read
		onVault := pl.connsOK && name != "" && i >= 0
		if onVault {
			c = pl.s.Connections[i]
		}
		why, connStatus := "", c.Status
		switch {
		case e.Status == atlas.StatusDeleting:
		case e.Status == atlas.StatusPendingRecreation:
			why = "Atlas marked the endpoint PENDING_RECREATION: its connection was rejected or removed on the vault"
		case !pl.connsOK || name == "":
		case onVault && (c.Status == vault.StatusRejected || c.Status == vault.StatusDisconnected):
			why = "the connection is " + c.Status + " on the vault"
		case !onVault && e.Status == atlas.StatusActive:
			why, connStatus = "the connection of an ACTIVE endpoint is absent from the vault", "absent"
		}
		if why == "" {
			continue
		}
		subject := cmp.Or(name, e.ID)
		a := alertOf(alert.ConnectionChanged, subject, map[string]string{"endpointId": e.ID, "region": e.RegionName, "endpointStatus": e.Status, "reason": why},
			"Private endpoint connection %s of Atlas endpoint %s (%s) was rejected or removed: %s.", subject, e.ID, e.RegionName, why)
		setDetail(&a, "connectionStatus", connStatus)
		enrich(&a, pl.latestHint(func(h Hint) bool { return name != "" && h.Kind == event.ConnectionChanged && hintNames(h.Object, name) }))
		pl.raise(a)
	}
}

// hintNames reports whether an event's object names connection name: the name
// itself or a resource ID ending in /privateEndpointConnections/{name}.
func hintNames(object, name string) bool {
	const seg = "/privateEndpointConnections"
	prefix, ok := strings.CutSuffix(object, "/"+name)
	return object == name || ok && len(prefix) >= len(seg) && resource.EqualFold(prefix[len(prefix)-len(seg):], seg)
}

// accessChanged is the event-only alert: opened by an access hint, kept open
// for AccessChangeSettle after the last one while Atlas says valid, critical
// while Atlas says invalid, carried forward while validity is unknown.
func (pl *planner) accessChanged() {
	fp := Fingerprint(alert.AccessChanged, pl.s.ProjectID, "")
	old, open := pl.prev.Open[fp]
	h := pl.latestHint(func(h Hint) bool { return h.Kind == event.AccessPolicyChanged || h.Kind == event.RoleAssignmentDeleted })
	known := pl.cfgOK && pl.s.Config.Valid != nil
	invalid := known && !*pl.s.Config.Valid
	last, err := time.Parse(time.RFC3339Nano, old.Details["lastChangeSeenAt"])
	if err != nil {
		last = old.LastSeen
	}
	switch {
	case h != nil:
		last = pl.now
	case !open || !known: // nothing to open, or carried forward unchanged
		return
	case !invalid && !pl.now.Before(last.Add(pl.p.AccessChangeSettle)):
		pl.judged[fp] = true
		return
	}
	a := alertOf(alert.AccessChanged, "", map[string]string{"lastChangeSeenAt": last.UTC().Format(time.RFC3339Nano), "atlasValid": "unknown"},
		"Access to the vault changed (access policy or role assignment); Atlas may lose access to the key at its next validity check.")
	if known {
		a.Details["atlasValid"] = strconv.FormatBool(!invalid)
	}
	switch {
	case invalid:
		a.Severity = alert.Critical
		a.Summary = "Access to the vault changed and Atlas now reports the EAR config invalid: Atlas lost access to the key and shuts down clusters."
	case !known && open:
		a.Severity = old.Severity
	}
	setDetail(&a, "eventKind", old.Details["eventKind"])
	if h != nil {
		enrich(&a, h)
		a.Details["eventKind"] = string(h.Kind)
	}
	pl.raise(a)
}
