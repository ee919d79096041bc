package plan

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// guardBlind raises one critical alert per source that failed or that should
// have been read and was not; it resolves a source's alert only when the
// source was read (or is moot because Config names no vault).
func (pl *planner) guardBlind() {
	vaultNamed := pl.cfgOK && !pl.noVault
	sources := []struct {
		src      Source
		read     bool
		expected bool
	}{
		{SourceEncryptionAtRest, pl.cfgOK, true},
		{SourcePrivateEndpoints, pl.endpointsOK, true},
		{SourceClusters, pl.clustersOK, true},
		{SourceVault, pl.vaultOK, vaultNamed},
		{SourceConnections, pl.connsOK, pl.vaultFound},
		{SourceKey, pl.keyOK, pl.vaultFound},
	}
	known := map[Source]bool{}
	for _, st := range sources {
		known[st.src] = true
		fp := Fingerprint(alert.GuardBlind, pl.s.ProjectID, string(st.src))
		msg := ""
		switch {
		case st.src == SourceVault && vaultNamed && !pl.armTrusted:
			msg = fmt.Sprintf("the snapshot's vault %s is not the vault Atlas's EAR config names (%s); ARM data ignored",
				pl.s.Vault, pl.cfgVault)
		case len(pl.errs[st.src]) == 0 && st.expected && !st.read:
			msg = "not read in this reconcile"
		}
		// A missing vault explains failed reads below it: vault-missing says it.
		belowGoneVault := pl.vaultGone && (st.src == SourceConnections || st.src == SourceKey)
		switch {
		case belowGoneVault:
		case len(pl.errs[st.src]) > 0 || msg != "":
			pl.raiseBlind(st.src, msg)
		case st.read || (pl.noVault && strings.HasPrefix(string(st.src), "arm:")):
			pl.settledFP[fp] = true
		}
	}
	// Other sources (e.g. a failed write the reconciler reports as a source):
	// raised while they fail, resolved in the first reconcile without an error.
	var other []Source
	for src := range pl.errs {
		if !known[src] {
			other = append(other, src)
		}
	}
	sort.Slice(other, func(i, j int) bool { return other[i] < other[j] })
	for _, src := range other {
		pl.raiseBlind(src, "")
	}
	for fp, a := range pl.prev.Open {
		if a.Kind == alert.GuardBlind && !known[Source(a.Subject)] && len(pl.errs[Source(a.Subject)]) == 0 {
			pl.settledFP[fp] = true
		}
	}
}

func (pl *planner) raiseBlind(src Source, extra string) {
	var msgs []string
	perm := ""
	for _, e := range pl.errs[src] {
		if e.Message != "" {
			msgs = append(msgs, alert.Scrub(e.Message))
		}
		if perm == "" && e.Permission != "" {
			perm = e.Permission
		}
	}
	if extra != "" {
		msgs = append(msgs, extra)
	}
	a := alert.Alert{
		Kind:     alert.GuardBlind,
		Severity: alert.Critical,
		Subject:  string(src),
		Summary:  fmt.Sprintf("atlas-akv-guard cannot read %s; monitoring that depends on it is off.", src),
		Details:  map[string]string{"source": string(src), "error": strings.Join(msgs, "; ")},
	}
	if perm != "" {
		a.Details["permission"] = perm
		a.Summary = fmt.Sprintf("atlas-akv-guard cannot read %s: permission %s is missing; monitoring that depends on it is off.", src, perm)
	}
	pl.raise(a)
}

// configAlerts: Atlas says the EAR config is invalid. Valid not reported is
// unknown: the alert is carried forward.
func (pl *planner) configAlerts() {
	if !pl.cfgOK || pl.s.Config.Valid == nil {
		return
	}
	pl.settled(alert.ConfigInvalid)
	if *pl.s.Config.Valid {
		return
	}
	pl.raise(alert.Alert{
		Kind:     alert.ConfigInvalid,
		Severity: alert.Critical,
		Summary:  "Atlas reports the Azure Key Vault encryption-at-rest configuration as invalid; clusters are or will be shut down.",
		Details:  map[string]string{"keyIdentifier": pl.s.Config.KeyIdentifier, "keyVaultName": pl.s.Config.KeyVaultName},
	})
}

var keyKinds = []alert.Kind{alert.KeyMissing, alert.KeyDisabled, alert.KeyExpired, alert.KeyNotYetValid, alert.KeyExpiresSoon, alert.KeyRotated}

// vaultAndKeyAlerts covers vault-missing and the key rows. When the vault is
// missing, key and connection alerts do not apply: they are neither raised nor
// resolved. When the key version is missing, the other key rows do not apply.
func (pl *planner) vaultAndKeyAlerts() {
	if pl.noVault {
		pl.settled(alert.VaultMissing)
		pl.settled(keyKinds...)
		return
	}
	if pl.vaultOK {
		pl.settled(alert.VaultMissing)
		if pl.vaultGone {
			a := alert.Alert{
				Kind:     alert.VaultMissing,
				Severity: alert.Critical,
				Summary:  fmt.Sprintf("Key Vault %s named in Atlas's EAR config was not found; Atlas cannot reach the key and will shut down clusters.", pl.cfgVault.Name),
			}
			enrich(&a, pl.latestHint(func(h Hint) bool { return h.Kind == HintVaultChanged }))
			pl.raise(a)
		}
	}
	if !pl.keyOK {
		return
	}
	k := pl.s.Key
	subject := pl.keySubject()
	pl.settled(alert.KeyMissing)
	if !k.Found {
		pl.raise(alert.Alert{
			Kind:     alert.KeyMissing,
			Severity: alert.Critical,
			Subject:  subject,
			Summary:  fmt.Sprintf("Key version %s that Atlas uses was not found in the vault; Atlas will shut down clusters at its next check.", subject),
			Details:  map[string]string{"keyIdentifier": pl.s.Config.KeyIdentifier},
		})
		return
	}
	pl.settled(alert.KeyDisabled, alert.KeyExpired, alert.KeyNotYetValid, alert.KeyExpiresSoon, alert.KeyRotated)
	keyHint := func(kind string) *Hint {
		return pl.latestHint(func(h Hint) bool {
			return h.Kind == kind && (h.Object == "" || h.Object == k.Name || h.Object == subject)
		})
	}
	details := func(extra ...string) map[string]string {
		d := map[string]string{"keyIdentifier": pl.s.Config.KeyIdentifier, "version": k.Version}
		for i := 0; i+1 < len(extra); i += 2 {
			d[extra[i]] = extra[i+1]
		}
		return d
	}
	if !k.Enabled {
		pl.raise(alert.Alert{
			Kind:     alert.KeyDisabled,
			Severity: alert.Critical,
			Subject:  subject,
			Summary:  fmt.Sprintf("Key version %s that Atlas uses is disabled; Atlas shuts down the project's clusters at its next validity check (within 15 minutes).", subject),
			Details:  details(),
		})
	}
	if k.Expires != nil {
		exp := *k.Expires
		left := exp.Sub(pl.now)
		switch {
		case !exp.After(pl.now):
			a := alert.Alert{
				Kind:     alert.KeyExpired,
				Severity: alert.Critical,
				Subject:  subject,
				Summary:  fmt.Sprintf("Key version %s that Atlas uses expired at %s; Atlas shuts down the project's clusters.", subject, exp.UTC().Format(time.RFC3339)),
				Details:  details("expires", exp.UTC().Format(time.RFC3339)),
			}
			enrich(&a, keyHint(HintKeyExpired))
			pl.raise(a)
		case left <= pl.p.KeyExpiryWarn:
			a := alert.Alert{
				Kind:     alert.KeyExpiresSoon,
				Severity: alert.Warning,
				Subject:  subject,
				Summary:  fmt.Sprintf("Key version %s that Atlas uses expires at %s (in %s); rotate it and update keyIdentifier in Atlas.", subject, exp.UTC().Format(time.RFC3339), roundDays(left)),
				Details:  details("expires", exp.UTC().Format(time.RFC3339)),
			}
			enrich(&a, keyHint(HintKeyNearExpiry))
			pl.raise(a)
		}
	}
	if k.NotBefore != nil && k.NotBefore.After(pl.now) {
		nb := k.NotBefore.UTC().Format(time.RFC3339)
		pl.raise(alert.Alert{
			Kind:     alert.KeyNotYetValid,
			Severity: alert.Critical,
			Subject:  subject,
			Summary:  fmt.Sprintf("Key version %s that Atlas uses is not valid before %s.", subject, nb),
			Details:  details("notBefore", nb),
		})
	}
	if k.Latest != "" && k.Latest != k.Version && k.LatestEnabled {
		a := alert.Alert{
			Kind:     alert.KeyRotated,
			Severity: alert.Info,
			Subject:  subject,
			Summary:  fmt.Sprintf("Key %s has a newer enabled version %s, but Atlas's keyIdentifier still pins %s; rotate keyIdentifier in Atlas.", k.Name, k.Latest, k.Version),
			Details:  details("latest", k.Latest),
		}
		if !k.Enabled {
			a.Severity = alert.Critical
			a.Summary = fmt.Sprintf("Key version %s that Atlas pins is disabled while the newer version %s is enabled; update keyIdentifier in Atlas now.", subject, k.Latest)
		}
		enrich(&a, keyHint(HintKeyNewVersion))
		pl.raise(a)
	}
}

// keySubject names the pinned key version as "name/version".
func (pl *planner) keySubject() string {
	name, version := pl.s.Key.Name, pl.s.Key.Version
	if name == "" && pl.s.Config != nil {
		if _, n, v, err := resource.ParseKeyIdentifier(pl.s.Config.KeyIdentifier); err == nil {
			name, version = n, v
		}
	}
	switch {
	case name == "":
		return "key"
	case version == "":
		return name
	}
	return name + "/" + version
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
	pl.settled(alert.ClustersPaused)
	var names []string
	for _, c := range pl.s.Clusters {
		if c.UsesAzureKeys() && c.Paused {
			names = append(names, c.Name)
		}
	}
	if len(names) == 0 {
		return
	}
	sort.Strings(names)
	pl.raise(alert.Alert{
		Kind:     alert.ClustersPaused,
		Severity: alert.Critical,
		Summary:  fmt.Sprintf("%d cluster(s) encrypted with the Azure Key Vault key are paused: %s.", len(names), strings.Join(names, ", ")),
		Details:  map[string]string{"clusters": strings.Join(names, ","), "count": strconv.Itoa(len(names))},
	})
}

// waiting reports whether Atlas is waiting in status: endpoint-stuck applies.
func waiting(status string) bool {
	return status == atlas.StatusInitiating || status == atlas.StatusPendingAcceptance || status == atlas.StatusPendingRecreation
}

// endpointAlerts: endpoint-failed and endpoint-stuck, per Atlas endpoint id.
func (pl *planner) endpointAlerts() {
	if !pl.endpointsOK {
		return
	}
	pl.settled(alert.EndpointFailed, alert.EndpointStuck)
	for _, e := range pl.s.Endpoints {
		d := map[string]string{"endpointId": e.ID, "region": e.RegionName, "status": e.Status, "connection": e.PrivateEndpointConnectionName}
		switch {
		case e.Status == atlas.StatusFailed:
			if e.ErrorMessage != "" {
				d["errorMessage"] = alert.Scrub(e.ErrorMessage)
			}
			pl.raise(alert.Alert{
				Kind:     alert.EndpointFailed,
				Severity: alert.Critical,
				Subject:  e.ID,
				Summary:  fmt.Sprintf("Atlas EAR private endpoint %s (%s) FAILED: %s", e.ID, e.RegionName, alert.Scrub(e.ErrorMessage)),
				Details:  d,
			})
		case waiting(e.Status):
			seen := pl.seen(e.ID, e.Status)
			if pl.now.Sub(seen.Since) <= pl.p.StuckAfter {
				continue
			}
			d["since"] = seen.Since.UTC().Format(time.RFC3339)
			pl.raise(alert.Alert{
				Kind:     alert.EndpointStuck,
				Severity: alert.Warning,
				Subject:  e.ID,
				Summary: fmt.Sprintf("Atlas EAR private endpoint %s (%s) has been %s since %s (longer than %s).",
					e.ID, e.RegionName, e.Status, d["since"], pl.p.StuckAfter),
				Details: d,
			})
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
		pl.settled(alert.ConnectionChanged)
	}
	var byName map[string]vault.Connection
	if pl.connsOK {
		byName = make(map[string]vault.Connection, len(pl.s.Connections))
		for _, c := range pl.s.Connections {
			if _, dup := byName[c.Name]; !dup {
				byName[c.Name] = c
			}
		}
	}
	for _, e := range pl.s.Endpoints {
		name := e.PrivateEndpointConnectionName
		if e.Status == atlas.StatusDeleting {
			continue
		}
		why, connStatus := "", ""
		switch {
		case e.Status == atlas.StatusPendingRecreation:
			why = "Atlas marked the endpoint PENDING_RECREATION: its connection was rejected or removed on the vault"
			if c, ok := byName[name]; ok && name != "" {
				connStatus = c.Status
			}
		case pl.connsOK && name != "":
			c, ok := byName[name]
			switch {
			case ok && (c.Status == vault.StatusRejected || c.Status == vault.StatusDisconnected):
				why, connStatus = "the connection is "+c.Status+" on the vault", c.Status
			case !ok && e.Status == atlas.StatusActive:
				why, connStatus = "the connection of an ACTIVE endpoint is absent from the vault", "absent"
			}
		}
		if why == "" {
			continue
		}
		subject := name
		if subject == "" {
			subject = e.ID
		}
		a := alert.Alert{
			Kind:     alert.ConnectionChanged,
			Severity: alert.Warning,
			Subject:  subject,
			Summary:  fmt.Sprintf("Private endpoint connection %s of Atlas endpoint %s (%s) was rejected or removed: %s.", subject, e.ID, e.RegionName, why),
			Details:  map[string]string{"endpointId": e.ID, "region": e.RegionName, "endpointStatus": e.Status, "reason": why},
		}
		if connStatus != "" {
			a.Details["connectionStatus"] = connStatus
		}
		if name != "" {
			enrich(&a, pl.latestHint(func(h Hint) bool { return h.Kind == HintConnectionChanged && hintNames(h.Object, name) }))
		}
		pl.raise(a)
	}
}

// hintNames reports whether an event's object names connection name: the name
// itself or a resource ID ending in /privateEndpointConnections/{name}.
func hintNames(object, name string) bool {
	if object == name {
		return true
	}
	i := strings.LastIndexByte(object, '/')
	if i < 0 || object[i+1:] != name {
		return false
	}
	return strings.HasSuffix(strings.ToLower(object[:i]), "/privateendpointconnections")
}

// accessChanged is the event-only alert: opened by an access hint, kept open
// for AccessChangeSettle after the last one while Atlas says valid, critical
// while Atlas says invalid, carried forward while validity is unknown.
func (pl *planner) accessChanged() {
	fp := Fingerprint(alert.AccessChanged, pl.s.ProjectID, "")
	old, open := pl.prev.Open[fp]
	h := pl.latestHint(func(h Hint) bool {
		return h.Kind == HintAccessPolicyChanged || h.Kind == HintRoleAssignmentDeleted
	})
	if h == nil && !open {
		return
	}
	known := pl.cfgOK && pl.s.Config.Valid != nil
	invalid := known && !*pl.s.Config.Valid
	last := pl.now
	if h == nil {
		t, err := time.Parse(time.RFC3339Nano, old.Details["lastChangeSeenAt"])
		if err != nil {
			t = old.LastSeen
		}
		last = t
		if !known {
			return // carried forward unchanged
		}
		if !invalid && !pl.now.Before(last.Add(pl.p.AccessChangeSettle)) {
			pl.settledFP[fp] = true
			return
		}
	}
	a := alert.Alert{
		Kind:     alert.AccessChanged,
		Severity: alert.Warning,
		Summary:  "Access to the vault changed (access policy or role assignment); Atlas may lose access to the key at its next validity check.",
		Details:  map[string]string{"lastChangeSeenAt": last.UTC().Format(time.RFC3339Nano), "atlasValid": "unknown"},
	}
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
	if h != nil {
		enrich(&a, h)
		a.Details["eventKind"] = h.Kind
	} else if k, ok := old.Details["eventKind"]; ok {
		a.Details["eventKind"] = k
	}
	pl.raise(a)
}
