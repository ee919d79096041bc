// Package plan decides, from one observed snapshot of a project, what the guard
// approves and which alerts it raises, keeps, escalates, re-notifies or
// resolves. Plan is a pure function: no network, clock, environment or logging.
// Time comes in as a parameter, the previous alert state comes in as Memory and
// the next one goes out in Result.Memory.
//
// The security core, the rules for approving a connection, is in approvals.go
// (planner.connections). Everything else is reported, never touched.
package plan

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/alert"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/atlas"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/event"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/resource"
	"github.com/atlas-akv-guard/atlas-akv-guard/handler/vault"
)

// Mode says whether the guard writes to Azure.
type Mode string

const (
	ModeEnforce Mode = "enforce" // approves the connections Atlas asked for
	// ModeObserve never approves; it reports what it would. Any mode other
	// than ModeEnforce, the empty one included, behaves as ModeObserve.
	ModeObserve Mode = "observe"
)

// Defaults used for zero durations in Policy.
const (
	DefaultKeyExpiryWarn      = 30 * 24 * time.Hour
	DefaultStuckAfter         = 30 * time.Minute
	DefaultAccessChangeSettle = 20 * time.Minute
	DefaultForeignGrace       = 10 * time.Minute
)

// Policy holds the thresholds of the plan. A zero (or negative) duration means
// its Default, except RenotifyAfter: zero never re-notifies.
type Policy struct {
	Mode Mode `json:"mode"`
	// KeyExpiryWarn: key-expires-soon once expiry - now <= KeyExpiryWarn.
	KeyExpiryWarn time.Duration `json:"keyExpiryWarn"`
	// StuckAfter: endpoint-stuck once an endpoint has waited (INITIATING,
	// PENDING_ACCEPTANCE, PENDING_RECREATION) strictly longer.
	StuckAfter time.Duration `json:"stuckAfter"`
	// RenotifyAfter: a Reminder for an open critical alert once
	// now - LastNotified >= RenotifyAfter.
	RenotifyAfter time.Duration `json:"renotifyAfter"`
	// AccessChangeSettle: how long access-changed stays open after the last
	// access hint while Atlas says valid (beyond Atlas's 15-minute check).
	AccessChangeSettle time.Duration `json:"accessChangeSettle"`
	// ForeignGrace defers foreign-connection for an unrequested Pending
	// connection while Atlas creates an endpoint it has not named the
	// connection of yet (it may be Atlas's own). It is never approved meanwhile.
	ForeignGrace time.Duration `json:"foreignGrace"`
}

// DefaultPolicy returns the default thresholds for mode, with no re-notification.
func DefaultPolicy(mode Mode) Policy { return Policy{Mode: mode}.withDefaults() }

func (p Policy) withDefaults() Policy {
	p.KeyExpiryWarn = cmp.Or(max(p.KeyExpiryWarn, 0), DefaultKeyExpiryWarn)
	p.StuckAfter = cmp.Or(max(p.StuckAfter, 0), DefaultStuckAfter)
	p.AccessChangeSettle = cmp.Or(max(p.AccessChangeSettle, 0), DefaultAccessChangeSettle)
	p.ForeignGrace = cmp.Or(max(p.ForeignGrace, 0), DefaultForeignGrace)
	p.RenotifyAfter = max(p.RenotifyAfter, 0)
	return p
}

// Source names one read of the reconcile.
type Source string

const (
	SourceEncryptionAtRest Source = "atlas:encryptionAtRest"
	SourcePrivateEndpoints Source = "atlas:privateEndpoints"
	SourceClusters         Source = "atlas:clusters"
	SourceVault            Source = "arm:vault"
	SourceConnections      Source = "arm:privateEndpointConnections"
	SourceKey              Source = "arm:key"
	SourceAlertConfigs     Source = "atlas:alertConfigs" // read at most hourly
	// SourceGraph reads the Atlas application's secrets (only with
	// GUARD_AZURE_APP_SECRET_FROM_GRAPH).
	SourceGraph Source = "graph:application"
	// SourceState is the project's own state document: its error says it did
	// not decode and was kept aside, memory restarting empty. It raises
	// state-unreadable, not guard-blind: monitoring goes on.
	SourceState Source = "state"
)

// SourceError says that a source could not be read in this reconcile.
//
// Service ("atlas", "arm", "storage", "graph") failed with root cause Cause,
// a few stable words without secrets ("cannot reach cloud.mongodb.com: DNS
// lookup failed"; no request ids, times or addresses): Plan raises ONE
// guard-blind alert per (Service, Cause) listing the reads it affects, or
// one per source when Cause is empty. Message is the raw error for the log
// and the Status page (Plan scrubs and truncates it where it uses it).
// Permission names the missing role action on a 401/403, else "".
type SourceError struct {
	Source     Source `json:"source"`
	Service    string `json:"service,omitempty"`
	Cause      string `json:"cause,omitempty"`
	Message    string `json:"message"`
	Permission string `json:"permission,omitempty"`
}

// Hint is what an event said: it enriches alerts (who, when) and opens the
// event-only access-changed alert; it never causes an approval. Object is
// what the event names: the connection name (or a resource ID ending in
// /privateEndpointConnections/{name}) or the key name.
type Hint struct {
	Kind      event.Kind `json:"kind"`
	Actor     string     `json:"actor,omitempty"`
	Object    string     `json:"object,omitempty"`
	Operation string     `json:"operation,omitempty"`
	EventID   string     `json:"eventId,omitempty"`
	Time      time.Time  `json:"time,omitzero"`
}

// Snapshot is everything one reconcile observed for one project.
//
// A nil pointer or nil slice means "not read" (unknown); a source read
// with no items is a non-nil empty slice. An entry in Errors for a source
// makes it unreadable even if data is present.
type Snapshot struct {
	ProjectID string               `json:"projectId"`
	Config    *atlas.AzureKeyVault `json:"config,omitempty"`
	// Vault is the vault the ARM reads were made on. ARM data is trusted
	// only when it equals the vault Config names; otherwise nothing is approved.
	Vault       resource.ID             `json:"vault"`
	Endpoints   []atlas.PrivateEndpoint `json:"endpoints"`
	Clusters    []atlas.Cluster         `json:"clusters"`
	VaultState  *vault.Vault            `json:"vaultState,omitempty"` // Found is false on a 404
	Connections []vault.Connection      `json:"connections"`          // those listed on Vault
	Key         *vault.Key              `json:"key,omitempty"`        // the version Config.KeyIdentifier pins
	// AppSecret is when the secret of Config's clientID expires; nil when unknown.
	AppSecret *AppSecret    `json:"appSecret,omitempty"`
	Errors    []SourceError `json:"errors,omitempty"`
	Hints     []Hint        `json:"hints,omitempty"`
	// OtherRequests: connection name → the other guarded project on this
	// vault that asked for it. Such a Pending connection is not foreign here
	// and only that project approves it. Names compare exactly.
	OtherRequests map[string]string   `json:"otherRequests,omitempty"`
	AlertConfigs  []atlas.AlertConfig `json:"alertConfigs,omitempty"` // read at most hourly
}

// EndpointSeen is the status an Atlas endpoint had and since when the guard has
// seen it in that status.
type EndpointSeen struct {
	Status string    `json:"status"`
	Since  time.Time `json:"since"`
}

// Memory is the state Plan carries from one reconcile to the next. The zero
// value (nil maps) is a valid empty memory.
type Memory struct {
	Open      map[string]alert.Alert  `json:"open"`      // open alerts by fingerprint
	Endpoints map[string]EndpointSeen `json:"endpoints"` // by Atlas endpoint id
	// Unrequested: since when each Pending connection no Atlas endpoint
	// asked for has been seen, by connection name.
	Unrequested map[string]time.Time `json:"unrequested,omitempty"`
}

// Approval is one connection to approve on Vault, with the description to write.
type Approval struct {
	Vault       resource.ID `json:"vault"`
	Connection  string      `json:"connection"`
	EndpointID  string      `json:"endpointId"`
	Region      string      `json:"region,omitempty"`
	Description string      `json:"description"`
}

// Verdicts of a Decision: of connection rows (one per connection on the
// vault), then of endpoint rows (an Atlas endpoint with no connection of its
// name on the vault).
const (
	VerdictApprove               = "approve"
	VerdictWouldApprove          = "would-approve"
	VerdictHeld                  = "held"
	VerdictVaultUnreadable       = "vault-unreadable"
	VerdictAlreadyApproved       = "already-approved"
	VerdictNotPending            = "not-pending"
	VerdictForeign               = "foreign"
	VerdictOtherProject          = "other-project"
	VerdictEndpointNotRequesting = "endpoint-not-requesting"
	VerdictEndpointsUnreadable   = "endpoints-unreadable"

	VerdictAwaitingConnection    = "awaiting-connection"
	VerdictConnectionMissing     = "connection-missing"
	VerdictNoConnection          = "no-connection"
	VerdictConnectionsUnreadable = "connections-unreadable"
	VerdictConfigUnreadable      = "config-unreadable"
)

// Decision explains what the plan decided for one vault connection or one
// Atlas endpoint, and why.
type Decision struct {
	Connection string `json:"connection,omitempty"`
	EndpointID string `json:"endpointId,omitempty"`
	Verdict    string `json:"verdict"`
	Reason     string `json:"reason"`
}

// Result is the outcome of Plan. Approvals are sorted by connection name,
// Notices by fingerprint then action, Decisions by connection then endpoint
// (connection rows first).
type Result struct {
	Approvals []Approval     `json:"approvals"`
	Notices   []alert.Notice `json:"notices"`
	Memory    Memory         `json:"memory"`
	Decisions []Decision     `json:"decisions"`
}

// Plan decides approvals and alert notices for one project from snapshot s, the
// previous memory prev, policy p and the time now. It never modifies prev.
// Alerts that depend on a source that is unreadable in s are carried forward
// unchanged: neither raised nor resolved.
func Plan(s Snapshot, prev Memory, p Policy, now time.Time) Result {
	pl := newPlanner(s, prev, p.withDefaults(), now.Round(0))
	for _, rule := range []func(){pl.guardBlind, pl.stateAlert, pl.configAlerts, pl.vaultAlerts, pl.keyAlerts, pl.clusterAlerts,
		pl.endpointAlerts, pl.connections, pl.connectionChanged, pl.accessChanged, pl.coverageAlerts, pl.purgeAlerts,
		pl.appSecretAlerts, pl.atlasAlertsOff} {
		rule()
	}
	res := Result{Approvals: pl.approvals, Decisions: pl.decisions, Memory: pl.memory()}
	res.Memory.Open, res.Notices = pl.settle()

	slices.SortFunc(res.Approvals, func(a, b Approval) int { return strings.Compare(a.Connection, b.Connection) })
	slices.SortFunc(res.Notices, func(a, b alert.Notice) int {
		return cmp.Or(strings.Compare(a.Alert.Fingerprint, b.Alert.Fingerprint), strings.Compare(string(a.Action), string(b.Action)))
	})
	slices.SortStableFunc(res.Decisions, func(a, b Decision) int {
		if (a.Connection == "") != (b.Connection == "") {
			return strings.Compare(b.Connection, a.Connection) // connection rows first
		}
		return cmp.Or(strings.Compare(a.Connection, b.Connection), strings.Compare(a.EndpointID, b.EndpointID))
	})
	return res
}
