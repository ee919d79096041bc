package status

import (
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/plan"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/reconcile"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// State is the health of one project as the Status page shows it.
type State string

const (
	Healthy  State = "healthy"  // reconciled; no open warning or critical alert (info doesn't count)
	Warning  State = "warning"  // an open warning alert, no critical one
	Critical State = "critical" // an open critical alert (guard-blind included)
	Unknown  State = "unknown"  // never reconciled, or its stored state can't be read
)

// DefaultStaleAfter is how old a project's last reconcile may be before the
// page flags it as stale: long enough for a late timer, shorter than the
// time Atlas needs to pause clusters after a key problem.
const DefaultStaleAfter = 15 * time.Minute

// Page is the Status document.
type Page struct {
	GeneratedAt time.Time `json:"generatedAt"`
	Projects    []Project `json:"projects"`
	Quarantined int       `json:"quarantined,omitempty"` // bad invocations kept aside (server.QuarantinePrefix)
}

// Project is what the guard knows of one project, from its stored document
// (the last reconcile and the open alerts); no field holds a secret.
//
// It never states a value that was not read: a value whose source the last
// reconcile could not read is nil (null in JSON), and Unread says why. Fields
// that come from the last reconcile are zero when State is Unknown.
type Project struct {
	ProjectID                string                 `json:"projectId"`
	State                    State                  `json:"state"`
	Note                     string                 `json:"note,omitempty"`          // explains Unknown or Stale, for people
	LastReconcile            *time.Time             `json:"lastReconcile,omitempty"` // nil when never
	Stale                    bool                   `json:"stale,omitempty"`         // the last reconcile is older than DefaultStaleAfter
	Mode                     plan.Mode              `json:"mode,omitempty"`
	Vault                    string                 `json:"vault,omitempty"`      // the vault Atlas's EAR config names
	VaultFound               *bool                  `json:"vaultFound,omitempty"` // false when ARM answered 404
	KeyIdentifier            string                 `json:"keyIdentifier,omitempty"`
	Key                      *vault.Key             `json:"key,omitempty"`
	KeyExpiresInDays         *int                   `json:"keyExpiresInDays,omitempty"` // whole days from GeneratedAt to Key.Expires, < 0 once expired
	Valid                    *bool                  `json:"valid,omitempty"`
	RequirePrivateNetworking *bool                  `json:"requirePrivateNetworking,omitempty"`
	Hold                     *bool                  `json:"hold,omitempty"`
	Endpoints                []Endpoint             `json:"endpoints"`
	ForeignConnections       []Connection           `json:"foreignConnections"`
	Clusters                 *Clusters              `json:"clusters,omitempty"`
	Unread                   map[plan.Source]string `json:"unread,omitempty"` // why, per source not read
	OpenAlerts               []alert.Alert          `json:"openAlerts"`
	PendingDeliveries        int                    `json:"pendingDeliveries"`
	APICalls                 APICalls               `json:"apiCalls"`
	Errors                   []plan.SourceError     `json:"errors"`             // the failed reads, scrubbed
	Approved                 []string               `json:"approved,omitempty"` // by the last reconcile
}

// Endpoint is one Atlas EAR private endpoint beside the vault connection of
// its name and what the guard decided about them. ConnectionStatus is ""
// when the vault has no connection of that name or they were not read.
type Endpoint struct {
	ID                string     `json:"id"`
	Region            string     `json:"region,omitempty"`
	AtlasStatus       string     `json:"atlasStatus"`
	ErrorMessage      string     `json:"errorMessage,omitempty"`
	AtlasStatusSince  *time.Time `json:"atlasStatusSince,omitempty"`
	ConnectionName    string     `json:"connectionName,omitempty"`
	ConnectionStatus  string     `json:"connectionStatus,omitempty"`
	ProvisioningState string     `json:"provisioningState,omitempty"`
	Verdict           string     `json:"verdict,omitempty"`
	Reason            string     `json:"reason,omitempty"`
}

// Connection is a connection on the vault that no Atlas endpoint of the
// project names, with the guard's decision about it.
type Connection struct {
	Name              string `json:"name"`
	Status            string `json:"status"`
	PrivateEndpointID string `json:"privateEndpointId,omitempty"`
	Verdict           string `json:"verdict,omitempty"`
	Reason            string `json:"reason,omitempty"`
}

// Clusters summarises the project's clusters: EAR counts those encrypted
// with the Azure key.
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

// sourceOrder is the order errors are shown in (unknown sources last).
var sourceOrder = []plan.Source{plan.SourceEncryptionAtRest, plan.SourcePrivateEndpoints, plan.SourceClusters,
	plan.SourceVault, plan.SourceConnections, plan.SourceKey}

// FromDoc builds the view of projectID from its stored document; doc nil
// means none is stored (never reconciled). now dates the key's expiry and
// the staleness check (DefaultStaleAfter).
func FromDoc(projectID string, doc *reconcile.Doc, now time.Time) Project {
	p := Project{ProjectID: projectID, State: Unknown, Endpoints: []Endpoint{}, ForeignConnections: []Connection{},
		OpenAlerts: []alert.Alert{}, Errors: []plan.SourceError{}}
	if doc == nil {
		p.Note = "not reconciled yet: the guard has no record of this project (wait for the Reconcile timer, or check its logs)"
		return p
	}
	p.OpenAlerts, p.PendingDeliveries, p.Vault = doc.OpenAlerts(), len(doc.Pending), doc.Vault
	s := doc.Summary
	if s == nil {
		p.Note = "not reconciled yet: the stored state holds no reconcile summary"
		return p
	}
	// The open alerts come most severe first: the first one says the state.
	p.State, p.LastReconcile = Healthy, &s.At
	if len(p.OpenAlerts) > 0 {
		p.State = cmp.Or(map[alert.Severity]State{alert.Critical: Critical, alert.Warning: Warning}[p.OpenAlerts[0].Severity], Healthy)
	}
	if d := now.Sub(s.At); d > DefaultStaleAfter {
		p.Stale, p.Note = true, "the last reconcile is "+age(d)+" old: is the Reconcile timer running?"
	}
	p.Mode, p.Vault, p.APICalls, p.Approved = s.Mode, cmp.Or(s.Vault, p.Vault), APICalls{s.AtlasCalls, s.ARMCalls}, s.Approved
	for _, e := range s.Errors {
		e.Cause, e.Message = alert.Scrub(e.Cause), alert.Scrub(e.Message)
		p.Errors = append(p.Errors, e)
	}
	order := func(e plan.SourceError) uint { return uint(slices.Index(sourceOrder, e.Source)) } // -1 (unknown) is the largest
	slices.SortStableFunc(p.Errors, func(a, b plan.SourceError) int { return cmp.Compare(order(a), order(b)) })
	p.Unread = unread(s, p.Errors)
	read := func(src plan.Source) bool { return p.Unread[src] == "" }
	if read(plan.SourceEncryptionAtRest) {
		p.KeyIdentifier, p.Valid, p.RequirePrivateNetworking = s.KeyIdentifier, s.Valid, &s.RequirePrivateNetworking
	}
	if read(plan.SourceVault) {
		p.VaultFound, p.Hold = s.VaultFound, &s.Hold
	}
	if read(plan.SourceKey) {
		p.Key = s.Key
		if s.Key.Expires != nil {
			d := int(math.Floor(s.Key.Expires.Sub(now).Hours() / 24))
			p.KeyExpiresInDays = &d
		}
	}
	p.Endpoints, p.ForeignConnections = pair(s, doc.Memory.Endpoints, read(plan.SourcePrivateEndpoints), read(plan.SourceConnections))
	if read(plan.SourceClusters) {
		p.Clusters = &Clusters{Total: len(s.Clusters), Paused: []string{}, Items: make([]Cluster, 0, len(s.Clusters))}
		for _, c := range s.Clusters {
			if c.UsesAzureKeys() {
				p.Clusters.EAR++
			}
			if c.Paused {
				p.Clusters.Paused = append(p.Clusters.Paused, c.Name)
			}
			p.Clusters.Items = append(p.Clusters.Items, Cluster{Name: c.Name, EAR: c.UsesAzureKeys(), Paused: c.Paused, StateName: c.StateName})
		}
		slices.Sort(p.Clusters.Paused)
	}
	return p
}

// unread says, per source the summary holds no value from, why: the cause
// (or message) of its failed read, or why it was not attempted.
func unread(s *reconcile.Summary, errs []plan.SourceError) map[plan.Source]string {
	out := map[plan.Source]string{}
	for _, e := range errs {
		if out[e.Source] == "" {
			out[e.Source] = cmp.Or(e.Cause, e.Message, "the read failed")
		}
	}
	armWhy := "not read in the last reconcile" // why a read on the vault has no value
	switch {
	case out[plan.SourceEncryptionAtRest] != "":
		armWhy = "Atlas's EAR config was not read, so the vault is unknown"
	case s.Vault == "":
		armWhy = "Atlas's EAR config names no Azure Key Vault"
	case s.VaultFound != nil && !*s.VaultFound:
		armWhy = "the vault was not found"
	}
	for src, absent := range map[plan.Source]bool{
		plan.SourcePrivateEndpoints: s.Endpoints == nil, plan.SourceClusters: s.Clusters == nil,
		plan.SourceVault: s.VaultFound == nil, plan.SourceConnections: s.Connections == nil, plan.SourceKey: s.Key == nil,
	} {
		if absent && out[src] == "" {
			out[src] = "not read in the last reconcile"
			if strings.HasPrefix(string(src), "arm:") {
				out[src] = armWhy
			}
		}
	}
	return out
}

// NotRead says why the last reconcile has no value from src; "" when it has.
func (p Project) NotRead(src plan.Source) string { return p.Unread[src] }

// pair puts each Atlas endpoint beside the vault connection of its name and
// the plan's decision (plan.Result lists connection rows first, so an
// endpoint's connection row wins over its endpoint row); connections no
// endpoint names are returned apart. A list whose source was not read is nil.
func pair(s *reconcile.Summary, seen map[string]plan.EndpointSeen, epsRead, connsRead bool) (eps []Endpoint, foreign []Connection) {
	decision := func(match func(plan.Decision) bool) (verdict, reason string) {
		if i := slices.IndexFunc(s.Decisions, match); i >= 0 {
			return s.Decisions[i].Verdict, s.Decisions[i].Reason
		}
		return "", ""
	}
	shown := map[string]bool{}
	if epsRead {
		eps = make([]Endpoint, 0, len(s.Endpoints))
	}
	for _, e := range s.Endpoints {
		if !epsRead {
			break
		}
		name := e.PrivateEndpointConnectionName
		row := Endpoint{ID: e.ID, Region: e.RegionName, AtlasStatus: e.Status, ErrorMessage: alert.Scrub(e.ErrorMessage), ConnectionName: name}
		if sn, ok := seen[e.ID]; ok && sn.Status == e.Status && !sn.Since.IsZero() {
			row.AtlasStatusSince = &sn.Since
		}
		if j := slices.IndexFunc(s.Connections, func(c vault.Connection) bool { return c.Name == name }); j >= 0 && name != "" {
			row.ConnectionStatus, row.ProvisioningState, shown[name] = s.Connections[j].Status, s.Connections[j].ProvisioningState, true
		}
		row.Verdict, row.Reason = decision(func(d plan.Decision) bool { return d.EndpointID == e.ID })
		eps = append(eps, row)
	}
	if !connsRead {
		return eps, nil
	}
	foreign = []Connection{}
	for _, c := range s.Connections {
		if !shown[c.Name] {
			shown[c.Name] = true
			row := Connection{Name: c.Name, Status: c.Status, PrivateEndpointID: c.PrivateEndpointID}
			row.Verdict, row.Reason = decision(func(d plan.Decision) bool { return d.Connection == c.Name })
			foreign = append(foreign, row)
		}
	}
	return eps, foreign
}

// age says d coarsely: "5 minutes", "3 hours", "2 days".
func age(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return strconv.Itoa(int(d/(24*time.Hour))) + " days"
	case d >= 2*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + " hours"
	}
	return strconv.Itoa(int(d/time.Minute)) + " minutes"
}
