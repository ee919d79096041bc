// Package plan decides, from one observed snapshot of a project, what the guard
// approves and which alerts it raises, keeps, escalates, re-notifies or
// resolves. Plan is a pure function: no network, clock, environment or logging.
// Time comes in as a parameter, the previous alert state comes in as Memory and
// the next one goes out in Result.Memory.
//
// The security core lives in approvals.go: a vault connection is approved only
// when it is Pending on the vault the project's Atlas EAR config names, its name
// equals exactly the connection name of an Atlas endpoint of the project that is
// INITIATING or PENDING_ACCEPTANCE, the mode is enforce and the vault carries no
// hold tag. Everything else is reported, never touched.
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
	// ModeEnforce approves the connections Atlas asked for.
	ModeEnforce Mode = "enforce"
	// ModeObserve never approves; it reports what it would approve. Any mode
	// other than ModeEnforce, the empty one included, behaves as ModeObserve.
	ModeObserve Mode = "observe"
)

// Defaults used for zero durations in Policy.
const (
	DefaultKeyExpiryWarn      = 30 * 24 * time.Hour
	DefaultStuckAfter         = 30 * time.Minute
	DefaultAccessChangeSettle = 20 * time.Minute
	DefaultForeignGrace       = 10 * time.Minute
)

// Policy holds the thresholds of the plan. A zero (or negative) KeyExpiryWarn,
// StuckAfter or AccessChangeSettle means its Default; a zero RenotifyAfter means
// open critical alerts are never re-notified.
type Policy struct {
	Mode Mode `json:"mode"`
	// KeyExpiryWarn raises key-expires-soon when the pinned key version expires
	// within this duration (expiry - now <= KeyExpiryWarn).
	KeyExpiryWarn time.Duration `json:"keyExpiryWarn"`
	// StuckAfter raises endpoint-stuck when an endpoint has stayed in
	// INITIATING, PENDING_ACCEPTANCE or PENDING_RECREATION for strictly longer.
	StuckAfter time.Duration `json:"stuckAfter"`
	// RenotifyAfter sends a Reminder for an open critical alert once this much
	// time has passed since it was last notified (now - LastNotified >= RenotifyAfter).
	RenotifyAfter time.Duration `json:"renotifyAfter"`
	// AccessChangeSettle is how long an access-changed alert stays open after
	// the last access hint while Atlas still says the config is valid. It
	// should exceed Atlas's 15-minute validity check.
	AccessChangeSettle time.Duration `json:"accessChangeSettle"`
	// ForeignGrace defers the foreign-connection alert for an unrequested
	// Pending connection while Atlas is creating an endpoint whose connection
	// it has not named yet (the new connection may be Atlas's own and show up
	// on the vault before Atlas's API names it). Such a connection is never
	// approved meanwhile; after ForeignGrace it is reported anyway.
	ForeignGrace time.Duration `json:"foreignGrace"`
}

// DefaultPolicy returns the default thresholds for mode, with no re-notification.
func DefaultPolicy(mode Mode) Policy { return Policy{Mode: mode}.withDefaults() }

func (p Policy) withDefaults() Policy {
	orDefault := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	orDefault(&p.KeyExpiryWarn, DefaultKeyExpiryWarn)
	orDefault(&p.StuckAfter, DefaultStuckAfter)
	orDefault(&p.AccessChangeSettle, DefaultAccessChangeSettle)
	orDefault(&p.ForeignGrace, DefaultForeignGrace)
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
	// SourceGraph is the Microsoft Graph read of the Atlas application's
	// secrets (only with GUARD_AZURE_APP_SECRET_FROM_GRAPH).
	SourceGraph Source = "graph:application"
	// SourceState is the project's own state document: an error of it says
	// the document did not decode and was kept aside, memory restarting
	// empty. It raises state-unreadable (a warning), not guard-blind:
	// monitoring goes on.
	SourceState Source = "state"
)

// SourceError says that a source could not be read in this reconcile.
//
// Service is the service that failed ("atlas", "arm", "storage" or "graph")
// and Cause its root cause in a few words without secrets (for example
// "cannot reach cloud.mongodb.com: DNS lookup failed"). Plan raises ONE
// guard-blind alert per (Service, Cause), listing the reads it affects, and
// its fingerprint derives from them: Cause must stay the same while the root
// cause does (no request ids, times or changing addresses). With an empty
// Cause Plan raises one alert per source instead. Message is the raw
// error, for the log and the Status page only: it may be long and must not
// contain secrets (Plan still scrubs obvious tokens and truncates it where it
// uses it). Permission names the missing role action on a 401/403, else "".
type SourceError struct {
	Source     Source `json:"source"`
	Service    string `json:"service,omitempty"`
	Cause      string `json:"cause,omitempty"`
	Message    string `json:"message"`
	Permission string `json:"permission,omitempty"`
}

// Hint is what an event said, for enrichment only: hints enrich alerts (who,
// when) and open the event-only access-changed alert; they never cause an
// approval. Kind is the event's kind as package event classifies it (event is
// the lower package: plan reads its enum, event knows nothing of plan). Object
// is the object the event names: the connection name for connection-changed
// (a full resource ID ending in /privateEndpointConnections/{name} also
// matches), the key name for key hints.
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
// successfully with no items must be a non-nil empty slice. An entry in Errors
// for a source makes that source unreadable even if data is present.
type Snapshot struct {
	ProjectID string `json:"projectId"`
	// Config is nil when unreadable (then Errors has atlas:encryptionAtRest).
	Config *atlas.AzureKeyVault `json:"config,omitempty"`
	// Vault is the vault the ARM reads below were made on. Plan trusts ARM
	// data only when it equals the vault Config names: a zero Vault (or
	// another vault) means no ARM data is trusted and nothing is approved.
	Vault resource.ID `json:"vault"`
	// Endpoints is nil when unreadable.
	Endpoints []atlas.PrivateEndpoint `json:"endpoints"`
	// Clusters is nil when unreadable.
	Clusters []atlas.Cluster `json:"clusters"`
	// VaultState is nil when unreadable; Found is false on a 404.
	VaultState *vault.Vault `json:"vaultState,omitempty"`
	// Connections are those listed on Vault; nil when unreadable.
	Connections []vault.Connection `json:"connections"`
	// Key is the version pinned in Config.KeyIdentifier; nil when unreadable.
	Key *vault.Key `json:"key,omitempty"`
	// AppSecret is when the secret of the application Atlas uses (Config's
	// clientID) expires; nil when unknown or not configured.
	AppSecret *AppSecret    `json:"appSecret,omitempty"`
	Errors    []SourceError `json:"errors,omitempty"`
	Hints     []Hint        `json:"hints,omitempty"`
	// OtherRequests names the connections that another guarded project on
	// the same vault asked for (connection name → that project's id). Such a
	// Pending connection is not foreign here, and this project never approves
	// it: only the project that asked for it does. Names compare exactly.
	OtherRequests map[string]string `json:"otherRequests,omitempty"`
	// AlertConfigs are the project's Atlas alert configurations; nil when
	// not read (they are read at most hourly, while EAR is enabled).
	AlertConfigs []atlas.AlertConfig `json:"alertConfigs,omitempty"`
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
	// Open holds the open alerts by fingerprint.
	Open map[string]alert.Alert `json:"open"`
	// Endpoints holds the last seen status of each Atlas endpoint, by id.
	Endpoints map[string]EndpointSeen `json:"endpoints"`
	// Unrequested holds since when each Pending connection that no Atlas
	// endpoint asked for has been seen, by connection name.
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

// Verdicts of connection rows (one per connection on the vault).
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
)

// Verdicts of endpoint rows (an Atlas endpoint with no connection of its
// name on the vault).
const (
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
	pl.guardBlind()
	pl.stateAlert()
	pl.configAlerts()
	pl.vaultAlerts()
	pl.keyAlerts()
	pl.clusterAlerts()
	pl.endpointAlerts()
	pl.connections()
	pl.connectionChanged()
	pl.accessChanged()
	pl.coverageAlerts()
	pl.purgeAlerts()
	pl.appSecretAlerts()
	pl.atlasAlertsOff()

	res := Result{Approvals: pl.approvals, Decisions: pl.decisions}
	res.Memory.Open, res.Notices = pl.settle()
	res.Memory.Endpoints = pl.endpointMemory()
	res.Memory.Unrequested = pl.unrequestedMemory()

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
