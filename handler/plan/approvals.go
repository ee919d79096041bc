package plan

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// connections applies the decision rules to every connection on the vault and
// explains every Atlas endpoint. It approves connection c only when:
//  1. c is in Snapshot.Connections, read from the vault that Config (read in
//     this reconcile) names, and Snapshot.Vault agrees with Config;
//  2. c.Status == "Pending" exactly;
//  3. c.Name equals exactly the PrivateEndpointConnectionName of an Atlas
//     endpoint of the project that is INITIATING or PENDING_ACCEPTANCE (the
//     endpoint list was read in this reconcile);
//  4. the mode is enforce and the vault was read, exists and has no hold tag.
//
// Pending connections that fail rule 3 raise foreign-connection, unless
// another guarded project on the same vault asked for them (OtherRequests):
// those are neither foreign nor approved here. Those that fail rule 4 raise
// would-approve (observe) or approval-held (hold).
func (pl *planner) connections() {
	s := pl.s
	decisionsKnown := pl.endpointsOK && ((pl.connsOK && pl.vaultOK) || pl.noVault)
	if pl.endpointsOK && (pl.connsOK || pl.noVault) {
		pl.settled(alert.ForeignConnection)
	}
	if decisionsKnown {
		pl.settled(alert.WouldApprove, alert.ApprovalHeld)
	}

	// Atlas endpoints by exact connection name; requesting ones first so a
	// requesting endpoint wins over a stale one of the same name.
	var eps []atlas.PrivateEndpoint
	if pl.endpointsOK {
		eps = append(eps, s.Endpoints...)
		sort.SliceStable(eps, func(i, j int) bool {
			if eps[i].Requesting() != eps[j].Requesting() {
				return eps[i].Requesting()
			}
			return eps[i].ID < eps[j].ID
		})
	}
	byName := make(map[string]atlas.PrivateEndpoint, len(eps))
	for _, e := range eps {
		if e.PrivateEndpointConnectionName == "" {
			continue
		}
		if _, dup := byName[e.PrivateEndpointConnectionName]; !dup {
			byName[e.PrivateEndpointConnectionName] = e
		}
	}

	matched := map[string]bool{} // endpoint ids explained by a connection row
	if pl.connsOK {
		seen := make(map[string]bool, len(s.Connections))
		for _, c := range s.Connections {
			if seen[c.Name] {
				continue
			}
			seen[c.Name] = true
			e, has := byName[c.Name]
			if has {
				matched[e.ID] = true
			}
			pl.decideConnection(c, e, has, eps)
		}
	}
	for _, e := range eps {
		if matched[e.ID] {
			continue
		}
		pl.decisions = append(pl.decisions, pl.decideEndpoint(e))
	}
}

func (pl *planner) decideConnection(c vault.Connection, e atlas.PrivateEndpoint, has bool, eps []atlas.PrivateEndpoint) {
	d := Decision{Connection: c.Name}
	if has {
		d.EndpointID = e.ID
	}
	add := func(verdict, reason string) {
		d.Verdict, d.Reason = verdict, reason
		pl.decisions = append(pl.decisions, d)
	}
	switch {
	case c.Status == vault.StatusApproved:
		add(VerdictAlreadyApproved, "the connection is already Approved on the vault; nothing to do")
		return
	case c.Status != vault.StatusPending:
		add(VerdictNotPending, fmt.Sprintf("the connection is %q, not Pending; the guard never changes it", c.Status))
		return
	case !pl.endpointsOK:
		add(VerdictEndpointsUnreadable, "Atlas's endpoint list could not be read in this reconcile; nothing is approved without it")
		return
	case !(has && e.Requesting()) && pl.s.OtherRequests[c.Name] != "":
		add(VerdictOtherProject, fmt.Sprintf("requested by guarded project %s, which shares this vault; only that project approves it", pl.s.OtherRequests[c.Name]))
		return
	case has && !e.Requesting():
		reason := fmt.Sprintf("Atlas endpoint %s with this connection name is %s, not INITIATING or PENDING_ACCEPTANCE; left pending", e.ID, e.Status)
		add(VerdictEndpointNotRequesting, reason)
		pl.raiseForeign(c, reason, map[string]string{"atlasEndpointId": e.ID, "atlasEndpointStatus": e.Status})
		return
	case !has:
		reason := "no Atlas EAR endpoint of this project asked for this connection; left pending"
		details := map[string]string{}
		if sim := similarName(c.Name, eps); sim != "" {
			reason += fmt.Sprintf(" (it resembles Atlas's %q, but names must match exactly)", sim)
			details["similarTo"] = sim
		}
		since := pl.unrequestedSince(c.Name)
		_, reported := pl.prev.Open[Fingerprint(alert.ForeignConnection, pl.s.ProjectID, c.Name)]
		if creating := pl.atlasCreating(); creating != "" && !reported && details["similarTo"] == "" && pl.now.Sub(since) < pl.p.ForeignGrace {
			add(VerdictForeign, reason+fmt.Sprintf("; alert deferred until %s: Atlas endpoint %s is being created and may own it",
				since.Add(pl.p.ForeignGrace).UTC().Format(time.RFC3339), creating))
			return
		}
		add(VerdictForeign, reason)
		pl.raiseForeign(c, reason, details)
		return
	case !pl.vaultOK:
		add(VerdictVaultUnreadable, "the vault could not be read, so its hold tag is unknown; not approved")
		return
	case pl.s.VaultState.Hold():
		reason := fmt.Sprintf("the vault carries the hold tag %s=%s; not approved", vault.HoldTagKey, vault.HoldTagValue)
		add(VerdictHeld, reason)
		pl.raise(alert.Alert{
			Kind: alert.ApprovalHeld, Severity: alert.Warning, Subject: c.Name,
			Summary: fmt.Sprintf("Connection %s that Atlas endpoint %s (%s) asked for is not approved because the vault carries the hold tag.", c.Name, e.ID, e.RegionName),
			Details: map[string]string{"endpointId": e.ID, "region": e.RegionName, "endpointStatus": e.Status},
		})
		return
	case pl.p.Mode != ModeEnforce:
		add(VerdictWouldApprove, fmt.Sprintf("requested by Atlas endpoint %s (%s, %s); observe mode: not approved", e.ID, e.RegionName, e.Status))
		pl.raise(alert.Alert{
			Kind: alert.WouldApprove, Severity: alert.Info, Subject: c.Name,
			Summary: fmt.Sprintf("Observe mode: atlas-akv-guard would approve connection %s for Atlas endpoint %s (%s).", c.Name, e.ID, e.RegionName),
			Details: map[string]string{"endpointId": e.ID, "region": e.RegionName, "endpointStatus": e.Status},
		})
		return
	}
	add(VerdictApprove, fmt.Sprintf("Pending, on the vault Atlas's EAR config names, and requested by Atlas endpoint %s (%s, %s)", e.ID, e.RegionName, e.Status))
	pl.approvals = append(pl.approvals, Approval{Vault: pl.cfgVault, Connection: c.Name, EndpointID: e.ID, Region: e.RegionName,
		Description: fmt.Sprintf("Approved by atlas-akv-guard for MongoDB Atlas project %s, EAR private endpoint %s (%s), at %s",
			pl.s.ProjectID, e.ID, e.RegionName, pl.now.UTC().Format(time.RFC3339))})
}

// unrequestedSince records and returns since when the Pending connection
// name has been seen without an Atlas endpoint asking for it.
func (pl *planner) unrequestedSince(name string) time.Time {
	since, ok := pl.prev.Unrequested[name]
	if !ok {
		since = pl.now
	}
	if pl.unrequested == nil {
		pl.unrequested = map[string]time.Time{}
	}
	pl.unrequested[name] = since
	return since
}

// atlasCreating returns the id of an Atlas endpoint that is requesting a
// connection Atlas has not named yet ("" when there is none): while it
// exists, a new unrequested connection on the vault may be Atlas's own.
func (pl *planner) atlasCreating() string {
	for _, e := range pl.s.Endpoints {
		if e.Requesting() && e.PrivateEndpointConnectionName == "" {
			return e.ID
		}
	}
	return ""
}

func (pl *planner) raiseForeign(c vault.Connection, reason string, details map[string]string) {
	details["status"] = c.Status
	if c.PrivateEndpointID != "" {
		details["privateEndpointId"] = c.PrivateEndpointID
	}
	pl.raise(alert.Alert{
		Kind: alert.ForeignConnection, Severity: alert.Warning, Subject: c.Name,
		Summary: fmt.Sprintf("Pending private endpoint connection %s on the vault was not requested by Atlas: %s.", c.Name, reason),
		Details: details,
	})
}

// similarName returns an Atlas connection name that c differs from only by
// case, a prefix or a suffix, to explain a foreign verdict. It is a look-alike
// detector, not a name comparison: it folds case widely (Unicode included) so
// that more look-alikes are reported at once; it never approves anything.
func similarName(c string, eps []atlas.PrivateEndpoint) string {
	for _, e := range eps {
		n := e.PrivateEndpointConnectionName
		if n == "" || n == c {
			continue
		}
		if strings.EqualFold(n, c) || strings.HasPrefix(c, n) || strings.HasSuffix(c, n) ||
			strings.HasPrefix(n, c) || strings.HasSuffix(n, c) {
			return n
		}
	}
	return ""
}

// decideEndpoint explains an Atlas endpoint that no connection on the vault
// carries the name of.
func (pl *planner) decideEndpoint(e atlas.PrivateEndpoint) Decision {
	d := Decision{EndpointID: e.ID}
	switch {
	case !pl.cfgOK:
		d.Verdict, d.Reason = VerdictConfigUnreadable, "Atlas's EAR config could not be read, so the vault is unknown; nothing is approved"
	case pl.noVault:
		d.Verdict, d.Reason = VerdictNoConnection, "Atlas's EAR config names no Azure Key Vault"
	case !pl.connsOK:
		d.Verdict, d.Reason = VerdictConnectionsUnreadable, "the vault's connections could not be read in this reconcile"
	case e.Requesting():
		d.Verdict, d.Reason = VerdictAwaitingConnection, fmt.Sprintf("Atlas endpoint is %s; connection %q is not on the vault yet", e.Status, e.PrivateEndpointConnectionName)
	case e.Status == atlas.StatusActive:
		d.Verdict, d.Reason = VerdictConnectionMissing, fmt.Sprintf("Atlas endpoint is ACTIVE but connection %q is absent from the vault", e.PrivateEndpointConnectionName)
	default:
		d.Verdict, d.Reason = VerdictNoConnection, fmt.Sprintf("Atlas endpoint is %s; no connection %q on the vault", e.Status, e.PrivateEndpointConnectionName)
	}
	return d
}

// ApprovedNotice is the one-shot audit notice apply emits after it approved a.
// actor names who approved (e.g. the guard's managed identity); it is not
// kept in Memory.
func ApprovedNotice(projectID string, a Approval, actor string, now time.Time) alert.Notice {
	now = now.Round(0)
	al := alert.Alert{Fingerprint: Fingerprint(alert.Approved, projectID, a.Connection), Kind: alert.Approved, Severity: alert.Info,
		ProjectID: projectID, Subject: a.Connection, Actor: actor, FirstSeen: now, LastSeen: now, LastNotified: now,
		Summary: fmt.Sprintf("atlas-akv-guard approved private endpoint connection %s for Atlas endpoint %s (%s).", a.Connection, a.EndpointID, a.Region),
		Details: map[string]string{"endpointId": a.EndpointID, "region": a.Region, "description": a.Description},
	}
	if !a.Vault.IsZero() {
		al.Vault = a.Vault.String()
	}
	al.Runbook = runbook(al, ids{project: projectID, vault: a.Vault})
	return alert.Notice{ID: noticeID(al.Fingerprint, alert.AuditEvent, now), Action: alert.AuditEvent, At: now, Alert: al}
}
