package plan

import (
	"cmp"
	"fmt"
	"slices"
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
	if pl.endpointsOK && (pl.connsOK || pl.noVault) {
		pl.judge(alert.ForeignConnection)
	}
	if pl.endpointsOK && ((pl.connsOK && pl.vaultOK) || pl.noVault) {
		pl.judge(alert.WouldApprove, alert.ApprovalHeld)
	}
	// Atlas endpoints by exact connection name; requesting ones first so a
	// requesting endpoint wins over a stale one of the same name.
	var eps []atlas.PrivateEndpoint
	if pl.endpointsOK {
		eps = slices.Clone(pl.s.Endpoints)
		slices.SortStableFunc(eps, func(a, b atlas.PrivateEndpoint) int {
			if a.Requesting() != b.Requesting() {
				return map[bool]int{true: -1, false: 1}[a.Requesting()]
			}
			return strings.Compare(a.ID, b.ID)
		})
	}
	byName := map[string]atlas.PrivateEndpoint{}
	for _, e := range slices.Backward(eps) { // the first of a name wins
		if e.PrivateEndpointConnectionName != "" {
			byName[e.PrivateEndpointConnectionName] = e
		}
	}
	matched := map[string]bool{} // endpoint ids explained by a connection row
	seen := map[string]bool{}    // connection names decided: the first of a name counts
	for _, c := range pl.s.Connections {
		if !pl.connsOK || seen[c.Name] {
			continue
		}
		seen[c.Name] = true
		e, has := byName[c.Name]
		matched[e.ID] = matched[e.ID] || has
		pl.decideConnection(c, e, has, eps)
	}
	for _, e := range eps {
		if !matched[e.ID] {
			pl.decisions = append(pl.decisions, pl.decideEndpoint(e))
		}
	}
}

func (pl *planner) decideConnection(c vault.Connection, e atlas.PrivateEndpoint, has bool, eps []atlas.PrivateEndpoint) {
	d := Decision{Connection: c.Name}
	if has {
		d.EndpointID = e.ID
	}
	ep := map[string]string{"endpointId": e.ID, "region": e.RegionName, "endpointStatus": e.Status}
	switch {
	case c.Status == vault.StatusApproved:
		d.Verdict, d.Reason = VerdictAlreadyApproved, "the connection is already Approved on the vault; nothing to do"
	case c.Status != vault.StatusPending:
		d.Verdict, d.Reason = VerdictNotPending, fmt.Sprintf("the connection is %q, not Pending; the guard never changes it", c.Status)
	case !pl.endpointsOK:
		d.Verdict, d.Reason = VerdictEndpointsUnreadable, "Atlas's endpoint list could not be read in this reconcile; nothing is approved without it"
	case !(has && e.Requesting()) && pl.s.OtherRequests[c.Name] != "":
		d.Verdict, d.Reason = VerdictOtherProject, fmt.Sprintf("requested by guarded project %s, which shares this vault; only that project approves it", pl.s.OtherRequests[c.Name])
	case has && !e.Requesting():
		d.Verdict, d.Reason = VerdictEndpointNotRequesting, fmt.Sprintf("Atlas endpoint %s with this connection name is %s, not INITIATING or PENDING_ACCEPTANCE; left pending", e.ID, e.Status)
		pl.raiseForeign(c, d.Reason, map[string]string{"atlasEndpointId": e.ID, "atlasEndpointStatus": e.Status})
	case !has:
		d.Verdict, d.Reason = VerdictForeign, "no Atlas EAR endpoint of this project asked for this connection; left pending"
		details := map[string]string{}
		if sim := similarName(c.Name, eps); sim != "" {
			d.Reason += fmt.Sprintf(" (it resembles Atlas's %q, but names must match exactly)", sim)
			details["similarTo"] = sim
		}
		since := pl.unrequestedSince(c.Name)
		_, reported := pl.prev.Open[Fingerprint(alert.ForeignConnection, pl.s.ProjectID, c.Name)]
		if creating := pl.atlasCreating(); creating != "" && !reported && details["similarTo"] == "" && pl.now.Sub(since) < pl.p.ForeignGrace {
			d.Reason += fmt.Sprintf("; alert deferred until %s: Atlas endpoint %s is being created and may own it",
				since.Add(pl.p.ForeignGrace).UTC().Format(time.RFC3339), creating)
		} else {
			pl.raiseForeign(c, d.Reason, details)
		}
	case !pl.vaultOK:
		d.Verdict, d.Reason = VerdictVaultUnreadable, "the vault could not be read, so its hold tag is unknown; not approved"
	case pl.s.VaultState.Hold():
		d.Verdict, d.Reason = VerdictHeld, fmt.Sprintf("the vault carries the hold tag %s=%s; not approved", vault.HoldTagKey, vault.HoldTagValue)
		pl.raise(alertOf(alert.ApprovalHeld, c.Name, ep,
			"Connection %s that Atlas endpoint %s (%s) asked for is not approved because the vault carries the hold tag.", c.Name, e.ID, e.RegionName))
	case pl.p.Mode != ModeEnforce:
		d.Verdict, d.Reason = VerdictWouldApprove, fmt.Sprintf("requested by Atlas endpoint %s (%s, %s); observe mode: not approved", e.ID, e.RegionName, e.Status)
		pl.raise(alertOf(alert.WouldApprove, c.Name, ep,
			"Observe mode: atlas-akv-guard would approve connection %s for Atlas endpoint %s (%s).", c.Name, e.ID, e.RegionName))
	default:
		d.Verdict, d.Reason = VerdictApprove, fmt.Sprintf("Pending, on the vault Atlas's EAR config names, and requested by Atlas endpoint %s (%s, %s)", e.ID, e.RegionName, e.Status)
		pl.approvals = append(pl.approvals, Approval{Vault: pl.cfgVault, Connection: c.Name, EndpointID: e.ID, Region: e.RegionName,
			Description: fmt.Sprintf("Approved by atlas-akv-guard for MongoDB Atlas project %s, EAR private endpoint %s (%s), at %s",
				pl.s.ProjectID, e.ID, e.RegionName, pl.now.UTC().Format(time.RFC3339))})
	}
	pl.decisions = append(pl.decisions, d)
}

// unrequestedSince records and returns since when the Pending connection
// name has been seen without an Atlas endpoint asking for it.
func (pl *planner) unrequestedSince(name string) time.Time {
	since := cmp.Or(pl.prev.Unrequested[name], pl.now)
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
	a := alertOf(alert.ForeignConnection, c.Name, details, "Pending private endpoint connection %s on the vault was not requested by Atlas: %s.", c.Name, reason)
	setDetail(&a, "privateEndpointId", c.PrivateEndpointID)
	pl.raise(a)
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
	d := func(verdict, reason string, args ...any) Decision {
		return Decision{EndpointID: e.ID, Verdict: verdict, Reason: fmt.Sprintf(reason, args...)}
	}
	switch name := e.PrivateEndpointConnectionName; {
	case !pl.cfgOK:
		return d(VerdictConfigUnreadable, "Atlas's EAR config could not be read, so the vault is unknown; nothing is approved")
	case pl.noVault:
		return d(VerdictNoConnection, "Atlas's EAR config names no Azure Key Vault")
	case !pl.connsOK:
		return d(VerdictConnectionsUnreadable, "the vault's connections could not be read in this reconcile")
	case e.Requesting():
		return d(VerdictAwaitingConnection, "Atlas endpoint is %s; connection %q is not on the vault yet", e.Status, name)
	case e.Status == atlas.StatusActive:
		return d(VerdictConnectionMissing, "Atlas endpoint is ACTIVE but connection %q is absent from the vault", name)
	default:
		return d(VerdictNoConnection, "Atlas endpoint is %s; no connection %q on the vault", e.Status, name)
	}
}

// ApprovedNotice is the one-shot audit notice apply emits after it approved a.
// actor names who approved (e.g. the guard's managed identity); it is not
// kept in Memory.
func ApprovedNotice(projectID string, a Approval, actor string, now time.Time) alert.Notice {
	now = now.Round(0)
	al := alertOf(alert.Approved, a.Connection, map[string]string{"endpointId": a.EndpointID, "region": a.Region, "description": a.Description},
		"atlas-akv-guard approved private endpoint connection %s for Atlas endpoint %s (%s).", a.Connection, a.EndpointID, a.Region)
	al.Fingerprint, al.ProjectID, al.Actor, al.FirstSeen, al.LastSeen, al.LastNotified = Fingerprint(alert.Approved, projectID, a.Connection), projectID, actor, now, now, now
	if !a.Vault.IsZero() {
		al.Vault = a.Vault.String()
	}
	al.Runbook = runbook(al, projectID, a.Vault, nil)
	return alert.Notice{ID: noticeID(al.Fingerprint, alert.AuditEvent, now), Action: alert.AuditEvent, At: now, Alert: al}
}
