package plan

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"strconv"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
)

// Fingerprint returns the stable identity of an alert: the first 16 bytes, in
// hex, of SHA-256 over kind, project and subject. Subject is compared exactly
// (connection names are case-sensitive).
func Fingerprint(kind alert.Kind, projectID, subject string) string {
	sum := sha256.Sum256([]byte(string(kind) + "\x00" + projectID + "\x00" + subject))
	return hex.EncodeToString(sum[:16])
}

// noticeID is unique per fingerprint, action and time, and deterministic.
func noticeID(fp string, action alert.Action, now time.Time) string {
	return fp + "-" + string(action) + "-" + strconv.FormatInt(now.UnixNano(), 10)
}

// planner holds one Plan call's inputs, what it found readable, and what it
// has computed so far.
type planner struct {
	s    Snapshot
	prev Memory
	p    Policy
	now  time.Time

	errs map[Source][]SourceError

	// Readability, derived once.
	cfgOK       bool        // Config read
	cfgVault    resource.ID // the vault Config names (zero if none or unread)
	noVault     bool        // Config read and names no vault: nothing on ARM to guard
	armTrusted  bool        // Config names a vault and Snapshot.Vault equals it
	vaultOK     bool        // VaultState read
	vaultGone   bool        // VaultState read and ARM answered 404
	connsOK     bool        // Connections read (on the trusted vault)
	keyOK       bool        // Key read (on the trusted, existing vault)
	endpointsOK bool        // Endpoints read
	clustersOK  bool        // Clusters read
	vaultStr    string      // vault resource ID for alerts, "" when unknown

	computed map[string]alert.Alert // alerts whose condition holds now
	// judged holds the kinds (and single fingerprints) fully evaluated now:
	// an open alert among them that was not raised again resolves; any other
	// open alert is carried forward unchanged (unknown is not cleared).
	judged map[string]bool

	approvals   []Approval
	decisions   []Decision
	unrequested map[string]time.Time // next Memory.Unrequested
}

func newPlanner(s Snapshot, prev Memory, p Policy, now time.Time) *planner {
	pl := &planner{s: s, prev: prev, p: p, now: now, errs: map[Source][]SourceError{}, computed: map[string]alert.Alert{}, judged: map[string]bool{}}
	for _, e := range s.Errors {
		pl.errs[e.Source] = append(pl.errs[e.Source], e)
	}
	ok := func(src Source, present bool) bool { return present && len(pl.errs[src]) == 0 }

	cfg := s.Config
	pl.cfgOK = ok(SourceEncryptionAtRest, cfg != nil)
	if pl.cfgOK && cfg.SubscriptionID != "" && cfg.ResourceGroupName != "" && cfg.KeyVaultName != "" {
		pl.cfgVault = resource.ID{SubscriptionID: cfg.SubscriptionID, ResourceGroup: cfg.ResourceGroupName, Name: cfg.KeyVaultName}
	}
	pl.noVault = pl.cfgOK && pl.cfgVault.IsZero()
	pl.armTrusted = !pl.cfgVault.IsZero() && s.Vault.Equal(pl.cfgVault) // a zero Snapshot.Vault is untrusted
	switch {
	case !pl.cfgVault.IsZero():
		pl.vaultStr = pl.cfgVault.String()
	case !pl.cfgOK && !s.Vault.IsZero():
		pl.vaultStr = s.Vault.String()
	}
	pl.vaultOK = pl.armTrusted && ok(SourceVault, s.VaultState != nil)
	pl.vaultGone = pl.vaultOK && !s.VaultState.Found
	pl.connsOK = pl.armTrusted && !pl.vaultGone && ok(SourceConnections, s.Connections != nil)
	pl.keyOK = pl.armTrusted && !pl.vaultGone && ok(SourceKey, s.Key != nil)
	pl.endpointsOK = ok(SourcePrivateEndpoints, s.Endpoints != nil)
	pl.clustersOK = ok(SourceClusters, s.Clusters != nil)
	return pl
}

// alertOf is an alert of kind about subject at the catalog's severity.
func alertOf(kind alert.Kind, subject string, details map[string]string, format string, args ...any) alert.Alert {
	return alert.Alert{Kind: kind, Severity: alert.Catalog[kind], Subject: subject, Details: details, Summary: fmt.Sprintf(format, args...)}
}

// raise records that the condition of a holds now; of two alerts with one
// fingerprint the more severe wins. Fingerprint, project, vault and runbook
// are filled in.
func (pl *planner) raise(a alert.Alert) {
	a.ProjectID, a.Vault = pl.s.ProjectID, pl.vaultStr
	a.Fingerprint = Fingerprint(a.Kind, a.ProjectID, a.Subject)
	a.Runbook = runbook(a, pl.s.ProjectID, cmp.Or(pl.cfgVault, pl.s.Vault), pl.s.Config)
	if prev, ok := pl.computed[a.Fingerprint]; !ok || a.Severity.Rank() >= prev.Severity.Rank() {
		pl.computed[a.Fingerprint] = a
	}
}

// judge marks kinds as fully evaluated now (see planner.judged).
func (pl *planner) judge(kinds ...alert.Kind) {
	for _, k := range kinds {
		pl.judged[string(k)] = true
	}
}

// hintDetailKeys are the Details an event adds; they are kept from the
// previous open alert when this reconcile had no such event.
var hintDetailKeys = []string{"eventOperation", "eventObject", "eventId", "eventTime"}

// settle turns the computed alerts and the previous open alerts into the next
// open set and the notices to send.
func (pl *planner) settle() (map[string]alert.Alert, []alert.Notice) {
	open := make(map[string]alert.Alert, len(pl.computed)+len(pl.prev.Open))
	var notices []alert.Notice
	notify := func(a alert.Alert, action alert.Action) {
		notices = append(notices, alert.Notice{ID: noticeID(a.Fingerprint, action, pl.now), Action: action, At: pl.now, Alert: a})
	}
	for fp, a := range pl.computed {
		old, wasOpen := pl.prev.Open[fp]
		a.FirstSeen, a.LastSeen, a.LastNotified = pl.now, pl.now, pl.now
		action := alert.Raised
		if wasOpen {
			a.FirstSeen, a.Actor = old.FirstSeen, cmp.Or(a.Actor, old.Actor)
			for _, k := range hintDetailKeys {
				if a.Details[k] == "" {
					setDetail(&a, k, old.Details[k])
				}
			}
			switch {
			case a.Severity.Rank() > old.Severity.Rank():
				action = alert.Escalated
			case a.Severity == alert.Critical && pl.p.RenotifyAfter > 0 && pl.now.Sub(old.LastNotified) >= pl.p.RenotifyAfter:
				action = alert.Reminder
			default:
				action, a.LastNotified = "", old.LastNotified
			}
		}
		if action != "" {
			notify(a, action)
		}
		open[fp] = a
	}
	for fp, old := range pl.prev.Open {
		if _, still := pl.computed[fp]; still {
			continue
		}
		if pl.judged[string(old.Kind)] || pl.judged[fp] {
			at := pl.now
			old.ResolvedAt = &at
			notify(old, alert.Resolved)
			continue
		}
		open[fp] = old
	}
	return open, notices
}

// memory is the next Memory but its open alerts: the endpoints and the
// unrequested connections this reconcile saw, or the previous ones where it
// could not see them. A status change resets an endpoint's Since.
func (pl *planner) memory() Memory {
	m := Memory{Endpoints: maps.Clone(pl.prev.Endpoints), Unrequested: maps.Clone(pl.prev.Unrequested)}
	if pl.connsOK && pl.endpointsOK {
		m.Unrequested = pl.unrequested
	}
	if pl.endpointsOK {
		m.Endpoints = make(map[string]EndpointSeen, len(pl.s.Endpoints))
		for _, e := range pl.s.Endpoints {
			m.Endpoints[e.ID] = pl.seen(e.ID, e.Status)
		}
	}
	return m
}

func (pl *planner) seen(id, status string) EndpointSeen {
	if old, ok := pl.prev.Endpoints[id]; ok && old.Status == status {
		return old
	}
	return EndpointSeen{Status: status, Since: pl.now}
}

// latestHint returns the latest hint (by Time; on ties the later one in the
// slice) for which match holds, or nil.
func (pl *planner) latestHint(match func(Hint) bool) *Hint {
	var best *Hint
	for i := range pl.s.Hints {
		h := &pl.s.Hints[i]
		if match(*h) && (best == nil || !h.Time.Before(best.Time)) {
			best = h
		}
	}
	return best
}

// enrich adds who and when from h to a.
func enrich(a *alert.Alert, h *Hint) {
	if h == nil {
		return
	}
	a.Actor = cmp.Or(h.Actor, a.Actor)
	setDetail(a, "eventOperation", h.Operation)
	setDetail(a, "eventObject", h.Object)
	setDetail(a, "eventId", h.EventID)
	if !h.Time.IsZero() {
		setDetail(a, "eventTime", h.Time.UTC().Format(time.RFC3339))
	}
}

// setDetail sets a's detail k to v, unless v is empty.
func setDetail(a *alert.Alert, k, v string) {
	if v == "" {
		return
	}
	if a.Details == nil {
		a.Details = map[string]string{}
	}
	a.Details[k] = v
}
