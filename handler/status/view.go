package status

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/reconcile"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// State is the health of one project as the Status page shows it.
type State string

const (
	// Healthy: the project was reconciled and has no open warning or
	// critical alert (info alerts, such as would-approve, don't degrade it).
	Healthy State = "healthy"
	// Warning: at least one open warning alert and no critical one.
	Warning State = "warning"
	// Critical: at least one open critical alert (guard-blind included).
	Critical State = "critical"
	// Unknown: the project was never reconciled, or its stored state can't
	// be read.
	Unknown State = "unknown"
)

// DefaultStaleAfter is how old a project's last reconcile may be before the
// page flags it as stale: long enough for a late timer, shorter than the
// time Atlas needs to pause clusters after a key problem.
const DefaultStaleAfter = 15 * time.Minute

// Page is the Status document.
type Page struct {
	GeneratedAt time.Time `json:"generatedAt"`
	Projects    []Project `json:"projects"`
	// Quarantined counts the bad invocations the server kept aside (under
	// server.QuarantinePrefix in the state store).
	Quarantined int `json:"quarantined,omitempty"`
}

// Project is what the guard knows of one project, from its stored document
// (the last reconcile and the open alerts); no field holds a secret.
//
// Fields that come from the last reconcile are zero when State is Unknown.
// Pointers are nil when the value was not read (Valid: Atlas didn't say or
// its config was unreadable; Key: the key version was not read).
type Project struct {
	ProjectID string `json:"projectId"`
	State     State  `json:"state"`
	// Note explains an Unknown state or a stale reconcile, for people.
	Note string `json:"note,omitempty"`
	// LastReconcile is when the last reconcile finished; nil when never.
	LastReconcile *time.Time `json:"lastReconcile,omitempty"`
	// Stale says the last reconcile is older than the page's StaleAfter:
	// is the Reconcile timer running?
	Stale bool      `json:"stale,omitempty"`
	Mode  plan.Mode `json:"mode,omitempty"`
	// Vault is the resource ID of the vault Atlas's EAR config names.
	Vault string `json:"vault,omitempty"`
	// VaultFound is false when ARM answered 404 for the vault, nil when not read.
	VaultFound               *bool              `json:"vaultFound,omitempty"`
	KeyIdentifier            string             `json:"keyIdentifier,omitempty"`
	Key                      *Key               `json:"key,omitempty"`
	Valid                    *bool              `json:"valid,omitempty"`
	RequirePrivateNetworking bool               `json:"requirePrivateNetworking"`
	Hold                     bool               `json:"hold"`
	Endpoints                []Endpoint         `json:"endpoints"`
	ForeignConnections       []Connection       `json:"foreignConnections"`
	Clusters                 Clusters           `json:"clusters"`
	OpenAlerts               []alert.Alert      `json:"openAlerts"`
	PendingDeliveries        int                `json:"pendingDeliveries"`
	APICalls                 APICalls           `json:"apiCalls"`
	Errors                   []plan.SourceError `json:"errors"`
	// Approved names the connections the last reconcile approved.
	Approved []string `json:"approved,omitempty"`
}

// Key is the state of the key version Atlas's keyIdentifier pins.
type Key struct {
	Name      string     `json:"name"`
	Version   string     `json:"version"`
	Found     bool       `json:"found"`
	Enabled   bool       `json:"enabled"`
	Expires   *time.Time `json:"expires,omitempty"`
	NotBefore *time.Time `json:"notBefore,omitempty"`
	// ExpiresInDays is the number of whole days until Expires (negative once
	// expired), counted from the page's generation time; nil without expiry.
	ExpiresInDays *int `json:"expiresInDays,omitempty"`
	// Latest is the key's current version, LatestEnabled whether it is
	// enabled; RotationPending says Latest differs from the pinned Version
	// (rotate keyIdentifier in Atlas).
	Latest          string `json:"latest,omitempty"`
	LatestEnabled   bool   `json:"latestEnabled,omitempty"`
	RotationPending bool   `json:"rotationPending,omitempty"`
}

// Endpoint is one Atlas EAR private endpoint beside the vault connection of
// its name and what the guard decided about them.
type Endpoint struct {
	ID           string `json:"id"`
	Region       string `json:"region,omitempty"`
	AtlasStatus  string `json:"atlasStatus"`
	ErrorMessage string `json:"errorMessage,omitempty"`
	// AtlasStatusSince is since when the guard has seen AtlasStatus.
	AtlasStatusSince *time.Time `json:"atlasStatusSince,omitempty"`
	ConnectionName   string     `json:"connectionName,omitempty"`
	// ConnectionStatus is the vault connection's status (Pending, Approved,
	// Rejected, Disconnected), "" when the vault has no connection of that
	// name or the connections were not read.
	ConnectionStatus  string `json:"connectionStatus,omitempty"`
	ProvisioningState string `json:"provisioningState,omitempty"`
	Verdict           string `json:"verdict,omitempty"`
	Reason            string `json:"reason,omitempty"`
}

// Connection is a connection on the vault that no Atlas endpoint of the
// project names (someone else's, approved or pending), with the guard's
// decision about it.
type Connection struct {
	Name              string `json:"name"`
	Status            string `json:"status"`
	PrivateEndpointID string `json:"privateEndpointId,omitempty"`
	Verdict           string `json:"verdict,omitempty"`
	Reason            string `json:"reason,omitempty"`
}

// Clusters summarises the project's clusters. Paused names every paused
// cluster; EAR counts those encrypted with the Azure key.
type Clusters struct {
	Total  int       `json:"total"`
	EAR    int       `json:"ear"`
	Paused []string  `json:"paused"`
	Items  []Cluster `json:"items"`
}

// Cluster is one cluster of the project.
type Cluster struct {
	Name      string `json:"name"`
	EAR       bool   `json:"ear"`
	Paused    bool   `json:"paused"`
	StateName string `json:"stateName,omitempty"`
}

// APICalls counts the calls the last reconcile made.
type APICalls struct {
	Atlas int64 `json:"atlas"`
	ARM   int64 `json:"arm"`
}

// FromDoc builds the view of projectID from its stored document; doc nil
// means none is stored (the project was never reconciled). now dates the
// key's expiry and the staleness check; staleAfter <= 0 means
// DefaultStaleAfter.
func FromDoc(projectID string, doc *reconcile.Doc, now time.Time, staleAfter time.Duration) Project {
	if staleAfter <= 0 {
		staleAfter = DefaultStaleAfter
	}
	p := Project{
		ProjectID: projectID, State: Unknown,
		Endpoints: []Endpoint{}, ForeignConnections: []Connection{}, OpenAlerts: []alert.Alert{},
		Errors: []plan.SourceError{}, Clusters: Clusters{Paused: []string{}, Items: []Cluster{}},
	}
	if doc == nil {
		p.Note = "not reconciled yet: the guard has no record of this project (wait for the Reconcile timer, or check its logs)"
		return p
	}
	p.OpenAlerts = doc.OpenAlerts()
	p.PendingDeliveries = len(doc.Pending)
	p.Vault = doc.Vault
	s := doc.Summary
	if s == nil {
		p.Note = "not reconciled yet: the stored state holds no reconcile summary"
		return p
	}
	p.State = StateOf(p.OpenAlerts)
	at := s.At
	p.LastReconcile = &at
	if age := now.Sub(s.At); age > staleAfter {
		p.Stale = true
		p.Note = "the last reconcile is " + roundAge(age) + " old: is the Reconcile timer running?"
	}
	p.Mode = s.Mode
	if s.Vault != "" {
		p.Vault = s.Vault
	}
	p.VaultFound = s.VaultFound
	p.KeyIdentifier = s.KeyIdentifier
	p.Valid = s.Valid
	p.RequirePrivateNetworking = s.RequirePrivateNetworking
	p.Hold = s.Hold
	p.APICalls = APICalls{Atlas: s.AtlasCalls, ARM: s.ARMCalls}
	p.Approved = s.Approved
	if s.Key != nil {
		p.Key = keyView(*s.Key, now)
	}
	for _, e := range s.Errors {
		p.Errors = append(p.Errors, plan.SourceError{Source: e.Source, Message: alert.Scrub(e.Message), Permission: e.Permission})
	}
	order := []plan.Source{plan.SourceEncryptionAtRest, plan.SourcePrivateEndpoints, plan.SourceClusters,
		plan.SourceVault, plan.SourceConnections, plan.SourceKey}
	rank := func(s plan.Source) int {
		if i := slices.Index(order, s); i >= 0 {
			return i
		}
		return len(order)
	}
	slices.SortStableFunc(p.Errors, func(a, b plan.SourceError) int { return rank(a.Source) - rank(b.Source) })
	p.Endpoints, p.ForeignConnections = pair(s.Endpoints, s.Connections, s.Decisions, doc.Memory.Endpoints)
	p.Clusters = clusters(s.Clusters)
	return p
}

// StateOf is the state a set of open alerts gives a reconciled project:
// Critical if any is critical, Warning if any is a warning, else Healthy.
func StateOf(open []alert.Alert) State {
	st := Healthy
	for _, a := range open {
		switch a.Severity {
		case alert.Critical:
			return Critical
		case alert.Warning:
			st = Warning
		}
	}
	return st
}

func keyView(k vault.Key, now time.Time) *Key {
	v := &Key{
		Name: k.Name, Version: k.Version, Found: k.Found, Enabled: k.Enabled,
		Expires: k.Expires, NotBefore: k.NotBefore, Latest: k.Latest, LatestEnabled: k.LatestEnabled,
		RotationPending: k.Latest != "" && k.Version != "" && !strings.EqualFold(k.Latest, k.Version),
	}
	if k.Expires != nil {
		d := int(math.Floor(k.Expires.Sub(now).Hours() / 24))
		v.ExpiresInDays = &d
	}
	return v
}

// pair puts each Atlas endpoint beside the vault connection of its name and
// the plan's decision; connections no endpoint names are returned apart.
func pair(eps []atlas.PrivateEndpoint, conns []vault.Connection, decisions []plan.Decision, seen map[string]plan.EndpointSeen) ([]Endpoint, []Connection) {
	byName := make(map[string]vault.Connection, len(conns))
	for _, c := range conns {
		if _, dup := byName[c.Name]; !dup {
			byName[c.Name] = c
		}
	}
	shown := map[string]bool{}
	out := make([]Endpoint, 0, len(eps))
	for _, e := range eps {
		row := Endpoint{
			ID: e.ID, Region: e.RegionName, AtlasStatus: e.Status, ErrorMessage: alert.Scrub(e.ErrorMessage),
			ConnectionName: e.PrivateEndpointConnectionName,
		}
		if s, ok := seen[e.ID]; ok && s.Status == e.Status && !s.Since.IsZero() {
			since := s.Since
			row.AtlasStatusSince = &since
		}
		if c, ok := byName[e.PrivateEndpointConnectionName]; ok && e.PrivateEndpointConnectionName != "" {
			row.ConnectionStatus, row.ProvisioningState = c.Status, c.ProvisioningState
			shown[c.Name] = true
		}
		if d, ok := decisionFor(decisions, e); ok {
			row.Verdict, row.Reason = d.Verdict, d.Reason
		}
		out = append(out, row)
	}
	foreign := []Connection{}
	for _, c := range conns {
		if shown[c.Name] {
			continue
		}
		shown[c.Name] = true
		row := Connection{Name: c.Name, Status: c.Status, PrivateEndpointID: c.PrivateEndpointID}
		for _, d := range decisions {
			if d.Connection == c.Name {
				row.Verdict, row.Reason = d.Verdict, d.Reason
				break
			}
		}
		foreign = append(foreign, row)
	}
	return out, foreign
}

// decisionFor finds the decision about endpoint e: the connection row that
// names it, else its endpoint row.
func decisionFor(decisions []plan.Decision, e atlas.PrivateEndpoint) (plan.Decision, bool) {
	var fallback *plan.Decision
	for i, d := range decisions {
		if d.EndpointID != e.ID {
			continue
		}
		if d.Connection != "" {
			return d, true
		}
		if fallback == nil {
			fallback = &decisions[i]
		}
	}
	if fallback != nil {
		return *fallback, true
	}
	return plan.Decision{}, false
}

func clusters(cs []atlas.Cluster) Clusters {
	out := Clusters{Total: len(cs), Paused: []string{}, Items: make([]Cluster, 0, len(cs))}
	for _, c := range cs {
		if c.UsesAzureKeys() {
			out.EAR++
		}
		if c.Paused {
			out.Paused = append(out.Paused, c.Name)
		}
		out.Items = append(out.Items, Cluster{Name: c.Name, EAR: c.UsesAzureKeys(), Paused: c.Paused, StateName: c.StateName})
	}
	slices.Sort(out.Paused)
	return out
}

func itoa(n int) string { return strconv.Itoa(n) }

func roundAge(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return strconv.Itoa(int(d/(24*time.Hour))) + " days"
	case d >= 2*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + " hours"
	default:
		return strconv.Itoa(int(d/time.Minute)) + " minutes"
	}
}

// Unread reports whether the last reconcile could not read src; then the
// fields that come from src are empty because they are unknown, not because
// there is nothing.
func (p Project) Unread(src plan.Source) bool {
	for _, e := range p.Errors {
		if e.Source == src {
			return true
		}
	}
	return false
}
